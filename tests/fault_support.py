"""Helpers of the "never lose, never duplicate" proofs (property test and fault scenario).

* :class:`WorkerCrash`: a ``BaseException`` (the pipeline catches ``Exception`` only), raised to
  simulate a worker that dies at a chosen step. Once a :class:`CrashSwitch` fired, every further
  store call of that worker raises too, so no ``finally`` block can tidy up behind the "dead"
  process: its leases and claims stay as a killed process leaves them.
* :class:`CrashingStore`: a StateStore proxy owned by one simulated worker.
* :class:`LogMailbox` / :class:`LogAdapter`: a deterministic fake mailbox whose sync cursor lives
  in the store (Gmail-like: ``history_id`` through ``compare_and_set_history_id``; Graph-like: a
  meta value), so the cursor can only move through the store a crash can interrupt.
* :class:`RecordingPublisher`: records every accepted event, fails on demand, and can "kill" the
  worker right after an event was accepted (before any bookkeeping).
* :class:`Ledger` and :func:`ledger_from_events`: the tallies the invariants are stated on.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fake_adapter import FakeAdapter, FakeMailbox
from mailparity.adapter import SyncBatch
from mailparity.models import (
    GmailProviderConfig,
    InboundEmailReceived,
    MailParityEvent,
    MicrosoftProviderConfig,
)

AnyConfig = MicrosoftProviderConfig | GmailProviderConfig

#: The meta key that holds the Graph-like fake's cursor (an index into its log).
FAKE_DELTA_META = "fake-delta-cursor"
#: The first history id of the Gmail-like fake (its baseline cursor).
GMAIL_BASE_HISTORY = 1000

#: Every method of the StateStore protocols (what the pipeline may call).
STORE_METHODS = (
    "load_tokens", "save_tokens", "get_provider", "find_provider_by_subscription",
    "find_provider_by_mailbox", "save_provider", "list_providers", "update_provider",
    "compare_and_set_history_id", "compare_and_set_cursor", "delete_provider", "claim_keys",
    "mark_published", "release_keys", "published_state", "enqueue_job", "claim_jobs",
    "complete_job", "retry_job", "bury_job", "list_jobs", "count_jobs", "jobs_summary",
    "acquire_lock", "release_lock", "get_meta", "set_meta",
)


class WorkerCrash(BaseException):
    """The simulated worker died here (SIGKILL): nothing after this point runs."""


@dataclass
class CrashSwitch:
    """When armed, the ``countdown``-th call matching ``point`` kills the worker.

    Points: ``"publish"`` (the publisher accepted the event, then the worker died),
    ``"mark_published"``, ``"commit"`` (the cursor write), ``"complete_job"``, ``"claim_keys"``.
    ``on_crash`` runs once when the switch fires (the ledger notes which events were in flight).
    """

    point: str | None = None
    countdown: int = 0
    dead: bool = False
    fired: int = 0
    on_crash: Callable[[], None] | None = None

    def arm(self, point: str, countdown: int) -> None:
        if not self.dead:
            self.point = point
            self.countdown = max(1, countdown)

    def check(self, point: str) -> None:
        """Raise if the worker is dead, or if this call is the one that kills it."""
        if self.dead:
            raise WorkerCrash("dead worker")
        if self.point != point:
            return
        self.countdown -= 1
        if self.countdown > 0:
            return
        self.kill()

    def kill(self) -> None:
        point, self.point = self.point, None
        self.dead = True
        self.fired += 1
        if self.on_crash is not None:
            self.on_crash()
        raise WorkerCrash(f"worker killed at {point}")


def _is_commit(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name == "compare_and_set_history_id":
        return True
    if name == "set_meta":
        key = args[1] if len(args) > 1 else kwargs.get("key")
        return key == FAKE_DELTA_META
    return False


class CrashingStore:
    """A StateStore proxy for one simulated worker: calls go to ``inner`` until the switch fired.

    Every protocol method is a real class attribute, so ``isinstance(store, StateStore)`` holds
    (runtime protocols look attributes up statically)."""

    def __init__(self, inner: Any, switch: CrashSwitch, *, ledger: Ledger | None = None) -> None:
        self.inner = inner
        self.switch = switch
        self.ledger = ledger

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        switch = self.switch
        if switch.dead:
            raise WorkerCrash("dead worker")
        if name in ("mark_published", "complete_job", "claim_keys"):
            switch.check(name)
        elif _is_commit(name, args, kwargs):
            switch.check("commit")
        result = getattr(self.inner, name)(*args, **kwargs)
        if name == "mark_published" and self.ledger is not None:
            self.ledger.settled(kwargs.get("event_id"))
        return result


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: CrashingStore, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    method.__name__ = name
    return method


for _name in STORE_METHODS:
    setattr(CrashingStore, _name, _delegate(_name))


class LogMailbox(FakeMailbox):
    """A FakeMailbox whose arrivals form an ordered log; the sync cursor lives in the store."""

    def __init__(self, config: AnyConfig) -> None:
        super().__init__(config)
        self.log: list[str] = []

    def deliver(self, message_id: str) -> int:
        """The message arrives; returns its position (Gmail-like: its history id)."""
        self.add(message_id)
        self.log.append(message_id)
        return self.head()

    def head(self) -> int:
        if isinstance(self.config, GmailProviderConfig):
            return GMAIL_BASE_HISTORY + len(self.log)
        return len(self.log)


class LogAdapter(FakeAdapter):
    """FakeAdapter with a store-backed cursor (so crashes can hit the cursor write)."""

    box: LogMailbox

    @property
    def state(self) -> Any:
        """The store as the StateStore it is (the base class types it as a ProviderStore)."""
        return self.store

    def _read_cursor(self) -> int:
        pid = self.config.provider_id
        if isinstance(self.config, GmailProviderConfig):
            config = self.store.get_provider(pid)
            assert isinstance(config, GmailProviderConfig)
            return int(config.history_id or GMAIL_BASE_HISTORY)
        raw = self.state.get_meta(pid, FAKE_DELTA_META)
        return int(raw) if raw else 0

    def fetch_changes(self) -> SyncBatch:
        self.box.hit("fetch_changes")
        cursor = self._read_cursor()
        base = GMAIL_BASE_HISTORY if isinstance(self.config, GmailProviderConfig) else 0
        log = list(self.box.log)
        return SyncBatch(log[cursor - base:], base + len(log), expected=cursor)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        self.box.hit("commit")
        pid = self.config.provider_id
        if isinstance(self.config, GmailProviderConfig):
            ok: bool = self.state.compare_and_set_history_id(pid, batch.expected, batch.cursor)
            return ok
        if self._read_cursor() != batch.expected:  # under the processor's cursor lock
            return False
        self.state.set_meta(pid, FAKE_DELTA_META, str(batch.cursor))
        return True


class LogAdapterFactory:
    """``adapter_factory`` for the Processor: one LogMailbox per provider id."""

    def __init__(self, *boxes: LogMailbox) -> None:
        self.boxes = {box.config.provider_id: box for box in boxes}

    def __call__(self, config: AnyConfig, **kwargs: Any) -> LogAdapter:
        return LogAdapter(config, mailbox=self.boxes[config.provider_id], **kwargs)


class PublishRefusedError(Exception):
    """The host's bus refused the event (the pipeline must retry it)."""


@dataclass
class Ledger:
    """Every accepted event, plus which complete events were accepted but not yet booked.

    ``allowance[event_id]`` counts the crashes that hit while that event was accepted but its
    ``mark_published`` had not run: each such crash permits one redelivery of the same id."""

    published: list[MailParityEvent] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    allowance: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self, event: MailParityEvent) -> None:
        with self.lock:
            self.published.append(event)
            self.in_flight.add(event.event_id)

    def settled(self, event_id: str | None) -> None:
        with self.lock:
            if event_id is not None:
                self.in_flight.discard(event_id)

    def crashed(self) -> None:
        with self.lock:
            self.crashes += 1
            for event_id in self.in_flight:
                self.allowance[event_id] += 1


class RecordingPublisher:
    """The host's EventPublisher: ``fail_next(n)`` refuses the next n events; a switch armed at
    ``"publish"`` accepts the event and then kills the worker (before any bookkeeping)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.failures = 0
        self.refused = 0
        self.switch: CrashSwitch | None = None

    def fail_next(self, count: int) -> None:
        self.failures += count

    def publish(self, event: MailParityEvent) -> None:
        if self.switch is not None and self.switch.dead:
            raise WorkerCrash("dead worker")
        if self.failures > 0:
            self.failures -= 1
            self.refused += 1
            raise PublishRefusedError("the bus is unavailable")
        self.ledger.accepted(event)
        if self.switch is not None:
            self.switch.check("publish")


@dataclass
class Tally:
    """The figures of the summary line."""

    messages: int
    events: int
    duplicates: int
    lost: int
    redeliveries: int
    extra_ids: int


def tally(
    events: Iterable[MailParityEvent], expected: dict[tuple[str, str], str]
) -> tuple[Tally, dict[str, int]]:
    """Tally complete INBOUND_EMAIL_RECEIVED events against ``expected``
    (``(provider_id, message_id) -> expected complete event id``).

    Returns the tally and how many times each complete event id was published."""
    ids_by_message: dict[tuple[str, str], set[str]] = {}
    counts: Counter[str] = Counter()
    extra = 0
    for event in events:
        if not isinstance(event, InboundEmailReceived) or not event.email_data.complete:
            continue
        key = (event.provider_id, event.email_data.id)
        counts[event.event_id] += 1
        if key not in expected:
            extra += 1
            continue
        ids_by_message.setdefault(key, set()).add(event.event_id)
    distinct = {eid for ids in ids_by_message.values() for eid in ids}
    duplicates = sum(1 for ids in ids_by_message.values() if len(ids) > 1)
    lost = sum(1 for key in expected if key not in ids_by_message)
    redeliveries = sum(n - 1 for eid, n in counts.items() if n > 1)
    return (
        Tally(len(expected), len(distinct), duplicates, lost, redeliveries, extra),
        dict(counts),
    )


def next_wake(store: Any, now: datetime) -> datetime | None:
    """When the next job becomes claimable (a pending job's ``available_at`` or a running job's
    lapsed lease), or None when no job is left."""
    times: list[datetime] = []
    for job in store.list_jobs(status="pending", limit=100_000):
        times.append(job.available_at)
    for job in store.list_jobs(status="running", limit=100_000):
        if job.lease_until is not None:
            times.append(job.lease_until + timedelta(microseconds=1))
    if not times:
        return None
    wake = min(times)
    return wake if wake > now else now
