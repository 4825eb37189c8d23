"""Cursor jobs: catch up from the stored cursor (Gmail history, Graph delta, ...) under a
per-mailbox lock, batching the fetches, and commit the cursor only once every message it
covers is settled."""

from __future__ import annotations

from typing import Any

from .. import telemetry
from ..adapter import BatchFetch, EmailProviderAdapter, SyncBatch
from ..errors import AuthError, ConfigurationError
from ..models import Job
from ..protocols import AnyProviderConfig
from ..providers import spec_for
from .base import _DEAD, MessageResult, _describe, _RetryLaterError, log
from .messages import MessageJobs

__all__ = ["CursorJobs"]


class CursorJobs(MessageJobs):
    """The ``cursor`` jobs (a catch-up runs :meth:`process_message` for each message)."""

    # ------------------------------------------------------------------ cursors (history, delta)

    def _run_cursor_job(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        pid = provider.provider_id
        if spec_for(provider).stale_push(provider, job.payload):
            # Everything up to the stored cursor was published already: a stale push.
            log.debug("provider %s: the push is behind the cursor; done", pid)
            self.store.complete_job(job.id)
            return
        lock = f"cursor:{pid}"
        owner = self._owner()
        now = self.clock()
        if not self.store.acquire_lock(lock, owner, until=self._lease(now), now=now):
            raise _RetryLaterError(
                "cursor is busy (another sync of this mailbox runs)", self.backoff_base
            )
        try:
            batch = adapter.fetch_changes()
            if not isinstance(batch, SyncBatch):
                raise TypeError("fetch_changes must return a SyncBatch")
            pending: list[MessageResult] = []
            ids = list(batch.message_ids)
            self._progress_found(pid, len(ids))
            batching = isinstance(adapter, BatchFetch) and len(ids) >= self.batch_min
            chunk = self.batch_size if batching else 1
            for start in range(0, len(ids), chunk):
                part = ids[start : start + chunk]
                fetched: dict[str, Any] = {}
                if chunk > 1:
                    assert isinstance(adapter, BatchFetch)
                    fetched = self._prefetch(adapter, pid, part)
                for message_id in part:
                    now = self.clock()
                    # Keep the lock while a long batch runs (same owner: extends the lease).
                    self.store.acquire_lock(lock, owner, until=self._lease(now), now=now)
                    result = self.process_message(
                        adapter, provider, message_id, prefetched=fetched.pop(message_id, None)
                    )
                    self._progress_done(pid, message_id, result)
                    if result.status == "retry":
                        pending.append(result)
            if pending:
                delays = [r.retry_in for r in pending if r.retry_in is not None]
                delay = max(delays) if delays else self._backoff(job.attempts)
                raise _RetryLaterError(
                    f"{len(pending)} message(s) not yet delivered: {pending[0].error}", delay
                )
            if not adapter.commit_cursor(batch):
                log.warning(
                    "provider %s: cursor moved meanwhile; this batch's cursor was not committed",
                    pid,
                )
            self.store.complete_job(job.id)
        finally:
            self.store.release_lock(lock, owner)

    def _prefetch(self, adapter: BatchFetch, provider_id: str, ids: list[str]) -> dict[str, Any]:
        """Fetch in one batched call the messages of ``ids`` that still need fetching.

        Ids already published (or given up on, or owned by a message_retry job) are left out,
        so that a catch-up over known mail costs no fetch at all. A failure of the whole call
        (other than authentication) falls back to the one-by-one fetches of process_message."""
        wanted = [
            mid
            for mid in ids
            if self.store.published_state(provider_id, f"id:{mid}") is None
            and self.store.get_meta(provider_id, _DEAD + mid) is None
        ]
        if len(wanted) < 2:
            return {}
        try:
            with telemetry.fetching_batch(str(getattr(adapter, "provider", "")), len(wanted)):
                found = adapter.get_messages_details(wanted)
        except (AuthError, ConfigurationError):
            raise
        except Exception as exc:  # the single fetches will retry and count failures properly
            log.warning("provider %s: batched fetch failed: %s", provider_id, _describe(exc))
            return {}
        return dict(found) if isinstance(found, dict) else {}
