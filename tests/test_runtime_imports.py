"""The library's runtime never imports google-api-python-client (or httplib2): it is a test
dependency only (the ``testing`` extra), so a plain install does without its ~110 MB.

Run in a fresh interpreter, because other tests of this session import googleapiclient."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys

    import responses

    import mailparity
    import mailparity.cli
    import mailparity.maintenance
    import mailparity.processing
    import mailparity.providers.gmail
    import mailparity.providers.graph
    import mailparity.stores.memory
    import mailparity.stores.sqlite
    import mailparity.webhooks
    import mailparity.worker
    import mailparity.wsgi
    from mailparity.publishers import InMemoryPublisher
    from mailparity.stores.memory import InMemoryStore
    from mailparity.testing import FakeGmail, build_message
    from mailparity.testing.connect import (
        PUSH_SERVICE_ACCOUNT, TEST_AUDIENCE, connect_google, gmail_push_request,
    )
    from mailparity.webhooks import WebhookHandler

    # A whole Gmail round: watch, push, history, batch or single fetch, publish, label.
    gmail = FakeGmail(seed=1)
    store, publisher = InMemoryStore(), InMemoryPublisher()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        gmail.register(mock)
        config = connect_google(store, gmail, "help@example.test")
        for n in range(6):
            gmail.deliver(config.mailbox, build_message(
                from_="a@example.org", to=config.mailbox, subject=f"n{n}", text="hi"))
        handler = WebhookHandler(
            store=store, publisher=publisher, google_audience=TEST_AUDIENCE,
            google_service_accounts=[PUSH_SERVICE_ACCOUNT], google_certs_url=gmail.certs_url,
            sleep=lambda seconds: None,
        )
        handler.handle_google(gmail_push_request(gmail, config.mailbox))
        handler.run_pending()
    assert len(publisher.events) == 6, publisher.events
    loaded = sorted(
        name for name in sys.modules
        if name.split(".")[0] in ("googleapiclient", "httplib2", "google_auth_httplib2")
    )
    print(",".join(loaded) or "none")
    """
)


def test_runtime_paths_never_import_google_api_python_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"


def test_google_api_python_client_is_not_a_core_dependency() -> None:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    )["project"]
    core = [item.split(">")[0].split("=")[0].strip() for item in project["dependencies"]]
    assert "google-api-python-client" not in core
    extras = project["optional-dependencies"]
    assert any(item.startswith("google-api-python-client") for item in extras["testing"])
    assert any(item.startswith("google-api-python-client") for item in extras["dev"])
