"""SqlStore on SQLite through SQLAlchemy: migrations, schema checks, SQL-specific behaviour.

The protocol semantics shared by every store are covered by ``test_store_contract.py`` (which runs
SqlStore through ``store_factories.py``); this file covers what only the SQL store has.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from mailparity.errors import StoreError
from mailparity.models import GmailProviderConfig, Job, MicrosoftProviderConfig, OAuthTokens
from mailparity.protocols import StateStore
from mailparity.stores import migrations
from mailparity.stores.sql import SqlStore, current_version, upgrade, upgrade_database

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
EXPECTED_TABLES = {"providers", "tokens", "jobs", "dedupe", "locks", "meta", "schema_version"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def engine(db_url: str) -> Any:
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> Any:
    with SqlStore(engine, auto_upgrade=True) as store:
        yield store


def _job(**kwargs: Any) -> Job:
    values: dict[str, Any] = {
        "kind": "sync",
        "provider_id": "p1",
        "available_at": NOW,
        "created_at": NOW,
    }
    values.update(kwargs)
    return Job(**values)


# ------------------------------------------------------------------------------ migrations


def test_migrations_are_discovered_in_order() -> None:
    versions = [m.version for m in migrations.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert migrations.MIGRATIONS[0].name == "v0001_initial"
    assert migrations.latest_version() == versions[-1]
    assert all(callable(m.upgrade) for m in migrations.MIGRATIONS)


def test_migrations_apply_to_an_empty_database(engine: sa.Engine) -> None:
    assert current_version(engine) == 0
    applied = upgrade(engine)
    assert applied == [m.version for m in migrations.MIGRATIONS]
    assert current_version(engine) == migrations.latest_version()
    assert set(sa.inspect(engine).get_table_names()) >= EXPECTED_TABLES
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version, name FROM schema_version")).all()
    assert [tuple(row) for row in rows] == [(1, "v0001_initial"), (2, "v0002_retention")]


def test_migrations_are_idempotent(engine: sa.Engine) -> None:
    upgrade(engine)
    assert upgrade(engine) == []
    assert upgrade(engine) == []
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM schema_version")).scalar_one()
    assert count == migrations.latest_version()


def test_upgrade_to_target_zero_only_creates_the_version_table(engine: sa.Engine) -> None:
    assert upgrade(engine, target=0) == []
    assert set(sa.inspect(engine).get_table_names()) == {"schema_version"}
    assert current_version(engine) == 0


def test_pending_unique_key_index_is_partial(engine: sa.Engine) -> None:
    upgrade(engine)
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("jobs")}
    unique = indexes["ux_jobs_pending_unique_key"]
    assert unique["unique"]
    with engine.connect() as conn:
        sql = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'ux_jobs_pending_unique_key'")
        ).scalar_one()
    assert "WHERE" in sql.upper()
    assert "pending" in sql


def test_concurrent_upgrades_apply_each_migration_once(engine: sa.Engine) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        try:
            barrier.wait()
            results.append(upgrade(engine))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in migrations.MIGRATIONS]
    assert current_version(engine) == migrations.latest_version()


def test_unmigrated_database_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(StoreError, match="mailparity db upgrade") as info:
        SqlStore(engine)
    assert info.value.code == "schema_outdated"
    assert "version 0" in str(info.value)
    # Refusing must not have created anything.
    assert sa.inspect(engine).get_table_names() == []


def test_partially_migrated_database_is_refused(engine: sa.Engine) -> None:
    upgrade(engine, target=0)
    with pytest.raises(StoreError, match="mailparity db upgrade"):
        SqlStore(engine)


def test_auto_upgrade_migrates_then_works(engine: sa.Engine) -> None:
    store = SqlStore(engine, auto_upgrade=True)
    assert current_version(engine) == migrations.latest_version()
    store.set_meta("p1", "k", "v")
    assert store.get_meta("p1", "k") == "v"
    # A second store on the migrated database needs no upgrade.
    assert SqlStore(engine).get_meta("p1", "k") == "v"


def test_version_1_database_is_upgraded_and_its_meta_stamped(engine: sa.Engine) -> None:
    """Meta rows written under schema 1 survive the upgrade and count as set at the upgrade."""
    from mailparity.protocols import PruneCutoffs

    upgrade(engine, target=1)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO meta (provider_id, key, value) VALUES ('p', 'msg-dead:m1', 'gave up')"
        )
    upgrade(engine)
    store = SqlStore(engine)
    assert store.get_meta("p", "msg-dead:m1") == "gave up"
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    cutoffs = PruneCutoffs(
        dedupe_before=long_ago, done_jobs_before=long_ago, dead_jobs_before=long_ago,
        meta_before=long_ago, meta_prefixes=("msg-dead:",),
    )
    assert store.prune(cutoffs)["meta"] == 0
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert store.prune(
        PruneCutoffs(long_ago, long_ago, long_ago, later, ("msg-dead:",))
    )["meta"] == 1


def test_newer_schema_is_refused(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schema_version (version, name, applied_at)"
                " VALUES (999, 'v0999_future', '2030-01-01 00:00:00')"
            )
        )
    with pytest.raises(StoreError, match="upgrade mailparity") as info:
        SqlStore(engine)
    assert info.value.code == "schema_too_new"


def test_upgrade_database_by_url(db_url: str) -> None:
    assert upgrade_database(db_url) == migrations.latest_version()
    assert upgrade_database(db_url) == migrations.latest_version()
    engine = sa.create_engine(db_url)
    try:
        SqlStore(engine).save_tokens(
            "p1", OAuthTokens(access_token="a", refresh_token="r", expires_at=NOW)
        )
    finally:
        engine.dispose()


def test_upgrade_database_bad_url_is_a_store_error_without_password() -> None:
    with pytest.raises(StoreError) as info:
        upgrade_database("nosuchdb+nodriver://user:hunter2@localhost/db")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_upgrade_database_unreachable_server_is_a_store_error(tmp_path: Path) -> None:
    missing_dir = tmp_path / "missing" / "x.sqlite3"  # SQLite cannot create the parent folder
    with pytest.raises(StoreError, match="db upgrade failed"):
        upgrade_database(f"sqlite:///{missing_dir}")


def test_unsupported_dialect_is_refused() -> None:
    fake_engine: Any = SimpleNamespace(dialect=SimpleNamespace(name="mysql"))
    with pytest.raises(ValueError, match="postgresql, sqlite"):
        SqlStore(fake_engine)
    with pytest.raises(ValueError, match="mysql"):
        upgrade(fake_engine)


def test_cli_entry_point_upgrades(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailparity.cli", "db", "upgrade", "--url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "No module named mailparity.cli" in result.stderr:
        pytest.skip("mailparity.cli is not importable as a module here")
    assert result.returncode == 0, result.stderr
    assert f"schema version {migrations.latest_version()}" in result.stdout
    engine = sa.create_engine(db_url)
    try:
        assert current_version(engine) == migrations.latest_version()
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ store behaviour


def test_store_implements_every_protocol(store: SqlStore) -> None:
    assert isinstance(store, StateStore)


def test_timestamps_come_back_as_aware_utc(store: SqlStore) -> None:
    naive = datetime(2026, 1, 1, 12, 0, 0, 123456)
    plus_two = datetime(2026, 1, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    store.enqueue_job(_job(id="a", available_at=naive, created_at=plus_two))
    (job,) = store.list_jobs()
    assert job.available_at == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert job.available_at.tzinfo is not None
    assert job.created_at == job.available_at


def test_job_round_trip_keeps_every_field(store: SqlStore) -> None:
    job = _job(
        id="j1",
        kind="graph_message",
        payload={"message_id": "AAMk=", "nested": {"x": [1, 2]}},
        unique_key="graph:p1:AAMk=",
        attempts=2,
        last_error="previous",
    )
    assert store.enqueue_job(job)
    (stored,) = store.list_jobs(provider_id="p1")
    assert stored == job


def test_pending_unique_key_allows_a_new_job_once_claimed(store: SqlStore) -> None:
    assert store.enqueue_job(_job(id="a", unique_key="u"))
    assert not store.enqueue_job(_job(id="b", unique_key="u"))
    assert [j.id for j in store.claim_jobs("w", limit=5, now=NOW, lease_until=NOW)] == ["a"]
    assert store.enqueue_job(_job(id="b", unique_key="u"))
    assert store.count_jobs(status="pending") == 1
    assert store.count_jobs() == 2


def test_retry_into_a_taken_unique_key_keeps_both_jobs(store: SqlStore) -> None:
    assert store.enqueue_job(_job(id="a", unique_key="u"))
    store.claim_jobs("w", limit=1, now=NOW, lease_until=NOW + timedelta(minutes=1))
    assert store.enqueue_job(_job(id="b", unique_key="u"))
    store.retry_job("a", error="boom", available_at=NOW + timedelta(seconds=30))
    jobs = {job.id: job for job in store.list_jobs(status="pending")}
    assert set(jobs) == {"a", "b"}
    assert jobs["a"].unique_key is None
    assert jobs["a"].attempts == 1
    assert jobs["a"].last_error == "boom"
    assert jobs["b"].unique_key == "u"


def test_expired_lease_reclaim_counts_an_attempt(store: SqlStore) -> None:
    store.enqueue_job(_job(id="a"))
    (first,) = store.claim_jobs("w1", limit=1, now=NOW, lease_until=NOW + timedelta(seconds=10))
    assert first.attempts == 0
    assert store.claim_jobs("w2", limit=1, now=NOW + timedelta(seconds=10), lease_until=NOW) == []
    (again,) = store.claim_jobs(
        "w2", limit=1, now=NOW + timedelta(seconds=11), lease_until=NOW + timedelta(seconds=60)
    )
    assert again.worker_id == "w2"
    assert again.attempts == 1
    assert again.last_error is not None


def test_claim_jobs_filters_and_order(store: SqlStore) -> None:
    store.enqueue_job(_job(id="late", available_at=NOW + timedelta(seconds=5)))
    store.enqueue_job(_job(id="early", available_at=NOW - timedelta(seconds=5)))
    store.enqueue_job(_job(id="other-kind", kind="lifecycle"))
    store.enqueue_job(_job(id="other-provider", provider_id="p2"))
    store.enqueue_job(_job(id="future", available_at=NOW + timedelta(hours=1)))
    claimed = store.claim_jobs(
        "w",
        limit=10,
        now=NOW + timedelta(seconds=5),
        lease_until=NOW + timedelta(minutes=1),
        kinds=["sync"],
        provider_ids=["p1"],
    )
    assert [job.id for job in claimed] == ["early", "late"]
    assert all(job.status == "running" and job.worker_id == "w" for job in claimed)
    assert store.claim_jobs("w", limit=0, now=NOW, lease_until=NOW) == []


def test_dedupe_minimal_never_downgrades_complete(store: SqlStore) -> None:
    keys = ["id:1", "mid:<a@b>"]
    assert store.claim_keys("p1", keys, "o1", NOW + timedelta(seconds=30), NOW) == "claimed"
    store.mark_published("p1", keys, complete=True, event_id="e1", at=NOW)
    store.mark_published("p1", keys, complete=False, event_id="e2", at=NOW)
    assert store.published_state("p1", "id:1") == "complete"
    with store.engine.connect() as conn:
        event_ids = conn.execute(sa.text("SELECT DISTINCT event_id FROM dedupe")).scalars().all()
    assert event_ids == ["e1"]
    assert store.claim_keys("p1", ["id:1"], "o2", NOW + timedelta(seconds=30), NOW) == "published"


def test_dedupe_refused_claim_leaves_no_rows(store: SqlStore) -> None:
    assert store.claim_keys("p1", ["id:1"], "o1", NOW + timedelta(seconds=30), NOW) == "claimed"
    assert store.claim_keys("p1", ["id:1", "id:2"], "o2", NOW, NOW) == "busy"
    assert store.published_state("p1", "id:2") is None
    with store.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM dedupe")).scalars().all()
    assert keys == ["id:1"]
    store.release_keys("p1", ["id:1"], "o1")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dedupe")).scalar_one() == 0


def test_providers_lookup_columns_follow_updates(store: SqlStore) -> None:
    config = MicrosoftProviderConfig(
        provider_id="m1", tenant="t", mailbox="Support@Example.com", client_secret="s3cret"
    )
    store.save_provider(config)
    assert store.find_provider_by_subscription("sub-1") is None
    store.update_provider("m1", {"webhook_subscription_id": "sub-1", "mailbox": "new@x.com"})
    found = store.find_provider_by_subscription("sub-1")
    assert found is not None
    assert found.provider_id == "m1"
    assert store.find_provider_by_mailbox("microsoft", "NEW@X.COM") is not None
    assert store.find_provider_by_mailbox("microsoft", "support@example.com") is None
    assert found.client_secret is not None
    assert found.client_secret.get_secret_value() == "s3cret"


def test_update_provider_errors_roll_back(store: SqlStore) -> None:
    store.save_provider(GmailProviderConfig(provider_id="g1", tenant="t", mailbox="a@b.c"))
    with pytest.raises(KeyError):
        store.update_provider("missing", {"history_id": 1})
    with pytest.raises(ValueError, match="unknown"):
        store.update_provider("g1", {"no_such_field": 1})
    with pytest.raises(ValueError, match="provider_id"):
        store.update_provider("g1", {"provider_id": "other"})
    config = store.get_provider("g1")
    assert config is not None
    assert config.provider_id == "g1"
    assert store.compare_and_set_history_id("missing", None, 1) is False


def test_delete_provider_removes_its_state(store: SqlStore) -> None:
    store.save_provider(GmailProviderConfig(provider_id="g1", tenant="t", mailbox="a@b.c"))
    store.save_tokens("g1", OAuthTokens(access_token="a", expires_at=NOW))
    store.enqueue_job(_job(provider_id="g1"))
    store.set_meta("g1", "k", "v")
    store.claim_keys("g1", ["id:1"], "o", NOW, NOW)
    store.enqueue_job(_job(provider_id="other"))
    store.delete_provider("g1")
    assert store.get_provider("g1") is None
    assert store.load_tokens("g1") is None
    assert store.get_meta("g1", "k") is None
    assert store.list_jobs(provider_id="g1") == []
    assert store.count_jobs() == 1


def test_store_errors_never_carry_secrets(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE tokens"))
    tokens = OAuthTokens(
        access_token="ya29.SECRET-ACCESS", refresh_token="1//SECRET-REFRESH", expires_at=NOW
    )
    with pytest.raises(StoreError) as info:
        store.save_tokens("p1", tokens)
    text = f"{info.value!s} {info.value!r}"
    assert "save_tokens failed" in text
    assert "SECRET" not in text
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_lock_expiry_boundary(store: SqlStore) -> None:
    until = NOW + timedelta(seconds=10)
    assert store.acquire_lock("l", "a", until=until, now=NOW)
    # Live while now <= until.
    assert not store.acquire_lock("l", "b", until=until, now=until)
    assert store.acquire_lock("l", "a", until=until + timedelta(seconds=5), now=until)
    later = until + timedelta(seconds=5, microseconds=1)
    assert store.acquire_lock("l", "b", until=later + timedelta(seconds=5), now=later)
    store.release_lock("l", "a")  # not the holder: nothing happens
    assert not store.acquire_lock("l", "a", until=later, now=later)
    store.release_lock("l", "b")
    assert store.acquire_lock("l", "a", until=later, now=later)


def test_threads_never_double_claim_on_sqlite(store: SqlStore) -> None:
    for index in range(120):
        store.enqueue_job(_job(id=f"job-{index:03d}", available_at=NOW + timedelta(0, index)))
    claimed: list[str] = []
    errors: list[BaseException] = []
    guard = threading.Lock()
    barrier = threading.Barrier(6)
    later = NOW + timedelta(hours=1)

    def worker(name: str) -> None:
        try:
            barrier.wait()
            while True:
                jobs = store.claim_jobs(name, limit=4, now=later, lease_until=later)
                if not jobs:
                    return
                with guard:
                    claimed.extend(job.id for job in jobs)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(claimed) == 120
    assert len(set(claimed)) == 120


CLAIM_SCRIPT = """
import json, sys, time
from datetime import datetime, timedelta, timezone
import sqlalchemy as sa
from mailparity.stores.sql import SqlStore
url, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
store = SqlStore(sa.create_engine(url))
while not __import__("os").path.exists(go):
    time.sleep(0.005)
later = datetime(2030, 1, 1, tzinfo=timezone.utc)
ids = []
while True:
    jobs = store.claim_jobs(name, limit=3, now=later, lease_until=later)
    if not jobs:
        break
    ids.extend(job.id for job in jobs)
print(json.dumps(ids))
"""


def run_claiming_processes(url: str, count: int, tmp_path: Path) -> list[list[str]]:
    """Start ``count`` processes that claim jobs from ``url`` until none is left; return what
    each claimed. They start claiming together (a go-file), so they really race."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_SCRIPT, url, f"proc-{i}", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    go.write_text("go")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_processes_never_double_claim_on_sqlite(
    store: SqlStore, db_url: str, tmp_path: Path
) -> None:
    for index in range(90):
        store.enqueue_job(_job(id=f"job-{index:03d}"))
    results = run_claiming_processes(db_url, 3, tmp_path)
    claimed = [job_id for ids in results for job_id in ids]
    assert len(claimed) == 90
    assert len(set(claimed)) == 90
