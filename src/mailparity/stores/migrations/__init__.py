"""Versioned schema migrations of :class:`~mailparity.stores.sql.SqlStore`.

Each migration is a module ``vNNNN_<name>.py`` in this package with an ``upgrade(connection)``
function. :func:`upgrade` applies the missing ones in version order, each in its own transaction
together with the row that records it in ``schema_version``, so a crash leaves the database at a
known version. Concurrent upgraders are serialized (a transaction-scoped advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): the loser sees the version recorded and skips it.

Never edit a released migration: add a new module instead.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

__all__ = [
    "MIGRATIONS",
    "SUPPORTED_DIALECTS",
    "Migration",
    "begin_write",
    "current_version",
    "latest_version",
    "schema_version_table",
    "upgrade",
]

#: Dialects whose upsert, row locking and partial indexes the SQL store relies on.
SUPPORTED_DIALECTS = ("postgresql", "sqlite")

# An arbitrary constant: the key of the PostgreSQL advisory lock held while migrating.
_ADVISORY_LOCK_KEY = 0x6D61696C70617231  # "mailpar1"

_MODULE_NAME = re.compile(r"^v(\d{4})_[a-z0-9_]+$")

_meta = sa.MetaData()

#: One row per applied migration.
schema_version_table = sa.Table(
    "schema_version",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (from the module name), ``name`` and its ``upgrade``."""

    version: int
    name: str
    upgrade: Callable[[sa.Connection], None]


def _discover() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        match = _MODULE_NAME.match(info.name)
        if match is None:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(match.group(1)), info.name, module.upgrade))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..n without gaps, found {versions}")
    return tuple(found)


#: Every migration shipped, in version order.
MIGRATIONS: tuple[Migration, ...] = _discover()


def latest_version() -> int:
    """The schema version this release of mailparity needs."""
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def check_dialect(engine: sa.Engine) -> None:
    """Raise ``ValueError`` for a database the SQL store does not support."""
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        raise ValueError(
            f"the SQL store supports {', '.join(SUPPORTED_DIALECTS)}, not {engine.dialect.name}"
        )


@contextmanager
def begin_write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a write transaction, committed on success and rolled back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the database's write lock
    up front, so a read-then-write sequence cannot be interleaved with another writer (the Python
    driver would otherwise run the reads outside any transaction). PostgreSQL uses an ordinary
    transaction; callers lock rows explicitly (``FOR UPDATE``) where they read before writing.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _lock_for_migration(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))


def _version_in(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table(schema_version_table.name):
        return 0
    value = conn.execute(sa.select(sa.func.max(schema_version_table.c.version))).scalar()
    return int(value or 0)


def current_version(engine: sa.Engine) -> int:
    """The schema version of the database (0 when mailparity never migrated it)."""
    with engine.connect() as conn:
        return _version_in(conn)


def upgrade(engine: sa.Engine, *, target: int | None = None) -> list[int]:
    """Apply the missing migrations (up to ``target``, default all) in order; return the versions
    applied by this call (empty when the database was already up to date).

    Safe to run concurrently from several processes and idempotent.
    """
    check_dialect(engine)
    goal = latest_version() if target is None else target
    applied: list[int] = []
    with begin_write(engine) as conn:
        _lock_for_migration(conn)
        schema_version_table.create(conn, checkfirst=True)
    for migration in MIGRATIONS:
        if migration.version > goal:
            break
        with begin_write(engine) as conn:
            _lock_for_migration(conn)
            if _version_in(conn) >= migration.version:
                continue
            migration.upgrade(conn)
            conn.execute(
                schema_version_table.insert().values(
                    version=migration.version,
                    name=migration.name,
                    applied_at=datetime.now(timezone.utc),
                )
            )
        applied.append(migration.version)
    return applied
