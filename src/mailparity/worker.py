"""The long-running worker: claims due jobs and runs them on a thread pool.

``Worker`` owns a :class:`~mailparity.processing.Processor` (pass processor keyword arguments
through) and keeps up to ``threads`` jobs running. Jobs of one mailbox never run more than
``per_mailbox_limit`` at a time (Graph allows four concurrent requests per mailbox). Stopping is
graceful: running jobs finish, claimed-but-unstarted jobs are not claimed in the first place (the
worker claims only as many jobs as it has free threads). Several workers, in one process or many,
can share one store: jobs are leased, dedupe keys and cursor locks keep the work exactly-once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from types import FrameType
from typing import Any

from .errors import ConfigurationError
from .health import record_heartbeat
from .models import utcnow
from .processing import Processor
from .protocols import EventPublisher, StateStore, require_publisher

__all__ = ["Worker"]

log = logging.getLogger("mailparity.worker")


class Worker:
    """Run the pipeline's jobs until stopped.

    Args:
        store: as for :class:`~mailparity.processing.Processor`.
        publisher: as for :class:`~mailparity.processing.Processor`.
        threads: jobs running at the same time.
        poll_interval: seconds to wait between polls when no job is due.
        per_mailbox_limit: jobs of one provider running at the same time.
        clock: the clock of the processor (UTC).
        sleep: how to wait between polls; by default the worker waits on its stop event, so
            :meth:`stop` wakes it at once. Also passed to the adapters (HTTP retry waits).
        stop_event: a ``threading.Event`` that stops the worker when set (one is made if None).
        listen: also run the push listeners of the providers that have one (IMAP IDLE; see
            :class:`~mailparity.listeners.ListenerGroup`) while :meth:`run` runs.
        listener_options: keyword arguments for those listeners (``idle_timeout`` ...).
        heartbeat_interval: seconds between two heartbeats recorded in the store while the worker
            runs (what ``/readyz`` checks; see :mod:`mailparity.health`).
        processor: an existing :class:`Processor` to run the jobs with (shared with the webhook
            handler and maintenance, see :class:`~mailparity.app.App`); then no
            ``processor_kwargs`` may be given.
        **processor_kwargs: every other :class:`Processor` argument (``secrets``, ``session``,
            ``adapter_factory``, ``max_attempts``, ``on_report`` ...).
    """

    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        *,
        threads: int = 4,
        poll_interval: float = 1.0,
        per_mailbox_limit: int = 4,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        stop_event: threading.Event | None = None,
        listen: bool = False,
        listener_options: Mapping[str, Any] | None = None,
        processor: Processor | None = None,
        heartbeat_interval: float = 30.0,
        **processor_kwargs: Any,
    ) -> None:
        if threads < 1:
            raise ConfigurationError("threads must be >= 1")
        require_publisher(publisher, "Worker")
        self.heartbeat_interval = float(heartbeat_interval)
        self._last_beat: datetime | None = None
        self.threads = threads
        self.poll_interval = float(poll_interval)
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self._sleep = sleep
        self.listen = listen
        self.listener_options = dict(listener_options or {})
        if "secrets" in processor_kwargs:
            self.listener_options.setdefault("secrets", processor_kwargs["secrets"])
        if processor is not None:
            if processor_kwargs:
                raise TypeError(
                    f"Worker() got processor options beside a processor: {sorted(processor_kwargs)}"
                )
            self.processor = processor
            if processor.secrets is not None:
                self.listener_options.setdefault("secrets", processor.secrets)
            self.jobs_run = 0
            return
        if sleep is not None:
            processor_kwargs.setdefault("sleep", sleep)
        self.processor = Processor(
            store, publisher, clock=clock, per_mailbox_limit=per_mailbox_limit,
            **processor_kwargs,
        )
        self.jobs_run = 0

    def __repr__(self) -> str:
        return f"Worker(worker_id={self.processor.worker_id!r}, threads={self.threads})"

    def stop(self) -> None:
        """Ask the worker to stop: running jobs finish, no new job is claimed."""
        self.stop_event.set()

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self.stop_event.wait(seconds)

    def heartbeat(self, *, force: bool = False) -> None:
        """Record a heartbeat in the store unless one was recorded less than
        ``heartbeat_interval`` ago (``force``: record anyway). A store failure is logged: the
        worker keeps working, and readiness reports the stale beat."""
        now = self.clock()
        if (
            not force
            and self._last_beat is not None
            and (now - self._last_beat).total_seconds() < self.heartbeat_interval
        ):
            return
        try:
            record_heartbeat(self.processor.store, now)
        except Exception as exc:
            log.warning("worker heartbeat not recorded: %s", type(exc).__name__)
            return
        self._last_beat = now

    def run_once(self) -> int:
        """Claim up to ``threads`` due jobs, run them on the pool, wait for them; return how many
        ran (0 when none was due)."""
        self.heartbeat()
        jobs = self.processor.claim_due(self.threads)
        if not jobs:
            return 0
        with ThreadPoolExecutor(self.threads, thread_name_prefix="mailparity") as pool:
            for future in [pool.submit(self.processor.run_job, job) for job in jobs]:
                future.result()
        self.jobs_run += len(jobs)
        return len(jobs)

    def run(self, stop_after: int | None = None) -> int:
        """Run until :meth:`stop` (or SIGTERM / SIGINT when called in the main thread).

        Args:
            stop_after: return after this many consecutive polls found nothing to do and no job
                was running (None: run until stopped). ``run(stop_after=1)`` drains the queue.

        Returns how many jobs ran.
        """
        restore = self._install_signal_handlers()
        listeners = self._start_listeners()
        ran = 0
        idle_polls = 0
        inflight: set[Future[None]] = set()
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="mailparity") as pool:
                while not self.stop_event.is_set():
                    self.heartbeat()
                    free = self.threads - len(inflight)
                    jobs = self.processor.claim_due(free) if free > 0 else []
                    for job in jobs:
                        inflight.add(pool.submit(self.processor.run_job, job))
                    ran += len(jobs)
                    if inflight:
                        idle_polls = 0
                        done, _ = wait(
                            inflight, timeout=self.poll_interval, return_when=FIRST_COMPLETED
                        )
                        inflight -= done
                        continue
                    if jobs:
                        continue
                    idle_polls += 1
                    if stop_after is not None and idle_polls >= stop_after:
                        break
                    self._wait(self.poll_interval)
                # Graceful: let running jobs finish (leaving the pool waits for them).
                wait(inflight)
        finally:
            if listeners is not None:
                listeners.stop()
            restore()
            self.jobs_run += ran
        log.info("worker %s stopped after %d job(s)", self.processor.worker_id, ran)
        return ran

    def _start_listeners(self) -> Any:
        if not self.listen:
            return None
        from .listeners import ListenerGroup

        group = ListenerGroup(
            self.processor.store, stop_event=self.stop_event, clock=self.clock,
            **self.listener_options,
        )
        group.start()
        return group

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signals can only be handled in the main thread

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the running jobs", signum)
            self.stop()

        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not supported here (embedded interpreters)
                continue

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore
