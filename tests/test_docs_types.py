"""Every Python block of the README and of every page under ``docs/`` is type-checked with
``mypy --strict`` and, unless marked, run.

A documented example that fails the type checker (for instance a publisher reading
``event.email_data`` on the union of every event) or that raises when run is a bug in the docs.
Pages are found by globbing, so a page added later is covered without touching this test.

Two markers, HTML comments (invisible on the rendered page), tune a page:

``<!-- docs-test: context`` *Python lines* ``-->``
    Hidden setup prepended to every later Python block of the page (cumulative): the names a
    fragment assumes (``store``, ``publisher``, ``handler`` ...) with real values, so the
    fragment type-checks and runs as it would in the reader's program.
``<!-- docs-test: not run: REASON -->`` right before a block
    The block is type-checked but not run, for the REASON given (it needs a real tenant, it
    serves until stopped, it needs a Django project ...). A marker without a reason fails.

Blocks run in this test process, one by one, in a fresh folder, with every HTTP request of
``requests`` refused (a ``responses`` mock without routes): a block that needs the network must
say so with a ``not run`` reason (requests to 127.0.0.1, such as the fakes served on loopback,
go through). Blocks that import Django get Django's exemption of the project's own type checking
(Django ships no type hints, so its decorators are untyped). ``myapp`` stands for the reader's
own package: ``myapp.mail`` provides the ``handler`` the framework pages import from it.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: A fenced Python block, also indented (inside a list item): the indent is removed.
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```",
                    re.MULTILINE | re.DOTALL)
_CONTEXT = re.compile(r"<!--\s*docs-test:\s*context\s*\n(.*?)-->", re.DOTALL)
# A "not run" marker counts only when nothing but other docs-test markers (context) stands between
# it and the block, and its reason stops at its own "-->" (a marker further up the page must not
# swallow the text and comments that follow it).
_NOT_RUN = re.compile(
    r"<!--\s*docs-test:\s*not run:?\s*((?:(?!-->).)*?)\s*-->\s*"
    r"(?:<!--\s*docs-test:\s*context(?:(?!-->).)*-->\s*)*\Z",
    re.DOTALL,
)
_ANY_MARKER = re.compile(r"<!--\s*docs-test:\s*(\S+(?: \S+)?)")
_DJANGO = re.compile(r"^\s*(from|import)\s+django\b", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    number: int  # 1-based, per page
    line: int  # line of the page where the code starts
    context: str  # hidden setup from the page's context markers above the block
    source: str
    not_run: str | None  # the reason, when marked

    @property
    def name(self) -> str:
        return f"{self.page}#{self.number}"

    @property
    def module(self) -> str:
        stem = re.sub(r"\W", "_", str(Path(self.page).with_suffix("")).lower())
        return f"{stem}_block_{self.number}"

    def program(self) -> str:
        """The context, then the block (what is type-checked and run)."""
        header = ""
        if _DJANGO.search(self.context + self.source):
            header = "# mypy: disallow-untyped-decorators=False\n"
        return f"{header}{self.context}{self.source}"

    def page_line(self, program_line: int) -> int:
        """The page's line of a line of :meth:`program` (context lines map to the block's
        first line)."""
        offset = self.program().count("\n") - self.source.count("\n")
        return self.line + max(program_line - 1 - offset, 0)


#: The reader's own module the pages import (``from myapp.mail import handler``).
MYAPP_MAIL = """\
import mailparity as mp

handler = mp.WebhookHandler(store=mp.InMemoryStore(), publisher=mp.InMemoryPublisher())
"""


def _myapp(folder: Path) -> Path:
    package = folder / "myapp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "mail.py").write_text(MYAPP_MAIL, encoding="utf-8")
    return folder


def _pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def _blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    relative = str(page.relative_to(REPO_ROOT))
    found = []
    for number, match in enumerate(_BLOCK.finditer(text), start=1):
        before = text[: match.start()]
        context = "".join(textwrap.dedent(m.group(1)) for m in _CONTEXT.finditer(before))
        marker = _NOT_RUN.search(before)
        found.append(Block(
            page=relative,
            number=number,
            line=before.count("\n") + 2,
            context=context,
            source=textwrap.dedent(match.group("code")),
            not_run=marker.group(1) if marker else None,
        ))
    return found


BLOCKS = [block for page in _pages() for block in _blocks(page)]


def test_blocks_are_found() -> None:
    # Guards the extraction: a pattern that matched nothing would make the checks vacuous.
    pages = {block.page for block in BLOCKS}
    assert {"README.md", "docs/testing.md", "docs/attachments.md"} <= pages
    assert len(BLOCKS) >= 40


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_markers_are_well_formed(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for match in _ANY_MARKER.finditer(text):
        kind = match.group(1)
        assert kind == "context" or kind.startswith("not run"), (
            f"{page.name}: unknown marker {match.group(0)!r}"
        )
    for block in _blocks(page):
        if block.not_run is not None:
            assert len(block.not_run) >= 10, f"{block.name}: `not run` needs its reason"


def test_every_block_passes_mypy_strict(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "MYPYPATH": str(_myapp(tmp_path / "reader"))}
    files: dict[str, Block] = {}
    for block in BLOCKS:
        path = tmp_path / f"{block.module}.py"
        path.write_text(block.program(), encoding="utf-8")
        files[path.name] = block
    # The project's mypy settings and cache (``make typecheck`` has just filled it under
    # ``make test``), so only the blocks themselves are checked from scratch.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml",
         "--no-color-output", "--no-error-summary", *(str(tmp_path / name) for name in files)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False, env=env,
    )
    problems = []
    for line in result.stdout.splitlines():
        match = re.match(r"(?:.*[/\\])?([\w]+\.py):(\d+): (.*)", line)
        if match and match.group(1) in files:
            block = files[match.group(1)]
            where = block.page_line(int(match.group(2)))
            problems.append(f"{block.page}:{where} (block {block.number}): {match.group(3)}")
        elif line.strip():
            problems.append(line)
    assert not problems, "\n".join(problems)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.not_run is not None:
        pytest.skip(f"not run: {block.not_run}")
    import responses

    monkeypatch.chdir(tmp_path)  # files a block writes (a SQLite store) stay in the test's folder
    monkeypatch.syspath_prepend(str(_myapp(tmp_path)))
    monkeypatch.delitem(sys.modules, "myapp", raising=False)
    monkeypatch.delitem(sys.modules, "myapp.mail", raising=False)
    code = compile(block.program(), f"{block.page} (block {block.number})", "exec")
    # A module of its own, as a reader's file would be (dataclasses look their module up).
    module = types.ModuleType(block.module)
    monkeypatch.setitem(sys.modules, block.module, module)
    # A block may add log handlers (the logging recipes): they must not outlive it.
    loggers = [logging.getLogger(), logging.getLogger("mailparity")]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:  # no network
            mock.add_passthru(re.compile(r"https?://127\.0\.0\.1[:/]"))
            exec(code, module.__dict__)  # noqa: S102 - the documentation's own examples
    finally:
        for logger, handlers, level in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
