"""The pytest plugin's fixtures, run in a separate pytest session (``pytester``) the way a host
project would use them, plus the import-time promises of ``mailparity.testing``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import mailparity.testing as kit

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules first imported inside them; a module imported again
# would make new classes (pydantic models, cryptography bindings) that no longer match the ones
# the plugin holds. Import them all here, before any inner run.
for _name in (
    "mailparity.models",
    "mailparity.stores.memory",
    "mailparity.publishers",
    "mailparity.webhooks",
    "mailparity.processing",
    "mailparity.providers.graph",
    "mailparity.providers.gmail",
    "mailparity.testing.connect",
    "mailparity.testing.fake_graph",
    "mailparity.testing.fake_gmail",
    "mailparity.testing.builder",
    "responses",
):
    importlib.import_module(_name)
# Signing once loads every cryptography / google-auth module the signer uses.
kit.TestOidcSigner(key_size=1024).push_token("https://warm.example", "warm@example.test")


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_host=textwrap.dedent(source))
    return pytester.runpytest("-q", "-p", "no:cacheprovider")


def test_fixtures_are_wired_together(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        from mailparity.models import GmailProviderConfig, MicrosoftProviderConfig
        from mailparity.publishers import InMemoryPublisher
        from mailparity.stores.memory import InMemoryStore
        from mailparity.testing import FakeGmail, FakeGraph, TEST_AUDIENCE
        from mailparity.webhooks import WebhookHandler

        def test_types(mailparity_store, mailparity_publisher, fake_graph, fake_gmail,
                       mailparity_handler):
            assert isinstance(mailparity_store, InMemoryStore)
            assert isinstance(mailparity_publisher, InMemoryPublisher)
            assert isinstance(fake_graph, FakeGraph)
            assert isinstance(fake_gmail, FakeGmail)
            assert isinstance(mailparity_handler, WebhookHandler)
            assert mailparity_handler.store is mailparity_store
            assert mailparity_handler.publisher is mailparity_publisher
            assert mailparity_handler.google_audience == TEST_AUDIENCE

        def test_mailboxes_are_connected(microsoft_mailbox, google_mailbox, mailparity_store,
                                         fake_graph, fake_gmail):
            assert isinstance(microsoft_mailbox, MicrosoftProviderConfig)
            assert microsoft_mailbox.webhook_subscription_id in fake_graph.subscriptions
            assert microsoft_mailbox.graph_base_url == fake_graph.base_url
            assert mailparity_store.load_tokens(microsoft_mailbox.provider_id) is not None
            assert isinstance(google_mailbox, GmailProviderConfig)
            assert google_mailbox.history_id is not None
            assert google_mailbox.watch_expiration is not None
            assert fake_gmail.mailbox(google_mailbox.mailbox).watch is not None
            assert mailparity_store.load_tokens(google_mailbox.provider_id) is not None

        def test_each_test_gets_fresh_state(mailparity_publisher, fake_graph):
            assert mailparity_publisher.events == []
            assert fake_graph.subscriptions == {}
        """,
    )
    result.assert_outcomes(passed=3)


def test_email_arrives_and_host_sees_one_event(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        from mailparity.testing import (
            build_message, gmail_push_request, graph_notification_request,
        )

        RAW = build_message(from_="Ana <ana@example.org>", to="x@example.test",
                            subject="Olá ção", text="hi",
                            attachments=[("a.csv", b"1,2\\n")])

        def test_graph(fake_graph, microsoft_mailbox, mailparity_handler,
                       mailparity_publisher):
            mid = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
            request = graph_notification_request(fake_graph, mid)
            assert mailparity_handler.handle_microsoft(request).status == 202
            # a redelivered notification changes nothing
            assert mailparity_handler.handle_microsoft(request).status == 202
            mailparity_handler.run_pending()
            [event] = mailparity_publisher.events
            assert event.email_data.id == mid
            assert event.email_data.subject == "Olá ção"
            assert [a.name for a in event.email_data.attachments] == ["a.csv"]

        def test_gmail(fake_gmail, google_mailbox, mailparity_handler, mailparity_publisher):
            mid = fake_gmail.deliver(google_mailbox.mailbox, RAW)
            request = gmail_push_request(fake_gmail, google_mailbox.mailbox)
            assert mailparity_handler.handle_google(request).status == 204
            mailparity_handler.run_pending()
            [event] = mailparity_publisher.events
            assert event.email_data.id == mid
            assert event.email_data.from_.name == "Ana"
        """,
    )
    result.assert_outcomes(passed=2)


def test_handler_verifies_push_tokens(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import dataclasses
        from mailparity.testing import gmail_push_request

        def test_wrong_audience_refused(fake_gmail, google_mailbox, mailparity_handler):
            fake_gmail.deliver(google_mailbox.mailbox, b"Subject: x\\r\\n\\r\\nbody\\r\\n")
            forged = gmail_push_request(fake_gmail, google_mailbox.mailbox,
                                        audience="https://attacker.example/")
            assert mailparity_handler.handle_google(forged).status == 403
            assert mailparity_handler.run_pending() == 0

        def test_unsigned_refused(fake_gmail, google_mailbox, mailparity_handler):
            signed = gmail_push_request(fake_gmail, google_mailbox.mailbox)
            unsigned = dataclasses.replace(signed, headers={"Content-Type": "application/json"})
            assert mailparity_handler.handle_google(unsigned).status == 401
        """,
    )
    result.assert_outcomes(passed=2)


def test_faults_on_demand_do_not_sleep(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import time
        from mailparity.testing import build_message, graph_notification_request

        def test_throttled_then_ok(fake_graph, microsoft_mailbox, mailparity_handler,
                                   mailparity_publisher):
            raw = build_message(from_="a@example.org", to="x@example.test", subject="s",
                                text="t")
            mid = fake_graph.deliver(microsoft_mailbox.mailbox, raw)
            fake_graph.fail_next(2, status=429, retry_after=30)
            started = time.monotonic()
            mailparity_handler.handle_microsoft(graph_notification_request(fake_graph, mid))
            mailparity_handler.run_pending()
            assert time.monotonic() - started < 5
            assert [e.email_data.id for e in mailparity_publisher.events] == [mid]
        """,
    )
    result.assert_outcomes(passed=1)


def test_missing_responses_is_a_clear_error(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import sys
        import pytest

        @pytest.fixture
        def without_responses(monkeypatch):
            monkeypatch.setitem(sys.modules, "responses", None)

        def test_needs_fake(without_responses, fake_graph):
            pass

        def test_store_alone_still_works(without_responses, mailparity_store):
            assert mailparity_store.get_provider("nope") is None
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*needs the 'responses' package: pip install responses*"])


def test_plugin_import_is_cheap_and_safe() -> None:
    code = (
        "import sys, mailparity.testing.pytest_plugin, mailparity.testing as t\n"
        "heavy = {'responses', 'mailparity.testing.fake_graph', 'mailparity.testing.fake_gmail',"
        " 'mailparity.webhooks', 'requests', 'cryptography'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_mailparity_never_imports_the_kit() -> None:
    code = (
        "import sys, mailparity\n"
        "mailparity.InboundEmailReceived\n"
        "print([m for m in sys.modules if m.startswith('mailparity.testing')])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_kit_exports_resolve() -> None:
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    assert "FakeGraph" in dir(kit)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        kit.Nope  # noqa: B018


def test_push_account_matches_the_fake() -> None:
    from mailparity.testing.fake_gmail import DEFAULT_PUSH_ACCOUNT

    assert kit.PUSH_SERVICE_ACCOUNT == DEFAULT_PUSH_ACCOUNT
    assert kit.FakeGmail().subscription  # the fake builds without a network


def test_connect_helpers_without_subscription() -> None:
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    graph = kit.FakeGraph()
    config = kit.connect_microsoft(
        store, graph, "desk@example.test", subscribe=False, tenant="t1", folder="archive"
    )
    assert config.provider_id == "microsoft-desk-example-test"
    assert config.folder == "archive"
    assert config.webhook_subscription_id is None
    assert config.authority_tenant == graph.tenant_id
    assert config.client_secret is not None
    assert "fake-client-secret" not in repr(config)
    tokens = store.load_tokens(config.provider_id)
    assert tokens is not None
    assert tokens.access_token.get_secret_value().startswith("fake-graph-at.")

    gmail = kit.FakeGmail()
    google = kit.connect_google(store, gmail, "Desk@Example.test", subscribe=False)
    assert google.provider_id == "google-desk-example-test"
    assert google.history_id is None
    assert google.topic_path == "projects/mailparity-test/topics/gmail-inbound"
    with pytest.raises(RuntimeError, match="no active watch"):
        gmail.push("http://127.0.0.1:9/", "Desk@Example.test")


def test_docs_example_is_the_example_test() -> None:
    """docs/testing.md shows tests/test_testing_kit_example.py verbatim (after its docstring)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "testing.md").read_text(encoding="utf-8")
    source = (root / "tests" / "test_testing_kit_example.py").read_text(encoding="utf-8")
    body = source.split('"""', 2)[2].lstrip("\n")
    blocks = [block.split("```", 1)[0] for block in page.split("```python\n")[1:]]
    assert body in blocks
