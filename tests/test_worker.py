"""Worker: the thread pool runs every job, respects the per-mailbox limit, stops gracefully."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.errors import ConfigurationError, ProviderUnavailableError
from mailparity.models import (
    GmailProviderConfig,
    InboundEmailReceived,
    Job,
    MicrosoftProviderConfig,
)
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.worker import Worker


class Env:
    def __init__(self, clock: Any, store: Any) -> None:
        self.clock = clock
        self.store = store
        graph = MicrosoftProviderConfig(provider_id="g", tenant="t", mailbox="a@contoso.com")
        gmail = GmailProviderConfig(provider_id="m", tenant="t", mailbox="b@example.com")
        self.store.save_provider(graph)
        self.store.save_provider(gmail)
        self.boxes = {"g": FakeMailbox(graph), "m": FakeMailbox(gmail)}
        self.factory = FakeAdapterFactory(*self.boxes.values())
        self.publisher = InMemoryPublisher()

    def add_jobs(self, provider_id: str, count: int) -> None:
        for i in range(count):
            message_id = f"{provider_id}-{i}"
            self.boxes[provider_id].add(message_id)
            assert self.store.enqueue_job(
                Job(kind="graph_message", provider_id=provider_id,
                    payload={"message_id": message_id}, available_at=self.clock())
            )

    def worker(self, **kwargs: Any) -> Worker:
        kwargs.setdefault("sleep", self.clock.sleep)
        return Worker(
            self.store, self.publisher, clock=self.clock, adapter_factory=self.factory, **kwargs
        )

    def published_ids(self) -> set[str]:
        events = self.publisher.events
        return {e.email_data.id for e in events if isinstance(e, InboundEmailReceived)}


@pytest.fixture(params=["memory", "sqlite"])
def env(request: pytest.FixtureRequest, clock: Any, tmp_path: Path) -> Iterator[Env]:
    store: Any = (
        InMemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "state.db")
    )
    yield Env(clock, store)
    if hasattr(store, "close"):
        store.close()


@pytest.mark.timeout(30)
def test_pool_runs_all_jobs_with_the_per_mailbox_limit(env: Env) -> None:
    limit = 2
    for provider_id, box in env.boxes.items():
        env.add_jobs(provider_id, 8)
        # Each fetch waits until `limit` fetches of its mailbox are in progress together: the
        # limit is reached for sure, and a third concurrent fetch would show in max_concurrent.
        barrier = threading.Barrier(limit, timeout=10)
        box.on_get = lambda message_id, b=barrier: b.wait()
    worker = env.worker(threads=8, per_mailbox_limit=limit)
    assert worker.run(stop_after=1) == 16
    assert len(env.published_ids()) == 16
    assert len(env.publisher.events) == 16
    for box in env.boxes.values():
        assert box.max_concurrent == limit
    assert env.store.count_jobs() == 0
    assert worker.jobs_run == 16


@pytest.mark.timeout(30)
def test_run_once_runs_a_batch_of_up_to_threads_jobs(env: Env) -> None:
    env.add_jobs("g", 5)
    worker = env.worker(threads=3)
    assert worker.run_once() == 3
    assert worker.run_once() == 2
    assert worker.run_once() == 0
    assert len(env.published_ids()) == 5


@pytest.mark.timeout(30)
def test_run_keeps_polling_until_retried_jobs_are_due(env: Env) -> None:
    env.add_jobs("g", 1)
    env.boxes["g"].fail("get", "g-0", ProviderUnavailableError("down", status=503))
    worker = env.worker(threads=2, poll_interval=1.0, backoff_base=5)
    assert worker.run(stop_after=10) == 2  # the failed attempt and the retry
    assert env.published_ids() == {"g-0"}
    assert sum(env.clock.sleeps) >= 5  # idle polls waited (on the fake clock) for the backoff


@pytest.mark.timeout(30)
def test_stop_ends_run_gracefully(env: Env) -> None:
    worker: Worker

    def idle(seconds: float) -> None:
        env.clock.sleep(seconds)
        if len(env.clock.sleeps) == 3:
            worker.stop()

    env.add_jobs("g", 2)
    worker = env.worker(sleep=idle)
    assert worker.run() == 2  # no idle limit: only stop() ends it
    assert worker.stop_event.is_set()
    assert len(env.clock.sleeps) == 3


@pytest.mark.timeout(30)
def test_sigterm_stops_the_worker_in_the_main_thread(env: Env) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    before = signal.getsignal(signal.SIGTERM)

    def idle(seconds: float) -> None:
        env.clock.sleep(seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    worker = env.worker(sleep=idle)
    assert worker.run() == 0
    assert worker.stop_event.is_set()
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


@pytest.mark.timeout(30)
def test_run_in_a_thread_uses_a_shared_stop_event(env: Env) -> None:
    stop = threading.Event()
    all_published = threading.Event()
    env.add_jobs("m", 3)

    marks: list[int] = []
    lock = threading.Lock()

    def last_mark() -> None:  # runs inside mark_message_processed, after the publish
        with lock:
            marks.append(1)
            if len(marks) == 3:
                all_published.set()

    env.boxes["m"].fail("mark", "m-0", last_mark)
    env.boxes["m"].fail("mark", "m-1", last_mark)
    env.boxes["m"].fail("mark", "m-2", last_mark)
    # a long poll interval: the worker must answer stop() at once (it waits on the event)
    worker = env.worker(sleep=None, stop_event=stop, poll_interval=60.0)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()))
    thread.start()
    assert all_published.wait(timeout=10)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert result == [3]


def test_invalid_thread_count(env: Env) -> None:
    with pytest.raises(ConfigurationError):
        env.worker(threads=0)
