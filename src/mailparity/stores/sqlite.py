"""``SqliteStore``: every state protocol in one durable SQLite file, the embedded default.

Safe across threads (one connection per thread; ``":memory:"`` uses one connection behind a lock)
and across processes: the file runs in WAL mode with a busy timeout, and every read-modify-write
(claiming jobs and dedupe keys, locks, provider updates, the Gmail cursor compare-and-set, the
``unique_key`` check of ``enqueue_job``) runs in a ``BEGIN IMMEDIATE`` transaction, which takes
SQLite's write lock before reading so two processes cannot both act on the same snapshot.

Writes use ``synchronous=FULL``: the protocols require tokens and jobs to be durable when the call
returns (Microsoft rotates refresh tokens; a lost save locks the mailbox out).

Provider configs are stored as JSON with their secrets revealed (tokens too): protect the file as
you would protect the secrets themselves. The schema is versioned in ``schema_version``; opening a
file written by an older release upgrades it in place, opening one from a newer release fails.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from ..errors import StoreError
from ..models import (
    Job,
    OAuthTokens,
    ProviderConfigBase,
    provider_config_from_dict,
    provider_config_to_storage,
)
from ..protocols import ClaimOutcome, PruneCutoffs
from ._common import (
    LEASE_EXPIRED_ERROR,
    apply_config_changes,
    config_mailbox_key,
    config_subscription_id,
    cursor_swap,
    dedupe_claim_outcome,
    from_micros,
    meta_key_matches,
    normalize_config,
    to_micros,
    utc_now_micros,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

AnyConfig = ProviderConfigBase

# Each entry upgrades the schema from the previous version; never edit a released entry, append.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE providers (
                provider_id TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                mailbox_key TEXT NOT NULL,
                subscription_id TEXT,
                data TEXT NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            "CREATE INDEX providers_mailbox ON providers (provider, mailbox_key)",
            "CREATE INDEX providers_subscription ON providers (subscription_id)"
            " WHERE subscription_id IS NOT NULL",
            """CREATE TABLE tokens (
                provider_id TEXT PRIMARY KEY,
                data TEXT NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            """CREATE TABLE dedupe (
                provider_id TEXT NOT NULL,
                key TEXT NOT NULL,
                published TEXT CHECK (published IN ('complete', 'minimal')),
                event_id TEXT,
                published_at INTEGER,
                owner TEXT,
                lease_until INTEGER,
                PRIMARY KEY (provider_id, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                provider_id TEXT NOT NULL,
                payload TEXT NOT NULL,
                unique_key TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                available_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                last_error TEXT,
                status TEXT NOT NULL,
                lease_until INTEGER,
                worker_id TEXT
            )""",
            "CREATE INDEX jobs_available ON jobs (status, available_at)",
            "CREATE INDEX jobs_lease ON jobs (status, lease_until)",
            "CREATE INDEX jobs_unique ON jobs (unique_key, status) WHERE unique_key IS NOT NULL",
            "CREATE INDEX jobs_provider ON jobs (provider_id)",
            """CREATE TABLE locks (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                until INTEGER NOT NULL
            )""",
            """CREATE TABLE meta (
                provider_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (provider_id, key)
            ) WITHOUT ROWID""",
        ),
    ),
    (
        2,
        (
            # When each meta value was last set (the retention sweep prunes per-message values by
            # age). Rows from before the upgrade count as set at the upgrade.
            "ALTER TABLE meta ADD COLUMN updated_at INTEGER",
            "UPDATE meta SET updated_at ="
            " CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)",
            "CREATE INDEX dedupe_published_at ON dedupe (published_at)",
        ),
    ),
)

#: The schema version this release writes.
SCHEMA_VERSION = _MIGRATIONS[-1][0]

# Stay well under SQLite's bound-parameter limit (999 before 3.32).
_CHUNK = 400

_JOB_COLUMNS = (
    "id, kind, provider_id, payload, unique_key, attempts, available_at, created_at, last_error,"
    " status, lease_until, worker_id"
)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store a {type(value).__name__} in JSON")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def _job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        kind=row[1],
        provider_id=row[2],
        payload=json.loads(row[3]),
        unique_key=row[4],
        attempts=row[5],
        available_at=from_micros(row[6]),
        created_at=from_micros(row[7]),
        last_error=row[8],
        status=row[9],
        lease_until=None if row[10] is None else from_micros(row[10]),
        worker_id=row[11],
    )


def _create_private(path: str) -> None:
    """Create the database file with mode 0600, whatever the umask, unless it exists.

    The store holds refresh tokens, client secrets and clientState values. SQLite creates its
    ``-wal`` and ``-shm`` files with the mode of the database file, so they are 0600 too. An
    existing file keeps its mode: it is the owner's to choose. An empty file is a valid empty
    database; a failure here is left for ``sqlite3.connect`` to report."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    try:
        if hasattr(os, "fchmod"):  # POSIX; the umask may have removed owner bits
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SqliteStore:
    """A durable implementation of every protocol in ``mailparity.protocols`` on one SQLite file.

    ``path``: the database file (created with mode 0600 when missing, and so its ``-wal`` and
    ``-shm`` files), or ``":memory:"`` for a private, volatile
    database (one connection shared by the threads of this process). ``timeout``: how long (in
    seconds) a call waits for another connection's write lock before raising
    :class:`~mailparity.errors.StoreError`.

    Semantics (shared with :class:`~mailparity.stores.memory.InMemoryStore`):

    * ``complete_job`` deletes the job, so ``count_jobs(status="done")`` is always 0.
    * ``claim_jobs`` also takes running jobs whose lease expired (their worker died); such a
      re-claim counts as a failed attempt (``attempts`` + 1, ``last_error`` set).
    * ``enqueue_job`` returns False when the job id is already stored.
    * ``retry_job`` / ``bury_job`` / ``complete_job`` of an unknown job id do nothing.
    * ``compare_and_set_history_id`` returns False for an unknown provider.

    Every ``sqlite3`` failure surfaces as :class:`~mailparity.errors.StoreError`. Use it as a
    context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self._path = os.fspath(path)
        self._timeout = float(timeout)
        self._memory = self._path in (":memory:", "")
        self._closed = False
        self._pid = os.getpid()
        self._registry_lock = threading.Lock()
        self._local = threading.local()
        # Connections by thread, so close() can reach the ones other threads opened.
        self._connections: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._shared: sqlite3.Connection | None = None
        self._shared_lock: AbstractContextManager[Any] = (
            threading.RLock() if self._memory else nullcontext()
        )
        if not self._memory:
            _create_private(self._path)
        try:
            first = self._connect()
            if not self._memory:
                # WAL is a property of the file: set once, every later connection uses it.
                mode = first.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"could not switch the SQLite file to WAL mode ({mode})")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store: {exc}") from exc
        if self._memory:
            self._shared = first
        else:
            self._register(first)
        self._migrate()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SqliteStore({self._path!r}, {state})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The database path as given."""
        return self._path

    def close(self) -> None:
        """Close every connection of this store; later calls raise ``StoreError``."""
        with self._registry_lock:
            self._closed = True
            connections = [conn for _, conn in self._connections.values()]
            self._connections.clear()
            if self._shared is not None:
                connections.append(self._shared)
                self._shared = None
        for conn in connections:
            with suppress(sqlite3.Error):  # closing is best effort
                conn.close()

    # ---------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN IMMEDIATE
            check_same_thread=False,  # each file connection is used by one thread only
        )
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _register(self, conn: sqlite3.Connection) -> None:
        current = threading.current_thread()
        self._local.conn = conn
        self._local.pid = os.getpid()
        stale: list[sqlite3.Connection] = []
        with self._registry_lock:
            # Connections of finished threads would otherwise stay open until close().
            for ident, (thread, other) in list(self._connections.items()):
                if not thread.is_alive():
                    stale.append(other)
                    del self._connections[ident]
            self._connections[current.ident or 0] = (current, conn)
        for other in stale:
            with suppress(sqlite3.Error):
                other.close()

    def _get_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the SQLite store is closed")
        if self._shared is not None:
            return self._shared
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        if os.getpid() != self._pid:
            # After fork the parent's connections must not be used (or closed) by the child.
            with self._registry_lock:
                self._connections.clear()
                self._pid = os.getpid()
        conn = self._connect()
        self._register(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._shared_lock:
            try:
                yield self._get_connection()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store operation failed: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database write lock from its first statement."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with suppress(sqlite3.Error):  # the transaction may be gone already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the SQLite store has schema version {current}, newer than this release"
                    f" supports ({SCHEMA_VERSION}); upgrade mailparity"
                )
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, utc_now_micros()),
                )

    def schema_version(self) -> int:
        """The schema version of the open file."""
        with self._connection() as conn:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def journal_mode(self) -> str:
        """The journal mode in force (``"wal"`` for files, ``"memory"`` for ``":memory:"``)."""
        with self._connection() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # ---------------------------------------------------------------- CredentialStore

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM tokens WHERE provider_id = ?", (provider_id,)
            ).fetchone()
        return None if row is None else OAuthTokens.model_validate(json.loads(row[0]))

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO tokens (provider_id, data, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (provider_id) DO UPDATE SET data = excluded.data,"
                " updated_at = excluded.updated_at",
                (provider_id, _dumps(tokens.to_storage()), utc_now_micros()),
            )

    # ---------------------------------------------------------------- ProviderStore

    @staticmethod
    def _config_from_row(row: Sequence[Any] | None) -> AnyConfig | None:
        return None if row is None else provider_config_from_dict(json.loads(row[0]))

    def get_provider(self, provider_id: str) -> AnyConfig | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM providers WHERE provider_id = ?", (provider_id,)
            ).fetchone()
        return self._config_from_row(row)

    def find_provider_by_subscription(self, subscription_id: str) -> AnyConfig | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM providers WHERE subscription_id = ?"
                " ORDER BY provider_id LIMIT 1",
                (subscription_id,),
            ).fetchone()
        return self._config_from_row(row)

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> AnyConfig | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM providers WHERE provider = ? AND mailbox_key = ?"
                " ORDER BY provider_id LIMIT 1",
                (provider, config_mailbox_key(mailbox)),
            ).fetchone()
        return self._config_from_row(row)

    @staticmethod
    def _write_provider(conn: sqlite3.Connection, config: AnyConfig) -> None:
        config = normalize_config(config)
        conn.execute(
            "INSERT INTO providers"
            " (provider_id, provider, mailbox_key, subscription_id, data, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (provider_id) DO UPDATE SET provider = excluded.provider,"
            " mailbox_key = excluded.mailbox_key, subscription_id = excluded.subscription_id,"
            " data = excluded.data, updated_at = excluded.updated_at",
            (
                config.provider_id,
                config.provider,
                config_mailbox_key(config.mailbox),
                config_subscription_id(config),
                _dumps(provider_config_to_storage(config)),
                utc_now_micros(),
            ),
        )

    def save_provider(self, config: AnyConfig) -> None:
        with self._connection() as conn:
            self._write_provider(conn, config)

    # ---------------------------------------------------------------- ProviderRegistry

    def list_providers(self) -> list[AnyConfig]:
        with self._connection() as conn:
            rows = conn.execute("SELECT data FROM providers ORDER BY provider_id").fetchall()
        return [provider_config_from_dict(json.loads(row[0])) for row in rows]

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> AnyConfig:
        with self._transaction() as conn:
            current = self._config_from_row(
                conn.execute(
                    "SELECT data FROM providers WHERE provider_id = ?", (provider_id,)
                ).fetchone()
            )
            if current is None:
                raise KeyError(provider_id)
            updated = apply_config_changes(current, changes)
            self._write_provider(conn, updated)
        return updated

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        return self._compare_and_set(provider_id, expected, new, legacy=False)

    def compare_and_set_history_id(
        self, provider_id: str, expected: int | None, new: int
    ) -> bool:
        """The former name of :meth:`compare_and_set_cursor` (a Gmail ``history_id`` only)."""
        return self._compare_and_set(provider_id, expected, int(new), legacy=True)

    def _compare_and_set(self, provider_id: str, expected: Any, new: Any, *, legacy: bool) -> bool:
        with self._transaction() as conn:
            current = self._config_from_row(
                conn.execute(
                    "SELECT data FROM providers WHERE provider_id = ?", (provider_id,)
                ).fetchone()
            )
            if current is None:
                return False
            updated = cursor_swap(current, expected, new, legacy=legacy)
            if updated is None:
                return False
            self._write_provider(conn, updated)
            return True

    def delete_provider(self, provider_id: str) -> None:
        with self._transaction() as conn:
            for table in ("providers", "tokens", "dedupe", "jobs", "meta"):
                # Table names come from the literal tuple above, never from input.
                conn.execute(f"DELETE FROM {table} WHERE provider_id = ?", (provider_id,))  # noqa: S608

    # ---------------------------------------------------------------- DedupeStore

    def claim_keys(
        self, provider_id: str, keys: Sequence[str], owner: str, lease_until: datetime,
        now: datetime,
    ) -> ClaimOutcome:
        unique = list(dict.fromkeys(keys))
        until = to_micros(lease_until)
        with self._transaction() as conn:
            records: list[tuple[str | None, str | None, datetime | None]] = []
            for chunk in _chunks(unique):
                rows = conn.execute(
                    "SELECT published, owner, lease_until FROM dedupe"  # noqa: S608
                    f" WHERE provider_id = ? AND key IN ({_placeholders(len(chunk))})",
                    (provider_id, *chunk),
                ).fetchall()
                records.extend(
                    (r[0], r[1], None if r[2] is None else from_micros(r[2])) for r in rows
                )
            outcome = dedupe_claim_outcome(records, owner, now)
            if outcome != "claimed":
                return outcome
            conn.executemany(
                "INSERT INTO dedupe (provider_id, key, owner, lease_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider_id, key) DO UPDATE SET owner = excluded.owner,"
                " lease_until = excluded.lease_until",
                [(provider_id, key, owner, until) for key in unique],
            )
        return "claimed"

    def mark_published(
        self, provider_id: str, keys: Sequence[str], *, complete: bool, event_id: str,
        at: datetime,
    ) -> None:
        state = "complete" if complete else "minimal"
        at_micros = to_micros(at)
        with self._transaction() as conn:
            # Never downgrade: a minimal event after a complete one keeps the complete record.
            conn.executemany(
                "INSERT INTO dedupe (provider_id, key, published, event_id, published_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (provider_id, key) DO UPDATE SET"
                " event_id = CASE WHEN dedupe.published = 'complete'"
                "   AND excluded.published = 'minimal' THEN dedupe.event_id"
                "   ELSE excluded.event_id END,"
                " published_at = CASE WHEN dedupe.published = 'complete'"
                "   AND excluded.published = 'minimal' THEN dedupe.published_at"
                "   ELSE excluded.published_at END,"
                " published = CASE WHEN dedupe.published = 'complete' THEN 'complete'"
                "   ELSE excluded.published END,"
                " owner = NULL, lease_until = NULL",
                [(provider_id, key, state, event_id, at_micros) for key in dict.fromkeys(keys)],
            )

    def release_keys(self, provider_id: str, keys: Sequence[str], owner: str) -> None:
        unique = list(dict.fromkeys(keys))
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE dedupe SET owner = NULL, lease_until = NULL"
                " WHERE provider_id = ? AND key = ? AND owner = ?"
                " AND (published IS NULL OR published <> 'complete')",
                [(provider_id, key, owner) for key in unique],
            )
            conn.executemany(
                "DELETE FROM dedupe WHERE provider_id = ? AND key = ?"
                " AND published IS NULL AND owner IS NULL",
                [(provider_id, key) for key in unique],
            )

    def published_state(self, provider_id: str, key: str) -> Literal["complete", "minimal"] | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT published FROM dedupe WHERE provider_id = ? AND key = ?",
                (provider_id, key),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return "complete" if row[0] == "complete" else "minimal"

    # ---------------------------------------------------------------- JobStore

    def enqueue_job(self, job: Job) -> bool:
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                return False
            if job.unique_key is not None and conn.execute(
                "SELECT 1 FROM jobs WHERE unique_key = ? AND status = 'pending' LIMIT 1",
                (job.unique_key,),
            ).fetchone():
                return False
            conn.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({_placeholders(12)})",  # noqa: S608
                (
                    job.id,
                    job.kind,
                    job.provider_id,
                    _dumps(job.payload),
                    job.unique_key,
                    job.attempts,
                    to_micros(job.available_at),
                    to_micros(job.created_at),
                    job.last_error,
                    job.status,
                    None if job.lease_until is None else to_micros(job.lease_until),
                    job.worker_id,
                ),
            )
        return True

    def claim_jobs(
        self, worker_id: str, *, limit: int, now: datetime, lease_until: datetime,
        kinds: Sequence[str] | None = None, provider_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        if limit <= 0 or (kinds is not None and not kinds):
            return []
        if provider_ids is not None and not provider_ids:
            return []
        now_micros = to_micros(now)
        where = [
            "((status = 'pending' AND available_at <= ?)"
            " OR (status = 'running' AND lease_until < ?))"
        ]
        params: list[Any] = [now_micros, now_micros]
        if kinds is not None:
            where.append(f"kind IN ({_placeholders(len(kinds))})")
            params.extend(kinds)
        if provider_ids is not None:
            where.append(f"provider_id IN ({_placeholders(len(provider_ids))})")
            params.extend(provider_ids)
        params.append(int(limit))
        with self._transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM jobs WHERE {' AND '.join(where)}"  # noqa: S608
                    " ORDER BY available_at, created_at, id LIMIT ?",
                    params,
                ).fetchall()
            ]
            if not ids:
                return []
            conn.executemany(
                "UPDATE jobs SET"
                " attempts = attempts + (CASE WHEN status = 'running' THEN 1 ELSE 0 END),"
                " last_error = CASE WHEN status = 'running' THEN ? ELSE last_error END,"
                " status = 'running', worker_id = ?, lease_until = ? WHERE id = ?",
                [(LEASE_EXPIRED_ERROR, worker_id, to_micros(lease_until), i) for i in ids],
            )
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs"  # noqa: S608
                f" WHERE id IN ({_placeholders(len(ids))})",
                ids,
            ).fetchall()
        by_id = {row[0]: _job_from_row(row) for row in rows}
        return [by_id[i] for i in ids]

    def complete_job(self, job_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'pending', attempts = attempts + 1, available_at = ?,"
                " last_error = ?, worker_id = NULL, lease_until = NULL WHERE id = ?",
                (to_micros(available_at), error, job_id),
            )

    def bury_job(self, job_id: str, *, error: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'dead', attempts = attempts + 1, last_error = ?,"
                " worker_id = NULL, lease_until = NULL WHERE id = ?",
                (error, job_id),
            )

    def list_jobs(
        self, *, status: str | None = None, provider_id: str | None = None, limit: int = 100
    ) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if provider_id is not None:
            where.append("provider_id = ?")
            params.append(provider_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        params.append(max(int(limit), 0))
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs{clause}"  # noqa: S608
                " ORDER BY available_at, created_at, id LIMIT ?",
                params,
            ).fetchall()
        return [_job_from_row(row) for row in rows]

    def count_jobs(self, *, status: str | None = None) -> int:
        with self._connection() as conn:
            if status is None:
                row = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)
                ).fetchone()
        return int(row[0])

    def jobs_summary(self) -> dict[str, int]:
        """How many jobs have each status (statuses without jobs are left out)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    # ---------------------------------------------------------------- LockStore

    def acquire_lock(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        with self._transaction() as conn:
            row = conn.execute("SELECT owner, until FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] >= to_micros(now):
                return False
            conn.execute(
                "INSERT INTO locks (name, owner, until) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until",
                (name, owner, to_micros(until)),
            )
        return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    # ---------------------------------------------------------------- MetaStore

    def get_meta(self, provider_id: str, key: str) -> str | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT value FROM meta WHERE provider_id = ? AND key = ?", (provider_id, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        with self._connection() as conn:
            if value is None:
                conn.execute(
                    "DELETE FROM meta WHERE provider_id = ? AND key = ?", (provider_id, key)
                )
            else:
                conn.execute(
                    "INSERT INTO meta (provider_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (provider_id, key) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    (provider_id, key, value, utc_now_micros()),
                )

    # ---------------------------------------------------------------- RetentionStore

    def prune(self, cutoffs: PruneCutoffs) -> dict[str, int]:
        dedupe_before = to_micros(cutoffs.dedupe_before)
        meta_before = to_micros(cutoffs.meta_before)
        with self._transaction() as conn:
            dedupe = conn.execute(
                "DELETE FROM dedupe WHERE (published IS NOT NULL AND published_at < ?)"
                " OR (published IS NULL AND (lease_until IS NULL OR lease_until < ?))",
                (dedupe_before, dedupe_before),
            ).rowcount
            done = conn.execute(
                "DELETE FROM jobs WHERE status = 'done' AND available_at < ?",
                (to_micros(cutoffs.done_jobs_before),),
            ).rowcount
            dead = conn.execute(
                "DELETE FROM jobs WHERE status = 'dead' AND available_at < ?",
                (to_micros(cutoffs.dead_jobs_before),),
            ).rowcount
            # The prefixes are few; matching them in Python keeps LIKE's wildcards out of it.
            stale = [
                (row[0], row[1])
                for row in conn.execute(
                    "SELECT provider_id, key FROM meta WHERE updated_at < ?", (meta_before,)
                ).fetchall()
                if meta_key_matches(row[1], cutoffs.meta_prefixes)
            ]
            conn.executemany(
                "DELETE FROM meta WHERE provider_id = ? AND key = ? AND updated_at < ?",
                [(pid, key, meta_before) for pid, key in stale],
            )
        return {"dedupe": dedupe, "done_jobs": done, "dead_jobs": dead, "meta": len(stale)}
