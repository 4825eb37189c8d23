"""System checks of the app (``python manage.py check``): SQLite settings under which the
worker's threads fail at once with "database is locked" instead of waiting for each other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django
from django.conf import settings
from django.core.checks import Warning as CheckWarning

from .conf import mailparity_settings

__all__ = ["check_sqlite_database", "sqlite_warnings"]


def check_sqlite_database(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """The check registered by the app: :func:`sqlite_warnings` of the ORM store's database."""
    config = mailparity_settings()
    if config.store != "django":
        return []
    return sqlite_warnings(config.database, settings.DATABASES.get(config.database, {}))


def sqlite_warnings(alias: str, database: Mapping[str, Any]) -> list[CheckWarning]:
    """Warnings for ``database`` (one entry of ``settings.DATABASES``) when it is SQLite: no
    busy ``timeout`` (W001), and on Django 5.1 or later no ``transaction_mode`` ``IMMEDIATE``
    (W002)."""
    if "sqlite3" not in str(database.get("ENGINE", "")):
        return []
    options = database.get("OPTIONS") or {}
    found: list[CheckWarning] = []
    if not options.get("timeout"):
        found.append(
            CheckWarning(
                f"the mailparity store's database {alias!r} is SQLite without a busy timeout:"
                " concurrent writers fail at once instead of waiting",
                hint='Set DATABASES[...]["OPTIONS"]["timeout"] = 30.',
                id="mailparity.W001",
            )
        )
    if django.VERSION >= (5, 1) and str(options.get("transaction_mode", "")).upper() != (
        "IMMEDIATE"
    ):
        found.append(
            CheckWarning(
                f"the mailparity store's database {alias!r} is SQLite without transaction_mode"
                " IMMEDIATE: a signal receiver's transaction that reads, then writes fails with"
                " 'database is locked' when a worker thread writes meanwhile",
                hint='Set DATABASES[...]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
                id="mailparity.W002",
            )
        )
    return found
