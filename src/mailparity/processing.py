"""The processing pipeline: durable jobs in, exactly one event per new email out.

A :class:`Processor` claims due jobs from the store and runs them. Every message goes through
:meth:`Processor.process_message`::

    claim "id:<message id>"  ──published──> skip (already delivered)
        │ claimed               busy ──────> retry the job soon
        v
    get_message_details ──NotFound──> report, done (nothing to deliver: the message is gone)
        │              ──Permanent / retry cap exceeded──> report, bury (stops blocking the mailbox)
        │              ──transient──> retry with backoff; after ``max_attempts`` failed fetches a
        │                             minimal event (complete=False) goes out and a
        │                             "message_retry" job keeps trying for the complete one
        v
    claim "mid:<Message-ID>" ──published under another id──> record as duplicate, skip
        v
    publish InboundEmailReceived ──raises──> release the claims, retry (never the fallback)
        v
    mark_published(complete=True) ──> mark_message_processed (a failure is retried on its own job,
                                                              the event is never published again)

Guarantees: publishing is at-least-once with a deterministic event id (a crash between publish and
``mark_published`` republishes the same id); the Gmail / delta cursor is committed only after every
message it covers was published, deduplicated or reported; nothing is dropped while a mailbox is
paused or waiting for consent (its jobs wait). A terminal auth failure marks the provider
``needs_consent`` and publishes one ``EMAIL_PROVIDER_AUTH_FAILED`` event per occurrence.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import requests

from .adapter import BatchFetch, EmailProviderAdapter, Reauthorize, SyncBatch
from .errors import (
    AuthError,
    AuthExpiredError,
    ConfigurationError,
    CredentialsMissingError,
    MailParityError,
    NotFoundError,
    PermanentMessageError,
    ProviderUnavailableError,
    ThrottledError,
    is_transient,
)
from .models import (
    EVENT_NAMESPACE,
    EmailBody,
    EmailMessage,
    EmailProviderAuthFailed,
    EventLimits,
    InboundEmailReceived,
    Job,
    MailParityEvent,
    event_id_for,
    utcnow,
)
from .protocols import (
    AnyProviderConfig,
    EventPublisher,
    SecretStore,
    StateStore,
    require_publisher,
)
from .providers import create_adapter, spec_for

__all__ = [
    "MESSAGE_META_PREFIXES",
    "AdapterFactory",
    "MessageOutcome",
    "MessageResult",
    "Processor",
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

_LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


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


class _RetryLaterError(Exception):
    """Internal: the job must run again after ``delay`` seconds (None: the job backoff)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Processor:
    """Runs the jobs of the pipeline against one :class:`~mailparity.protocols.StateStore`.

    Args:
        store: the StateStore (jobs, dedupe keys, locks, meta, providers, tokens).
        publisher: the host's EventPublisher; it must raise when an event was not accepted.
        secrets: passed to the adapters.
        session: passed to the adapters.
        clock: injectable time (UTC now).
        sleep: injectable waiting (tests never wait for real).
        adapter_factory: builds an adapter from a config (``create_adapter`` by default).
        worker_id: names this processor in job and lock records (host-pid-random by default).
        lease_seconds: how long a claimed job / dedupe key / cursor lock is held before another
            worker may take it over.
        max_attempts: failed fetches of a message before its minimal fallback event goes out.
        retry_cap: failed fetches after which a message is given up on (reported, job buried).
        backoff_base: exponential backoff of retried jobs, in seconds (``base * 2**n``, capped
            at ``backoff_max``).
        backoff_max: the cap of that backoff; also how long the jobs of a mailbox that needs
            consent wait between checks.
        on_report: called with ``(provider_id, message_id, error)`` for messages that were given
            up on or vanished (and with ``message_id`` None for lifecycle jobs given up on).
        per_mailbox_limit: jobs of one provider that run at the same time in this processor
            (Graph allows 4 concurrent requests per mailbox).
        paused_retry_seconds: how long jobs of an inactive provider wait between checks.
        event_limits: caps on bodies, headers and lists in each published event
            (:class:`~mailparity.models.EventLimits`; the defaults keep an event under 256 KB).
        batch_min: a sync / history job with at least this many ids fetches them in batches
            (``get_messages_details`` of the adapter, when it has one) instead of one by one.
        batch_size: ids per batched fetch (Graph's $batch takes 20; Gmail's advice is 25 or less).
    """

    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        *,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        adapter_factory: AdapterFactory = create_adapter,
        worker_id: str | None = None,
        lease_seconds: float = 300,
        max_attempts: int = 6,
        retry_cap: int = 30,
        backoff_base: float = 5.0,
        backoff_max: float = 3600.0,
        on_report: ReportCallback | None = None,
        per_mailbox_limit: int = 4,
        paused_retry_seconds: float = 300.0,
        batch_min: int = 5,
        batch_size: int = 20,
        event_limits: EventLimits | None = None,
    ) -> None:
        if max_attempts < 1 or retry_cap < 1 or per_mailbox_limit < 1:
            raise ConfigurationError("max_attempts, retry_cap and per_mailbox_limit must be >= 1")
        if batch_min < 2 or not 1 <= batch_size <= 25:
            raise ConfigurationError("batch_min must be >= 2 and batch_size within 1..25")
        self.store = store
        self.publisher = require_publisher(publisher, "Processor")
        self.secrets = secrets
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.adapter_factory = adapter_factory
        self.worker_id = worker_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = max_attempts
        self.retry_cap = retry_cap
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.on_report = on_report
        self.per_mailbox_limit = per_mailbox_limit
        self.paused_retry_seconds = float(paused_retry_seconds)
        self.batch_min = batch_min
        self.batch_size = batch_size
        self.event_limits = event_limits
        self._adapters: dict[str, EmailProviderAdapter[Any]] = {}
        self._adapters_lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self._owner_prefix = uuid.uuid4().hex[:12] + "-"
        # next() on itertools.count is atomic under the GIL: safe from the worker threads.
        self._owner_seq = itertools.count(1)

    def __repr__(self) -> str:
        return f"Processor(worker_id={self.worker_id!r})"

    # ------------------------------------------------------------------ running jobs

    def claim_due(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` due jobs for this processor (leased for ``lease_seconds``)."""
        now = self.clock()
        return self.store.claim_jobs(
            self.worker_id, limit=limit, now=now, lease_until=self._lease(now)
        )

    def run_pending(self, limit: int | None = None) -> int:
        """Claim and run due jobs until none are due (or ``limit`` ran); return how many ran.

        Jobs retried by this call are due later (every retry waits), so the loop ends."""
        ran = 0
        while limit is None or ran < limit:
            batch = 10 if limit is None else min(10, limit - ran)
            jobs = self.claim_due(batch)
            if not jobs:
                break
            for job in jobs:
                self.run_job(job)
                ran += 1
        return ran

    def run_job(self, job: Job) -> None:
        """Run one claimed job to an outcome: completed, retried later or buried. Never raises
        (a failure of the store itself is logged; the job's lease then lapses and it runs again)."""
        try:
            self._run_job(job)
        except Exception:  # a worker thread must survive anything
            log.exception("job %s (%s) of provider %s failed", job.id, job.kind, job.provider_id)

    def _run_job(self, job: Job) -> None:
        provider = self.store.get_provider(job.provider_id)
        if provider is None:
            # The mailbox connection was deleted: its work has no one to deliver to.
            log.warning("job %s: provider %s no longer exists; dropped", job.id, job.provider_id)
            self.store.complete_job(job.id)
            return
        if not provider.needs_consent and self.store.get_meta(provider.provider_id, _AUTH_OPEN):
            # Reconnected: the auth-failure occurrence is over; a new failure is a new event.
            self.store.set_meta(provider.provider_id, _AUTH_OPEN, None)
        if not provider.active:
            self._retry(job, self.paused_retry_seconds, "provider is paused (active=False)")
            return
        if provider.needs_consent:
            self._publish_auth_failed(provider, provider.auth_error_code, "consent required")
            self._retry(job, self.backoff_max, "provider needs consent")
            return
        with self._slot(provider.provider_id):
            try:
                adapter = self.adapter_for(provider)
                self._dispatch(job, provider, adapter)
            except _RetryLaterError as retry:
                delay = retry.delay if retry.delay is not None else self._backoff(job.attempts)
                self._retry(job, delay, retry.reason)
            except (AuthExpiredError, CredentialsMissingError) as exc:
                self._auth_failed(job, provider, exc)
            except ConfigurationError as exc:
                log.error("provider %s is misconfigured: %s", provider.provider_id, exc)
                self._retry(job, self.backoff_max, _describe(exc))
            except Exception as exc:  # anything else: retry, nothing lost
                if is_transient(exc):
                    log.warning("job %s (%s): %s", job.id, job.kind, _describe(exc))
                else:
                    log.error(
                        "job %s (%s) failed: %s", job.id, job.kind, _describe(exc),
                        exc_info=not isinstance(exc, MailParityError),
                    )
                self._retry(job, self._error_delay(exc, job.attempts), _describe(exc))

    def _dispatch(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        if job.kind in _MESSAGE_KINDS:
            self._run_message_job(job, provider, adapter)
        elif job.kind in _CURSOR_KINDS:
            self._run_cursor_job(job, provider, adapter)
        elif job.kind == "lifecycle":
            self._run_lifecycle_job(job, provider, adapter)
        else:  # pragma: no cover - Job.kind is a Literal; kept for stores that bypass validation
            self.store.bury_job(job.id, error=f"unknown job kind {job.kind!r}")

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
            return min(MAX_RETRY_AFTER, max(float(error.retry_after), 0.0))
        return self._backoff(failures)

    def _retry(self, job: Job, delay: float, reason: str) -> None:
        at = self.clock() + timedelta(seconds=max(delay, 0.001))
        self.store.retry_job(job.id, error=reason, available_at=at)

    def _enqueue(self, job: Job) -> None:
        if not self.store.enqueue_job(job):
            log.debug("job %s not enqueued: %s is already pending", job.kind, job.unique_key)

    def _report(self, provider_id: str, message_id: str | None, error: BaseException) -> None:
        if self.on_report is None:
            return
        try:
            self.on_report(provider_id, message_id, error)
        except Exception:  # a host callback must not break the pipeline
            log.exception("on_report callback failed")

    # ------------------------------------------------------------------ messages

    def _run_message_job(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        message_id = job.payload.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            log.error("job %s: payload has no message_id; buried", job.id)
            self.store.bury_job(job.id, error="payload has no message_id")
            return
        if job.payload.get("mark_only"):
            self._run_mark_job(job, provider, adapter, message_id)
            return
        result = self.process_message(
            adapter,
            provider,
            message_id,
            received_hint=_parse_time(job.payload.get("received_hint")),
            retrying_minimal=job.kind == "message_retry",
        )
        if result.status == "retry":
            delay = result.retry_in if result.retry_in is not None else self._backoff(job.attempts)
            self._retry(job, delay, result.error or "retry")
        elif result.status == "dead":
            self.store.bury_job(job.id, error=result.error or "given up")
        else:
            self.store.complete_job(job.id)

    def process_message(
        self,
        adapter: EmailProviderAdapter[Any],
        provider: AnyProviderConfig,
        message_id: str,
        *,
        received_hint: datetime | None = None,
        retrying_minimal: bool = False,
        prefetched: EmailMessage | BaseException | None = None,
    ) -> MessageResult:
        """Deliver one message: dedupe, fetch, publish, mark processed (see the module docstring).

        ``prefetched`` is the outcome of a batched fetch of this message (the message, or the
        error its own batch member got); it replaces the single fetch and is handled exactly
        like what that fetch would have returned or raised.

        ``received_hint`` is the minimal event's ``received_at`` if it comes to that (else now).
        ``retrying_minimal`` is set by the ``message_retry`` job, which owns a message whose
        minimal event went out; other callers leave such a message to it.

        Raises AuthExpiredError / CredentialsMissingError (the mailbox needs consent) and store
        errors; every other failure is a :class:`MessageResult`. A NotFoundError (deleted before
        it could be fetched) publishes nothing: there is no message left to describe, and a
        minimal event would announce mail that nobody can read. It is reported and done.
        """
        pid = provider.provider_id
        if self.store.get_meta(pid, _DEAD + message_id) is not None:
            return MessageResult("skipped")
        id_key = f"id:{message_id}"
        if not retrying_minimal and self.store.published_state(pid, id_key) == "minimal":
            self._ensure_retry_job(provider, message_id, received_hint)
            return MessageResult("minimal", event_id=event_id_for(pid, message_id, complete=False))
        owner = self._owner()
        now = self.clock()
        claim = self.store.claim_keys(pid, [id_key], owner, self._lease(now), now)
        if claim == "published":
            return self._already_published(adapter, provider, message_id)
        if claim == "busy":
            return MessageResult("retry", retry_in=self.backoff_base, error="message is busy")
        held = [id_key]
        settled = False
        try:
            try:
                if isinstance(prefetched, BaseException):
                    raise prefetched
                message = (
                    prefetched
                    if prefetched is not None
                    else adapter.get_message_details(message_id)
                )
            except (AuthError, ConfigurationError):
                raise
            except NotFoundError as exc:
                log.info("provider %s: message %s is gone; no event", pid, message_id)
                self.store.set_meta(pid, _FAILURES + message_id, None)
                self._report(pid, message_id, exc)
                return MessageResult("deleted", error=_describe(exc))
            except PermanentMessageError as exc:
                return self._give_up(pid, message_id, exc)
            except Exception as exc:  # transient or unknown: counted, retried
                result = self._fetch_failed(provider, message_id, exc, received_hint, owner)
                settled = result.status == "minimal"
                return result

            if message.message_id:
                mid_key = f"mid:{message.message_id}"
                now = self.clock()
                claim = self.store.claim_keys(pid, [mid_key], owner, self._lease(now), now)
                if claim == "busy":
                    return MessageResult(
                        "retry", retry_in=self.backoff_base, error="Message-ID busy"
                    )
                if claim == "published":
                    # The same email under another provider id (re-uploaded, copied): one event.
                    log.info(
                        "provider %s: message %s repeats Message-ID %s; no second event",
                        pid, message_id, message.message_id,
                    )
                    self.store.mark_published(
                        pid, held, complete=True, event_id=event_id_for(pid, message_id),
                        at=self.clock(),
                    )
                    settled = True
                    self.store.set_meta(pid, _FAILURES + message_id, None)
                    self._mark_processed(adapter, provider, message_id)
                    return MessageResult("duplicate")
                held.append(mid_key)

            # A fetched message is complete already (the copy is for one that is not).
            event = InboundEmailReceived.for_message(
                message if message.complete else message.model_copy(update={"complete": True}),
                occurred_at=self.clock(),
                limits=self.event_limits,
            )
            try:
                self.publisher.publish(event)
            except Exception as exc:  # the host's bus: retried, never a fallback
                log.warning(
                    "provider %s: publishing %s failed: %s", pid, message_id, _describe(exc)
                )
                return MessageResult("retry", error=f"publish failed: {_describe(exc)}")
            self.store.mark_published(
                pid, held, complete=True, event_id=event.event_id, at=self.clock()
            )
            settled = True
            self.store.set_meta(pid, _FAILURES + message_id, None)
            self._mark_processed(adapter, provider, message_id)
            return MessageResult("published", event_id=event.event_id)
        finally:
            if not settled:
                self.store.release_keys(pid, held, owner)

    def _already_published(
        self, adapter: EmailProviderAdapter[Any], provider: AnyProviderConfig, message_id: str
    ) -> MessageResult:
        # A duplicate job is the moment to retry a mark that failed earlier (cheap, no refetch).
        if self.store.get_meta(provider.provider_id, _MARK_PENDING + message_id):
            self._mark_processed(adapter, provider, message_id)
        return MessageResult("duplicate")

    def _fetch_failed(
        self,
        provider: AnyProviderConfig,
        message_id: str,
        error: BaseException,
        received_hint: datetime | None,
        owner: str,
    ) -> MessageResult:
        pid = provider.provider_id
        raw = self.store.get_meta(pid, _FAILURES + message_id)
        failures = (int(raw) if raw and raw.isdigit() else 0) + 1
        self.store.set_meta(pid, _FAILURES + message_id, str(failures))
        if failures > self.retry_cap:
            return self._give_up(pid, message_id, error, reason="retry cap exceeded")
        log.warning(
            "provider %s: fetching %s failed (%d/%d): %s",
            pid, message_id, failures, self.max_attempts, _describe(error),
        )
        id_key = f"id:{message_id}"
        if failures >= self.max_attempts and self.store.published_state(pid, id_key) is None:
            return self._publish_minimal(provider, message_id, received_hint)
        delay = self._error_delay(error, failures - 1)
        return MessageResult("retry", retry_in=delay, error=_describe(error))

    def _publish_minimal(
        self, provider: AnyProviderConfig, message_id: str, received_hint: datetime | None
    ) -> MessageResult:
        """The seed's fallback: tell the host mail arrived even though it cannot be read yet."""
        pid = provider.provider_id
        message = EmailMessage(
            id=message_id,
            provider=provider.provider,
            provider_id=pid,
            tenant=provider.tenant,
            mailbox=provider.mailbox,
            received_at=received_hint or self.clock(),
            # from_ defaults to EmailAddress(email=""), the seed's empty sender.
            body=EmailBody(text=""),
            complete=False,
        )
        event = InboundEmailReceived.for_message(
            message, occurred_at=self.clock(), limits=self.event_limits
        )
        try:
            self.publisher.publish(event)
        except Exception as exc:  # retried like any publish failure
            log.warning("provider %s: publishing minimal %s failed: %s", pid, message_id,
                        _describe(exc))
            return MessageResult("retry", error=f"publish failed: {_describe(exc)}")
        self.store.mark_published(
            pid, [f"id:{message_id}"], complete=False, event_id=event.event_id, at=self.clock()
        )
        log.warning("provider %s: message %s published minimal; retrying for details",
                    pid, message_id)
        self._ensure_retry_job(provider, message_id, received_hint)
        return MessageResult("minimal", event_id=event.event_id)

    def _ensure_retry_job(
        self, provider: AnyProviderConfig, message_id: str, received_hint: datetime | None
    ) -> None:
        payload: dict[str, Any] = {"message_id": message_id}
        if received_hint is not None:
            payload["received_hint"] = received_hint.isoformat()
        self._enqueue(
            Job(
                kind="message_retry",
                provider_id=provider.provider_id,
                payload=payload,
                unique_key=f"message-retry:{provider.provider_id}:{message_id}",
                available_at=self.clock()
                + timedelta(seconds=self._backoff(self.max_attempts)),
            )
        )

    def _give_up(
        self, provider_id: str, message_id: str, error: BaseException, *, reason: str = ""
    ) -> MessageResult:
        text = f"{reason}: {_describe(error)}" if reason else _describe(error)
        log.error("provider %s: giving up on message %s (%s)", provider_id, message_id, text)
        self.store.set_meta(provider_id, _DEAD + message_id, text[:200])
        self.store.set_meta(provider_id, _FAILURES + message_id, None)
        self._report(provider_id, message_id, error)
        return MessageResult("dead", error=text)

    def _mark_processed(
        self, adapter: EmailProviderAdapter[Any], provider: AnyProviderConfig, message_id: str
    ) -> None:
        """Apply the processed strategy; a failure is remembered and retried by its own job."""
        pid = provider.provider_id
        try:
            adapter.mark_message_processed(message_id)
        except Exception as exc:  # the event is out; never republish for this
            log.warning("provider %s: marking %s processed failed: %s", pid, message_id,
                        _describe(exc))
            self.store.set_meta(pid, _MARK_PENDING + message_id, "1")
            self._enqueue(
                Job(
                    kind="message_retry",
                    provider_id=pid,
                    payload={"message_id": message_id, "mark_only": True},
                    unique_key=f"mark:{pid}:{message_id}",
                    available_at=self.clock() + timedelta(seconds=self._error_delay(exc, 0)),
                )
            )
            return
        self.store.set_meta(pid, _MARK_PENDING + message_id, None)
        self.store.set_meta(pid, _MARK_FAILURES + message_id, None)

    def _run_mark_job(
        self,
        job: Job,
        provider: AnyProviderConfig,
        adapter: EmailProviderAdapter[Any],
        message_id: str,
    ) -> None:
        pid = provider.provider_id
        if not self.store.get_meta(pid, _MARK_PENDING + message_id):
            self.store.complete_job(job.id)
            return
        try:
            adapter.mark_message_processed(message_id)
        except AuthError:
            raise
        except NotFoundError:
            log.info("provider %s: message %s gone before it was marked", pid, message_id)
        except Exception as exc:
            raw = self.store.get_meta(pid, _MARK_FAILURES + message_id)
            failures = (int(raw) if raw and raw.isdigit() else 0) + 1
            if failures <= self.retry_cap:
                self.store.set_meta(pid, _MARK_FAILURES + message_id, str(failures))
                self._retry(job, self._error_delay(exc, failures), _describe(exc))
                return
            log.error("provider %s: giving up marking %s processed: %s", pid, message_id,
                      _describe(exc))
            self._report(pid, message_id, exc)
            self.store.set_meta(pid, _MARK_PENDING + message_id, None)
            self.store.set_meta(pid, _MARK_FAILURES + message_id, None)
            self.store.bury_job(job.id, error=_describe(exc))
            return
        self.store.set_meta(pid, _MARK_PENDING + message_id, None)
        self.store.set_meta(pid, _MARK_FAILURES + message_id, None)
        self.store.complete_job(job.id)

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
            found = adapter.get_messages_details(wanted)
        except (AuthError, ConfigurationError):
            raise
        except Exception as exc:  # the single fetches will retry and count failures properly
            log.warning("provider %s: batched fetch failed: %s", provider_id, _describe(exc))
            return {}
        return dict(found) if isinstance(found, dict) else {}

    # ------------------------------------------------------------------ lifecycle

    def _run_lifecycle_job(
        self, job: Job, provider: AnyProviderConfig, adapter: EmailProviderAdapter[Any]
    ) -> None:
        pid = provider.provider_id
        event = job.payload.get("event")
        subscription_id = job.payload.get("subscription_id")
        current = spec_for(provider).subscription_id(provider)
        stale = bool(subscription_id and current and subscription_id != current)
        if event not in _LIFECYCLE_EVENTS:
            log.warning("provider %s: unknown lifecycle event %r; ignored", pid, event)
            self.store.complete_job(job.id)
            return
        if stale and event != "missed":
            # An old subscription (already replaced): acting on it would create a second one.
            log.info("provider %s: %s for old subscription; ignored", pid, event)
            self.store.complete_job(job.id)
            return
        try:
            if event == "reauthorizationRequired":
                if isinstance(adapter, Reauthorize):
                    adapter.reauthorize_subscription()
                else:
                    adapter.renew_webhook_subscription()
            elif event == "subscriptionRemoved":
                adapter.register_webhook_subscription()
        except (AuthError, ConfigurationError):
            raise
        except Exception as exc:
            if job.attempts + 1 >= self.retry_cap:
                log.error("provider %s: giving up on lifecycle %s: %s", pid, event,
                          _describe(exc))
                self._report(pid, None, exc)
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

    # ------------------------------------------------------------------ auth failures

    def handle_auth_failure(self, provider: AnyProviderConfig, error: AuthError) -> None:
        """A terminal auth failure: mark the provider ``needs_consent`` (with the error code) and
        publish its EMAIL_PROVIDER_AUTH_FAILED event, once per occurrence. An occurrence ends
        when the host clears ``needs_consent`` (the mailbox was connected again). Also used by
        maintenance when a renewal meets the failure."""
        pid = provider.provider_id
        log.error("provider %s needs consent again: %s", pid, _describe(error))
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
                self.publisher.publish(event)
            except Exception as exc:  # retried when the next parked job runs
                log.warning("provider %s: publishing the auth failure failed: %s", pid,
                            _describe(exc))
                return
            self.store.set_meta(pid, _AUTH_PUBLISHED, occurrence)
        finally:
            self.store.release_lock(lock, owner)
