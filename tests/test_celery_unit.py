"""mailparity.contrib.celery without a broker: tasks, bounds, triggers, schedule, fork safety.

The tasks run in-process through ``Task.apply`` (Celery's local execution); messages the
integration sends are captured by replacing ``app.send_task``. The real broker and worker process
are exercised in ``test_celery_e2e.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery, signals

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.contrib import celery as mp_celery
from mailparity.contrib.celery import MAINTENANCE_TASK, PROCESS_TASK, configure, notify_new_jobs
from mailparity.errors import ConfigurationError
from mailparity.models import InboundEmailReceived, Job, MicrosoftProviderConfig
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.webhooks import WebhookResponse

PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)


class SentTasks:
    """Stands in for ``app.send_task``; records (name, options) and can fail like a dead broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.error: BaseException | None = None

    def __call__(self, name: str, **options: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((name, options))


class Env:
    def __init__(self, store: Any | None = None) -> None:
        self.app = Celery("mailparity-unit", broker="memory://", set_as_current=False)
        self.sent = SentTasks()
        self.app.send_task = self.sent  # type: ignore[method-assign]
        self.store = store if store is not None else InMemoryStore()
        self.config = MicrosoftProviderConfig(
            provider_id="p1", tenant="t", mailbox="a@contoso.com"
        )
        self.store.save_provider(self.config)
        self.box = FakeMailbox(self.config)
        self.factory = FakeAdapterFactory(self.box)
        self.publisher = InMemoryPublisher()
        self.store_calls = 0
        self.publisher_calls = 0

    def make_store(self) -> Any:
        self.store_calls += 1
        return self.store

    def make_publisher(self) -> InMemoryPublisher:
        self.publisher_calls += 1
        return self.publisher

    def configure(self, **kwargs: Any) -> mp_celery.MailParityCelery:
        kwargs.setdefault("processor_options", {"adapter_factory": self.factory})
        return configure(
            self.app,
            store_factory=self.make_store,
            publisher_factory=self.make_publisher,
            **kwargs,
        )

    def add_jobs(self, count: int, *, start: int = 0) -> None:
        for i in range(start, start + count):
            message_id = f"m-{i}"
            self.box.add(message_id)
            assert self.store.enqueue_job(
                Job(kind="graph_message", provider_id="p1", payload={"message_id": message_id},
                    available_at=PAST)
            )

    def published(self) -> list[str]:
        return [e.email_data.id for e in self.publisher.events
                if isinstance(e, InboundEmailReceived)]


@pytest.fixture
def env() -> Env:
    return Env()


def test_configure_registers_named_tasks_on_the_queue(env: Env) -> None:
    integration = env.configure(queue="mail")
    assert integration.process_task.name == PROCESS_TASK
    assert integration.maintenance_task.name == MAINTENANCE_TASK
    task = env.app.tasks[PROCESS_TASK]
    assert task.acks_late is True
    assert task.ignore_result is True
    assert env.app.amqp.router.route({}, PROCESS_TASK)["queue"].name == "mail"
    assert env.app.conf.task_routes[PROCESS_TASK] == {"queue": "mail"}
    assert env.app.conf.task_routes[MAINTENANCE_TASK] == {"queue": "mail"}
    # Nothing is built before a task needs it (the web process may never run one).
    assert env.store_calls == 0
    assert env.publisher_calls == 0


def test_beat_schedule_entries(env: Env) -> None:
    integration = env.configure(process_interval=5, maintenance_interval=900, queue="q")
    schedule = integration.beat_schedule()
    assert set(schedule) == {PROCESS_TASK, MAINTENANCE_TASK}
    assert schedule[PROCESS_TASK]["task"] == PROCESS_TASK
    assert schedule[PROCESS_TASK]["schedule"] == timedelta(seconds=5)
    assert schedule[PROCESS_TASK]["options"] == {"queue": "q", "expires": 5.0}
    assert schedule[MAINTENANCE_TASK]["schedule"] == timedelta(minutes=15)
    assert schedule[MAINTENANCE_TASK]["options"]["queue"] == "q"
    assert env.app.conf.beat_schedule in ({}, None)  # not installed unless asked


def test_beat_true_merges_into_existing_schedule() -> None:
    env = Env()
    env.app.conf.beat_schedule = {"host.task": {"task": "host.task", "schedule": 60.0}}
    env.configure(beat=True)
    assert set(env.app.conf.beat_schedule) == {"host.task", PROCESS_TASK, MAINTENANCE_TASK}


def test_task_routes_list_is_kept() -> None:
    env = Env()
    env.app.conf.task_routes = [{"host.*": {"queue": "host"}}]
    env.configure()
    routes = env.app.conf.task_routes
    assert routes[0][PROCESS_TASK] == {"queue": "mailparity"}
    assert routes[1] == {"host.*": {"queue": "host"}}


def test_process_jobs_task_publishes_each_message_once(env: Env) -> None:
    integration = env.configure()
    env.add_jobs(7)
    result = integration.process_task.apply()
    assert result.get() == 7
    assert sorted(env.published()) == sorted(f"m-{i}" for i in range(7))
    assert env.store.count_jobs() == 0  # completed jobs leave the store
    # The queue was drained within the bounds: no follow-up message.
    assert env.sent.sent == []
    # Running again finds nothing and publishes nothing.
    assert integration.process_task.apply().get() == 0
    assert len(env.published()) == 7
    assert env.store_calls == 1  # one store per process, reused by every task


def test_process_jobs_stops_at_max_jobs_and_sends_itself_again(env: Env) -> None:
    integration = env.configure(max_jobs=3, claim_batch=2)
    env.add_jobs(10)
    assert integration.process_task.apply().get() == 3
    assert len(env.published()) == 3
    assert env.sent.sent == [(PROCESS_TASK, {"queue": "mailparity", "countdown": 0.0})]
    # Bounded jobs were claimed only as needed: nothing is left leased to this run.
    assert env.store.count_jobs(status="running") == 0
    assert env.store.count_jobs(status="pending") == 7


def test_process_jobs_task_arguments_override_bounds(env: Env) -> None:
    integration = env.configure(max_jobs=100)
    env.add_jobs(5)
    assert integration.process_task.apply(kwargs={"max_jobs": 2}).get() == 2
    assert integration.process_task.apply(kwargs={"max_jobs": 0}).get() == 1  # at least one
    assert integration.process_task.apply().get() == 2


def test_process_jobs_stops_when_time_is_up(env: Env) -> None:
    integration = env.configure()
    env.add_jobs(4)
    assert integration.process_jobs(max_seconds=0) == 0
    assert len(env.sent.sent) == 1  # work may remain: sent again at once
    assert env.store.count_jobs(status="pending") == 4


def test_failing_job_is_retried_in_the_store_not_raised(env: Env) -> None:
    integration = env.configure()
    env.add_jobs(2)
    env.box.fail_always("get", "m-0", RuntimeError("boom"))
    assert integration.process_task.apply().get() == 2
    assert env.published() == ["m-1"]
    pending = env.store.list_jobs(status="pending")
    assert [job.payload["message_id"] for job in pending] == ["m-0"]
    assert pending[0].last_error == "RuntimeError"


def test_notify_new_jobs_coalesces_bursts(env: Env) -> None:
    integration = env.configure(notify_countdown=2.0)
    assert integration.notify_new_jobs() is True
    assert integration.notify_new_jobs() is False  # the first message has not run yet
    assert integration.notify_new_jobs(force=True) is True
    assert env.sent.sent == [
        (PROCESS_TASK, {"queue": "mailparity", "countdown": 2.0}),
        (PROCESS_TASK, {"queue": "mailparity", "countdown": 2.0}),
    ]


def test_notify_new_jobs_after_the_window_sends_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = env.configure(notify_countdown=2.0)
    now = [1000.0]
    monkeypatch.setattr(mp_celery.time, "monotonic", lambda: now[0])
    assert integration.notify_new_jobs()
    now[0] += 0.9
    assert not integration.notify_new_jobs()
    now[0] += 0.2
    assert integration.notify_new_jobs()
    assert len(env.sent.sent) == 2


def test_broker_failure_is_logged_not_raised(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    integration = env.configure()
    env.sent.error = ConnectionError("redis://:s3cr3t-password@broker:6379 refused")
    with caplog.at_level(logging.WARNING, logger="mailparity.contrib.celery"):
        assert integration.notify_new_jobs() is True
        notify_new_jobs(env.app)
    assert "could not send mailparity.process_jobs: ConnectionError" in caplog.text
    assert "s3cr3t" not in caplog.text  # the broker URL (with its password) is never logged


def test_module_level_notify_needs_no_configure() -> None:
    app = Celery("web-only", broker="memory://", set_as_current=False)
    sent = SentTasks()
    app.send_task = sent  # type: ignore[method-assign]
    notify_new_jobs(app, queue="q", countdown=-5)
    assert sent.sent == [(PROCESS_TASK, {"queue": "q", "countdown": 0.0})]


@pytest.mark.parametrize(
    ("status", "sends"), [(202, True), (204, True), (200, False), (400, False), (503, False)]
)
def test_notify_after_webhook_answer(env: Env, status: int, sends: bool) -> None:
    integration = env.configure()
    assert integration.notify_after(WebhookResponse(status)) is sends
    assert len(env.sent.sent) == (1 if sends else 0)


def test_run_maintenance_enqueues_silence_sync_and_triggers_processing(env: Env) -> None:
    integration = env.configure()
    counts = integration.maintenance_task.apply().get()
    assert counts["syncs_enqueued"] == 1  # never pushed: silent
    assert counts["failed"] == 0
    jobs = env.store.list_jobs(status="pending")
    assert [job.kind for job in jobs] == ["sync"]
    assert env.sent.sent == [(PROCESS_TASK, {"queue": "mailparity", "countdown": 0.0})]
    # The sync job runs through process_jobs with the injected adapter factory.
    env.box.changes = []
    assert integration.process_task.apply().get() == 1
    assert env.box.count("fetch_changes") == 1


def test_runtime_is_rebuilt_after_fork(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    integration = env.configure()
    first = integration.runtime()
    assert integration.runtime() is first
    assert env.store_calls == 1
    real_pid = os.getpid()
    monkeypatch.setattr(mp_celery.os, "getpid", lambda: real_pid + 1)
    second = integration.runtime()
    assert second is not first
    assert second.pid == real_pid + 1
    assert env.store_calls == 2
    assert env.publisher_calls == 2


def test_worker_process_init_signal_drops_inherited_runtime(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = env.configure()
    integration.runtime()
    real_pid = os.getpid()
    monkeypatch.setattr(mp_celery.os, "getpid", lambda: real_pid + 1)
    signals.worker_process_init.send(sender=None)
    assert integration._runtime is None


def test_close_closes_this_process_store(tmp_path: Any) -> None:
    env = Env(SqliteStore(tmp_path / "s.sqlite3"))
    closed: list[bool] = []
    real_close = env.store.close

    def close() -> None:
        closed.append(True)
        real_close()

    env.store.close = close
    integration = env.configure()
    integration.close()  # nothing built yet: nothing to close
    assert closed == []
    integration.runtime()
    integration.close()
    assert closed == [True]
    assert integration._runtime is None


def test_configure_twice_on_one_app_is_refused(env: Env) -> None:
    env.configure()
    with pytest.raises(ConfigurationError, match="already configured"):
        env.configure()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_jobs": 0},
        {"claim_batch": 0},
        {"max_seconds": 0},
        {"process_interval": 0},
        {"maintenance_interval": -1},
        {"queue": ""},
        {"processor_options": {"store": object()}},
        {"processor_options": {"publisher": object()}},
    ],
)
def test_configure_rejects_bad_arguments(env: Env, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        env.configure(**kwargs)
    assert not hasattr(env.app, "_mailparity_celery")


def test_importing_mailparity_does_not_import_celery() -> None:
    code = (
        "import sys, mailparity, mailparity.worker, mailparity.webhooks, mailparity.contrib;"
        "print('celery' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
