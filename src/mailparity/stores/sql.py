"""``SqlStore``: every state protocol on a SQL database through SQLAlchemy 2 Core.

Meant for hosts that scale out: several web processes and workers sharing one PostgreSQL database
(SQLite works too, for tests and single-host deployments). The semantics are the ones documented
in :mod:`mailparity.protocols` and shared with the in-memory and SQLite stores
(:mod:`mailparity.stores._common`); concurrency is left to the database:

* jobs are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never wait
  on each other nor claim the same job; on SQLite every write runs under ``BEGIN IMMEDIATE``;
* at most one pending job per ``unique_key`` is a partial unique index; enqueuing is
  ``INSERT ... ON CONFLICT DO NOTHING``;
* dedupe keys are rows keyed by ``(provider_id, key)``: the primary key decides races;
* locks are one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired OR same owner RETURNING``.

The schema is versioned (:mod:`mailparity.stores.migrations`). Run ``mailparity db upgrade --url
URL`` (or :func:`upgrade_database`) when deploying a new release; ``SqlStore`` refuses to work on a
database whose schema is not the one it needs, unless ``auto_upgrade=True``.

Configs and tokens are stored with their secrets revealed (the library needs them back): protect
the database like any credential store. Errors are raised as :class:`~mailparity.errors.StoreError`
without SQL parameters, which may hold tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg
    from sqlalchemy.dialects import sqlite as sqlite_dialect
except ImportError as exc:
    from ..errors import missing_extra

    raise missing_extra("sql", "mailparity.stores.sql (SqlStore)") from exc

from ..errors import StoreError
from ..models import (
    Job,
    OAuthTokens,
    ProviderConfigBase,
    provider_config_from_dict,
    provider_config_to_storage,
    utcnow,
)
from ..protocols import ClaimOutcome, PruneCutoffs
from ._common import (
    LEASE_EXPIRED_ERROR,
    apply_config_changes,
    config_mailbox_key,
    config_subscription_id,
    cursor_swap,
    dedupe_claim_outcome,
    meta_key_matches,
    to_utc,
)
from .migrations import begin_write, check_dialect, current_version, latest_version, upgrade

__all__ = ["SqlStore", "current_version", "latest_version", "upgrade", "upgrade_database"]

AnyConfig = ProviderConfigBase
_T = TypeVar("_T")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    (SQLAlchemy's fixed-width text format, which sorts and compares correctly) and read back as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime | None, dialect: sa.Dialect
    ) -> datetime | None:
        return None if value is None else to_utc(value)


# The tables as the store queries them (the DDL lives in the migrations).
_meta = sa.MetaData()

providers_table = sa.Table(
    "providers",
    _meta,
    sa.Column("provider_id", sa.String(255), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("tenant", sa.String(255), nullable=False),
    sa.Column("mailbox", sa.String(320), nullable=False),
    sa.Column("mailbox_key", sa.String(320), nullable=False),
    sa.Column("subscription_id", sa.String(255)),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
tokens_table = sa.Table(
    "tokens",
    _meta,
    sa.Column("provider_id", sa.String(255), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
jobs_table = sa.Table(
    "jobs",
    _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("provider_id", sa.String(255), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("unique_key", sa.String(512)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("available_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lease_until", UtcDateTime),
    sa.Column("worker_id", sa.String(255)),
)
dedupe_table = sa.Table(
    "dedupe",
    _meta,
    sa.Column("provider_id", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(1024), primary_key=True),
    sa.Column("published", sa.String(16)),
    sa.Column("event_id", sa.String(64)),
    sa.Column("published_at", UtcDateTime),
    sa.Column("owner", sa.String(255)),
    sa.Column("lease_until", UtcDateTime),
)
locks_table = sa.Table(
    "locks",
    _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("until", UtcDateTime, nullable=False),
)
meta_table = sa.Table(
    "meta",
    _meta,
    sa.Column("provider_id", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime),
)


def upgrade_database(url: str) -> int:
    """Bring the database at ``url`` (a SQLAlchemy URL) to the schema this release needs and
    return its schema version. Used by ``mailparity db upgrade --url URL``; idempotent."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        # The URL may carry a password: name the problem, not the URL.
        raise StoreError(f"cannot open the database: {type(exc).__name__}: {exc}") from None
    try:
        check_dialect(engine)
        upgrade(engine)
        return current_version(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise _store_error("db upgrade", exc) from None
    finally:
        engine.dispose()


def _store_error(operation: str, exc: sa.exc.SQLAlchemyError) -> StoreError:
    # str(exc) of SQLAlchemy includes the statement's parameters, which may be tokens or secrets:
    # report the driver's error class, SQLSTATE and the first line of the driver's message only.
    orig = getattr(exc, "orig", None)
    message = f"SQL store: {operation} failed: "
    if isinstance(orig, BaseException):
        lines = str(orig).strip().splitlines()
        message += type(orig).__name__ + (f": {lines[0][:300]}" if lines else "")
    else:
        message += type(exc).__name__
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return StoreError(message, code=code if isinstance(code, str) else None)


def _insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's INSERT construct (both have ``on_conflict_do_*``)."""
    return pg.insert(table) if dialect == "postgresql" else sqlite_dialect.insert(table)


def _job_from_row(row: sa.Row[Any]) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        provider_id=row.provider_id,
        payload=json.loads(row.payload),
        unique_key=row.unique_key,
        attempts=row.attempts,
        available_at=row.available_at,
        created_at=row.created_at,
        last_error=row.last_error,
        status=row.status,
        lease_until=row.lease_until,
        worker_id=row.worker_id,
    )


def _config_from_text(text: str) -> AnyConfig:
    return provider_config_from_dict(json.loads(text))


def _config_row(config: AnyConfig) -> dict[str, Any]:
    return {
        "provider_id": config.provider_id,
        "provider": config.provider,
        "tenant": config.tenant,
        "mailbox": config.mailbox,
        "mailbox_key": config_mailbox_key(config.mailbox),
        "subscription_id": config_subscription_id(config),
        "config": json.dumps(provider_config_to_storage(config), sort_keys=True),
        "updated_at": utcnow(),
    }


class SqlStore:
    """Every protocol of :mod:`mailparity.protocols` on a SQLAlchemy ``Engine`` (PostgreSQL or
    SQLite), safe across threads and processes.

    Args:
        engine: a SQLAlchemy 2 engine (``postgresql+psycopg://...`` or ``sqlite:///path``). The
            store opens a pooled connection per operation and never keeps one between calls.
        auto_upgrade: apply missing schema migrations on construction. Off by default: production
            deployments run ``mailparity db upgrade`` once, not every process at start-up.

    Raises:
        StoreError: the schema is not at the version this release needs (run ``mailparity db
            upgrade --url URL``), or the database cannot be reached.
        ValueError: the engine is neither PostgreSQL nor SQLite.

    Semantics shared with the other shipped stores: ``complete_job`` deletes the job; re-claiming
    a running job whose lease expired counts as a failed attempt; ``enqueue_job`` returns False
    for a job id already stored; unknown job ids are ignored. Specific to this store:
    ``retry_job`` of a job whose ``unique_key`` is meanwhile held by another pending job drops the
    key from the retried job (both jobs stay; the pipeline is idempotent).
    """

    def __init__(self, engine: sa.Engine, *, auto_upgrade: bool = False) -> None:
        check_dialect(engine)
        self._engine = engine
        self._dialect = engine.dialect.name
        try:
            if auto_upgrade:
                upgrade(engine)
            version = current_version(engine)
        except sa.exc.SQLAlchemyError as exc:
            raise _store_error("schema check", exc) from None
        needed = latest_version()
        if version < needed:
            raise StoreError(
                f"the database schema is at version {version} but mailparity needs version"
                f" {needed}: run `mailparity db upgrade --url URL` (or create the store with"
                " auto_upgrade=True)",
                code="schema_outdated",
            )
        if version > needed:
            raise StoreError(
                f"the database schema is at version {version}, newer than the version {needed}"
                " this mailparity release knows: upgrade mailparity",
                code="schema_too_new",
            )

    def __repr__(self) -> str:
        # The URL's password is masked by SQLAlchemy's repr of the URL.
        return f"SqlStore({self._engine.url!r})"

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def engine(self) -> sa.Engine:
        """The engine the store runs on."""
        return self._engine

    def close(self) -> None:
        """Close the pooled connections of the engine (it reconnects if used again)."""
        self._engine.dispose()

    # ---------------------------------------------------------------- plumbing

    def _write(self, operation: str, work: Callable[[sa.Connection], _T]) -> _T:
        try:
            with begin_write(self._engine) as conn:
                return work(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise _store_error(operation, exc) from None

    @contextmanager
    def _read(self, operation: str) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise _store_error(operation, exc) from None

    def _for_update(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        # SQLite serializes writers with BEGIN IMMEDIATE and has no row locks.
        return stmt.with_for_update() if self._dialect == "postgresql" else stmt

    # ---------------------------------------------------------------- CredentialStore

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        """The tokens of ``provider_id``, or None."""
        with self._read("load_tokens") as conn:
            text = conn.execute(
                sa.select(tokens_table.c.data).where(tokens_table.c.provider_id == provider_id)
            ).scalar()
        return None if text is None else OAuthTokens.model_validate(json.loads(text))

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        """Store (replace) the tokens; durable (committed) when it returns."""
        values = {
            "provider_id": provider_id,
            "data": json.dumps(tokens.to_storage()),
            "updated_at": utcnow(),
        }

        def work(conn: sa.Connection) -> None:
            stmt = _insert(self._dialect, tokens_table).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[tokens_table.c.provider_id],
                    set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
                )
            )

        self._write("save_tokens", work)

    # ---------------------------------------------------------------- ProviderStore

    def get_provider(self, provider_id: str) -> AnyConfig | None:
        """The config of ``provider_id``, or None."""
        with self._read("get_provider") as conn:
            text = conn.execute(
                sa.select(providers_table.c.config).where(
                    providers_table.c.provider_id == provider_id
                )
            ).scalar()
        return None if text is None else _config_from_text(text)

    def find_provider_by_subscription(self, subscription_id: str) -> AnyConfig | None:
        """The provider whose push subscription id is ``subscription_id``."""
        with self._read("find_provider_by_subscription") as conn:
            text = conn.execute(
                sa.select(providers_table.c.config)
                .where(providers_table.c.subscription_id == subscription_id)
                .order_by(providers_table.c.provider_id)
                .limit(1)
            ).scalar()
        return None if text is None else _config_from_text(text)

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> AnyConfig | None:
        """The ``provider`` connection of ``mailbox`` (case-insensitive), or None."""
        with self._read("find_provider_by_mailbox") as conn:
            text = conn.execute(
                sa.select(providers_table.c.config)
                .where(
                    providers_table.c.provider == provider,
                    providers_table.c.mailbox_key == config_mailbox_key(mailbox),
                )
                .order_by(providers_table.c.provider_id)
                .limit(1)
            ).scalar()
        return None if text is None else _config_from_text(text)

    def save_provider(self, config: AnyConfig) -> None:
        """Insert or replace the config (keyed by ``provider_id``)."""
        row = _config_row(config)

        def work(conn: sa.Connection) -> None:
            stmt = _insert(self._dialect, providers_table).values(**row)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[providers_table.c.provider_id],
                    set_={name: stmt.excluded[name] for name in row if name != "provider_id"},
                )
            )

        self._write("save_provider", work)

    # ---------------------------------------------------------------- ProviderRegistry

    def list_providers(self) -> list[AnyConfig]:
        """Every stored config, ordered by ``provider_id``."""
        with self._read("list_providers") as conn:
            texts = conn.execute(
                sa.select(providers_table.c.config).order_by(providers_table.c.provider_id)
            ).scalars()
            return [_config_from_text(text) for text in texts]

    def _locked_config(self, conn: sa.Connection, provider_id: str) -> AnyConfig | None:
        text = conn.execute(
            self._for_update(
                sa.select(providers_table.c.config).where(
                    providers_table.c.provider_id == provider_id
                )
            )
        ).scalar()
        return None if text is None else _config_from_text(text)

    def _store_config(self, conn: sa.Connection, config: AnyConfig) -> None:
        row = _config_row(config)
        del row["provider_id"]
        conn.execute(
            providers_table.update()
            .where(providers_table.c.provider_id == config.provider_id)
            .values(**row)
        )

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> AnyConfig:
        """Atomically set ``changes`` on the stored config (row-locked read-modify-write).

        Raises ``KeyError`` for an unknown provider and ``ValueError`` for unknown fields."""

        def work(conn: sa.Connection) -> AnyConfig:
            current = self._locked_config(conn, provider_id)
            if current is None:
                raise KeyError(provider_id)
            updated = apply_config_changes(current, changes)
            self._store_config(conn, updated)
            return updated

        return self._write("update_provider", work)

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        """Set the provider's cursor to ``new`` only if it is still ``expected`` (row-locked)."""
        return self._compare_and_set("compare_and_set_cursor", provider_id, expected, new)

    def compare_and_set_history_id(
        self, provider_id: str, expected: int | None, new: int
    ) -> bool:
        """The former name of :meth:`compare_and_set_cursor` (a Gmail ``history_id`` only)."""
        return self._compare_and_set(
            "compare_and_set_history_id", provider_id, expected, int(new), legacy=True
        )

    def _compare_and_set(
        self, operation: str, provider_id: str, expected: Any, new: Any, *, legacy: bool = False
    ) -> bool:
        def work(conn: sa.Connection) -> bool:
            current = self._locked_config(conn, provider_id)
            if current is None:
                return False
            updated = cursor_swap(current, expected, new, legacy=legacy)
            if updated is None:
                return False
            self._store_config(conn, updated)
            return True

        return self._write(operation, work)

    def delete_provider(self, provider_id: str) -> None:
        """Remove the provider, its tokens, jobs, dedupe keys and meta values."""

        def work(conn: sa.Connection) -> None:
            for table in (providers_table, tokens_table, jobs_table, dedupe_table, meta_table):
                conn.execute(table.delete().where(table.c.provider_id == provider_id))

        self._write("delete_provider", work)

    # ---------------------------------------------------------------- DedupeStore

    def claim_keys(
        self, provider_id: str, keys: Sequence[str], owner: str, lease_until: datetime,
        now: datetime,
    ) -> ClaimOutcome:
        """Claim every key at once (see :class:`~mailparity.protocols.DedupeStore`)."""
        # Sorted: concurrent claimers lock the same rows in the same order (no deadlock).
        unique = sorted(set(keys))
        if not unique:
            return "claimed"
        d = dedupe_table.c

        def work(conn: sa.Connection) -> ClaimOutcome:
            # Make every key a row first, so that the rows (not gaps) can be locked; a key row
            # without claim nor publication means the same as no row.
            conn.execute(
                _insert(self._dialect, dedupe_table)
                .values([{"provider_id": provider_id, "key": key} for key in unique])
                .on_conflict_do_nothing()
            )
            rows = conn.execute(
                self._for_update(
                    sa.select(d.published, d.owner, d.lease_until)
                    .where(d.provider_id == provider_id, d.key.in_(unique))
                    .order_by(d.key)
                )
            ).all()
            outcome = dedupe_claim_outcome(
                [(row.published, row.owner, row.lease_until) for row in rows], owner, now
            )
            if outcome == "claimed":
                conn.execute(
                    dedupe_table.update()
                    .where(d.provider_id == provider_id, d.key.in_(unique))
                    .values(owner=owner, lease_until=to_utc(lease_until))
                )
            else:
                # Leave no placeholder rows behind for keys nobody holds.
                conn.execute(
                    dedupe_table.delete().where(
                        d.provider_id == provider_id,
                        d.key.in_(unique),
                        d.published.is_(None),
                        d.owner.is_(None),
                    )
                )
            return outcome

        return self._write("claim_keys", work)

    def mark_published(
        self, provider_id: str, keys: Sequence[str], *, complete: bool, event_id: str,
        at: datetime,
    ) -> None:
        """Record the keys as published (never downgrading complete to minimal)."""
        unique = sorted(set(keys))
        if not unique:
            return
        state = "complete" if complete else "minimal"
        when = to_utc(at)

        def work(conn: sa.Connection) -> None:
            stmt = _insert(self._dialect, dedupe_table).values(
                [
                    {
                        "provider_id": provider_id,
                        "key": key,
                        "published": state,
                        "event_id": event_id,
                        "published_at": when,
                    }
                    for key in unique
                ]
            )
            keep_complete = dedupe_table.c.published == "complete"
            if complete:
                changes: dict[str, Any] = {
                    "published": stmt.excluded.published,
                    "event_id": stmt.excluded.event_id,
                    "published_at": stmt.excluded.published_at,
                }
            else:
                changes = {
                    name: sa.case(
                        (keep_complete, dedupe_table.c[name]), else_=stmt.excluded[name]
                    )
                    for name in ("published", "event_id", "published_at")
                }
            changes.update(owner=None, lease_until=None)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[dedupe_table.c.provider_id, dedupe_table.c.key], set_=changes
                )
            )

        self._write("mark_published", work)

    def release_keys(self, provider_id: str, keys: Sequence[str], owner: str) -> None:
        """Drop ``owner``'s claim on the keys that are not published complete."""
        unique = sorted(set(keys))
        if not unique:
            return
        d = dedupe_table.c
        held = sa.and_(
            d.provider_id == provider_id,
            d.key.in_(unique),
            d.owner == owner,
            sa.or_(d.published.is_(None), d.published != "complete"),
        )

        def work(conn: sa.Connection) -> None:
            conn.execute(dedupe_table.delete().where(held, d.published.is_(None)))
            conn.execute(dedupe_table.update().where(held).values(owner=None, lease_until=None))

        self._write("release_keys", work)

    def published_state(self, provider_id: str, key: str) -> Literal["complete", "minimal"] | None:
        """How the key was published, or None."""
        with self._read("published_state") as conn:
            value = conn.execute(
                sa.select(dedupe_table.c.published).where(
                    dedupe_table.c.provider_id == provider_id, dedupe_table.c.key == key
                )
            ).scalar()
        if value in ("complete", "minimal"):
            return cast(Literal["complete", "minimal"], value)
        return None

    # ---------------------------------------------------------------- JobStore

    def enqueue_job(self, job: Job) -> bool:
        """Store the job; False when its id exists or a pending job has its ``unique_key``."""
        values = {
            "id": job.id,
            "kind": job.kind,
            "provider_id": job.provider_id,
            "payload": json.dumps(job.payload, sort_keys=True),
            "unique_key": job.unique_key,
            "attempts": job.attempts,
            "available_at": job.available_at,
            "created_at": job.created_at,
            "last_error": job.last_error,
            "status": job.status,
            "lease_until": job.lease_until,
            "worker_id": job.worker_id,
        }

        def work(conn: sa.Connection) -> bool:
            # No conflict target: a duplicate id and a pending duplicate unique_key (the partial
            # unique index) are both "not stored", decided by the database under concurrency.
            # RETURNING rather than rowcount: drivers do not all report rowcount for INSERT.
            inserted = conn.execute(
                _insert(self._dialect, jobs_table)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(jobs_table.c.id)
            ).first()
            return inserted is not None

        return self._write("enqueue_job", work)

    def claim_jobs(
        self, worker_id: str, *, limit: int, now: datetime, lease_until: datetime,
        kinds: Sequence[str] | None = None, provider_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` claimable jobs, oldest ``available_at`` first.

        On PostgreSQL the candidates are selected ``FOR UPDATE SKIP LOCKED``: concurrent workers
        skip each other's rows instead of waiting, and a row is never claimed twice.
        """
        if limit <= 0:
            return []
        now = to_utc(now)
        until = to_utc(lease_until)
        j = jobs_table.c
        expired = sa.and_(j.status == "running", j.lease_until < now)
        conditions: list[sa.ColumnElement[bool]] = [
            sa.or_(sa.and_(j.status == "pending", j.available_at <= now), expired)
        ]
        if kinds is not None:
            conditions.append(j.kind.in_(list(kinds)))
        if provider_ids is not None:
            conditions.append(j.provider_id.in_(list(provider_ids)))
        picked = (
            sa.select(j.id)
            .where(*conditions)
            .order_by(j.available_at, j.created_at, j.id)
            .limit(limit)
        )
        picked_ids: sa.ScalarSelect[Any] | sa.Select[Any]
        if self._dialect == "postgresql":
            # A MATERIALIZED CTE runs the locking select exactly once: the UPDATE then touches
            # only rows this transaction has locked, never rows it would have to wait for.
            cte = (
                picked.with_for_update(skip_locked=True)
                .cte("picked")
                .prefix_with("MATERIALIZED")
            )
            picked_ids = sa.select(cte.c.id)
        else:
            picked_ids = picked.scalar_subquery()

        def work(conn: sa.Connection) -> list[Job]:
            rows = conn.execute(
                jobs_table.update()
                .where(j.id.in_(picked_ids))
                .values(
                    # An expired lease means the worker died mid-job: that counts as an attempt.
                    attempts=sa.case((expired, j.attempts + 1), else_=j.attempts),
                    last_error=sa.case((expired, LEASE_EXPIRED_ERROR), else_=j.last_error),
                    status="running",
                    worker_id=worker_id,
                    lease_until=until,
                )
                .returning(*jobs_table.c)
            ).all()
            jobs = [_job_from_row(row) for row in rows]
            jobs.sort(key=lambda job: (job.available_at, job.created_at, job.id))
            return jobs

        return self._write("claim_jobs", work)

    def complete_job(self, job_id: str) -> None:
        """The job is done: delete it."""
        self._write(
            "complete_job",
            lambda conn: conn.execute(jobs_table.delete().where(jobs_table.c.id == job_id)),
        )

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        """Put the job back to pending at ``available_at`` with ``attempts`` + 1."""
        j = jobs_table.c
        changes = {
            "status": "pending",
            "attempts": j.attempts + 1,
            "available_at": to_utc(available_at),
            "last_error": error,
            "worker_id": None,
            "lease_until": None,
        }
        stmt = jobs_table.update().where(j.id == job_id).values(**changes)

        def work(conn: sa.Connection) -> None:
            try:
                with conn.begin_nested():
                    conn.execute(stmt)
            except sa.exc.IntegrityError:
                # Another pending job took the unique_key meanwhile (the partial unique index
                # refused the update): keep both jobs, the retried one without the key.
                conn.execute(stmt.values(unique_key=None))

        self._write("retry_job", work)

    def bury_job(self, job_id: str, *, error: str) -> None:
        """Mark the job dead (kept for inspection, never claimed again)."""
        j = jobs_table.c
        self._write(
            "bury_job",
            lambda conn: conn.execute(
                jobs_table.update()
                .where(j.id == job_id)
                .values(
                    status="dead",
                    attempts=j.attempts + 1,
                    last_error=error,
                    worker_id=None,
                    lease_until=None,
                )
            ),
        )

    def list_jobs(
        self, *, status: str | None = None, provider_id: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs for inspection, oldest ``available_at`` first."""
        j = jobs_table.c
        stmt = sa.select(jobs_table).order_by(j.available_at, j.created_at, j.id)
        if status is not None:
            stmt = stmt.where(j.status == status)
        if provider_id is not None:
            stmt = stmt.where(j.provider_id == provider_id)
        stmt = stmt.limit(max(limit, 0))
        with self._read("list_jobs") as conn:
            return [_job_from_row(row) for row in conn.execute(stmt)]

    def count_jobs(self, *, status: str | None = None) -> int:
        """How many jobs have ``status`` (all when None)."""
        stmt = sa.select(sa.func.count()).select_from(jobs_table)
        if status is not None:
            stmt = stmt.where(jobs_table.c.status == status)
        with self._read("count_jobs") as conn:
            return int(conn.execute(stmt).scalar_one())

    def jobs_summary(self) -> dict[str, int]:
        """How many jobs have each status (statuses without jobs are left out)."""
        stmt = sa.select(jobs_table.c.status, sa.func.count()).group_by(jobs_table.c.status)
        with self._read("jobs_summary") as conn:
            return {status: int(count) for status, count in conn.execute(stmt)}

    # ---------------------------------------------------------------- LockStore

    def acquire_lock(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        """Take ``name`` for ``owner`` until ``until`` if free, expired or already ``owner``'s.

        One statement: the insert wins when there is no row; otherwise the conflicting row is
        updated only under the WHERE (expired or same owner), and RETURNING says who won.
        """
        locks = locks_table.c

        def work(conn: sa.Connection) -> bool:
            stmt = _insert(self._dialect, locks_table).values(
                name=name, owner=owner, until=to_utc(until)
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[locks.name],
                set_={"owner": stmt.excluded.owner, "until": stmt.excluded.until},
                where=sa.or_(locks.until < to_utc(now), locks.owner == owner),
            ).returning(locks.name)
            return conn.execute(stmt).first() is not None

        return self._write("acquire_lock", work)

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it."""
        self._write(
            "release_lock",
            lambda conn: conn.execute(
                locks_table.delete().where(
                    locks_table.c.name == name, locks_table.c.owner == owner
                )
            ),
        )

    # ---------------------------------------------------------------- MetaStore

    def get_meta(self, provider_id: str, key: str) -> str | None:
        """The value, or None."""
        with self._read("get_meta") as conn:
            value = conn.execute(
                sa.select(meta_table.c.value).where(
                    meta_table.c.provider_id == provider_id, meta_table.c.key == key
                )
            ).scalar()
        return None if value is None else str(value)

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        """Set the value; None deletes it."""

        def work(conn: sa.Connection) -> None:
            where = sa.and_(meta_table.c.provider_id == provider_id, meta_table.c.key == key)
            if value is None:
                conn.execute(meta_table.delete().where(where))
                return
            stmt = _insert(self._dialect, meta_table).values(
                provider_id=provider_id, key=key, value=value, updated_at=utcnow()
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[meta_table.c.provider_id, meta_table.c.key],
                    set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
                )
            )

        self._write("set_meta", work)

    # ---------------------------------------------------------------- RetentionStore

    def prune(self, cutoffs: PruneCutoffs) -> dict[str, int]:
        """Delete finished state older than ``cutoffs`` (see ``RetentionStore``)."""
        d = dedupe_table.c
        dedupe_before = to_utc(cutoffs.dedupe_before)
        meta_before = to_utc(cutoffs.meta_before)

        def work(conn: sa.Connection) -> dict[str, int]:
            dedupe = conn.execute(
                dedupe_table.delete().where(
                    sa.or_(
                        sa.and_(d.published.is_not(None), d.published_at < dedupe_before),
                        sa.and_(
                            d.published.is_(None),
                            sa.or_(d.lease_until.is_(None), d.lease_until < dedupe_before),
                        ),
                    )
                )
            ).rowcount
            counts = {"dedupe": int(dedupe)}
            for name, status, before in (
                ("done_jobs", "done", cutoffs.done_jobs_before),
                ("dead_jobs", "dead", cutoffs.dead_jobs_before),
            ):
                deleted = conn.execute(
                    jobs_table.delete().where(
                        jobs_table.c.status == status, jobs_table.c.available_at < to_utc(before)
                    )
                ).rowcount
                counts[name] = int(deleted)
            m = meta_table.c
            # The prefixes are few; matching them in Python keeps LIKE's wildcards out of it.
            stale = [
                (row.provider_id, row.key)
                for row in conn.execute(
                    sa.select(m.provider_id, m.key).where(m.updated_at < meta_before)
                )
                if meta_key_matches(row.key, cutoffs.meta_prefixes)
            ]
            for provider_id, key in stale:
                conn.execute(
                    meta_table.delete().where(
                        m.provider_id == provider_id, m.key == key, m.updated_at < meta_before
                    )
                )
            counts["meta"] = len(stale)
            return counts

        return self._write("prune", work)

