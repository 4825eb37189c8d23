"""The Flask blueprint, driven through Flask's own test client."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.webhooks import GOOGLE_CERTS_URL
from webhook_support import (
    AUDIENCE,
    PUSH_SA,
    graph_item,
    jobs_of,
    make_handler,
    make_store,
)

flask = pytest.importorskip("flask")
from mailparity.contrib.flask import webhook_blueprint  # noqa: E402


@pytest.fixture
def setup() -> Any:
    store = make_store()
    handler = make_handler(store, max_body_bytes=5000)
    app = flask.Flask("test")
    app.register_blueprint(webhook_blueprint(handler), url_prefix="/mail")
    return app.test_client(), store


def test_validation(setup: Any) -> None:
    client, _ = setup
    response = client.post("/mail/webhooks/microsoft?validationToken=a%20b%2Bc%26d",
                           data="", content_type="text/plain; charset=utf-8")
    assert response.status_code == 200
    assert response.get_data() == b"a b+c&d"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_notification(setup: Any) -> None:
    client, store = setup
    response = client.post("/mail/webhooks/microsoft",
                           data=json.dumps({"value": [graph_item("MSG-1")]}),
                           content_type="application/json")
    assert response.status_code == 202
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["MSG-1"]


def test_bad_input(setup: Any) -> None:
    client, store = setup
    assert client.post("/mail/webhooks/microsoft", data=b"{").status_code == 400
    assert client.get("/mail/webhooks/microsoft").status_code == 405
    assert client.post("/mail/webhooks/microsoft", data=b"x" * 6000).status_code == 413
    assert client.get("/mail/webhooks/google").status_code == 405
    assert client.post("/mail/webhooks/google", data=b"{}").status_code == 401
    assert jobs_of(store) == []


def test_google_push() -> None:
    signer = TestOidcSigner(kid="flask-kid")
    store = make_store()
    app = flask.Flask("test")
    app.register_blueprint(webhook_blueprint(make_handler(store)))
    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json())
        response = client.post(
            "/webhooks/google",
            data=pubsub_push_body("user@example.com", 5000),
            headers={"Authorization": f"Bearer {signer.push_token(AUDIENCE, PUSH_SA)}"},
            content_type="application/json",
        )
    assert response.status_code == 204
    assert [j.payload for j in jobs_of(store)] == [{"history_id": 5000}]


def test_health_endpoints() -> None:
    from datetime import datetime, timezone

    from mailparity.health import record_heartbeat

    store = make_store()
    app = flask.Flask("health")
    app.register_blueprint(webhook_blueprint(make_handler(store)), url_prefix="/mail")
    client = app.test_client()
    live = client.get("/mail/healthz")
    assert live.status_code == 200
    assert live.get_json() == {"status": "ok"}
    assert live.headers["Content-Type"] == "application/json"
    not_ready = client.get("/mail/readyz")
    assert not_ready.status_code == 503
    assert not_ready.get_json()["checks"] == {"store": "ok", "worker": "no heartbeat recorded"}
    record_heartbeat(store, datetime.now(timezone.utc))
    assert client.get("/mail/readyz").status_code == 200
    assert client.post("/mail/healthz").status_code == 405
