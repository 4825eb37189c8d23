"""The stores the contract suite (``test_store_contract.py``) runs against.

Each entry is ``(name, factory)``; a factory takes pytest's ``tmp_path`` and returns a fresh, empty
store. A factory may call ``pytest.skip`` (for example when a database server is not configured).
Append new stores here; the suite closes each store after the test when it has ``close()``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sql import SqlStore
from mailparity.stores.sqlite import SqliteStore

StoreFactory = Callable[[Path], Any]


def _memory(tmp_path: Path) -> InMemoryStore:
    return InMemoryStore()


def _sqlite_file(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "mailparity.sqlite3")


def _sqlite_memory(tmp_path: Path) -> SqliteStore:
    return SqliteStore(":memory:")


STORE_FACTORIES: list[tuple[str, StoreFactory]] = [
    ("memory", _memory),
    ("sqlite", _sqlite_file),
    ("sqlite-memory", _sqlite_memory),
]


# ------------------------------------------------------------------------------------------
# SqlStore (SQLAlchemy): SQLite through SQLAlchemy, and PostgreSQL when a server is configured.

POSTGRES_URL_ENV = "MAILPARITY_TEST_POSTGRES_URL"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgres_admin_url() -> str:
    """The PostgreSQL URL of the test server; skips the test when it is not configured, and fails
    it under CI (CI must run the PostgreSQL tests, never pass by skipping them)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    reason = (
        f"{POSTGRES_URL_ENV} is not set (run the tests through scripts/services.sh run ..."
        " to start a throwaway PostgreSQL)"
    )
    if _ci():
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def _admin_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def create_postgres_database(url: str) -> str:
    """Create an empty database with a random name on the server of ``url``; return its URL."""
    name = f"mp_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drop the database of ``url`` (disconnecting whoever is still on it)."""
    target = sa.make_url(url)
    engine = _admin_engine(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        engine.dispose()


class _ClosingSqlStore(SqlStore):
    """A SqlStore that also removes its throwaway schema when closed."""

    def __init__(self, engine: sa.Engine, cleanup: Callable[[], None]) -> None:
        self._cleanup = cleanup
        try:
            super().__init__(engine, auto_upgrade=True)
        except BaseException:
            cleanup()
            raise

    def close(self) -> None:
        super().close()
        self._cleanup()


def _sql_sqlite(tmp_path: Path) -> SqlStore:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'mailparity-sql.sqlite3'}")
    return _ClosingSqlStore(engine, engine.dispose)


def _sql_postgres(tmp_path: Path) -> SqlStore:
    # A fresh schema per test (much cheaper than a database): the store's connections see only it.
    admin_url = postgres_admin_url()
    schema = f"mp_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = sa.create_engine(
        admin_url, connect_args={"options": f"-c search_path={schema}"}, pool_size=10
    )

    def cleanup() -> None:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    return _ClosingSqlStore(engine, cleanup)


STORE_FACTORIES += [
    ("sql-sqlite", _sql_sqlite),
    ("sql-postgres", _sql_postgres),
]
