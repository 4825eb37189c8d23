"""The documentation builds without a warning, and its code samples name real API.

``mkdocs build --strict`` fails on any warning: a broken link, a page missing from the nav, or a
docstring that griffe cannot match to its signature. Running it here lets CI catch docs breakage
the same way ``make docs`` does. The sample checks parse every ``python`` block of ``docs/`` and
resolve every name the samples import from mailparity or reach through ``mp.``/``mailparity.``, so
a renamed function cannot leave the docs pointing at nothing.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
CONFIG = REPO_ROOT / "mkdocs.yml"

_PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _python_blocks() -> list[tuple[str, int, str]]:
    """(page, line, source) of every fenced ``python`` block under docs/."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _PYTHON_BLOCK.finditer(text):
            indent = len(match.group(1))
            source = "\n".join(line[indent:] for line in match.group(2).splitlines())
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((str(page.relative_to(REPO_ROOT)), line, source))
    return blocks


BLOCKS = _python_blocks()


def test_docs_have_python_samples() -> None:
    # Guards the extraction itself: a regex that silently matched nothing would pass every check.
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("page", "line", "source"), BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_python_sample_parses(page: str, line: int, source: str) -> None:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        pytest.fail(f"{page}:{line + (exc.lineno or 0)}: {exc.msg}")


def _referenced_names(source: str) -> set[tuple[str, str]]:
    """(module, attribute) pairs a sample takes from mailparity."""
    tree = ast.parse(source)
    # ``mp`` is the package in every sample (later samples of a page reuse the first one's
    # import); a bare ``mailparity`` only where the sample imports it, since the Celery
    # integration object is conventionally called ``mailparity`` too.
    aliases = {"mp": "mailparity"}
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mailparity"):
            module = node.module or ""
            found.update((module, alias.name) for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mailparity"):
                    found.add((alias.name, ""))
                    if alias.asname is None and alias.name == "mailparity":
                        aliases["mailparity"] = "mailparity"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            aliases.pop(node.id, None)  # rebound: no longer the package
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.add((aliases[node.value.id], node.attr))
    return found


REFERENCES = sorted({ref for _, _, source in BLOCKS for ref in _referenced_names(source)})


@pytest.mark.parametrize(("module", "name"), REFERENCES, ids=[f"{m}:{n}" for m, n in REFERENCES])
def test_sample_names_exist(module: str, name: str) -> None:
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("mailparity"):
            pytest.skip(f"{module} needs {exc.name}, which is not installed")
        raise
    if name:
        assert hasattr(imported, name), f"the docs use {module}.{name}, which does not exist"


@pytest.mark.timeout(600)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    missing = [
        name
        for name in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python")
        if importlib.util.find_spec(name.split(".")[0]) is None
        or (name.count(".") and _missing_submodule(name))
    ]
    if missing:
        pytest.skip(f"docs tooling not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(CONFIG),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + output[-4000:]
    assert warnings == []
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    # The API reference really rendered from the docstrings (not just an empty page).
    reference = (site / "reference" / "webhooks" / "index.html").read_text(encoding="utf-8")
    assert 'id="mailparity.webhooks.WebhookHandler"' in reference
    fakes = (site / "reference" / "testing-fakes" / "index.html").read_text(encoding="utf-8")
    for method in ("deliver", "fail_next", "remove_subscription", "notifications_for"):
        assert f'id="mailparity.testing.FakeGraph.{method}"' in fakes, method
    adapters = (site / "reference" / "adapters" / "index.html").read_text(encoding="utf-8")
    for method in ("renew_webhook_subscription", "fetch_changes", "get_messages_details"):
        anchor = f'id="mailparity.providers.graph.MicrosoftGraphAdapter.{method}"'
        assert anchor in adapters, method
    # The Processor's methods inherited from its per-job-kind parts are listed too.
    for method in ("run_job", "adapter_for", "process_message", "handle_auth_failure"):
        assert f'id="mailparity.processing.Processor.{method}"' in reference, method
    for page in ("celery", "cli", "sql", "testing-fakes"):
        assert (site / "reference" / page / "index.html").is_file(), page
    _assert_no_raw_roles(site)
    _assert_model_fields_listed(site)


_RAW_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj|const):(?:<code>|`)")


def _assert_no_raw_roles(site: Path) -> None:
    """Sphinx roles of the docstrings are rendered (scripts/docs_roles.py), never shown raw."""
    raw = {}
    for page in sorted(site.rglob("*.html")):
        found = _RAW_ROLE.findall(page.read_text(encoding="utf-8"))
        if found:
            raw[str(page.relative_to(site))] = len(found)
    assert raw == {}, f"raw docstring roles in the built HTML: {raw}"
    webhooks = (site / "reference" / "webhooks" / "index.html").read_text(encoding="utf-8")
    # a role became a link to the object's own section
    assert 'href="../protocols/#mailparity.protocols.StateStore"' in webhooks
    assert "<autoref" not in webhooks


def _assert_model_fields_listed(site: Path) -> None:
    """The Models page lists every field of every model, inherited event fields included, each
    with its type."""
    from mailparity import models

    page = (site / "reference" / "models" / "index.html").read_text(encoding="utf-8")
    for name in ("EmailAddress", "EmailBody", "Attachment", "Header", "EmailMessage",
                 "InboundEmailReceived", "EmailProviderAuthFailed", "OAuthTokens",
                 "ConnectionTestResult", "WebhookSubscription", "Job"):
        for field in getattr(models, name).model_fields:
            anchor = f'id="mailparity.models.{name}.{field}"'
            assert anchor in page, f"the Models page does not list {name}.{field}"
    at = page.index('id="mailparity.models.InboundEmailReceived.email_data"')
    text = re.sub(r"<[^>]+>", "", page[at:at + 3000])
    assert "email_data: EmailMessage" in text
    assert "The message (JSON emailData)." in text


def test_every_event_field_has_a_meaning() -> None:
    """Each field of the event models has a docstring: the reference shows it as its meaning."""
    source = (REPO_ROOT / "src" / "mailparity" / "models.py").read_text(encoding="utf-8")
    wanted = {"EmailAddress", "EmailBody", "Attachment", "Header", "EmailMessage", "_Event",
              "InboundEmailReceived", "EmailProviderAuthFailed"}
    undocumented = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in wanted:
            wanted.discard(node.name)
            body = node.body
            for index, item in enumerate(body):
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    following = body[index + 1] if index + 1 < len(body) else None
                    if not (isinstance(following, ast.Expr)
                            and isinstance(following.value, ast.Constant)
                            and isinstance(following.value.value, str)):
                        undocumented.append(f"{node.name}.{item.target.id}")
    assert wanted == set(), f"classes not found: {wanted}"
    assert undocumented == []


def _missing_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True
