"""Auth failures: a terminal auth failure marks the mailbox ``needs_consent`` and publishes
one ``EMAIL_PROVIDER_AUTH_FAILED`` event per occurrence."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from .. import telemetry
from ..errors import AuthError
from ..models import EmailProviderAuthFailed, Job, MailParityEvent
from ..protocols import AnyProviderConfig
from .base import (
    _AUTH_OPEN,
    _AUTH_PUBLISHED,
    _AUTH_SEQ,
    ProcessorBase,
    _describe,
    auth_failure_event_id,
    log,
)

__all__ = ["AuthFailures"]


class AuthFailures(ProcessorBase):
    """:meth:`handle_auth_failure` and the parking of a failed mailbox's jobs."""

    # ------------------------------------------------------------------ auth failures

    def handle_auth_failure(self, provider: AnyProviderConfig, error: AuthError) -> None:
        """A terminal auth failure: mark the provider ``needs_consent`` (with the error code) and
        publish its EMAIL_PROVIDER_AUTH_FAILED event, once per occurrence. An occurrence ends
        when the host clears ``needs_consent`` (the mailbox was connected again). Also used by
        maintenance when a renewal meets the failure."""
        pid = provider.provider_id
        log.error("provider %s needs consent again: %s", pid, _describe(error))
        telemetry.auth_failure(provider.provider)
        with contextlib.suppress(KeyError):  # deleted meanwhile: its jobs are dropped next run
            provider = self.store.update_provider(
                pid, {"needs_consent": True, "auth_error_code": error.code}
            )
        self._publish_auth_failed(provider, error.code, error.message)

    def _auth_failed(self, job: Job, provider: AnyProviderConfig, error: AuthError) -> None:
        self.handle_auth_failure(provider, error)
        # Kept (nothing lost) but parked: it runs again after the mailbox is reconnected.
        self._retry(job, self.backoff_max, _describe(error))

    def _publish_auth_failed(
        self, provider: AnyProviderConfig, code: str | None, text: str
    ) -> None:
        """Publish the provider's EMAIL_PROVIDER_AUTH_FAILED once per occurrence (idempotent)."""
        pid = provider.provider_id
        owner = self._owner()
        now = self.clock()
        lock = f"auth-failed:{pid}"
        if not self.store.acquire_lock(lock, owner, until=now + timedelta(seconds=60), now=now):
            return  # another worker publishes it
        try:
            occurrence = self.store.get_meta(pid, _AUTH_OPEN)
            if occurrence is None:
                raw = self.store.get_meta(pid, _AUTH_SEQ)
                occurrence = str((int(raw) if raw and raw.isdigit() else 0) + 1)
                self.store.set_meta(pid, _AUTH_SEQ, occurrence)
                self.store.set_meta(pid, _AUTH_OPEN, occurrence)
            if self.store.get_meta(pid, _AUTH_PUBLISHED) == occurrence:
                return
            event: MailParityEvent = EmailProviderAuthFailed(
                event_id=auth_failure_event_id(pid, int(occurrence)),
                occurred_at=self.clock(),
                tenant_id=provider.tenant,
                provider_id=pid,
                provider=provider.provider,
                mailbox=provider.mailbox,
                error_code=code,
                error=text,
            )
            try:
                telemetry.publish(self.publisher, event, provider.provider)
            except Exception as exc:  # retried when the next parked job runs
                log.warning("provider %s: publishing the auth failure failed: %s", pid,
                            _describe(exc))
                return
            self.store.set_meta(pid, _AUTH_PUBLISHED, occurrence)
        finally:
            self.store.release_lock(lock, owner)
