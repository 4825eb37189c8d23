"""``mailparity demo``: the whole pipeline over 127.0.0.1 against the provider fakes."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from mailparity.cli import main
from mailparity.demo import (
    CONNECT_CALLBACK,
    DEMO_EMAILS,
    GOOGLE_CLIENT,
    GOOGLE_PROVIDER_ID,
    MICROSOFT_CLIENT,
    MICROSOFT_PROVIDER_ID,
    _fit,
    _width,
    run_demo,
)


def _events(output: Path) -> list[dict]:  # type: ignore[type-arg]
    return json.loads((output / "events.json").read_text(encoding="utf-8"))


def test_demo_publishes_one_complete_event_per_delivery(tmp_path: Path) -> None:
    out = io.StringIO()
    started = time.monotonic()
    assert run_demo(tmp_path / "demo", out=out) == 0
    assert time.monotonic() - started < 30

    events = _events(tmp_path / "demo")
    assert len(events) == 2 * len(DEMO_EMAILS)
    assert {e["eventType"] for e in events} == {"INBOUND_EMAIL_RECEIVED"}
    assert len({e["eventId"] for e in events}) == len(events)
    for provider_id, provider in ((MICROSOFT_PROVIDER_ID, "microsoft"),
                                  (GOOGLE_PROVIDER_ID, "google")):
        mine = [e for e in events if e["providerId"] == provider_id]
        assert sorted(e["emailData"]["subject"] for e in mine) == sorted(
            email.subject for email in DEMO_EMAILS
        )
        by_subject = {e["emailData"]["subject"]: e["emailData"] for e in mine}
        for data in mine:
            assert data["emailData"]["provider"] == provider
            assert data["emailData"]["complete"] is True
            assert data["tenantId"] == "acme-helpdesk"
        printer = by_subject["Drucker im 3. OG druckt nur leere Seiten"]
        assert printer["from"] == {"email": "zoe.angstrom@nordlicht.example",
                                   "name": "Zoë Ångström"}
        inline = [a for a in printer["attachments"] if a["isInline"]]
        assert [a["contentId"] for a in inline] == ["display-foto@nordlicht.example"]
        assert "fehlerprotokoll.txt" in [a["name"] for a in printer["attachments"]]
        reply = by_subject["Re: Drucker im 3. OG druckt nur leere Seiten"]
        assert reply["inReplyTo"] == "<printer-3og-1@nordlicht.example>"
        assert reply["references"] == ["<printer-3og-1@nordlicht.example>"]
        assert reply["threadId"] == printer["threadId"]
        invoice = by_subject["請求書の件について (Invoice #4711)"]
        assert invoice["from"]["name"] == "山田 太郎"
        assert [a["name"] for a in invoice["attachments"]] == ["請求書-4711.pdf"]
        vpn = by_subject["VPN 🔒 ne se connecte plus depuis la mise à jour"]
        assert "TLS handshake failed" in vpn["body"]["text"]  # derived from the HTML

    text = out.getvalue()
    assert "OK: each of the 8 deliveries produced exactly one complete event" in text
    assert "Graph validated our notification and lifecycle URLs over HTTP: HTTP 200" in text
    # Both mailboxes were connected through the web connect flow, step by step.
    for mailbox, provider_id in (("support@contoso.test", MICROSOFT_PROVIDER_ID),
                                 ("help@fabrikam.test", GOOGLE_PROVIDER_ID)):
        assert f"mailbox {mailbox} through the web connect flow" in text
        assert (f"signed in there as {mailbox} and consented: HTTP 302 back to"
                f" {CONNECT_CALLBACK} with a code") in text
        assert (f"code redeemed with the PKCE verifier, {mailbox} verified, tokens stored as"
                f" {provider_id}") in text
    assert "/oauth2/v2.0/authorize" in text
    assert "connected Microsoft mailbox support@contoso.test: subscription " in text
    assert ("connected Gmail mailbox help@fabrikam.test: watch on"
            " projects/fabrikam-helpdesk/topics/gmail-inbound") in text
    assert text.index("tokens stored as contoso-support") < text.index("subscription ")
    assert text.index("subscription ") < text.index("Graph validated") < text.index("help@fabr")
    assert "請求書の件について" in text
    # Secrets of the run never reach the console or the events.
    dumped = (tmp_path / "demo" / "events.json").read_text(encoding="utf-8")
    for secret in ("fake-graph-at.", "fake-graph-rt.", "ya29.", "1//fake-google-rt",
                   "fake-client-secret", MICROSOFT_CLIENT[1], GOOGLE_CLIENT[1], "state=",
                   "code="):
        assert secret not in dumped
        assert secret not in text
    lines = (tmp_path / "demo" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events)


def test_demo_runs_again_in_the_same_folder(tmp_path: Path) -> None:
    assert run_demo(tmp_path, out=io.StringIO()) == 0
    (tmp_path / "unrelated.txt").write_text("keep me", encoding="utf-8")
    out = io.StringIO()
    assert run_demo(tmp_path, verbose=True, out=out) == 0
    assert len(_events(tmp_path)) == 2 * len(DEMO_EMAILS)
    assert (tmp_path / "unrelated.txt").read_text(encoding="utf-8") == "keep me"
    assert "POST http://127.0.0.1:" in out.getvalue()  # verbose shows the pushes


def test_demo_fails_when_an_event_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailparity import publishers

    original = publishers.InMemoryPublisher.publish
    dropped: list[str] = []

    def lossy(self: publishers.InMemoryPublisher, event: object) -> None:
        subject = getattr(getattr(event, "email_data", None), "subject", "")
        if subject.startswith("VPN") and not dropped:
            dropped.append(subject)
            return
        original(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(publishers.InMemoryPublisher, "publish", lossy)
    out = io.StringIO()
    assert run_demo(tmp_path, out=out) == 1
    assert "FAILED" in out.getvalue()
    assert "0 events instead of exactly one" in out.getvalue()


def test_demo_fails_clearly_when_a_sign_in_is_declined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailparity.testing import FakeGmail

    original = FakeGmail.add_mailbox

    def declining(self: FakeGmail, address: str) -> object:
        box = original(self, address)
        self.decline_next()  # the user clicks "Cancel" on Google's consent screen
        return box

    monkeypatch.setattr(FakeGmail, "add_mailbox", declining)
    out = io.StringIO()
    assert run_demo(tmp_path, out=out) == 1
    text = out.getvalue()
    assert "with error=access_denied" in text
    assert "FAILED: 1 problem(s):" in text
    assert "connecting through the web flow failed: the google callback refused" in text
    assert "events published" not in text
    assert not (tmp_path / "events.json").exists()


def test_cli_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output", str(tmp_path / "cli")]) == 0
    assert "INBOUND_EMAIL_RECEIVED events published" in capsys.readouterr().out
    assert (tmp_path / "cli" / "events.json").is_file()


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("abc", 5, "abc  "),
        ("abcdefgh", 5, "abcd…"),
        ("請求書の件", 6, "請求… "),
        ("a\n  b", 4, "a b "),
    ],
)
def test_fit_pads_and_cuts_by_display_width(text: str, width: int, expected: str) -> None:
    assert _fit(text, width) == expected
    assert _width(_fit(text, width)) == width


def test_width_counts_wide_and_combining_characters() -> None:
    assert _width("abc") == 3
    assert _width("請求") == 4
    assert _width("e\u0301") == 1
    assert _width("🔒") == 2


# ---------------------------------------------------------------------------- `make demo`

_DEMO_RUNNER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[2].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not part of the demo's environment", name=name)
        return None

sys.meta_path.insert(0, Block())
from mailparity.cli import main
sys.exit(main(["demo", "--output", sys.argv[1]]))
"""


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[\s;\[<>=!~(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The installed distributions ``names`` need, transitively (extras of theirs left out)."""
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_name(r) for r in requires if "extra ==" not in r)
    return seen


def test_demo_needs_only_the_core_and_the_demo_extra(tmp_path: Path) -> None:
    """`make demo` installs `.[demo]` only: the demo runs with every other extra's packages
    made unimportable."""
    import subprocess
    import sys
    from importlib import metadata

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    needed = _closure({_requirement_name(r) for r in project["dependencies"] + extras["demo"]})
    others = _closure({_requirement_name(r) for extra in extras.values() for r in extra})
    modules = metadata.packages_distributions()
    blocked = sorted(
        module for module, dists in modules.items()
        if all(d.lower().replace("_", "-") in others - needed for d in dists)
        and not module.startswith("_")
    )
    assert {"flask", "django", "sqlalchemy", "googleapiclient", "responses"} <= set(blocked)
    assert "cryptography" not in blocked

    result = subprocess.run(
        [sys.executable, "-c", _DEMO_RUNNER, str(tmp_path / "out"), ",".join(blocked)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "OK: each of the 8 deliveries" in result.stdout


def test_make_demo_installs_the_demo_extra_only() -> None:
    makefile = (Path(__file__).parents[1] / "Makefile").read_text(encoding="utf-8")
    [install] = [line for line in makefile.splitlines() if "$(DEMO_VENV)/bin/python -m pip" in line]
    assert install.strip().endswith("-e '.[demo]'")
    assert "demo: $(DEMO_STAMP)" in makefile
