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

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from . import telemetry
from ._pipeline.auth_failures import AuthFailures
from ._pipeline.base import (
    _AUTH_OPEN,
    _CURSOR_KINDS,
    _MESSAGE_KINDS,
    MAX_RETRY_AFTER,
    MESSAGE_META_PREFIXES,
    AdapterFactory,
    MessageOutcome,
    MessageResult,
    ProgressObserver,
    ReportCallback,
    _describe,
    _RetryLaterError,
    auth_failure_event_id,
    log,
)
from ._pipeline.cursors import CursorJobs
from ._pipeline.lifecycle import LifecycleJobs
from .adapter import EmailProviderAdapter
from .attachments import DEFAULT_ATTACHMENT_MAX_BYTES
from .errors import (
    AuthExpiredError,
    ConfigurationError,
    CredentialsMissingError,
    MailParityError,
    is_transient,
)
from .models import EventLimits, Job, utcnow
from .protocols import (
    AnyProviderConfig,
    AttachmentStore,
    EventPublisher,
    SecretStore,
    StateStore,
    require_publisher,
)
from .providers import create_adapter

__all__ = [
    "MAX_RETRY_AFTER",
    "MESSAGE_META_PREFIXES",
    "AdapterFactory",
    "MessageOutcome",
    "MessageResult",
    "Processor",
    "ProgressObserver",
    "ReportCallback",
    "auth_failure_event_id",
]


class Processor(CursorJobs, LifecycleJobs, AuthFailures):
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
        attachment_store: an :class:`~mailparity.protocols.AttachmentStore`: each message's
            attachments are saved there before its event is published (the event then says
            where, ``Attachment.stored_as``). None (the default): nothing is downloaded.
        attachment_max_bytes: attachments larger than this are not saved (the event says
            ``not_stored="too_large"``); 25 MiB by default.
        progress: a :class:`ProgressObserver` told how many messages each catch-up found and
            how each message ended (the command line's progress and worker output).
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
        attachment_store: AttachmentStore | None = None,
        attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES,
        progress: ProgressObserver | None = None,
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
        if attachment_max_bytes < 0:
            raise ConfigurationError("attachment_max_bytes must be >= 0")
        if attachment_store is not None and not isinstance(attachment_store, AttachmentStore):
            raise TypeError(
                "attachment_store needs an AttachmentStore (an object with a"
                f" save(message, attachment, chunks) method); got {type(attachment_store).__name__}"
            )
        self.attachment_store = attachment_store
        self.attachment_max_bytes = attachment_max_bytes
        self.progress = progress
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
            with telemetry.job_span(job):
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
