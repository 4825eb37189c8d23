"""SqliteStore specifics: several processes on one file, WAL, durability across reopen, schema
versioning, indexes, failure mapping. The shared semantics are in ``test_store_contract.py``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mailparity.errors import StoreError
from mailparity.models import GmailProviderConfig, Job, OAuthTokens
from mailparity.stores.sqlite import SCHEMA_VERSION, SqliteStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

# Each child process opens the store itself, reports "ready", waits for "go" on stdin (so that all
# of them start claiming together) and prints what it won as one JSON line.
_CHILD = r"""
import json, sys
from datetime import datetime, timedelta, timezone
from mailparity.stores.sqlite import SqliteStore

path, worker = sys.argv[1], sys.argv[2]
now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
store = SqliteStore(path)
print("ready", flush=True)
sys.stdin.readline()
jobs = []
while True:
    batch = store.claim_jobs(worker, limit=3, now=now, lease_until=now + timedelta(hours=1))
    if not batch:
        break
    jobs.extend(job.id for job in batch)
lock = store.acquire_lock("renewal-sweep", worker, until=now + timedelta(hours=1), now=now)
keys = [m for m in range(25)
        if store.claim_keys("g-1", [f"id:{m}", f"mid:<{m}@x>"], worker,
                            now + timedelta(hours=1), now) == "claimed"]
store.close()
print(json.dumps({"jobs": jobs, "lock": lock, "keys": keys}), flush=True)
"""


def _job(index: int) -> Job:
    return Job(
        id=f"job-{index:04d}",
        kind="gmail_history",
        provider_id="g-1",
        payload={"history_id": index},
        available_at=T0 - timedelta(seconds=index),
        created_at=T0 - timedelta(seconds=index),
    )


def _gmail() -> GmailProviderConfig:
    return GmailProviderConfig(
        provider_id="g-1",
        tenant="t",
        mailbox="Ops@Example.org",
        client_secret=SecretStr("g-secret"),
        history_id=42,
        watch_expiration=T0,
    )


def test_processes_claim_every_job_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    total = 150
    with SqliteStore(path) as store:
        for index in range(total):
            assert store.enqueue_job(_job(index))

    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), f"proc-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    results: list[dict[str, Any]] = []
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    claimed = Counter(job_id for result in results for job_id in result["jobs"])
    assert len(claimed) == total
    assert set(claimed.values()) == {1}
    assert [result["lock"] for result in results].count(True) == 1
    message_winners = Counter(m for result in results for m in result["keys"])
    assert message_winners == Counter(range(25))

    with SqliteStore(path) as store:
        assert store.count_jobs(status="running") == total
        running = store.list_jobs(status="running", limit=total)
        assert {job.worker_id for job in running} <= {f"proc-{n}" for n in range(4)}


def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    with SqliteStore(path) as store:
        assert store.journal_mode() == "wal"
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        raw.close()


def test_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "durable.sqlite3"
    expires = datetime(2026, 1, 1, 13, tzinfo=timezone.utc)
    with SqliteStore(path) as store:
        store.save_provider(_gmail())
        store.save_tokens(
            "g-1", OAuthTokens(access_token=SecretStr("at"), refresh_token=SecretStr("rt"),
                               expires_at=expires)
        )
        store.enqueue_job(_job(1))
        store.mark_published("g-1", ["id:1"], complete=False, event_id="e", at=T0)
        store.acquire_lock("sweep", "a", until=T0 + timedelta(hours=1), now=T0)
        store.set_meta("g-1", "last_push", "2026-01-01T12:00:00+00:00")
    with SqliteStore(path) as store:
        config = store.get_provider("g-1")
        assert isinstance(config, GmailProviderConfig)
        assert config.history_id == 42
        assert config.client_secret is not None
        assert config.client_secret.get_secret_value() == "g-secret"
        tokens = store.load_tokens("g-1")
        assert tokens is not None
        assert tokens.refresh_token is not None
        assert tokens.refresh_token.get_secret_value() == "rt"
        assert tokens.expires_at == expires
        assert [job.id for job in store.list_jobs()] == ["job-0001"]
        assert store.published_state("g-1", "id:1") == "minimal"
        assert store.acquire_lock("sweep", "b", until=T0, now=T0) is False
        assert store.get_meta("g-1", "last_push") == "2026-01-01T12:00:00+00:00"
        assert store.schema_version() == SCHEMA_VERSION


def test_schema_version_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "schema.sqlite3"
    SqliteStore(path).close()
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT version FROM schema_version").fetchall()
    finally:
        raw.close()
    assert rows == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_version_1_file_is_upgraded_and_its_meta_stamped(tmp_path: Path) -> None:
    """A file written by a release with schema 1 (no ``meta.updated_at``) keeps its meta values;
    they count as set at the upgrade, so the retention sweep does not prune them at once."""
    from mailparity.protocols import PruneCutoffs
    from mailparity.stores.sqlite import _MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER)")
    for statement in _MIGRATIONS[0][1]:
        raw.execute(statement)
    raw.execute("INSERT INTO schema_version VALUES (1, 0)")
    raw.execute("INSERT INTO meta VALUES ('p', 'msg-dead:m1', 'gave up')")
    raw.commit()
    raw.close()
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.get_meta("p", "msg-dead:m1") == "gave up"
        long_ago = T0 - timedelta(days=3650)
        cutoffs = PruneCutoffs(
            dedupe_before=long_ago, done_jobs_before=long_ago, dead_jobs_before=long_ago,
            meta_before=long_ago, meta_prefixes=("msg-dead:",),
        )
        assert store.prune(cutoffs)["meta"] == 0
        assert store.get_meta("p", "msg-dead:m1") == "gave up"


def test_existing_empty_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE unrelated (x INTEGER)")
    raw.commit()
    raw.close()
    with SqliteStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.set_meta("p", "k", "v")
        assert store.get_meta("p", "k") == "v"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (SCHEMA_VERSION + 1,)
    )
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer than this release"):
        SqliteStore(path)


def test_lookups_use_indexes_and_scale_to_many_dedupe_keys(tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite3"
    count = 100_000
    with SqliteStore(path) as store:
        store.mark_published(
            "g-1", [f"id:{n}" for n in range(count)], complete=True, event_id="e", at=T0
        )
        assert store.published_state("g-1", "id:99999") == "complete"
        assert store.published_state("g-1", "id:100000") is None
        assert store.claim_keys("g-1", ["id:100000"], "w", T0, T0) == "claimed"
        assert store.claim_keys("g-1", ["id:100001", "id:5"], "w", T0, T0) == "published"
    raw = sqlite3.connect(path)
    try:
        def plan(sql: str, params: tuple[Any, ...]) -> str:
            rows = raw.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            return " | ".join(str(row[-1]) for row in rows)

        assert "PRIMARY KEY" in plan(
            "SELECT published FROM dedupe WHERE provider_id = ? AND key = ?", ("g-1", "id:5")
        )
        assert "providers_mailbox" in plan(
            "SELECT data FROM providers WHERE provider = ? AND mailbox_key = ?", ("google", "x")
        )
        assert "providers_subscription" in plan(
            "SELECT data FROM providers WHERE subscription_id = ? AND provider = 'microsoft'",
            ("s",),
        )
        assert "jobs_available" in plan(
            "SELECT id FROM jobs WHERE status = 'pending' AND available_at <= ?", (0,)
        )
        assert "jobs_unique" in plan(
            "SELECT 1 FROM jobs WHERE unique_key = ? AND status = 'pending'", ("k",)
        )
    finally:
        raw.close()


def test_memory_database_is_shared_by_threads() -> None:
    with SqliteStore(":memory:") as store:
        assert store.journal_mode() == "memory"
        store.save_provider(_gmail())

        def worker() -> None:
            store.set_meta("g-1", threading.current_thread().name, "seen")

        threads = [threading.Thread(target=worker, name=f"t{n}") for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [store.get_meta("g-1", f"t{n}") for n in range(4)] == ["seen"] * 4
        assert store.get_provider("g-1") is not None


def test_thread_connections_are_closed_with_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "threads.sqlite3")
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(store.get_meta("p", "k")))
    thread.start()
    thread.join()
    assert seen == [None]
    store.close()
    assert "closed" in repr(store)
    with pytest.raises(StoreError, match="closed"):
        store.get_meta("p", "k")
    store.close()  # closing twice is harmless


def test_locked_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    with SqliteStore(path, timeout=0) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                store.enqueue_job(_job(1))
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        assert store.enqueue_job(_job(1)) is True  # the failed call left nothing behind
        assert store.count_jobs() == 1


def test_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "missing-folder" / "store.sqlite3")


def test_failed_transaction_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteStore(tmp_path / "rollback.sqlite3") as store:
        store.save_provider(_gmail())
        with pytest.raises(ValueError, match="unknown config fields"):
            store.update_provider("g-1", {"history_id": 7, "bogus": 1})
        original = SqliteStore._write_provider

        def write_then_fail(conn: sqlite3.Connection, config: Any) -> None:
            original(conn, config)
            raise RuntimeError("crash after the write, before the commit")

        monkeypatch.setattr(SqliteStore, "_write_provider", staticmethod(write_then_fail))
        with pytest.raises(RuntimeError, match="crash"):
            store.update_provider("g-1", {"history_id": 7})
        monkeypatch.undo()
        config = store.get_provider("g-1")
        assert isinstance(config, GmailProviderConfig)
        assert config.history_id == 42
        # The connection is usable again: the transaction did not stay open.
        assert store.compare_and_set_history_id("g-1", 42, 43) is True
        assert store.get_provider("g-1").history_id == 43  # type: ignore[union-attr]


def test_configs_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "repr.sqlite3") as store:
        store.save_provider(_gmail())
        assert "g-secret" not in repr(store)
        assert "g-secret" not in repr(store.get_provider("g-1"))
