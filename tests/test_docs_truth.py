"""What the user docs must not say: an install command as if mailparity were on the Python
Package Index (it is not yet), the wrong extra for the testing kit, or the project's internal
planning words (issue numbers, phases, TODOs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


#: (pattern, why it is untrue)
UNTRUE = [
    (re.compile(r"pip install\s+['\"]?mailparity\b"),
     "mailparity is not on the package index: install from a checkout or a built wheel"),
    (re.compile(r"mailparity\[dev\]"), "the testing kit's packages are in the 'testing' extra"),
    (re.compile(r"\bTODO\b|\bFIXME\b|\bXXX\b"), "a planning note"),
    (re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE), "an issue number"),
    (re.compile(r"\bphase\s*\d*\b", re.IGNORECASE), "a planning phase"),
]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_page_says_nothing_untrue(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    if page.name == "benchmarks.md":  # measured tables: "#1" style ranks are data there
        text = re.sub(r"\|.*\|", "", text)
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r} ({why})"
        for pattern, why in UNTRUE
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


def test_install_section_exists() -> None:
    index = (REPO_ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "## Installing" in index
    assert "not published on the Python Package Index" in index


def test_library_messages_name_real_extras() -> None:
    from mailparity.errors import install_hint, missing_extra
    from mailparity.testing import pytest_plugin

    assert "pip install '.[sql]'" in install_hint("sql")
    assert "'flask' extra" in str(missing_extra("flask", "mailparity.contrib.flask"))
    for hint in pytest_plugin._NEEDS.values():
        assert "'testing' extra" in hint
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"responses", "cryptography"} <= {
        re.split(r"[<>=\[]", r)[0] for r in extras["testing"]
    }
