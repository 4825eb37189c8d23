"""The FastAPI router, driven through Starlette's TestClient (httpx)."""

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

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mailparity.contrib.fastapi import webhook_router  # noqa: E402


@pytest.fixture
def setup() -> Any:
    store = make_store()
    handler = make_handler(store, max_body_bytes=5000)
    app = fastapi.FastAPI()
    app.include_router(webhook_router(handler), prefix="/mail")
    return TestClient(app), store


def test_validation(setup: Any) -> None:
    client, _ = setup
    response = client.post("/mail/webhooks/microsoft",
                           params={"validationToken": "Validation: a b+c&d"},
                           content=b"", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert response.content == b"Validation: a b+c&d"
    assert response.headers["content-type"].startswith("text/plain")


def test_notification(setup: Any) -> None:
    client, store = setup
    response = client.post("/mail/webhooks/microsoft",
                           content=json.dumps({"value": [graph_item("MSG-1")]}),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 202
    assert response.content == b""
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["MSG-1"]


def test_bad_input(setup: Any) -> None:
    client, store = setup
    assert client.post("/mail/webhooks/microsoft", content=b"{").status_code == 400
    assert client.get("/mail/webhooks/microsoft").status_code == 405
    assert client.post("/mail/webhooks/microsoft", content=b"x" * 6000).status_code == 413

    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    # No Content-Length (chunked): the running total still enforces the limit.
    assert client.post("/mail/webhooks/microsoft", content=chunks()).status_code == 413
    assert client.get("/mail/webhooks/google").status_code == 405
    assert client.post("/mail/webhooks/google", content=b"{}").status_code == 401
    assert jobs_of(store) == []


def test_not_in_openapi_schema(setup: Any) -> None:
    client, _ = setup
    assert "/mail/webhooks/microsoft" not in client.get("/openapi.json").json()["paths"]


def test_google_push() -> None:
    signer = TestOidcSigner(kid="fastapi-kid")
    store = make_store()
    app = fastapi.FastAPI()
    app.include_router(webhook_router(make_handler(store)))
    client = TestClient(app)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json())
        response = client.post(
            "/webhooks/google",
            content=pubsub_push_body("user@example.com", 5000),
            headers={"Authorization": f"Bearer {signer.push_token(AUDIENCE, PUSH_SA)}",
                     "Content-Type": "application/json"},
        )
    assert response.status_code == 204
    assert [j.payload for j in jobs_of(store)] == [{"history_id": 5000}]


def test_health_endpoints() -> None:
    from datetime import datetime, timezone

    from mailparity.health import HealthCheck, record_heartbeat

    store = make_store()
    app = fastapi.FastAPI()
    check = HealthCheck(store, clock=lambda: datetime(2026, 3, 1, tzinfo=timezone.utc))
    app.include_router(webhook_router(make_handler(store), health=check), prefix="/mail")
    client = TestClient(app)
    live = client.get("/mail/healthz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    not_ready = client.get("/mail/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["worker"] == "no heartbeat recorded"
    record_heartbeat(store, datetime(2026, 3, 1, tzinfo=timezone.utc))
    ready = client.get("/mail/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"store": "ok", "worker": "ok"}}
    assert "/mail/readyz" not in json.dumps(app.openapi())
