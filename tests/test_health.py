"""Health: ``/healthz`` and ``/readyz`` (store reachable, worker heartbeat recent) in the bundled
WSGI app, and the heartbeat the worker records. The framework integrations are tested in their
own files."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mailparity.errors import StoreError
from mailparity.health import (
    HEARTBEAT_KEY,
    HEARTBEAT_PROVIDER,
    HealthCheck,
    last_heartbeat,
    record_heartbeat,
)
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.worker import Worker
from mailparity.wsgi import make_wsgi_app
from webhook_support import make_handler, make_store

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def body(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.body)
    return document


class BrokenStore(InMemoryStore):
    """A store whose database is gone; the error text names a password-bearing URL."""

    def get_meta(self, provider_id: str, key: str) -> str | None:
        raise StoreError("could not connect to postgresql://app:hunter2@db.internal/mail")

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        raise StoreError("could not connect to postgresql://app:hunter2@db.internal/mail")


# ------------------------------------------------------------------------------ HealthCheck


def test_liveness_is_always_ok_even_with_a_broken_store() -> None:
    response = HealthCheck(BrokenStore(), clock=lambda: NOW).liveness()
    assert response.status == 200
    assert body(response) == {"status": "ok"}
    assert response.headers["Content-Type"] == "application/json"


def test_readiness_needs_a_recent_worker_heartbeat() -> None:
    store = InMemoryStore()
    check = HealthCheck(store, heartbeat_max_age=timedelta(minutes=5), clock=lambda: NOW)
    missing = check.readiness()
    assert missing.status == 503
    assert body(missing) == {
        "status": "unavailable", "checks": {"store": "ok", "worker": "no heartbeat recorded"},
    }
    record_heartbeat(store, NOW - timedelta(minutes=4))
    ready = check.readiness()
    assert ready.status == 200
    assert body(ready) == {"status": "ok", "checks": {"store": "ok", "worker": "ok"}}
    record_heartbeat(store, NOW - timedelta(minutes=6))
    stale = check.readiness()
    assert stale.status == 503
    assert body(stale)["checks"]["worker"] == "heartbeat 360 s old"


def test_readiness_without_a_worker_checks_the_store_only() -> None:
    check = HealthCheck(InMemoryStore(), require_worker=False, clock=lambda: NOW)
    response = check.readiness()
    assert response.status == 200
    assert body(response) == {"status": "ok", "checks": {"store": "ok"}}


def test_unreachable_store_is_503_without_the_error_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mailparity.health"):
        response = HealthCheck(BrokenStore(), clock=lambda: NOW).readiness()
    assert response.status == 503
    assert body(response) == {
        "status": "unavailable",
        "checks": {"store": "unreachable: StoreError", "worker": "unknown"},
    }
    assert b"hunter2" not in response.body
    assert "hunter2" not in caplog.text


def test_a_garbled_heartbeat_counts_as_none() -> None:
    store = InMemoryStore()
    store.set_meta(HEARTBEAT_PROVIDER, HEARTBEAT_KEY, "yesterday-ish")
    assert last_heartbeat(store) is None
    store.set_meta(HEARTBEAT_PROVIDER, HEARTBEAT_KEY, "2026-03-01T08:59:00")  # naive: UTC
    assert last_heartbeat(store) == NOW - timedelta(minutes=1)
    assert HealthCheck(store, clock=lambda: NOW).respond("/elsewhere") is None


# ------------------------------------------------------------------------------ the worker


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_worker_records_a_heartbeat_while_it_runs_throttled() -> None:
    store = InMemoryStore()
    clock = Clock()
    worker = Worker(store, InMemoryPublisher(), clock=clock, sleep=lambda _: None,
                    heartbeat_interval=30)
    assert worker.run(stop_after=1) == 0  # an idle worker beats too
    assert last_heartbeat(store) == NOW
    clock.now = NOW + timedelta(seconds=10)
    worker.run_once()
    assert last_heartbeat(store) == NOW  # within the interval: no write
    clock.now = NOW + timedelta(seconds=31)
    worker.run_once()
    assert last_heartbeat(store) == NOW + timedelta(seconds=31)
    assert HealthCheck(store, clock=clock).readiness().status == 200


def test_a_failing_heartbeat_does_not_stop_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(BrokenStore(), InMemoryPublisher(), clock=lambda: NOW, sleep=lambda _: None)
    with caplog.at_level(logging.WARNING, logger="mailparity.worker"):
        worker.heartbeat(force=True)
    assert "heartbeat not recorded: StoreError" in caplog.text
    assert "hunter2" not in caplog.text


# ------------------------------------------------------------------------------ WSGI


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO(b"")}
    data = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], data


def test_wsgi_app_serves_healthz_and_readyz() -> None:
    store = make_store()
    app = make_wsgi_app(make_handler(store))  # the default check reads the handler's store
    status, headers, data = call(app, "/healthz")
    assert status == "200 OK"
    assert json.loads(data) == {"status": "ok"}
    assert headers["Cache-Control"] == "no-store"
    status, _, data = call(app, "/readyz")
    assert status == "503 Service Unavailable"
    assert json.loads(data)["checks"]["worker"] == "no heartbeat recorded"
    record_heartbeat(store, datetime.now(timezone.utc))
    assert call(app, "/readyz/")[0] == "200 OK"
    assert call(app, "/healthz", method="POST")[0] == "405 Method Not Allowed"
    assert call(app, "/nothing")[0] == "404 Not Found"


def test_wsgi_app_takes_a_custom_check() -> None:
    store = make_store()
    app = make_wsgi_app(make_handler(store),
                        health=HealthCheck(store, require_worker=False, clock=lambda: NOW))
    assert call(app, "/readyz")[0] == "200 OK"
