"""wsgi.make_wsgi_app (driven with synthetic environs) and serve_in_thread (real loopback HTTP),
and the webhook semantics every push source shares, over Microsoft Graph and over the third,
test-only provider of ``third_provider.py`` (the handler and the WSGI app know neither).

The other webhook suites (``test_webhooks_microsoft.py``, ``test_webhooks_google.py``) test each
provider's own push format (Graph's validation handshake and notification items, Pub/Sub's OIDC
tokens and envelope) and stay provider-specific; so do the synthetic-environ tests below, which
use a Graph notification as their body."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.maintenance import LAST_PUSH_META
from mailparity.models import InboundEmailReceived
from mailparity.processing import Processor
from mailparity.publishers import InMemoryPublisher
from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.webhooks import WebhookRequest, WebhookResponse
from mailparity.wsgi import make_wsgi_app, serve_in_thread
from third_provider import FakeProviderConfig, push_request
from webhook_support import (
    MS_PROVIDER,
    T0,
    graph_item,
    graph_post,
    jobs_of,
    make_handler,
    make_store,
)


class Stream(io.BytesIO):
    """wsgi.input that records how much was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_sizes: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.read_sizes.append(size)
        return super().read(size)


def call(app: Any, method: str, path: str, body: bytes = b"", *, query: str = "",
         content_length: str | None = None, **environ: Any) -> tuple[str, dict[str, str], bytes]:
    stream = Stream(body)
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)) if content_length is None else content_length,
        "wsgi.input": stream,
        **environ,
    }
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status
        captured["headers"] = dict(headers)

    chunks = list(app(env, start_response))
    captured["stream"] = stream
    return captured["status"], captured["headers"], b"".join(chunks)


@pytest.fixture
def setup() -> Any:
    store = make_store()
    handler = make_handler(store, max_body_bytes=2000)
    return make_wsgi_app(handler), store


def test_validation_query_is_url_decoded(setup: Any) -> None:
    app, _ = setup
    status, headers, body = call(app, "POST", "/webhooks/microsoft",
                                 query="validationToken=Validation%3A%20caf%C3%A9+ok")
    assert status == "200 OK"
    assert body == "Validation: café ok".encode()
    assert headers["Content-Length"] == str(len(body))


def test_notification_and_routes(setup: Any) -> None:
    app, store = setup
    payload = json.dumps({"value": [graph_item("MSG-1")]}).encode()
    status, _, body = call(app, "POST", "/webhooks/microsoft/", payload,
                           CONTENT_TYPE="application/json")
    assert status == "202 Accepted"
    assert body == b""
    assert len(jobs_of(store)) == 1
    assert call(app, "POST", "/elsewhere")[0] == "404 Not Found"
    assert call(app, "GET", "/webhooks/google")[0] == "405 Method Not Allowed"


def test_declared_oversized_body_is_not_read(setup: Any) -> None:
    app, store = setup
    status, _, _ = call(app, "POST", "/webhooks/microsoft", b"x" * 10, content_length="999999")
    assert status.startswith("413")
    assert jobs_of(store) == []


@pytest.mark.parametrize("length", ["abc", "-1", "1.5"])
def test_bad_content_length_is_400(setup: Any, length: str) -> None:
    app, _ = setup
    assert call(app, "POST", "/webhooks/microsoft", b"{}", content_length=length)[0].startswith(
        "400"
    )


def test_short_body_is_400(setup: Any) -> None:
    app, _ = setup
    assert call(app, "POST", "/webhooks/microsoft", b"{}", content_length="10")[0].startswith(
        "400"
    )


def test_body_without_length(setup: Any) -> None:
    app, _ = setup
    # Without a length and without wsgi.input_terminated the body is not read at all.
    status, _, _ = call(app, "POST", "/webhooks/microsoft", b'{"value": []}', content_length="")
    assert status.startswith("400")
    # With input_terminated (a de-chunking server) it is read, capped.
    status, _, _ = call(app, "POST", "/webhooks/microsoft", b'{"value": []}', content_length="",
                        **{"wsgi.input_terminated": True})
    assert status.startswith("202")
    status, _, _ = call(app, "POST", "/webhooks/microsoft", b"x" * 3000, content_length="",
                        **{"wsgi.input_terminated": True})
    assert status.startswith("413")


def test_handler_bug_is_500_without_details() -> None:
    class Broken:
        max_body_bytes = 100

        def handle_microsoft(self, request: WebhookRequest) -> WebhookResponse:
            raise RuntimeError("secret-ish detail")

        handle_google = handle_microsoft

    app = make_wsgi_app(Broken())  # type: ignore[arg-type]
    status, _, body = call(app, "POST", "/webhooks/microsoft", b"{}")
    assert status.startswith("500")
    assert b"secret-ish" not in body


def test_headers_reach_the_handler() -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        max_body_bytes = 100

        def handle_google(self, request: WebhookRequest) -> WebhookResponse:
            seen["request"] = request
            return WebhookResponse(204, {}, b"")

        handle_microsoft = handle_google

    app = make_wsgi_app(Recorder(), google_path="/g")  # type: ignore[arg-type]
    call(app, "POST", "/g", b"{}", query="a=1&a=2&b=", HTTP_AUTHORIZATION="Bearer x",
         CONTENT_TYPE="application/json")
    request = seen["request"]
    assert request.headers["authorization"] == "Bearer x"
    assert request.headers["content-type"] == "application/json"
    assert request.query == {"a": "1", "b": ""}
    assert request.body == b"{}"


# ------------------------------------------------------------------ a real server on loopback


@pytest.fixture
def server() -> Iterator[Any]:
    store = make_store()
    handler = make_handler(store, max_body_bytes=5000, verify_google_tokens=False,
                           google_audience=None, google_service_accounts=())
    with serve_in_thread(handler) as running:
        yield running, store


def test_serve_in_thread_round_trip(server: Any) -> None:
    running, store = server
    assert running.url.startswith("http://127.0.0.1:")
    with requests.Session() as session:
        answer = session.post(f"{running.url}/webhooks/microsoft",
                              params={"validationToken": "a b&c"}, timeout=5)
        assert (answer.status_code, answer.text) == (200, "a b&c")
        answer = session.post(f"{running.url}/webhooks/microsoft",
                              json={"value": [graph_item("MSG-1")]}, timeout=5)
        assert answer.status_code == 202
        answer = session.post(f"{running.url}/webhooks/google",
                              data=pubsub_push_body("user@example.com", 5000), timeout=5)
        assert answer.status_code == 204
        answer = session.post(f"{running.url}/webhooks/microsoft", data=b"x" * 6000, timeout=5)
        assert answer.status_code == 413
    assert sorted(j.kind for j in jobs_of(store)) == ["cursor", "message"]


def test_raw_http_answer_is_buffered_and_complete(server: Any) -> None:
    from mailparity.wsgi import _RequestHandler

    # Buffered writer (headers + body flushed together) and TCP_NODELAY: no delayed-ACK stall.
    assert _RequestHandler.wbufsize != 0
    assert _RequestHandler.disable_nagle_algorithm is True
    running, _ = server
    with socket.create_connection((running.host, running.port), timeout=5) as sock:
        sock.sendall(
            b"GET /webhooks/microsoft?validationToken=hello HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"\r\n\r\nhello")


def test_signer_certs_are_pem() -> None:
    signer = TestOidcSigner(kid="k")
    assert list(signer.certs_json()) == ["k"]
    assert signer.certs_json()["k"].startswith("-----BEGIN CERTIFICATE-----")
    assert "k" in repr(signer)
    body = json.loads(pubsub_push_body("a@b.c", "77", message_id="m-1", urlsafe=True,
                                       attributes={"x": "y"}))
    assert body["message"]["messageId"] == body["message"]["message_id"] == "m-1"
    assert body["message"]["attributes"] == {"x": "y"}
    assert body["subscription"].startswith("projects/")


# ------------------------------------------------------------------ every push source, generically


class PushCase:
    """One provider's mailbox in a FlakyStore, and the push of one new message to it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.store = make_store()
        if kind == "microsoft":
            self.provider_id = MS_PROVIDER
        else:
            self.provider_id = "f-1"
            self.store.save_provider(FakeProviderConfig(
                provider_id="f-1", tenant="tenant-1", mailbox="box@example.com"))

    def push(self, message_id: str = "MSG-1") -> WebhookRequest:
        if self.kind == "microsoft":
            return graph_post(graph_item(message_id))
        return push_request("box@example.com", message_id)


@pytest.fixture
def case(provider_kind: str) -> PushCase:
    return PushCase(provider_kind)


def test_a_push_is_queued_and_recorded(case: PushCase) -> None:
    handler = make_handler(case.store)
    assert handler.handle(case.kind, case.push()).status == 202
    [job] = jobs_of(case.store)
    assert (job.kind, job.provider_id, job.payload["message_id"]) == (
        "message", case.provider_id, "MSG-1")
    assert case.store.get_meta(case.provider_id, LAST_PUSH_META) == T0.isoformat()
    # The same push again (providers redeliver): still one job.
    assert handler.handle(case.kind, case.push()).status == 202
    assert len(jobs_of(case.store)) == 1


def test_a_store_failure_is_503_and_the_redelivery_lands(case: PushCase) -> None:
    handler = make_handler(case.store)
    case.store.fail_enqueue = {"*"}
    assert handler.handle(case.kind, case.push()).status == 503  # the provider retries
    assert jobs_of(case.store) == []
    case.store.fail_enqueue = set()
    assert handler.handle(case.kind, case.push()).status == 202
    assert len(jobs_of(case.store)) == 1


def test_a_store_failure_answers_503_with_retry_after_from_the_core(case: PushCase) -> None:
    # Neither the third provider's push source nor the handler's callers handle store failures:
    # the guarded store and the handler answer 503 for every push source alike.
    handler = make_handler(case.store)
    case.store.fail_enqueue = {"*"}
    response = handler.handle(case.kind, case.push())
    assert (response.status, response.headers["Retry-After"]) == (503, "10")
    assert jobs_of(case.store) == []


def test_a_failed_mailbox_lookup_is_503_and_the_redelivery_lands(case: PushCase) -> None:
    handler = make_handler(case.store)
    case.store.fail_lookup = True
    assert handler.handle(case.kind, case.push()).status == 503
    assert jobs_of(case.store) == []
    case.store.fail_lookup = False
    assert handler.handle(case.kind, case.push()).status == 202
    assert len(jobs_of(case.store)) == 1


def test_redeliveries_coalesce_but_other_pushes_do_not(case: PushCase) -> None:
    handler = make_handler(case.store)
    for message_id in ("MSG-1", "MSG-2", "MSG-1", "MSG-2"):
        assert handler.handle(case.kind, case.push(message_id)).status == 202
    jobs = jobs_of(case.store)
    assert sorted(j.payload["message_id"] for j in jobs) == ["MSG-1", "MSG-2"]
    assert all(j.unique_key for j in jobs)


def test_recording_the_push_time_is_advisory(case: PushCase) -> None:
    case.store.fail_meta = True
    assert make_handler(case.store).handle(case.kind, case.push()).status == 202
    assert len(jobs_of(case.store)) == 1


def test_a_paused_mailbox_queues_nothing(case: PushCase) -> None:
    case.store.update_provider(case.provider_id, {"active": False})
    response = make_handler(case.store).handle(case.kind, case.push())
    assert 200 <= response.status < 300
    assert jobs_of(case.store) == []


def test_the_wsgi_app_routes_each_provider_to_its_push_source(case: PushCase) -> None:
    app = make_wsgi_app(make_handler(case.store))
    request = case.push()
    status, _, _ = call(app, "POST", f"/webhooks/{case.kind}", request.body,
                        **{f"HTTP_{k.upper().replace('-', '_')}": v
                           for k, v in request.headers.items()})
    assert status == "202 Accepted"
    assert [j.provider_id for j in jobs_of(case.store)] == [case.provider_id]
    assert call(app, "POST", "/webhooks/nobody")[0] == "404 Not Found"


def test_pushed_work_runs_through_the_handlers_processor(case: PushCase, clock: Any) -> None:
    config = case.store.get_provider(case.provider_id)
    box = FakeMailbox(config)  # type: ignore[arg-type]
    box.add("MSG-1")
    publisher = InMemoryPublisher()
    processor = Processor(case.store, publisher, clock=lambda: T0, sleep=clock.sleep,
                          adapter_factory=FakeAdapterFactory(box))
    handler = make_handler(case.store, publisher=publisher, processor=processor)
    assert handler.handle(case.kind, case.push()).status == 202
    assert handler.run_pending() == 1
    [event] = [e for e in publisher.events if isinstance(e, InboundEmailReceived)]
    assert (event.email_data.provider, event.email_data.id) == (case.kind, "MSG-1")
    assert jobs_of(case.store) == []
