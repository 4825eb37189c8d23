"""The provider seam: the core names no provider, and a third one is a package plus one line.

A third provider ("fake", in ``third_provider.py``: the test adapter of ``fake_adapter.py``
behind its own config, push source, renewal rule and testing kit) is registered here and driven
through processing, maintenance, the webhook handler, the WSGI app and the CLI, none of which was
edited for it. The processing, maintenance, webhook and CLI suites also run their
provider-generic tests over it (the ``provider_kind`` fixture).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import mailparity.providers as registry
from fake_adapter import FakeMailbox
from mailparity.adapter import EmailProviderAdapter, SyncBatch
from mailparity.cli import main
from mailparity.maintenance import Maintenance
from mailparity.models import (
    ConnectionTestResult,
    EmailMessage,
    Job,
    OAuthTokens,
    WebhookSubscription,
)
from mailparity.processing import Processor
from mailparity.providers import ProviderSpec
from mailparity.publishers import InMemoryPublisher
from mailparity.pushing import WebhookRequest
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.testing.store_contract import StoreContract, provider_kits
from mailparity.webhooks import WebhookHandler
from mailparity.wsgi import make_wsgi_app
from third_provider import (
    BOXES,
    SPEC,
    FakeProviderAdapter,
    FakeProviderConfig,
    registered,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "mailparity"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def third_provider() -> Iterator[None]:
    with registered():
        yield


def fake_config(provider_id: str = "f-1", **fields: Any) -> FakeProviderConfig:
    config = FakeProviderConfig(provider_id=provider_id, tenant="t", mailbox="box@example.com",
                                **fields)
    BOXES.setdefault(provider_id, FakeMailbox(config))
    return config


def seeded(store: Any, **fields: Any) -> FakeMailbox:
    config = fake_config(**fields)
    store.save_provider(config)
    store.save_tokens(config.provider_id, OAuthTokens(access_token="at", expires_at=NOW +
                                                      timedelta(days=1)))
    return BOXES[config.provider_id]


# --------------------------------------------------------------------------------------------
# The core names no provider


#: What names a built-in provider: its config class, or its key as a double-quoted string
#: literal (the keys are compared and passed that way; the project quotes strings with ``"``).
_PROVIDER_NAMES = re.compile(
    r"MicrosoftProviderConfig|GmailProviderConfig|\"microsoft\"|\"google\""
)


def _allowed(relative: str, line: str) -> bool:
    """Where naming a provider is allowed, and nowhere else:

    * ``providers/**``: the provider packages themselves (their testing kits included);
    * ``__init__.py`` (the package root only): its lazy re-export table of public names;
    * ``models.py``: only lines that import or re-export the provider configs (the configs live
      in their packages; ``mailparity.models.MicrosoftProviderConfig`` keeps working).

    Everything else (core, stores, contrib, CLI, the whole testing kit with its fakes, fixtures,
    connect helpers and store contract) asks the registry and names no provider."""
    if relative.startswith("providers/") or relative == "__init__.py":
        return True
    return relative == "models.py" and ("import" in line or "ProviderConfig" in line)


def test_the_core_names_no_provider() -> None:
    """No module of ``src/mailparity`` outside :func:`_allowed`'s places names a provider."""
    found: dict[str, list[str]] = {}
    scanned = 0
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        scanned += 1
        for line in path.read_text(encoding="utf-8").splitlines():
            if _PROVIDER_NAMES.search(line) and not _allowed(relative, line):
                found.setdefault(relative, []).append(line.strip())
    assert scanned > 50  # the scan saw the package (testing/ and contrib/ included)
    assert found == {}


def test_the_scan_sees_a_provider_name() -> None:
    # A regex that silently matched nothing would pass the test above.
    assert _PROVIDER_NAMES.search('find_provider_by_mailbox("google", x)')
    assert _PROVIDER_NAMES.search("isinstance(config, MicrosoftProviderConfig)")
    assert not _allowed("maintenance.py", 'if kind == "google":')
    assert not _allowed("testing/connect.py", "from ..models import MicrosoftProviderConfig")
    assert not _allowed("testing/__init__.py", '_WHERE = {"microsoft": ...}')
    assert not _allowed("models.py", 'if config.provider == "microsoft":')
    assert _allowed("providers/graph/testing.py", "MicrosoftProviderConfig(**values)")


# --------------------------------------------------------------------------------------------
# The adapter contract


def test_an_adapter_without_a_catch_up_method_cannot_be_built() -> None:
    class NoCatchUp(EmailProviderAdapter[FakeProviderConfig]):
        def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
            raise NotImplementedError

        def register_webhook_subscription(self) -> WebhookSubscription:
            raise NotImplementedError

        def renew_webhook_subscription(self) -> WebhookSubscription:
            raise NotImplementedError

        def delete_webhook_subscription(self) -> None:
            raise NotImplementedError

        def process_webhook_notification(self, notification: Any) -> list[str]:
            return []

        def get_message_details(self, message_id: str) -> EmailMessage:
            raise NotImplementedError

        def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
            return b""

        def mark_message_processed(self, message_id: str) -> None:
            return None

        def test_connection(self) -> ConnectionTestResult:
            return ConnectionTestResult(success=True)

        def commit_cursor(self, batch: SyncBatch) -> bool:
            return False

    with pytest.raises(TypeError, match="fetch_changes"):
        NoCatchUp(fake_config(), store=InMemoryStore())  # type: ignore[abstract]


def test_registry_refuses_a_second_spec_under_a_taken_key() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ProviderSpec(key="fake", config_model=FakeProviderConfig,
                                       adapter=FakeProviderAdapter))
    assert registry.get_spec("fake") is SPEC


def test_an_unknown_provider_is_a_clear_error() -> None:
    from mailparity.errors import ConfigurationError
    from mailparity.models import provider_config_from_dict

    with pytest.raises(ConfigurationError, match="unknown provider 'pop3'"):
        provider_config_from_dict({"provider": "pop3", "provider_id": "x", "tenant": "t",
                                   "mailbox": "m"})


# --------------------------------------------------------------------------------------------
# The third provider through processing, maintenance, webhooks, WSGI and the CLI


@pytest.mark.parametrize("make_store", [InMemoryStore, lambda: SqliteStore(":memory:")])
def test_processing_delivers_the_third_providers_messages(make_store: Any) -> None:
    store = make_store()
    box = seeded(store)
    box.add("m-1")
    box.changes, box.next_cursor = ["m-1", "m-2"], 7
    box.add("m-2")
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher, clock=lambda: NOW, sleep=lambda _s: None)
    store.enqueue_job(Job(kind="sync", provider_id="f-1", payload={"reason": "test"},
                          available_at=NOW, created_at=NOW))
    assert processor.run_pending() == 1
    assert [(e.email_data.provider, e.email_data.id) for e in publisher.events] == [
        ("fake", "m-1"), ("fake", "m-2")]
    assert store.get_provider("f-1").cursor == 7  # committed through compare_and_set_cursor
    assert box.marked == ["m-1", "m-2"]


def test_the_generic_cursor_compare_and_set() -> None:
    store = InMemoryStore()
    seeded(store, cursor=5)
    assert store.compare_and_set_cursor("f-1", 4, 9) is False
    assert store.compare_and_set_cursor("f-1", 5, 9) is True
    assert store.get_provider("f-1").cursor == 9
    with pytest.raises(ValueError, match="not a Gmail provider"):
        store.compare_and_set_history_id("f-1", 9, 10)  # the old name serves history_id only


def test_maintenance_renews_the_third_provider_with_its_own_rule() -> None:
    store = InMemoryStore()
    box = seeded(store)
    maintenance = Maintenance(store, InMemoryPublisher(), clock=lambda: NOW,
                              sleep=lambda _s: None, fake_renew_before=timedelta(hours=3))
    assert maintenance.fake_renew_before == timedelta(hours=3)
    report = maintenance.renew_subscriptions()
    assert report.created == ["f-1"]
    assert box.count("register") == 1
    assert store.get_provider("f-1").subscription == "sub-new"
    assert store.find_provider_by_subscription("sub-new").provider_id == "f-1"
    assert report.syncs_enqueued == ["f-1"]
    # The subscription lives two days: nothing to renew within three hours of now.
    assert maintenance.renew_subscriptions().skipped == ["f-1"]
    with pytest.raises(TypeError, match="unexpected keyword"):
        Maintenance(store, InMemoryPublisher(), imap_idle_every=timedelta(minutes=5))


def test_the_webhook_handler_routes_the_third_providers_pushes() -> None:
    store = InMemoryStore()
    box = seeded(store)
    box.add("m-9")
    publisher = InMemoryPublisher()
    handler = WebhookHandler(store=store, publisher=publisher, clock=lambda: NOW,
                             sleep=lambda _s: None)
    assert "fake" in handler.push_keys
    body = json.dumps({"mailbox": "BOX@example.com", "message_id": "m-9"}).encode()
    refused = handler.handle("fake", WebhookRequest("POST", {}, {"X-Fake-Secret": "no"}, body))
    assert refused.status == 403
    answer = handler.handle_fake(WebhookRequest("POST", {}, {"X-Fake-Secret": "s3cret"}, body))
    assert answer.status == 202
    assert handler.run_pending() == 1
    assert [e.email_data.id for e in publisher.events] == ["m-9"]
    assert handler.handle("nope", WebhookRequest("POST")).status == 404


def test_the_wsgi_app_mounts_the_third_provider() -> None:
    store = InMemoryStore()
    seeded(store)
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(), clock=lambda: NOW)
    app = make_wsgi_app(handler)
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = json.dumps({"mailbox": "box@example.com", "message_id": "m-1"}).encode()
    import io

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/fake", "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
               "HTTP_X_FAKE_SECRET": "s3cret"}
    b"".join(app(environ, start_response))
    assert seen["status"].startswith("202")
    assert [j.kind for j in store.list_jobs()] == ["message"]


def test_the_cli_lists_syncs_and_renews_the_third_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    box = seeded(store)
    box.add("m-1")
    box.changes, box.next_cursor = ["m-1"], 3
    store.close()
    events = tmp_path / "events.jsonl"
    base = ["--store", str(path), "--events", str(events)]
    assert main([*base, "providers", "list"]) == 0
    assert re.search(r"f-1\s+fake\s+box@example.com\s+active", capsys.readouterr().out)
    assert main([*base, "sync", "f-1"]) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["emailData"]["provider"], e["emailData"]["id"]) for e in lines] == [("fake", "m-1")]
    assert main([*base, "renew"]) == 0
    assert box.count("register") == 1


class TestTheStoreContractCoversTheThirdProvider(StoreContract):
    """The shipped store contract, with the third provider registered: its provider checks take
    the third provider's sample config from its testing kit like the built-in ones'."""

    @pytest.fixture
    def store(self) -> InMemoryStore:
        return InMemoryStore()

    def test_the_third_provider_is_among_the_kits(self) -> None:
        assert "fake" in [key for key, _kit in provider_kits()]
