"""Django for the tests: one settings configuration for the whole test process (Django settings can
be configured only once), shared by every Django test module.

The ``mailparity`` app is installed with the admin and its dependencies. The database ``default``
is a SQLite file in a temporary folder; ``postgres`` is a throwaway database on the server of
``MAILPARITY_TEST_POSTGRES_URL`` when it is set. Both are migrated with the app's migrations by
:func:`migrated`, once per process.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from store_factories import POSTGRES_URL_ENV, postgres_admin_url

django = pytest.importorskip("django")

_state: dict[str, Any] = {}
_lock = threading.Lock()

#: The MAILPARITY setting of the tests: every part injectable stays default here.
TEST_MAILPARITY: dict[str, Any] = {"HEALTH": {"require_worker": False}}


def _postgres_settings(url: str, name: str) -> dict[str, Any]:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
    }


def configure() -> None:
    """Configure Django settings for the test process (idempotent)."""
    from django.conf import settings

    with _lock:
        if settings.configured:
            return
        folder = tempfile.mkdtemp(prefix="mailparity-django-")
        _state["folder"] = folder
        databases: dict[str, Any] = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(folder, "db.sqlite3"),
                "OPTIONS": {"timeout": 60},
            }
        }
        url = os.environ.get(POSTGRES_URL_ENV)
        if url:
            name = f"mp_django_{uuid.uuid4().hex[:12]}"
            databases["postgres"] = _postgres_settings(url, name)
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            SECRET_KEY="test-only-not-secret",
            ROOT_URLCONF="django_test_urls",
            USE_TZ=True,
            INSTALLED_APPS=[
                "django.contrib.admin",
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                "mailparity.contrib.django",
            ],
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ],
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            DATABASES=databases,
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            DATA_UPLOAD_MAX_MEMORY_SIZE=8000,
            MAILPARITY=TEST_MAILPARITY,
        )
        django.setup()


def _migrate(alias: str) -> None:
    from django.core.management import call_command

    call_command("migrate", database=alias, verbosity=0, interactive=False)


def migrated(alias: str = "default") -> str:
    """``alias`` with every migration applied (once per process); skips (or under CI fails) for
    ``postgres`` when no server is configured."""
    configure()
    from django.conf import settings

    if alias == "postgres" and alias not in settings.DATABASES:
        postgres_admin_url()  # skips, or fails under CI
    with _lock:
        if alias in _state:
            return alias
        if alias == "postgres":
            _create_postgres_database(settings.DATABASES[alias]["NAME"])
            atexit.register(drop_databases)
        _migrate(alias)
        _state[alias] = True
    return alias


def _create_postgres_database(name: str) -> None:
    from store_factories import _admin_engine

    engine = _admin_engine(postgres_admin_url())
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()


def drop_databases() -> None:
    """Drop the PostgreSQL test database (at the end of the session)."""
    if "postgres" not in _state:
        return
    from django.conf import settings
    from django.db import connections

    from store_factories import drop_postgres_database

    connections.close_all()
    name = settings.DATABASES["postgres"]["NAME"]
    url = os.environ[POSTGRES_URL_ENV]
    import sqlalchemy as sa

    drop_postgres_database(
        sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    )
    del _state["postgres"]


def clear_tables(alias: str) -> None:
    """Delete every row of the mailparity app's tables on ``alias``."""
    from mailparity.contrib.django import models as m

    for model in (m.Mailbox, m.Credential, m.Job, m.DedupeKey, m.Lock, m.MetaValue):
        model.objects.using(alias).all().delete()


@pytest.fixture
def django_db() -> Iterator[str]:
    """The migrated SQLite database alias, emptied of mailparity rows before and after."""
    alias = migrated("default")
    clear_tables(alias)
    yield alias
    clear_tables(alias)
