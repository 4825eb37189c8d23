"""The README's and the testing guide's Python blocks type-check under ``mypy --strict``.

They are what a new user copies first; an example that fails the type checker (for instance a
publisher reading ``event.email_data`` on the union of every event) is a bug in the docs. The
blocks are type-checked, not run: they start servers and workers that run until stopped (the
testing guide's example runs for real as ``tests/test_testing_kit_example.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/testing.md")

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(page: str) -> list[str]:
    return _PYTHON_BLOCK.findall((REPO_ROOT / page).read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES)
def test_the_page_has_python_blocks(page: str) -> None:
    # Guards the extraction: a pattern that matched nothing would make the mypy test vacuous.
    assert _blocks(page), f"no python block found in {page}"


def test_readme_and_testing_guide_blocks_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for page in PAGES:
        stem = re.sub(r"\W", "_", Path(page).stem.lower())
        for number, source in enumerate(_blocks(page), start=1):
            path = tmp_path / f"{stem}_block_{number}.py"
            path.write_text(source, encoding="utf-8")
            files.append(str(path))
    # The project's mypy settings and cache (``make typecheck`` has just filled it under
    # ``make test``), so only the blocks themselves are checked from scratch.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml",
         "--no-color-output", *files],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
