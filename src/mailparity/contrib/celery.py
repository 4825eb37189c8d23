"""Run mailparity's ingestion on a host's Celery workers.

The store stays the queue of record: webhooks store durable jobs, and Celery only says *when* to
look at them. A lost, duplicated or late Celery message therefore never loses or doubles an event:
jobs are leased from the store (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), dedupe keys keep
publishing exactly-once per message, and the beat schedule is the safety net that runs whatever a
missed trigger left behind. ::

    from celery import Celery
    from mailparity.contrib.celery import configure

    app = Celery("host", broker="redis://...")
    mailparity = configure(
        app,
        store_factory=lambda: SqlStore(create_engine(DATABASE_URL, pool_size=5)),
        publisher_factory=lambda: MyBusPublisher(),
    )
    app.conf.beat_schedule.update(mailparity.beat_schedule())   # or configure(..., beat=True)

    # in the webhook view, once the handler answered:
    response = handler.handle_microsoft(request)
    mailparity.notify_after(response)        # sends mailparity.process_jobs in about a second

Tasks registered (names are stable; route them with ``queue``):

* ``mailparity.process_jobs``: claims and runs due jobs, at most ``max_jobs`` jobs and about
  ``max_seconds`` per run; when it stopped on a bound with work left, it sends itself again.
* ``mailparity.run_maintenance``: subscription / watch renewal and silence detection
  (:meth:`mailparity.maintenance.Maintenance.run_once` without running jobs), then a trigger of
  ``process_jobs`` for the sync and lifecycle jobs it stored.

Fork safety: the factories are called lazily, in the process that runs the task, the first time a
task needs them, and again whenever the process id changed (a prefork child never uses its
parent's database connections). Nothing is created at import or ``configure`` time, so the web
process that only calls :func:`notify_new_jobs` never opens the store.

Celery is an optional dependency: only this module imports it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import ConfigurationError
from ..maintenance import Maintenance
from ..processing import Processor
from ..protocols import EventPublisher, SecretStore, StateStore

__all__ = [
    "MAINTENANCE_TASK",
    "PROCESS_TASK",
    "MailParityCelery",
    "configure",
    "notify_new_jobs",
]

log = logging.getLogger("mailparity.contrib.celery")

#: The task that claims and runs due jobs.
PROCESS_TASK = "mailparity.process_jobs"
#: The task that renews subscriptions and enqueues catch-up syncs.
MAINTENANCE_TASK = "mailparity.run_maintenance"

_CONFIGURED_ATTR = "_mailparity_celery"


def notify_new_jobs(
    app: Any, *, queue: str = "mailparity", countdown: float = 1.0
) -> None:
    """Ask a Celery worker to run ``mailparity.process_jobs`` in ``countdown`` seconds.

    Only sends a message (by task name): it works in a web process that never called
    :func:`configure`. A broker failure is logged and swallowed: the job is already durable and the
    beat schedule runs it anyway, so the webhook must still answer 2xx.
    """
    try:
        app.send_task(PROCESS_TASK, queue=queue, countdown=max(0.0, float(countdown)))
    except Exception as exc:  # broker down: the safety-net schedule picks the job up
        log.warning("could not send %s: %s", PROCESS_TASK, type(exc).__name__)


@dataclass
class _Runtime:
    """What one worker process uses: created there, after fork, on first use."""

    pid: int
    store: StateStore
    publisher: EventPublisher
    secrets: SecretStore | None
    processor: Processor
    maintenance: Maintenance

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing at shutdown must not mask the shutdown
                log.warning("closing the mailparity store failed", exc_info=True)


class MailParityCelery:
    """The integration returned by :func:`configure`; see the module docstring.

    Attributes:
        app: the Celery application.
        queue: the queue every mailparity task is sent to.
        process_task, maintenance_task: the registered Celery tasks.
    """

    def __init__(
        self,
        app: Any,
        *,
        store_factory: Callable[[], StateStore],
        publisher_factory: Callable[[], EventPublisher],
        secrets_factory: Callable[[], SecretStore | None] | None,
        queue: str,
        process_interval: float,
        maintenance_interval: float,
        max_jobs: int,
        max_seconds: float,
        claim_batch: int,
        notify_countdown: float,
        processor_options: Mapping[str, Any],
        maintenance_options: Mapping[str, Any],
    ) -> None:
        self.app = app
        self.queue = queue
        self.process_interval = float(process_interval)
        self.maintenance_interval = float(maintenance_interval)
        self.max_jobs = max_jobs
        self.max_seconds = float(max_seconds)
        self.claim_batch = claim_batch
        self.notify_countdown = float(notify_countdown)
        self._store_factory = store_factory
        self._publisher_factory = publisher_factory
        self._secrets_factory = secrets_factory
        self._processor_options = dict(processor_options)
        self._maintenance_options = dict(maintenance_options)
        self._runtime: _Runtime | None = None
        self._runtime_lock = threading.Lock()
        self._last_notify = float("-inf")
        self._notify_lock = threading.Lock()
        # Both tasks may be redelivered or run twice: the store makes that harmless, so acks_late
        # (redeliver when a worker dies mid-run) costs nothing and loses nothing.
        # The queue comes from task_routes (set by configure) and from the explicit ``queue`` of
        # every message this module sends.
        common: dict[str, Any] = {"ignore_result": True, "acks_late": True}
        self.process_task: Any = app.task(name=PROCESS_TASK, **common)(
            self._process_jobs_task
        )
        self.maintenance_task: Any = app.task(name=MAINTENANCE_TASK, **common)(
            self._maintenance_task
        )

    def __repr__(self) -> str:
        return f"MailParityCelery(queue={self.queue!r})"

    # ------------------------------------------------------------------ per-process state

    def runtime(self) -> _Runtime:
        """This process's store, publisher, processor and maintenance (created on first use,
        and again after a fork)."""
        pid = os.getpid()
        with self._runtime_lock:
            current = self._runtime
            if current is not None and current.pid == pid:
                return current
            # A runtime of another pid was inherited through fork: its connections belong to the
            # parent. Drop it without closing (closing would disturb the parent's sockets).
            store = self._store_factory()
            publisher = self._publisher_factory()
            secrets = self._secrets_factory() if self._secrets_factory is not None else None
            processor = Processor(store, publisher, secrets=secrets, **self._processor_options)
            maintenance_options = dict(self._maintenance_options)
            for name in ("adapter_factory", "session"):
                if name in self._processor_options:
                    maintenance_options.setdefault(name, self._processor_options[name])
            maintenance = Maintenance(
                store, publisher, secrets=secrets, processor=processor, **maintenance_options
            )
            self._runtime = _Runtime(pid, store, publisher, secrets, processor, maintenance)
            return self._runtime

    def close(self) -> None:
        """Close this process's store (worker shutdown); the next task creates a new one."""
        with self._runtime_lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None and runtime.pid == os.getpid():
            runtime.close()

    # ------------------------------------------------------------------ the tasks' work

    def process_jobs(self, max_jobs: int | None = None, max_seconds: float | None = None) -> int:
        """Claim and run due jobs in this process; return how many ran.

        Stops after ``max_jobs`` jobs or once ``max_seconds`` passed (checked before each claim, so
        a run can last one batch longer). Claims ``claim_batch`` jobs at a time, so a worker never
        holds leases on more jobs than it is about to run. When a bound stopped the run while
        work was still being found, another ``process_jobs`` is sent at once.
        """
        limit = self.max_jobs if max_jobs is None else max(1, int(max_jobs))
        budget = self.max_seconds if max_seconds is None else float(max_seconds)
        processor = self.runtime().processor
        deadline = time.monotonic() + budget
        ran = 0
        exhausted = False
        while ran < limit and time.monotonic() < deadline:
            jobs = processor.claim_due(min(self.claim_batch, limit - ran))
            if not jobs:
                exhausted = True
                break
            for job in jobs:
                processor.run_job(job)  # never raises; failures become retries in the store
                ran += 1
        if not exhausted:
            log.debug("process_jobs stopped on its bound after %d job(s); sending again", ran)
            self.notify_new_jobs(countdown=0.0, force=True)
        return ran

    def run_maintenance(self) -> dict[str, Any]:
        """One maintenance pass (renewals, silence detection) in this process; the jobs it stored
        are left to ``process_jobs``, which is triggered. Returns the report's counts."""
        report = self.runtime().maintenance.run_once(run_jobs=False)
        if report.syncs_enqueued or report.created:
            self.notify_new_jobs(countdown=0.0, force=True)
        return {
            "renewed": len(report.renewed),
            "created": len(report.created),
            "skipped": len(report.skipped),
            "failed": len(report.failed),
            "syncs_enqueued": len(report.syncs_enqueued),
        }

    def _process_jobs_task(
        self, max_jobs: int | None = None, max_seconds: float | None = None
    ) -> int:
        return self.process_jobs(max_jobs=max_jobs, max_seconds=max_seconds)

    def _maintenance_task(self) -> dict[str, Any]:
        return self.run_maintenance()

    # ------------------------------------------------------------------ triggers

    def notify_new_jobs(self, countdown: float | None = None, *, force: bool = False) -> bool:
        """Send ``process_jobs`` (in ``countdown`` seconds, default ``notify_countdown``).

        Bursts are coalesced: within half the countdown of the previous send nothing is sent,
        because that earlier task has not run yet and will claim the new job too. Returns whether
        a message was sent. A broker failure is logged, never raised (see
        :func:`notify_new_jobs`).
        """
        delay = self.notify_countdown if countdown is None else max(0.0, float(countdown))
        now = time.monotonic()
        with self._notify_lock:
            if not force and now - self._last_notify < delay / 2:
                return False
            self._last_notify = now
        notify_new_jobs(self.app, queue=self.queue, countdown=delay)
        return True

    def notify_after(self, response: Any) -> bool:
        """Call :meth:`notify_new_jobs` when a webhook answer says work was accepted (a 2xx
        :class:`~mailparity.webhooks.WebhookResponse` other than Graph's validation ``200``)."""
        status = int(getattr(response, "status", 0))
        if status in (202, 204):
            return self.notify_new_jobs()
        return False

    # ------------------------------------------------------------------ schedule

    def beat_schedule(self) -> dict[str, dict[str, Any]]:
        """Celery beat entries: ``process_jobs`` every ``process_interval`` seconds (the safety
        net behind the triggers) and ``run_maintenance`` every ``maintenance_interval`` seconds.

        Each message expires after its interval, so a stalled queue does not pile up copies."""
        return {
            PROCESS_TASK: {
                "task": PROCESS_TASK,
                "schedule": timedelta(seconds=self.process_interval),
                "options": {"queue": self.queue, "expires": self.process_interval},
            },
            MAINTENANCE_TASK: {
                "task": MAINTENANCE_TASK,
                "schedule": timedelta(seconds=self.maintenance_interval),
                "options": {"queue": self.queue, "expires": self.maintenance_interval},
            },
        }


def configure(
    app: Any,
    *,
    store_factory: Callable[[], StateStore],
    publisher_factory: Callable[[], EventPublisher],
    secrets_factory: Callable[[], SecretStore | None] | None = None,
    queue: str = "mailparity",
    process_interval: float = 10.0,
    maintenance_interval: float = 900.0,
    max_jobs: int = 100,
    max_seconds: float = 60.0,
    claim_batch: int = 5,
    notify_countdown: float = 1.0,
    beat: bool = False,
    processor_options: Mapping[str, Any] | None = None,
    maintenance_options: Mapping[str, Any] | None = None,
) -> MailParityCelery:
    """Register mailparity's tasks on ``app`` and return the integration.

    Args:
        app: a ``celery.Celery`` application.
        store_factory: builds this process's :class:`~mailparity.protocols.StateStore` (called
            in each worker process after fork; build database engines inside it).
        publisher_factory: builds this process's EventPublisher.
        secrets_factory: builds this process's SecretStore (None: no tenant secrets).
        queue: the queue of every mailparity task (and of the beat entries).
        process_interval: seconds between the beat runs of ``process_jobs``.
        maintenance_interval: seconds between the beat runs of ``run_maintenance``.
        max_jobs: at most this many jobs per ``process_jobs`` run.
        max_seconds: about this long per ``process_jobs`` run (keep it well under the broker's
            visibility timeout).
        claim_batch: jobs claimed at a time by a run.
        notify_countdown: the default delay of :meth:`MailParityCelery.notify_new_jobs`.
        beat: also add :meth:`MailParityCelery.beat_schedule` to ``app.conf.beat_schedule``.
        processor_options: extra :class:`~mailparity.processing.Processor` arguments
            (``lease_seconds``, ``adapter_factory``, ``on_report`` ...).
        maintenance_options: extra :class:`~mailparity.maintenance.Maintenance` arguments.

    Raises:
        ConfigurationError: bad bounds, or mailparity is already configured on ``app``.
    """
    if max_jobs < 1 or claim_batch < 1:
        raise ConfigurationError("max_jobs and claim_batch must be >= 1")
    if max_seconds <= 0 or process_interval <= 0 or maintenance_interval <= 0:
        raise ConfigurationError("max_seconds and the intervals must be > 0")
    if not queue:
        raise ConfigurationError("queue must not be empty")
    for name in ("store", "publisher", "secrets"):
        options = processor_options or {}
        if name in options:
            raise ConfigurationError(f"pass {name} through its factory, not processor_options")
    if getattr(app, _CONFIGURED_ATTR, None) is not None:
        raise ConfigurationError("mailparity is already configured on this Celery app")
    integration = MailParityCelery(
        app,
        store_factory=store_factory,
        publisher_factory=publisher_factory,
        secrets_factory=secrets_factory,
        queue=queue,
        process_interval=process_interval,
        maintenance_interval=maintenance_interval,
        max_jobs=max_jobs,
        max_seconds=max_seconds,
        claim_batch=claim_batch,
        notify_countdown=notify_countdown,
        processor_options=processor_options or {},
        maintenance_options=maintenance_options or {},
    )
    setattr(app, _CONFIGURED_ATTR, integration)
    routes = {PROCESS_TASK: {"queue": queue}, MAINTENANCE_TASK: {"queue": queue}}
    existing = app.conf.task_routes
    if existing is None or isinstance(existing, Mapping):
        app.conf.task_routes = {**(existing or {}), **routes}
    else:  # a list of routers: ours go first, the host's stay as they were
        app.conf.task_routes = [routes, *existing]
    if beat:
        schedule = dict(app.conf.beat_schedule or {})
        schedule.update(integration.beat_schedule())
        app.conf.beat_schedule = schedule
    _connect_signals(integration)
    return integration


def _connect_signals(integration: MailParityCelery) -> None:
    """Drop inherited state in each prefork child and close the store at shutdown."""
    from celery import signals

    def after_fork(**_: Any) -> None:
        # The child must not reuse the parent's connections; runtime() rebuilds on pid change,
        # and forgetting the reference here also frees the inherited objects early.
        with integration._runtime_lock:
            if integration._runtime is not None and integration._runtime.pid != os.getpid():
                integration._runtime = None

    def at_shutdown(**_: Any) -> None:
        integration.close()

    signals.worker_process_init.connect(after_fork, weak=False)
    signals.worker_process_shutdown.connect(at_shutdown, weak=False)
    signals.worker_shutdown.connect(at_shutdown, weak=False)
