"""Django for the example's tests: the helpdesk's own settings, on a throwaway database and media
folder, migrated once.

Run from this folder (``python -m pytest``). Django is configured once per process, so another
test session that reaches this folder (the project's own, started at the repository root) leaves
it alone: the project runs these tests in a process of their own.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent


def _ours(config: pytest.Config) -> bool:
    return Path(config.rootpath).resolve() == EXAMPLE


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return None if _ours(config) else True


def pytest_configure(config: pytest.Config) -> None:
    if not _ours(config):
        return
    folder = tempfile.mkdtemp(prefix="helpdesk-tests-")
    os.environ["HELPDESK_DB"] = os.path.join(folder, "db.sqlite3")
    os.environ["HELPDESK_MEDIA"] = os.path.join(folder, "media")
    os.environ["HELPDESK_URL"] = "https://helpdesk.test"
    os.environ["DJANGO_SETTINGS_MODULE"] = "helpdesk_site.settings"
    sys.path.insert(0, str(EXAMPLE))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
