"""The Django example (``examples/django_helpdesk``): its own tests pass, and its code passes
``mypy --strict``.

Its tests run in a process of their own (``python -m pytest`` in its folder, as its README says):
Django is configured once per process, and this process has the project's test settings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "django_helpdesk"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, *args], cwd=EXAMPLE, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def test_the_example_tests_pass() -> None:
    result = _run("-m", "pytest", "-q", timeout=280)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None, output
    assert int(passed.group(1)) >= 4, output  # the tests ran, not collected away
    assert "skipped" not in output, output


def test_the_example_passes_mypy_strict() -> None:
    result = _run(
        "-m", "mypy", "--strict", "--config-file", str(REPO_ROOT / "pyproject.toml"),
        "--explicit-package-bases", "--no-color-output",
        "helpdesk", "helpdesk_site", "tests", "conftest.py", "manage.py",
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
