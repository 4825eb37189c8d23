"""The Django URL patterns, driven through Django's test Client."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
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

django = pytest.importorskip("django")

URLCONF = "mailparity_test_django_urls"


@pytest.fixture(scope="module", autouse=True)
def _django_settings() -> None:
    # One settings configuration for every Django test module (Django configures once).
    import django_support

    django_support.configure()


def _client(max_body_bytes: int) -> Iterator[Any]:
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, include, path

    from mailparity.contrib.django import webhook_urlpatterns

    store = make_store()
    handler = make_handler(store, max_body_bytes=max_body_bytes)
    module = types.ModuleType(URLCONF)
    patterns = [path("mail/", include(webhook_urlpatterns(handler)))]
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    sys.modules[URLCONF] = module
    clear_url_caches()
    # Whatever another test configured, these requests route to our URLconf.
    with override_settings(ROOT_URLCONF=URLCONF, DATA_UPLOAD_MAX_MEMORY_SIZE=8000):
        # enforce_csrf_checks: the views must be exempt, as providers send no CSRF token.
        yield Client(enforce_csrf_checks=True), store
    del sys.modules[URLCONF]
    clear_url_caches()


@pytest.fixture
def setup() -> Iterator[Any]:
    yield from _client(5000)


def test_django_upload_limit_below_ours_is_413() -> None:
    for client, store in _client(100_000):
        response = client.post("/mail/webhooks/microsoft", data=b"x" * 9000,
                               content_type="application/json")
        assert response.status_code == 413
        assert jobs_of(store) == []


def test_validation(setup: Any) -> None:
    client, _ = setup
    response = client.post("/mail/webhooks/microsoft?validationToken=a%20b%2Bc%26d",
                           data=b"", content_type="text/plain")
    assert response.status_code == 200
    assert response.content == b"a b+c&d"
    assert response["Content-Type"].startswith("text/plain")


def test_notification(setup: Any) -> None:
    client, store = setup
    response = client.post("/mail/webhooks/microsoft",
                           data=json.dumps({"value": [graph_item("MSG-1")]}),
                           content_type="application/json")
    assert response.status_code == 202
    assert response.content == b""
    assert not response.has_header("Content-Type")
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["MSG-1"]


def test_bad_input(setup: Any) -> None:
    client, store = setup
    assert client.post("/mail/webhooks/microsoft", data=b"{",
                       content_type="application/json").status_code == 400
    assert client.get("/mail/webhooks/microsoft").status_code == 405
    assert client.post("/mail/webhooks/microsoft", data=b"x" * 6000,
                       content_type="application/json").status_code == 413
    assert client.get("/mail/webhooks/google").status_code == 405
    assert client.post("/mail/webhooks/google", data=b"{}",
                       content_type="application/json").status_code == 401
    assert jobs_of(store) == []


def test_google_push(setup: Any) -> None:
    client, store = setup
    signer = TestOidcSigner(kid="django-kid")
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json())
        response = client.post(
            "/mail/webhooks/google",
            data=pubsub_push_body("user@example.com", 5000),
            content_type="application/json",
            headers={"Authorization": f"Bearer {signer.push_token(AUDIENCE, PUSH_SA)}"},
        )
    assert response.status_code == 204
    assert [j.payload for j in jobs_of(store)] == [{"history_id": 5000}]


def test_url_names(setup: Any) -> None:
    from django.urls import reverse

    assert reverse("mailparity-microsoft") == "/mail/webhooks/microsoft"
    assert reverse("mailparity-google") == "/mail/webhooks/google"


def test_health_endpoints(setup: Any) -> None:
    from datetime import datetime, timezone

    from django.urls import reverse

    from mailparity.health import record_heartbeat

    client, store = setup
    assert reverse("mailparity-healthz") == "/mail/healthz"
    live = client.get("/mail/healthz")
    assert live.status_code == 200
    assert json.loads(live.content) == {"status": "ok"}
    not_ready = client.get(reverse("mailparity-readyz"))
    assert not_ready.status_code == 503
    assert json.loads(not_ready.content)["checks"]["worker"] == "no heartbeat recorded"
    record_heartbeat(store, datetime.now(timezone.utc))
    assert client.get("/mail/readyz").status_code == 200
    # Refused: by the CSRF middleware first (the health views are not exempt), else with 405.
    assert client.post("/mail/healthz").status_code == 403
