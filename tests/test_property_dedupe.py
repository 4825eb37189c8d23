"""Property test: under any interleaving of deliveries, duplicated / reordered / lost
notifications, fetch failures, publisher outages and worker crashes (between publish and the
bookkeeping, at the cursor write, ...), the real Processor publishes every message's complete
event, under one event id per message, and republishes an id only after a crash left it
unbooked. Runs on InMemoryStore and SqliteStore; time is a fake clock.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FakeClock
from fault_support import (
    FAKE_DELTA_META,
    GMAIL_BASE_HISTORY,
    CrashingStore,
    CrashSwitch,
    Ledger,
    LogAdapterFactory,
    LogMailbox,
    RecordingPublisher,
    WorkerCrash,
    next_wake,
    tally,
)
from mailparity.errors import ProviderUnavailableError, ThrottledError
from mailparity.models import (
    GmailProviderConfig,
    InboundEmailReceived,
    Job,
    MicrosoftProviderConfig,
    event_id_for,
)
from mailparity.processing import Processor
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore

GRAPH = "prov-graph"
GMAIL = "prov-gmail"
BOXES = (GRAPH, GMAIL)
LEASE = 60.0


class Model:
    """One store, two log mailboxes, a publisher and the current (killable) worker."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.clock = FakeClock()
        graph = MicrosoftProviderConfig(
            provider_id=GRAPH, tenant="t1", mailbox="support@contoso.com",
            webhook_subscription_id="sub-1",
        )
        gmail = GmailProviderConfig(
            provider_id=GMAIL, tenant="t1", mailbox="help@example.com",
            history_id=GMAIL_BASE_HISTORY,
        )
        store.save_provider(graph)
        store.save_provider(gmail)
        self.boxes = {GRAPH: LogMailbox(graph), GMAIL: LogMailbox(gmail)}
        self.factory = LogAdapterFactory(*self.boxes.values())
        self.ledger = Ledger()
        self.publisher = RecordingPublisher(self.ledger)
        self.workers = 0
        self.switch = CrashSwitch()
        self.processor = self._new_worker()

    def _new_worker(self) -> Processor:
        self.workers += 1
        self.switch = CrashSwitch(on_crash=self.ledger.crashed)
        self.publisher.switch = self.switch
        store: Any = CrashingStore(self.store, self.switch, ledger=self.ledger)
        return Processor(
            store,
            self.publisher,
            clock=self.clock,
            sleep=self.clock.sleep,
            adapter_factory=self.factory,
            worker_id=f"worker-{self.workers}",
            lease_seconds=LEASE,
            max_attempts=3,
            retry_cap=30,
            backoff_base=1.0,
            backoff_max=120.0,
        )

    # ------------------------------------------------------------------ the operations

    def _enqueue(self, kind: str, pid: str, payload: dict[str, Any], key: str | None,
                 delay: float = 0.0) -> None:
        now = self.clock()
        self.store.enqueue_job(Job(
            kind=kind, provider_id=pid, payload=payload,  # type: ignore[arg-type]
            unique_key=key, available_at=now + timedelta(seconds=delay), created_at=now,
        ))

    def notify(self, pid: str, index: int, *, duplicate: bool, delay: float) -> None:
        """One notification of the ``index``-th arrival, as the webhook would store it
        (a duplicate bypasses the coalescing key: it came after the first one was claimed)."""
        box = self.boxes[pid]
        message_id = box.log[index]
        if pid == GRAPH:
            key = None if duplicate else f"graph:{pid}:{message_id}"
            self._enqueue("graph_message", pid, {"message_id": message_id}, key, delay)
        else:
            key = None if duplicate else f"gmail-history:{pid}"
            history_id = GMAIL_BASE_HISTORY + index + 1
            self._enqueue("gmail_history", pid, {"history_id": history_id}, key, delay)

    def deliver(self, pid: str, notified: bool, duplicates: int, delay: float) -> None:
        box = self.boxes[pid]
        box.deliver(f"{pid}-m{len(box.log)}")
        if notified:  # else: the notification was dropped; only a sync finds the message
            index = len(box.log) - 1
            self.notify(pid, index, duplicate=False, delay=delay)
            for n in range(duplicates):
                self.notify(pid, index, duplicate=True, delay=delay + 3 * n)

    def sync(self, pid: str) -> None:
        self._enqueue("sync", pid, {"reason": "catch-up"}, f"sync:{pid}")

    def fail_fetch(self, pid: str, index: int, count: int, throttled: bool) -> None:
        box = self.boxes[pid]
        if not box.log:
            return
        message_id = box.log[index % len(box.log)]
        error: Exception = (
            ThrottledError("throttled", status=429, retry_after=7) if throttled
            else ProviderUnavailableError("down", status=503)
        )
        box.fail("get", message_id, *([error] * count))

    def run(self, limit: int | None) -> int:
        try:
            return self.processor.run_pending(limit=limit)
        except WorkerCrash:
            # The process died: a new one starts; the dead one's leases must lapse first.
            self.processor = self._new_worker()
            return 1

    def drain(self, max_rounds: int = 5000) -> None:
        for _ in range(max_rounds):
            if self.run(None):
                continue
            now = self.clock()
            wake = next_wake(self.store, now)
            if wake is None:
                return
            self.clock.now = wake if wake > now else now + timedelta(seconds=1)
        raise AssertionError("the queue did not drain")

    def apply(self, op: tuple[Any, ...]) -> None:
        name = op[0]
        if name == "deliver":
            self.deliver(op[1], op[2], op[3], op[4])
        elif name == "renotify":
            box = self.boxes[op[1]]
            if box.log:
                self.notify(op[1], op[2] % len(box.log), duplicate=True, delay=op[3])
        elif name == "run":
            self.run(op[1])
        elif name == "sync":
            self.sync(op[1])
        elif name == "pubfail":
            self.publisher.fail_next(op[1])
        elif name == "crash":
            self.switch.arm(op[1], op[2])
        elif name == "getfail":
            self.fail_fetch(op[1], op[2], op[3], op[4])
        elif name == "tick":
            self.clock.now += timedelta(seconds=op[1])
        else:  # pragma: no cover - the strategy below makes only these
            raise AssertionError(op)

    # ------------------------------------------------------------------ the invariant

    def check(self) -> None:
        expected = {
            (pid, mid): event_id_for(pid, mid) for pid, box in self.boxes.items() for mid in box.log
        }
        figures, counts = tally(self.ledger.published, expected)
        assert figures.lost == 0, f"lost {figures.lost} of {figures.messages}"
        assert figures.duplicates == 0
        assert figures.extra_ids == 0
        assert figures.events == figures.messages == len(expected)
        for event in self.ledger.published:
            if not isinstance(event, InboundEmailReceived):
                continue
            data = event.email_data
            assert event.event_id == event_id_for(
                event.provider_id, data.id, complete=data.complete
            )
        for event_id, times in counts.items():
            # A second publish of the same id only after a crash caught it unbooked.
            assert times <= 1 + self.ledger.allowance[event_id], (event_id, times)
        if self.ledger.crashes == 0:
            assert all(times == 1 for times in counts.values())
        minimal: Counter[tuple[str, str]] = Counter()
        for event in self.ledger.published:
            if isinstance(event, InboundEmailReceived) and not event.email_data.complete:
                minimal[(event.provider_id, event.email_data.id)] += 1
        for key, times in minimal.items():
            assert key in expected
            assert times <= 1 + self.ledger.allowance[event_id_for(*key, complete=False)]
        # Nothing left behind: no queued, running or buried job; both cursors at the head.
        assert self.store.count_jobs(status="pending") == 0
        assert self.store.count_jobs(status="running") == 0
        assert self.store.count_jobs(status="dead") == 0
        gmail = self.store.get_provider(GMAIL)
        assert gmail.history_id == self.boxes[GMAIL].head()
        assert int(self.store.get_meta(GRAPH, FAKE_DELTA_META) or 0) == self.boxes[GRAPH].head()


box_ids = st.sampled_from(BOXES)
operations = st.one_of(
    st.tuples(st.just("deliver"), box_ids, st.booleans(), st.integers(0, 2), st.integers(0, 30)),
    st.tuples(st.just("renotify"), box_ids, st.integers(0, 50), st.integers(0, 30)),
    st.tuples(st.just("run"), st.integers(1, 6)),
    st.tuples(st.just("sync"), box_ids),
    st.tuples(st.just("pubfail"), st.integers(1, 3)),
    st.tuples(
        st.just("crash"),
        st.sampled_from(["publish", "mark_published", "commit", "complete_job", "claim_keys"]),
        st.integers(1, 3),
    ),
    st.tuples(st.just("getfail"), box_ids, st.integers(0, 50), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("tick"), st.integers(1, 120)),
)


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store(kind: str, folder: Path) -> Any:
    return InMemoryStore() if kind == "memory" else SqliteStore(folder / "state.db")


def _run_model(kind: str, ops: list[tuple[Any, ...]]) -> Model:
    with tempfile.TemporaryDirectory() as folder:
        store = _store(kind, Path(folder))
        try:
            model = Model(store)
            for op in ops:
                model.apply(op)
            model.switch.point = None  # no crash armed past this point: the system settles
            model.drain()
            for pid in BOXES:  # the final catch-up sync, the source of truth for completeness
                model.sync(pid)
            model.drain()
            model.check()
            return model
        finally:
            if hasattr(store, "close"):
                store.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(operations, max_size=40))
def test_never_lose_never_duplicate(store_kind: str, ops: list[tuple[Any, ...]]) -> None:
    _run_model(store_kind, ops)


# ---------------------------------------------------------------------- pinned scenarios
# Each interleaving below is one the property must cover; pinned so a regression names itself.


def test_crash_between_publish_and_mark_republishes_the_same_id(store_kind: str) -> None:
    model = _run_model(store_kind, [
        ("deliver", GRAPH, True, 0, 0),
        ("crash", "publish", 1),
        ("run", 5),
    ])
    event_id = event_id_for(GRAPH, f"{GRAPH}-m0")
    ids = [e.event_id for e in model.ledger.published]
    assert model.ledger.crashes == 1
    assert ids == [event_id, event_id]  # accepted, killed, redelivered once under the same id


def test_crash_at_mark_published_redelivers_after_the_lease(store_kind: str) -> None:
    model = _run_model(store_kind, [
        ("deliver", GMAIL, True, 0, 0),
        ("crash", "mark_published", 1),
        ("run", 5),
    ])
    assert model.ledger.crashes == 1
    assert len(model.ledger.published) == 2
    assert model.clock() >= FakeClock()() + timedelta(seconds=LEASE)  # waited for the lease


def test_crash_at_cursor_write_publishes_nothing_twice(store_kind: str) -> None:
    model = _run_model(store_kind, [
        ("deliver", GMAIL, False, 0, 0),
        ("deliver", GMAIL, False, 0, 0),
        ("crash", "commit", 1),
        ("sync", GMAIL),
        ("run", 3),
    ])
    assert model.ledger.crashes == 1
    assert len(model.ledger.published) == 2  # the resync found both already published


def test_dropped_notifications_are_caught_up_by_the_final_sync(store_kind: str) -> None:
    model = _run_model(store_kind, [
        ("deliver", GRAPH, False, 0, 0),
        ("deliver", GMAIL, False, 0, 0),
        ("run", 5),
    ])
    assert len(model.ledger.published) == 2


def test_duplicates_reordering_and_outages_yield_one_event_each(store_kind: str) -> None:
    model = _run_model(store_kind, [
        ("deliver", GRAPH, True, 2, 20),
        ("deliver", GRAPH, True, 2, 0),
        ("deliver", GMAIL, True, 2, 9),
        ("renotify", GMAIL, 0, 0),
        ("pubfail", 3),
        ("getfail", GRAPH, 0, 4, False),
        ("run", 6),
    ])
    complete = [
        e for e in model.ledger.published
        if isinstance(e, InboundEmailReceived) and e.email_data.complete
    ]
    assert len(complete) == 3
    assert model.publisher.refused == 3
    # Four failed fetches with max_attempts=3: the minimal event went out first, then the
    # complete one under its own id.
    assert any(
        isinstance(e, InboundEmailReceived) and not e.email_data.complete
        for e in model.ledger.published
    )


def test_the_ledger_catches_a_double_publish() -> None:
    """The invariant is not vacuous: a second publish without a crash fails it."""
    with tempfile.TemporaryDirectory() as folder:
        store = _store("sqlite", Path(folder))
        try:
            model = Model(store)
            model.deliver(GRAPH, True, 0, 0)
            model.drain()
            model.ledger.accepted(model.ledger.published[0])  # a forged redelivery
            with pytest.raises(AssertionError):
                model.check()
        finally:
            store.close()
