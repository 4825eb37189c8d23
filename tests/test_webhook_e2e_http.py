"""End to end over real HTTP on 127.0.0.1: provider push -> WebhookHandler (served by
wsgi.serve_in_thread) -> job -> run_pending -> the real adapter (provider APIs mocked with
``responses``, loopback passed through) -> the published INBOUND_EMAIL_RECEIVED event."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from mailparity.models import InboundEmailReceived, OAuthTokens
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.webhooks import GOOGLE_CERTS_URL, WebhookHandler
from mailparity.wsgi import WebhookServer, serve_in_thread
from webhook_support import (
    AUDIENCE,
    GMAIL_PROVIDER,
    MS_PROVIDER,
    PUSH_SA,
    assert_no_secrets,
    gmail_config,
    graph_item,
    microsoft_config,
)

GRAPH_MESSAGE_ID = "AAMkAGI2TG93AAA="


def _tokens() -> OAuthTokens:
    return OAuthTokens(
        access_token="access-token-value-e2e",
        refresh_token="refresh-token-value-e2e",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )


class Env:
    def __init__(self, signer: TestOidcSigner) -> None:
        self.store = InMemoryStore()
        self.store.save_provider(microsoft_config())
        self.store.save_provider(gmail_config(history_id=1000))
        self.store.save_tokens(MS_PROVIDER, _tokens())
        self.store.save_tokens(GMAIL_PROVIDER, _tokens())
        self.publisher = InMemoryPublisher()
        self.session = requests.Session()
        self.handler = WebhookHandler(
            store=self.store,
            publisher=self.publisher,
            session=self.session,
            google_audience=AUDIENCE,
            google_service_accounts=[PUSH_SA],
        )
        self.signer = signer


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="e2e-kid")


@pytest.fixture
def env(signer: TestOidcSigner) -> Iterator[tuple[Env, WebhookServer, responses.RequestsMock]]:
    environment = Env(signer)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))
        with serve_in_thread(environment.handler) as server:
            yield environment, server, mock
    environment.session.close()


def test_graph_validation_over_http(env: Any) -> None:
    environment, server, _ = env
    answer = requests.post(
        f"{server.url}/webhooks/microsoft",
        params={"validationToken": "Validation: Testing client application reachability"},
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text == "Validation: Testing client application reachability"
    assert environment.handler.run_pending() == 0
    assert environment.publisher.events == []


def test_graph_notification_ends_as_one_event(env: Any, corpus_dir: Path) -> None:
    environment, server, mock = env
    message = json.loads(
        (corpus_dir / "graph_api" / "msgraphdocs__message-get__get_message.json").read_text()
    )
    message.pop("@odata.context", None)
    message["id"] = GRAPH_MESSAGE_ID
    mock.get(re.compile(r"https://graph\.microsoft\.com/v1\.0/.*messages/.*"), json=message)

    body = {"value": [graph_item(GRAPH_MESSAGE_ID), graph_item(GRAPH_MESSAGE_ID)]}
    answer = requests.post(f"{server.url}/webhooks/microsoft", json=body, timeout=5)
    assert answer.status_code == 202
    assert environment.handler.run_pending() >= 1

    events = [e for e in environment.publisher.events if isinstance(e, InboundEmailReceived)]
    assert len(events) == 1
    event = events[0]
    assert event.provider_id == MS_PROVIDER
    assert event.email_data.id == GRAPH_MESSAGE_ID
    assert event.email_data.provider == "microsoft"
    assert event.email_data.subject == message.get("subject", "")
    dumped = json.dumps(event.model_dump(mode="json", by_alias=True))
    assert_no_secrets(dumped, "access-token-value-e2e", "refresh-token-value-e2e")

    # A redelivery of the same notification publishes nothing new.
    again = requests.post(f"{server.url}/webhooks/microsoft", json=body, timeout=5)
    assert again.status_code == 202
    environment.handler.run_pending()
    assert len([e for e in environment.publisher.events
                if isinstance(e, InboundEmailReceived)]) == 1


def test_forged_graph_notification_fetches_nothing(env: Any) -> None:
    environment, server, mock = env
    body = {"value": [graph_item("FORGED", client_state="guessed")]}
    answer = requests.post(f"{server.url}/webhooks/microsoft", json=body, timeout=5)
    assert answer.status_code == 202
    assert environment.handler.run_pending() == 0
    assert environment.publisher.events == []
    assert [c for c in mock.calls if "graph.microsoft.com" in c.request.url] == []


def test_signed_pubsub_push_ends_as_one_event(env: Any, corpus_dir: Path) -> None:
    environment, server, mock = env
    gmail_message = json.loads(
        (corpus_dir / "gmail_api" / "gmailparse__plainTextMessage.json").read_text()
    )
    gmail_message["labelIds"] = ["INBOX", "UNREAD"]
    message_id = gmail_message["id"]
    mock.get(GOOGLE_CERTS_URL, json=environment.signer.certs_json(),
             headers={"Cache-Control": "public, max-age=3600"})
    history = {
        "history": [{
            "id": "1500",
            "messages": [{"id": message_id, "threadId": message_id}],
            "messagesAdded": [{"message": {"id": message_id, "threadId": message_id,
                                           "labelIds": ["INBOX", "UNREAD"]}}],
        }],
        "historyId": "2000",
    }
    mock.get(re.compile(r"https://gmail\.googleapis\.com/gmail/v1/users/[^/]+/history.*"),
             json=history)
    mock.get(re.compile(rf"https://gmail\.googleapis\.com/gmail/v1/users/[^/]+/messages/"
                        rf"{message_id}.*"), json=gmail_message)

    token = environment.signer.push_token(AUDIENCE, PUSH_SA)
    answer = requests.post(
        f"{server.url}/webhooks/google",
        data=pubsub_push_body("user@example.com", 2000),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 204
    assert environment.handler.run_pending() >= 1

    events = [e for e in environment.publisher.events if isinstance(e, InboundEmailReceived)]
    assert len(events) == 1
    assert events[0].provider_id == GMAIL_PROVIDER
    assert events[0].email_data.id == message_id
    assert events[0].email_data.provider == "google"
    # The cursor moved only after the event went out.
    config = environment.store.get_provider(GMAIL_PROVIDER)
    assert config is not None
    assert config.history_id == 2000

    # A stale redelivery is acknowledged and makes no job.
    stale = requests.post(
        f"{server.url}/webhooks/google",
        data=pubsub_push_body("user@example.com", 2000),
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert stale.status_code == 204
    assert environment.handler.run_pending() == 0


def test_unsigned_pubsub_push_is_refused_over_http(env: Any) -> None:
    environment, server, _ = env
    answer = requests.post(f"{server.url}/webhooks/google",
                           data=pubsub_push_body("user@example.com", 2000), timeout=5)
    assert answer.status_code == 401
    assert environment.handler.run_pending() == 0
    assert environment.publisher.events == []
