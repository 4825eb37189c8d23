"""Lifecycle jobs: act on a push registration's lifecycle event (reauthorize, recreate a
removed subscription) and catch up on what may have been missed meanwhile."""

from __future__ import annotations

from typing import Any

from .. import mailbox_events
from ..adapter import EmailProviderAdapter, Reauthorize
from ..errors import AuthError, ConfigurationError
from ..models import Job
from ..protocols import AnyProviderConfig
from ..providers import spec_for
from ..pushing import (
    LIFECYCLE_EVENTS,
    LIFECYCLE_MISSED,
    LIFECYCLE_REAUTHORIZATION_REQUIRED,
    LIFECYCLE_SUBSCRIPTION_REMOVED,
)
from .base import ProcessorBase, _describe, log

__all__ = ["LifecycleJobs"]


class LifecycleJobs(ProcessorBase):
    """The ``lifecycle`` jobs, and the catch-up (``sync``) job they enqueue."""

    # ------------------------------------------------------------------ lifecycle

    def _run_lifecycle_job(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        pid = provider.provider_id
        spec = spec_for(provider)
        # A job stored under the provider's own name (before the names were neutral) runs too.
        event = spec.lifecycle_event(job.payload.get("event"))
        subscription_id = job.payload.get("subscription_id")
        current = spec.subscription_id(provider)
        stale = bool(subscription_id and current and subscription_id != current)
        if event not in LIFECYCLE_EVENTS:
            log.warning("provider %s: unknown lifecycle event %r; ignored", pid, event)
            self.store.complete_job(job.id)
            return
        if stale and event != LIFECYCLE_MISSED:
            # An old subscription (already replaced): acting on it would create a second one.
            log.info("provider %s: %s for old subscription; ignored", pid, event)
            self.store.complete_job(job.id)
            return
        try:
            if event == LIFECYCLE_REAUTHORIZATION_REQUIRED:
                if isinstance(adapter, Reauthorize):
                    adapter.reauthorize_subscription()
                else:
                    adapter.renew_webhook_subscription()
            elif event == LIFECYCLE_SUBSCRIPTION_REMOVED:
                adapter.register_webhook_subscription()
                mailbox_events.subscription_restored(self.store, pid)
        except (AuthError, ConfigurationError):
            raise
        except Exception as exc:
            if job.attempts + 1 >= self.retry_cap:
                log.error("provider %s: giving up on lifecycle %s: %s", pid, event,
                          _describe(exc))
                self._report(pid, None, exc)
                if event == LIFECYCLE_SUBSCRIPTION_REMOVED:  # removed, and not recreated
                    mailbox_events.subscription_lost(
                        self.store, self.publisher, provider, exc,
                        subscription_id=subscription_id if isinstance(subscription_id, str)
                        else None, clock=self.clock,
                    )
                self.store.bury_job(job.id, error=_describe(exc))
                self._enqueue_sync(pid, f"lifecycle {event} failed")
                return
            raise
        # Every lifecycle event can mean missed changes (notifications pause before a
        # reauthorization, stop with a removed subscription, or were dropped): catch up.
        self._enqueue_sync(pid, str(event))
        self.store.complete_job(job.id)

    def _enqueue_sync(self, provider_id: str, reason: str) -> None:
        self._enqueue(
            Job(
                kind="sync",
                provider_id=provider_id,
                payload={"reason": reason},
                unique_key=f"sync:{provider_id}",
                available_at=self.clock(),
            )
        )
