"""The attack suite: what a hostile sender or a careless deployment could do, replayed.

Each test replays one attack, over real HTTP on 127.0.0.1 wherever the attack arrives over HTTP,
and asserts the safe outcome. They stay here so that each fix stays fixed:

* webhook floods: one summary log line per request, however many items; items per Graph
  notification capped;
* a Pub/Sub push signed by an allowed service account but delivered by another subscription than
  the mailbox's own: acknowledged, ignored, no job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.webhooks import GOOGLE_CERTS_URL, WebhookHandler
from mailparity.wsgi import WebhookServer, serve_in_thread
from webhook_support import (
    AUDIENCE,
    CLIENT_STATE,
    GMAIL_MAILBOX,
    GMAIL_PROVIDER,
    PUSH_SA,
    assert_no_secrets,
    gmail_config,
    graph_item,
    microsoft_config,
)

MEGABYTE = 1_000_000
LOOPBACK = re.compile(r"http://127\.0\.0\.1:\d+/")


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="attack-kid")


class Site:
    """A webhook server on loopback with one Graph and one Gmail mailbox."""

    def __init__(self, server: WebhookServer, store: InMemoryStore, signer: TestOidcSigner,
                 handler: WebhookHandler) -> None:
        self.server = server
        self.store = store
        self.signer = signer
        self.handler = handler

    def post(self, path: str, body: bytes, **headers: str) -> requests.Response:
        return requests.post(f"{self.server.url}{path}", data=body, timeout=30,
                             headers={"Content-Type": "application/json", **headers})

    def push(self, body: bytes) -> requests.Response:
        token = self.signer.push_token(AUDIENCE, PUSH_SA)
        return self.post("/webhooks/google", body, Authorization=f"Bearer {token}")


@pytest.fixture
def site(signer: TestOidcSigner) -> Iterator[Site]:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    store.save_provider(gmail_config(
        history_id=1000, pubsub_subscription_name="gmail-push"))
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(),
                             google_audience=AUDIENCE, google_service_accounts=[PUSH_SA])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(LOOPBACK)
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json(),
                 headers={"Cache-Control": "public, max-age=3600"})
        with serve_in_thread(handler) as server:
            yield Site(server, store, signer, handler)


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


# ------------------------------------------------------------------------------------------------
# Webhook floods


def _filled(item: Any, limit: int = MEGABYTE) -> bytes:
    """A ``{"value": [...]}`` body of about ``limit`` bytes, repeating ``item``."""
    one = len(json.dumps(item, separators=(",", ":"))) + 1
    count = (limit - 16) // one
    return json.dumps({"value": [item] * count}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"subscriptionId": "guessed-subscription", "clientState": "guess"},
                     id="unknown-subscriptions"),
        pytest.param(7, id="list-of-numbers"),
    ],
)
def test_one_megabyte_graph_flood_is_refused_with_one_log_line(
    site: Site, caplog: pytest.LogCaptureFixture, item: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    body = _filled(item)
    assert MEGABYTE * 0.9 < len(body) <= MEGABYTE
    response = site.post("/webhooks/microsoft", body)
    assert response.status_code == 413
    assert len(_records(caplog, "mailparity.webhooks")) == 1
    assert site.store.list_jobs() == []


def test_items_up_to_the_cap_are_summarised_in_one_line(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    cap = site.handler.max_notification_items
    items: list[Any] = [graph_item("AAMkAGI2THVSAAA=")]
    items += [{"subscriptionId": f"guessed-{n}", "clientState": "forged-state-1"}
              for n in range(cap - 3)]
    items += [graph_item("AAMkAGI2THVTAAA=", client_state="forged-state-2"), 12]
    response = site.post("/webhooks/microsoft", json.dumps({"value": items}).encode())
    assert response.status_code == 202
    lines = _records(caplog, "mailparity.webhooks")
    assert len(lines) == 1
    line = lines[0]
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert f"{cap} item(s), 1 job(s) queued" in text
    assert f"{cap - 3} unknown subscription ('guessed-0', 'guessed-1', 'guessed-2', ...)" in text
    assert "1 missing or wrong clientState (ms-1)" in text
    assert "1 not an object" in text
    assert_no_secrets(caplog.text, "forged-state-1", "forged-state-2")
    assert len(site.store.list_jobs()) == 1


def test_one_item_over_the_cap_is_refused_whole(site: Site) -> None:
    cap = site.handler.max_notification_items
    body = json.dumps({"value": [graph_item()] * (cap + 1)}).encode()
    assert site.post("/webhooks/microsoft", body).status_code == 413
    assert site.store.list_jobs() == []


def test_the_item_cap_is_configurable() -> None:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(),
                             max_notification_items=2)
    with serve_in_thread(handler) as server:
        url = f"{server.url}/webhooks/microsoft"
        two = {"value": [graph_item("AAMkAGI2THVSAAA="), graph_item("AAMkAGI2THVTAAA=")]}
        assert requests.post(url, json=two, timeout=10).status_code == 202
        three = {"value": [*two["value"], graph_item("AAMkAGI2THVUAAA=")]}
        assert requests.post(url, json=three, timeout=10).status_code == 413
    assert len(store.list_jobs()) == 2


# ------------------------------------------------------------------------------------------------
# Pub/Sub pushes bound to the mailbox's own subscription


def test_push_from_another_subscription_is_acknowledged_and_ignored(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailparity")
    body = pubsub_push_body(GMAIL_MAILBOX, 2000,
                            subscription="projects/attacker/subscriptions/gmail-push")
    response = site.push(body)
    assert response.status_code == 204
    assert site.store.list_jobs() == []
    lines = [r.getMessage() for r in _records(caplog, "mailparity.webhooks")
             if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "projects/attacker/subscriptions/gmail-push" in lines[0]
    assert "projects/my-project/subscriptions/gmail-push" in lines[0]
    assert site.store.get_meta(GMAIL_PROVIDER, "last_push_at") is None


def test_push_from_the_mailbox_own_subscription_is_queued(site: Site) -> None:
    body = pubsub_push_body(GMAIL_MAILBOX, 2000,
                            subscription="projects/my-project/subscriptions/gmail-push")
    assert site.push(body).status_code == 204
    jobs = site.store.list_jobs()
    assert [(job.kind, job.provider_id) for job in jobs] == [("gmail_history", GMAIL_PROVIDER)]


@pytest.mark.parametrize(
    ("configured", "project", "pushed", "accepted"),
    [
        (None, "p", "projects/anything/subscriptions/x", True),
        ("sub", "p", "projects/p/subscriptions/sub", True),
        ("sub", "p", "projects/q/subscriptions/sub", False),
        ("sub", None, "projects/q/subscriptions/sub", True),
        ("sub", None, "projects/q/subscriptions/other", False),
        ("sub", None, "projects/a/b/subscriptions/sub", False),
        ("sub", None, "sub", False),
        ("projects/p/subscriptions/sub", None, "projects/p/subscriptions/sub", True),
        ("projects/p/subscriptions/sub", "q", "projects/q/subscriptions/sub", False),
    ],
)
def test_subscription_binding_rule(
    configured: str | None, project: str | None, pushed: str, accepted: bool
) -> None:
    config = gmail_config(pubsub_subscription_name=configured, project_id=project)
    assert config.accepts_push_subscription(pushed) is accepted


def test_client_state_is_never_logged_in_the_summary(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    near_miss = CLIENT_STATE[:-1] + "x"
    body = json.dumps({"value": [graph_item(client_state=near_miss)]}).encode()
    assert site.post("/webhooks/microsoft", body).status_code == 202
    assert_no_secrets(caplog.text, near_miss)
    assert "missing or wrong clientState" in caplog.text
