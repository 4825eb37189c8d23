"""The processor's shared parts: settings, result types, meta keys and the job plumbing
(adapters, per-mailbox slots, leases, backoff, retries) every kind of job uses.

The :class:`~mailparity.processing.Processor` is assembled from the job kinds' classes in this
package (messages, cursors, lifecycle, auth failures); each one only adds its own section.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

import requests

from .. import telemetry
from ..adapter import EmailProviderAdapter
from ..errors import MailParityError, ProviderUnavailableError, ThrottledError
from ..models import EVENT_NAMESPACE, EventLimits, Job
from ..protocols import (
    AnyProviderConfig,
    AttachmentStore,
    EventPublisher,
    SecretStore,
    StateStore,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "MESSAGE_META_PREFIXES",
    "AdapterFactory",
    "MessageOutcome",
    "MessageResult",
    "ProcessorBase",
    "ProgressObserver",
    "ReportCallback",
    "auth_failure_event_id",
]

log = logging.getLogger("mailparity.processing")

#: ``adapter_factory(config, store=..., secrets=..., session=..., clock=..., sleep=...)``.
AdapterFactory = Callable[..., EmailProviderAdapter[Any]]
#: ``on_report(provider_id, message_id, error)``: a message (or, with message_id None, a job) was
#: given up on or vanished. Called from worker threads; exceptions it raises are logged.
ReportCallback = Callable[[str, str | None, BaseException], None]

MessageOutcome = Literal[
    "published",  # the complete event went out now
    "duplicate",  # already published (same id, or same Message-ID under another id)
    "deleted",  # the message no longer exists: reported, no event
    "minimal",  # the minimal fallback event is out; a message_retry job owns the message
    "dead",  # given up now (permanent error / retry cap): reported; the job is buried
    "skipped",  # given up earlier: nothing to do
    "retry",  # not done: run again after ``retry_in`` seconds
]

# Meta keys (per provider). Values are small strings.
_FAILURES = "msg-failures:"  # failed fetches of one message
_DEAD = "msg-dead:"  # the message was given up on (poison)
_MARK_PENDING = "mark-pending:"  # published, but mark_message_processed still has to succeed
_MARK_FAILURES = "mark-failures:"
_AUTH_SEQ = "auth-failure:seq"  # how many auth-failure occurrences this provider had
_AUTH_OPEN = "auth-failure:open"  # the occurrence in progress (until consent is given again)
_AUTH_PUBLISHED = "auth-failure:published"  # the occurrence whose event went out

#: The meta keys that are per-message bookkeeping: what the retention sweep prunes by age.
MESSAGE_META_PREFIXES = (_FAILURES, _DEAD, _MARK_PENDING, _MARK_FAILURES)

#: The longest ``Retry-After`` a job waits for (a day); longer values are taken as broken.
MAX_RETRY_AFTER = 86_400.0

#: Job kinds of one message, and of a catch-up from the stored cursor (with their former names).
_MESSAGE_KINDS = frozenset({"message", "message_retry", "graph_message"})
_CURSOR_KINDS = frozenset({"cursor", "sync", "gmail_history"})


@dataclass(frozen=True)
class MessageResult:
    """What :meth:`Processor.process_message` did with one message."""

    status: MessageOutcome
    event_id: str | None = None
    #: For ``"retry"``: seconds to wait; None means "the caller's job backoff".
    retry_in: float | None = None
    error: str | None = None


def auth_failure_event_id(provider_id: str, occurrence: int) -> str:
    """The deterministic event id of a provider's ``occurrence``-th auth failure."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{provider_id}\x00auth-failed\x00{occurrence}"))


def _describe(error: BaseException) -> str:
    """A short, secret-free description for job records and logs.

    MailParityError messages are secret-free by contract; for anything else only the type is kept,
    because a foreign exception's text may quote a request (and its token)."""
    if isinstance(error, MailParityError):
        return f"{type(error).__name__}: {error}"[:500]
    return type(error).__name__


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


@runtime_checkable
class ProgressObserver(Protocol):
    """Told how far the processing of messages got (the CLI's ``sync`` progress and
    ``worker`` output). Called from worker threads; what it raises is logged and ignored."""

    def messages_found(self, provider_id: str, count: int) -> None:
        """A catch-up found ``count`` messages to handle (each is reported done later)."""
        ...

    def message_done(self, provider_id: str, message_id: str, result: MessageResult) -> None:
        """One message was handled (``result.status`` says how; ``"retry"``: not yet)."""
        ...


class _RetryLaterError(Exception):
    """Internal: the job must run again after ``delay`` seconds (None: the job backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class ProcessorBase:
    """The settings and job plumbing of a :class:`~mailparity.processing.Processor` (which
    sets every attribute below in its constructor and documents them)."""

    store: StateStore
    publisher: EventPublisher
    secrets: SecretStore | None
    session: requests.Session | None
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]
    adapter_factory: AdapterFactory
    worker_id: str
    lease_seconds: float
    max_attempts: int
    retry_cap: int
    backoff_base: float
    backoff_max: float
    on_report: ReportCallback | None
    per_mailbox_limit: int
    paused_retry_seconds: float
    batch_min: int
    batch_size: int
    event_limits: EventLimits | None
    attachment_store: AttachmentStore | None
    attachment_max_bytes: int
    progress: ProgressObserver | None
    _adapters: dict[str, EmailProviderAdapter[Any]]
    _adapters_lock: threading.Lock
    _slots: dict[str, threading.BoundedSemaphore]
    _slots_lock: threading.Lock
    _owner_prefix: str
    _owner_seq: itertools.count[int]

    # ------------------------------------------------------------------ adapters, slots, time

    def adapter_for(self, provider: AnyProviderConfig) -> EmailProviderAdapter[Any]:
        """The cached adapter of ``provider``; rebuilt when the stored config differs from the
        adapter's (the host edited it, or another process moved a cursor)."""
        with self._adapters_lock:
            adapter = self._adapters.get(provider.provider_id)
            if adapter is not None and adapter.config == provider:
                return adapter
            adapter = self.adapter_factory(
                provider,
                store=self.store,
                secrets=self.secrets,
                session=self.session,
                clock=self.clock,
                sleep=self.sleep,
            )
            self._adapters[provider.provider_id] = adapter
            return adapter

    @contextlib.contextmanager
    def _slot(self, provider_id: str) -> Iterator[None]:
        with self._slots_lock:
            slot = self._slots.get(provider_id)
            if slot is None:
                slot = threading.BoundedSemaphore(self.per_mailbox_limit)
                self._slots[provider_id] = slot
        with slot:
            yield

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    def _owner(self) -> str:
        # Unique per attempt: two threads of this processor must not share a dedupe claim. A
        # random part per processor (two processes may be given the same worker_id) and a
        # counter per attempt: as unique as a fresh uuid4 each time, without the system call.
        return f"{self.worker_id}:{self._owner_prefix}{next(self._owner_seq):x}"

    def _backoff(self, failures: int) -> float:
        return min(self.backoff_max, self.backoff_base * (2.0 ** min(max(failures, 0), 40)))

    def _error_delay(self, error: BaseException, failures: int) -> float:
        if isinstance(error, ThrottledError | ProviderUnavailableError) and error.retry_after:
            # The provider said how long: the job is due exactly then, never sooner (waiting
            # less only burns quota and extends the throttling). Only an absurd value is
            # bounded, so that a broken header cannot park a mailbox's work for good.
            telemetry.throttle_wait(error.provider, "job")
            return min(MAX_RETRY_AFTER, max(float(error.retry_after), 0.0))
        return self._backoff(failures)

    def _retry(self, job: Job, delay: float, reason: str) -> None:
        at = self.clock() + timedelta(seconds=max(delay, 0.001))
        self.store.retry_job(job.id, error=reason, available_at=at)
        telemetry.job_retried(job.kind)

    def _enqueue(self, job: Job) -> None:
        telemetry.inject(job.payload)  # work stored by a job continues its trace
        if not self.store.enqueue_job(job):
            log.debug("job %s not enqueued: %s is already pending", job.kind, job.unique_key)

    def _report(self, provider_id: str, message_id: str | None, error: BaseException) -> None:
        if self.on_report is None:
            return
        try:
            self.on_report(provider_id, message_id, error)
        except Exception:  # a host callback must not break the pipeline
            log.exception("on_report callback failed")
