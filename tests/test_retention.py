"""Retention in the maintenance sweep: what ``Maintenance.prune`` deletes with the default ages
and with custom ones. The per-store semantics of ``prune`` are in the store contract suite."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mailparity.maintenance import Maintenance, RetentionPolicy
from mailparity.models import Job
from mailparity.processing import MESSAGE_META_PREFIXES
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.webconnect import STATE_META_PREFIX

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def maintenance(store: Any, **kwargs: Any) -> Maintenance:
    return Maintenance(store, InMemoryPublisher(), clock=lambda: NOW, sleep=lambda _: None,
                       **kwargs)


def dead_job(store: Any, job_id: str, due: datetime) -> None:
    store.enqueue_job(Job(id=job_id, kind="sync", provider_id="p", payload={},
                          available_at=due, created_at=due))
    store.claim_jobs("w", limit=1, now=due, lease_until=due + timedelta(minutes=1),
                     provider_ids=["p"])
    store.bury_job(job_id, error="gave up")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        return InMemoryStore()
    return SqliteStore(tmp_path / "retention.sqlite3")


def test_defaults_outlast_every_redelivery_and_catch_up_window() -> None:
    policy = RetentionPolicy()
    pubsub_max_retention = timedelta(days=31)  # Pub/Sub keeps an unacked push at most 31 days
    gmail_history = timedelta(days=7)  # history records: "at least one week"
    graph_retries = timedelta(hours=4)  # Graph retries a notification for up to 4 hours
    for window in (pubsub_max_retention, gmail_history, graph_retries):
        assert policy.dedupe > window
        assert policy.message_meta > window
    assert policy.dead_jobs >= timedelta(days=30)
    cutoffs = policy.cutoffs(NOW)
    assert cutoffs.dedupe_before == NOW - policy.dedupe
    assert cutoffs.meta_prefixes == (*MESSAGE_META_PREFIXES, STATE_META_PREFIX)
    assert "msg-dead:" in cutoffs.meta_prefixes


def test_run_once_prunes_by_the_default_ages(store: Any) -> None:
    store.mark_published("p", ["id:old", "mid:<old@x>"], complete=True, event_id="e1",
                         at=NOW - timedelta(days=46))
    store.mark_published("p", ["id:recent"], complete=True, event_id="e2",
                         at=NOW - timedelta(days=44))
    dead_job(store, "dead-old", NOW - timedelta(days=31))
    dead_job(store, "dead-recent", NOW - timedelta(days=29))
    store.enqueue_job(Job(id="waiting", kind="sync", provider_id="p", payload={},
                          available_at=NOW - timedelta(days=90),
                          created_at=NOW - timedelta(days=90)))
    report = maintenance(store).run_once(run_jobs=False)
    assert report.pruned == {"dedupe": 2, "done_jobs": 0, "dead_jobs": 1, "meta": 0}
    assert "pruned=3" in report.summary()
    assert store.published_state("p", "id:old") is None
    assert store.published_state("p", "id:recent") == "complete"
    assert [j.id for j in store.list_jobs(status="dead")] == ["dead-recent"]
    # Pending work is never pruned, however old.
    assert [j.id for j in store.list_jobs(status="pending")] == ["waiting"]


def test_custom_ages_and_switching_retention_off(store: Any) -> None:
    store.mark_published("p", ["id:m"], complete=True, event_id="e", at=NOW - timedelta(days=3))
    assert maintenance(store, retention=None).run_once(run_jobs=False).pruned == {}
    assert store.published_state("p", "id:m") == "complete"
    short = RetentionPolicy(dedupe=timedelta(days=2))
    assert maintenance(store, retention=short).prune().pruned["dedupe"] == 1
    assert store.published_state("p", "id:m") is None


def test_per_message_meta_is_pruned_by_the_sweep_and_other_meta_kept(store: Any) -> None:
    store.set_meta("p", "msg-dead:m1", "gave up")
    store.set_meta("p", "last_push_at", "x")
    # The store stamps meta with its own clock: an age of zero makes the value old at once
    # (a "now" one day ahead).
    ahead = Maintenance(store, InMemoryPublisher(),
                        clock=lambda: datetime.now(timezone.utc) + timedelta(days=1),
                        retention=RetentionPolicy(message_meta=timedelta(0)))
    assert ahead.prune().pruned["meta"] == 1
    assert store.get_meta("p", "msg-dead:m1") is None
    assert store.get_meta("p", "last_push_at") == "x"


class _NoPruneStore:
    """A host store without ``prune`` (every other method is the in-memory store's)."""

    def __init__(self) -> None:
        self._inner = InMemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name == "prune":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_store_without_prune_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailparity.maintenance"):
        report = maintenance(_NoPruneStore()).run_once(run_jobs=False)
    assert report.pruned == {}
    assert "has no prune()" in caplog.text
