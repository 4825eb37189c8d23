"""SqlStore on a real PostgreSQL server: concurrency is the database's job, so test it for real.

Needs ``MAILPARITY_TEST_POSTGRES_URL`` (``scripts/services.sh run ...`` starts a throwaway server
and sets it); skips without it, fails without it under CI. The module runs in its own database,
created with a random name and dropped afterwards; every test starts from empty tables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from mailparity.errors import StoreError
from mailparity.models import GmailProviderConfig, Job
from mailparity.stores import migrations
from mailparity.stores.sql import SqlStore, current_version, upgrade, upgrade_database
from store_factories import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
)
from test_sql_store import run_claiming_processes

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = NOW + timedelta(hours=1)
THREADS = 12
_T = TypeVar("_T")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    url = create_postgres_database(postgres_admin_url())
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    # lock_timeout: a claim that waited on a row lock (no SKIP LOCKED) fails instead of hanging.
    engine = sa.create_engine(
        pg_url,
        pool_size=THREADS + 4,
        connect_args={"options": "-c lock_timeout=10000"},
    )
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> SqlStore:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE providers, tokens, jobs, dedupe, locks, meta")
    return SqlStore(engine)


def race(count: int, action: Callable[[int], _T]) -> list[_T]:
    """Run ``action(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def _job(index: int, **kwargs: Any) -> Job:
    values: dict[str, Any] = {
        "id": f"job-{index:04d}",
        "kind": "sync",
        "provider_id": "p1",
        "available_at": NOW + timedelta(microseconds=index),
        "created_at": NOW,
    }
    values.update(kwargs)
    return Job(**values)


# ------------------------------------------------------------------------------ migrations


def test_migrations_on_a_fresh_database_concurrently() -> None:
    url = create_postgres_database(postgres_admin_url())
    engine = sa.create_engine(url, pool_size=THREADS)
    try:
        with pytest.raises(Exception, match="mailparity db upgrade"):
            SqlStore(engine)
        applied = race(6, lambda _: upgrade(engine))
        assert sorted(v for result in applied for v in result) == [
            m.version for m in migrations.MIGRATIONS
        ]
        assert current_version(engine) == migrations.latest_version()
        assert upgrade(engine) == []
        assert upgrade_database(url) == migrations.latest_version()
        with engine.connect() as conn:
            predicate = conn.execute(
                sa.text(
                    "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relname = 'ux_jobs_pending_unique_key' AND i.indisunique"
                )
            ).scalar_one()
        assert "pending" in predicate
        SqlStore(engine).set_meta("p", "k", "v")
    finally:
        engine.dispose()
        drop_postgres_database(url)


def test_repr_and_errors_hide_the_password(pg_url: str, engine: sa.Engine) -> None:
    # The test server trusts 127.0.0.1, so any password connects.
    url = sa.make_url(pg_url).set(password="hunter2-secret")
    secret_engine = sa.create_engine(url)
    try:
        store = SqlStore(secret_engine)  # the module's database is migrated by `engine`
        assert "hunter2" not in repr(store)
        assert store.engine is secret_engine
    finally:
        secret_engine.dispose()
    unreachable = url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    with pytest.raises(StoreError) as info:
        upgrade_database(unreachable)
    assert "hunter2" not in f"{info.value!s} {info.value!r}"


def test_timestamps_are_timestamptz(engine: sa.Engine, store: SqlStore) -> None:
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("jobs")}
    assert columns["available_at"]["type"].timezone is True
    store.enqueue_job(_job(1, available_at=datetime(2026, 1, 1, 14, tzinfo=timezone(
        timedelta(hours=2)))))
    (job,) = store.list_jobs()
    assert job.available_at == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ jobs


def test_threads_never_double_claim(store: SqlStore) -> None:
    total = 300
    for index in range(total):
        assert store.enqueue_job(_job(index))

    def drain(index: int) -> list[str]:
        ids: list[str] = []
        while True:
            jobs = store.claim_jobs(f"w{index}", limit=7, now=LATER, lease_until=LATER)
            if not jobs:
                return ids
            ids.extend(job.id for job in jobs)

    claimed = [job_id for ids in race(THREADS, drain) for job_id in ids]
    assert len(claimed) == total
    assert len(set(claimed)) == total
    assert store.count_jobs(status="running") == total


def test_processes_never_double_claim(store: SqlStore, pg_url: str, tmp_path: Path) -> None:
    total = 240
    for index in range(total):
        store.enqueue_job(_job(index))
    results = run_claiming_processes(pg_url, 4, tmp_path)
    claimed = [job_id for ids in results for job_id in ids]
    assert len(claimed) == total
    assert len(set(claimed)) == total


def test_claim_uses_skip_locked_and_does_not_wait(engine: sa.Engine, store: SqlStore) -> None:
    for index in range(5):
        store.enqueue_job(_job(index))
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    # Another transaction holds the oldest job's row lock (a worker in the middle of claiming).
    holder = engine.connect()
    try:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("SELECT id FROM jobs WHERE id = 'job-0000' FOR UPDATE")
        sa.event.listen(engine, "before_cursor_execute", capture)
        try:
            claimed = store.claim_jobs("w", limit=10, now=LATER, lease_until=LATER)
        finally:
            sa.event.remove(engine, "before_cursor_execute", capture)
        assert [job.id for job in claimed] == [f"job-{i:04d}" for i in range(1, 5)]
    finally:
        holder.rollback()
        holder.close()
    assert any("FOR UPDATE SKIP LOCKED" in sql for sql in statements)
    # Once the lock is gone the skipped job is claimable.
    assert [j.id for j in store.claim_jobs("w", limit=10, now=LATER, lease_until=LATER)] == [
        "job-0000"
    ]


def test_expired_leases_are_reclaimed_once_under_races(store: SqlStore) -> None:
    for index in range(40):
        store.enqueue_job(_job(index))
    taken = store.claim_jobs(
        "dead-worker",
        limit=40,
        now=NOW + timedelta(seconds=1),
        lease_until=NOW + timedelta(seconds=2),
    )
    assert len(taken) == 40

    def reclaim(index: int) -> list[str]:
        jobs = store.claim_jobs(f"w{index}", limit=40, now=LATER, lease_until=LATER)
        assert [job.attempts for job in jobs] == [1] * len(jobs)
        return [job.id for job in jobs]

    claimed = [job_id for ids in race(THREADS, reclaim) for job_id in ids]
    assert sorted(claimed) == sorted(f"job-{i:04d}" for i in range(40))


def test_enqueue_unique_key_single_winner(store: SqlStore) -> None:
    for round_ in range(5):
        results = race(
            THREADS,
            lambda i, r=round_: store.enqueue_job(
                _job(1000 * r + i, unique_key=f"graph:p1:msg-{r}")
            ),
        )
        assert results.count(True) == 1
    assert store.count_jobs(status="pending") == 5


def test_retry_into_a_taken_unique_key(store: SqlStore) -> None:
    store.enqueue_job(_job(1, unique_key="u"))
    store.claim_jobs("w", limit=1, now=LATER, lease_until=LATER)
    store.enqueue_job(_job(2, unique_key="u"))
    store.retry_job("job-0001", error="boom", available_at=LATER)
    jobs = {job.id: job for job in store.list_jobs(status="pending")}
    assert jobs["job-0001"].unique_key is None
    assert jobs["job-0001"].attempts == 1
    assert jobs["job-0002"].unique_key == "u"


# ------------------------------------------------------------------------------ dedupe, locks


def test_dedupe_claim_single_winner(store: SqlStore) -> None:
    for round_ in range(10):
        # Overlapping key sets in different orders: the row locking must not deadlock.
        def claim(index: int, r: int = round_) -> str:
            keys = [f"id:{r}", f"mid:<{r}@x>"]
            if index % 2:
                keys.reverse()
            return store.claim_keys("p1", keys, f"owner-{index}", LATER, NOW)

        results = race(THREADS, claim)
        assert results.count("claimed") == 1
        assert results.count("busy") == THREADS - 1


def test_dedupe_after_publish_everyone_sees_published(store: SqlStore) -> None:
    keys = ["id:1", "mid:<1@x>"]
    assert store.claim_keys("p1", keys, "o", LATER, NOW) == "claimed"
    store.mark_published("p1", keys, complete=True, event_id="e", at=NOW)
    results = race(THREADS, lambda i: store.claim_keys("p1", keys, f"o{i}", LATER, NOW))
    assert set(results) == {"published"}


def test_lock_single_winner(store: SqlStore) -> None:
    for round_ in range(10):
        name = f"token-refresh:p{round_}"
        results = race(
            THREADS,
            lambda i, n=name: store.acquire_lock(n, f"owner-{i}", until=LATER, now=NOW),
        )
        assert results.count(True) == 1


def test_expired_lock_single_winner(store: SqlStore) -> None:
    assert store.acquire_lock("renewal", "old", until=NOW, now=NOW)
    after = NOW + timedelta(seconds=1)
    results = race(
        THREADS,
        lambda i: store.acquire_lock("renewal", f"owner-{i}", until=LATER, now=after),
    )
    assert results.count(True) == 1
    winner = f"owner-{results.index(True)}"
    assert store.acquire_lock("renewal", winner, until=LATER, now=after)
    assert not store.acquire_lock("renewal", "old", until=LATER, now=after)


def test_history_id_compare_and_set_single_winner(store: SqlStore) -> None:
    store.save_provider(GmailProviderConfig(provider_id="g1", tenant="t", mailbox="a@b.c"))
    results = race(THREADS, lambda i: store.compare_and_set_history_id("g1", None, 100 + i))
    assert results.count(True) == 1
    config = store.get_provider("g1")
    assert isinstance(config, GmailProviderConfig)
    assert config.history_id == 100 + results.index(True)


def test_concurrent_partial_updates_lose_nothing(store: SqlStore) -> None:
    store.save_provider(GmailProviderConfig(provider_id="g1", tenant="t", mailbox="a@b.c"))
    fields = ["project_id", "pubsub_topic_name", "pubsub_subscription_name", "processed_label"]

    def update(index: int) -> None:
        store.update_provider("g1", {fields[index % len(fields)]: f"value-{index}"})

    race(len(fields), update)
    config = store.get_provider("g1")
    assert config is not None
    data = config.model_dump()
    assert all(data[name] == f"value-{i}" for i, name in enumerate(fields))
