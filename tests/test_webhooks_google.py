"""WebhookHandler.handle_google: OIDC push authentication, envelopes, Gmail notifications.

Gmail-specific by nature (the Pub/Sub push format and its OIDC tokens are the point); the
semantics every push source shares run over each provider in ``test_webhooks_wsgi.py``."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses

from mailparity.errors import ConfigurationError
from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.webhooks import GOOGLE_CERTS_URL, WebhookHandler, WebhookRequest
from webhook_support import (
    AUDIENCE,
    GMAIL_MAILBOX,
    GMAIL_PROVIDER,
    PUSH_SA,
    T0,
    assert_no_secrets,
    gmail_config,
    jobs_of,
    make_handler,
    make_store,
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> Any:
        return self.now


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="kid-1")


@pytest.fixture
def store() -> Any:
    return make_store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler(store: Any, clock: Clock) -> WebhookHandler:
    return make_handler(store, clock=clock)


@pytest.fixture
def certs(signer: TestOidcSigner) -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json(),
                 headers={"Cache-Control": "public, max-age=19800, must-revalidate"})
        yield mock


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")


def push(token: str | None, body: bytes | None = None, *, history_id: Any = 2000,
         mailbox: str = GMAIL_MAILBOX) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = pubsub_push_body(mailbox, history_id) if body is None else body
    return WebhookRequest("POST", {}, headers, raw)


def envelope(data: str | None, **message: Any) -> bytes:
    msg: dict[str, Any] = {"messageId": "123", **message}
    if data is not None:
        msg["data"] = data
    return json.dumps({"message": msg, "subscription": "projects/p/subscriptions/s"}).encode()


def b64(obj: Any, *, urlsafe: bool = False, pad: bool = True) -> str:
    raw = json.dumps(obj).encode()
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


# ------------------------------------------------------------------ happy path


def test_signed_push_becomes_a_history_job(handler: WebhookHandler, store: Any, certs: Any,
                                           signer: TestOidcSigner) -> None:
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA)))
    assert response.status == 204
    [job] = jobs_of(store)
    assert job.kind == "cursor"
    assert job.provider_id == GMAIL_PROVIDER
    assert job.payload == {"history_id": 2000}
    assert job.unique_key == f"gmail-history:{GMAIL_PROVIDER}"
    assert store.get_meta(GMAIL_PROVIDER, "last_push_at") == T0.isoformat()


def test_certificates_are_cached(handler: WebhookHandler, store: Any, certs: Any,
                                 signer: TestOidcSigner) -> None:
    for history_id in (2000, 2001, 2002):
        token = signer.push_token(AUDIENCE, PUSH_SA)
        assert handler.handle_google(push(token, history_id=history_id)).status == 204
    assert len(certs.calls) == 1
    # Duplicate pushes coalesce into the pending job.
    assert len(jobs_of(store)) == 1


def test_certificates_are_refetched_after_max_age(handler: WebhookHandler, clock: Clock,
                                                  certs: Any, signer: TestOidcSigner) -> None:
    assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204
    clock.now = T0 + timedelta(seconds=19801)
    token = signer.push_token(AUDIENCE, PUSH_SA)
    assert handler.handle_google(push(token, history_id=3000)).status == 204
    assert len(certs.calls) == 2


@pytest.mark.parametrize(
    "history", [2000, "2000"], ids=["number", "string"]
)
@pytest.mark.parametrize(("urlsafe", "pad"), [(False, True), (True, True), (True, False),
                                              (False, False)])
def test_data_encodings(handler: WebhookHandler, store: Any, certs: Any, *,
                        signer: TestOidcSigner, history: Any, urlsafe: bool, pad: bool) -> None:
    # "??>" makes base64 and base64url differ.
    data = b64({"emailAddress": GMAIL_MAILBOX, "historyId": history, "x": "??>"},
               urlsafe=urlsafe, pad=pad)
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA), envelope(data)))
    assert response.status == 204
    assert [j.payload for j in jobs_of(store)] == [{"history_id": 2000}]


def test_snake_case_message_id_and_attributes(handler: WebhookHandler, store: Any, certs: Any,
                                              signer: TestOidcSigner) -> None:
    body = json.dumps({
        "message": {"data": b64({"emailAddress": GMAIL_MAILBOX, "historyId": 5000}),
                    "message_id": "999", "attributes": {"a": "b"}},
        "subscription": "projects/p/subscriptions/s",
    }).encode()
    assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA), body)).status == 204
    assert len(jobs_of(store)) == 1


def test_mailbox_is_matched_case_insensitively(handler: WebhookHandler, store: Any, certs: Any,
                                               signer: TestOidcSigner) -> None:
    token = signer.push_token(AUDIENCE, PUSH_SA.upper())
    response = handler.handle_google(push(token, mailbox=GMAIL_MAILBOX.upper()))
    assert response.status == 204
    assert len(jobs_of(store)) == 1


def test_cursor_none_accepts_any_history(store: Any, clock: Clock, certs: Any,
                                         signer: TestOidcSigner) -> None:
    store.save_provider(gmail_config(history_id=None))
    handler = make_handler(store, clock=clock)
    assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA),
                                      history_id=1)).status == 204
    assert len(jobs_of(store)) == 1


# ------------------------------------------------------------------ acknowledged, no job


@pytest.mark.parametrize("history_id", [999, 1000])
def test_stale_push_is_acknowledged_without_job(handler: WebhookHandler, store: Any, certs: Any,
                                                signer: TestOidcSigner, history_id: int) -> None:
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA),
                                          history_id=history_id))
    assert response.status == 204
    assert jobs_of(store) == []


def test_unknown_mailbox_is_acknowledged(handler: WebhookHandler, store: Any, certs: Any,
                                         signer: TestOidcSigner,
                                         caplog: pytest.LogCaptureFixture) -> None:
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA),
                                          mailbox="nobody@example.com"))
    assert response.status == 204
    assert jobs_of(store) == []
    assert "unknown Gmail mailbox" in caplog.text


def test_paused_provider_is_acknowledged(store: Any, clock: Clock, certs: Any,
                                         signer: TestOidcSigner) -> None:
    store.save_provider(gmail_config(active=False))
    response = make_handler(store, clock=clock).handle_google(
        push(signer.push_token(AUDIENCE, PUSH_SA))
    )
    assert response.status == 204
    assert jobs_of(store) == []


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "%%%not base64%%%",
        "a",
        base64.b64encode(b"\xff\xfe not json").decode(),
        b64([1, 2]),
        b64({"emailAddress": GMAIL_MAILBOX}),
        b64({"historyId": 5}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": "abc"}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": -5}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": 0}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": True}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": 1.5}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": 2**64}),
        b64({"emailAddress": GMAIL_MAILBOX, "historyId": "1" * 30}),
        b64({"emailAddress": 5, "historyId": 5000}),
        b64({"emailAddress": "", "historyId": 5000}),
        b64({"emailAddress": "a\r\nb@example.com", "historyId": 5000}),
    ],
)
def test_undecodable_data_is_acknowledged_without_job(handler: WebhookHandler, store: Any,
                                                      certs: Any, signer: TestOidcSigner,
                                                      data: str | None) -> None:
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA), envelope(data)))
    assert response.status == 204
    assert jobs_of(store) == []


# ------------------------------------------------------------------ not a Pub/Sub push: 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"message": {}}',
        b'{"message": "x", "subscription": "s"}',
        b'{"message": {"data": "e30=", "messageId": "1"}}',
        b'{"message": {"data": "e30="}, "subscription": "s"}',
        b'{"message": {"data": "e30=", "messageId": ""}, "subscription": "s"}',
        b'{"message": {"data": 5, "messageId": "1"}, "subscription": "s"}',
        b'{"message": {"data": "e30=", "messageId": "1", "attributes": []}, "subscription": "s"}',
        b'{"message": {"data": "e30=", "messageId": "1"}, "subscription": ""}',
        b"{" * 100_000,
    ],
)
def test_malformed_envelopes_are_400(handler: WebhookHandler, store: Any, certs: Any,
                                     signer: TestOidcSigner, body: bytes) -> None:
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA), body))
    assert response.status == 400
    assert jobs_of(store) == []


def test_numeric_message_id_is_accepted(handler: WebhookHandler, store: Any, certs: Any,
                                        signer: TestOidcSigner) -> None:
    data = b64({"emailAddress": GMAIL_MAILBOX, "historyId": 5000})
    body = json.dumps({"message": {"data": data, "messageId": 12},
                       "subscription": "s"}).encode()
    assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA), body)).status == 204
    assert len(jobs_of(store)) == 1


def test_oversized_push_is_413(store: Any, signer: TestOidcSigner) -> None:
    handler = make_handler(store, max_body_bytes=50)
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA)))
    assert response.status == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post(handler: WebhookHandler, method: str) -> None:
    response = handler.handle_google(WebhookRequest(method, {}, {}, b""))
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "tok"])
def test_missing_token_is_401(handler: WebhookHandler, store: Any, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = handler.handle_google(WebhookRequest("POST", {}, headers,
                                                    pubsub_push_body(GMAIL_MAILBOX, 2000)))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert jobs_of(store) == []


def _forged_tokens(signer: TestOidcSigner) -> dict[str, str]:
    other = TestOidcSigner(kid="kid-1")  # same kid, different key: a forged signature
    now = time.time()
    good = signer.push_token(AUDIENCE, PUSH_SA)
    head, payload, sig = good.split(".")
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_claims["email"] = "attacker@evil.example"
    tampered = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).decode().rstrip("=")
    return {
        "forged signature": other.push_token(AUDIENCE, PUSH_SA),
        "tampered payload": f"{head}.{tampered}.{sig}",
        "expired": signer.push_token(AUDIENCE, PUSH_SA, issued_at=now - 7200, lifetime=3600),
        "issued in the future": signer.push_token(AUDIENCE, PUSH_SA, issued_at=now + 3600),
        "wrong audience": signer.push_token("https://other.example.com/hook", PUSH_SA),
        "wrong email": signer.push_token(AUDIENCE, "someone@other.iam.gserviceaccount.com"),
        "email not verified": signer.push_token(AUDIENCE, PUSH_SA, email_verified=False),
        "wrong issuer": signer.push_token(AUDIENCE, PUSH_SA, issuer="https://evil.example"),
        "no email": signer.sign({"aud": AUDIENCE, "iss": "accounts.google.com",
                                 "iat": int(now), "exp": int(now) + 600,
                                 "email_verified": True}),
        "unknown kid": signer.sign({"aud": AUDIENCE}, kid="kid-unknown"),
        "garbage": "not-a-jwt",
        "three garbage parts": "a.b.c",
        "alg none": base64.urlsafe_b64encode(b'{"alg":"none","kid":"kid-1"}').decode().rstrip("=")
        + "." + payload + ".",
        "hs256": base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"kid-1"}').decode().rstrip("=")
        + "." + payload + "." + sig,
        "no kid": base64.urlsafe_b64encode(b'{"alg":"RS256"}').decode().rstrip("=")
        + "." + payload + "." + sig,
        "huge": "a." + "b" * 20_000 + ".c",
    }


FORGED_CASES = [
    "forged signature", "tampered payload", "expired", "issued in the future", "wrong audience",
    "wrong email", "email not verified", "wrong issuer", "no email", "unknown kid", "garbage",
    "three garbage parts", "alg none", "hs256", "no kid", "huge",
]


@pytest.fixture(scope="module")
def forged(signer: TestOidcSigner) -> dict[str, str]:
    tokens = _forged_tokens(signer)
    assert sorted(tokens) == sorted(FORGED_CASES)
    return tokens


@pytest.mark.parametrize("case", FORGED_CASES)
def test_invalid_tokens_are_403(handler: WebhookHandler, store: Any, certs: Any, *,
                                forged: dict[str, str], case: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    token = forged[case]
    response = handler.handle_google(push(token))
    assert response.status == 403
    assert jobs_of(store) == []
    assert token not in caplog.text
    assert token.split(".")[-1] not in caplog.text or len(token.split(".")[-1]) < 3
    assert token not in response.text


def test_token_expired_by_the_injected_clock(handler: WebhookHandler, clock: Clock, store: Any,
                                            certs: Any, signer: TestOidcSigner) -> None:
    token = signer.push_token(AUDIENCE, PUSH_SA)
    clock.now = T0.replace(year=2100)
    assert handler.handle_google(push(token)).status == 403
    assert jobs_of(store) == []


def test_unknown_kid_refetch_is_rate_limited(handler: WebhookHandler, clock: Clock,
                                            certs: Any, signer: TestOidcSigner) -> None:
    stranger = TestOidcSigner(kid="kid-rotated")
    for _ in range(5):
        assert handler.handle_google(push(stranger.push_token(AUDIENCE, PUSH_SA))).status == 403
    assert len(certs.calls) == 1
    clock.now = T0 + timedelta(seconds=61)
    assert handler.handle_google(push(stranger.push_token(AUDIENCE, PUSH_SA))).status == 403
    assert len(certs.calls) == 2


def test_rotated_key_is_picked_up(store: Any, clock: Clock, signer: TestOidcSigner) -> None:
    rotated = TestOidcSigner(kid="kid-2")
    handler = make_handler(store, clock=clock)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json(),
                 headers={"Cache-Control": "max-age=3600"})
        mock.get(GOOGLE_CERTS_URL, json={**signer.certs_json(), **rotated.certs_json()})
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204
        # Within a minute of the last fetch an unknown kid is refused (Pub/Sub redelivers) ...
        rotated_push = push(rotated.push_token(AUDIENCE, PUSH_SA), history_id=4000)
        assert handler.handle_google(rotated_push).status == 403
        # ... after it, the certificates are fetched again and the new key is known.
        clock.now = T0 + timedelta(seconds=60)
        assert handler.handle_google(rotated_push).status == 204
        assert len(mock.calls) == 2


@pytest.mark.parametrize(
    "certs_response",
    [
        {"status": 500, "body": "boom"},
        {"status": 200, "body": "not json"},
        {"status": 200, "json": {"kid-1": "no pem here"}},
        {"status": 200, "json": []},
        {"body": requests.ConnectionError("down")},
    ],
)
def test_unreachable_certificates_are_503(store: Any, clock: Clock, signer: TestOidcSigner,
                                          certs_response: dict[str, Any]) -> None:
    handler = make_handler(store, clock=clock)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, **certs_response)
        response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA)))
        assert response.status == 503
        # A second push right after does not hammer Google.
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 503
        assert len(mock.calls) == 1
    assert jobs_of(store) == []


def test_stale_certificates_are_used_when_refresh_fails(store: Any, clock: Clock,
                                                        signer: TestOidcSigner) -> None:
    handler = make_handler(store, clock=clock)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json(),
                 headers={"Cache-Control": "max-age=60"})
        mock.get(GOOGLE_CERTS_URL, status=503)
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204
        clock.now = T0 + timedelta(seconds=120)
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA),
                                          history_id=3000)).status == 204
        assert len(mock.calls) == 2


def test_certificates_fetched_through_the_session(store: Any, clock: Clock,
                                                  signer: TestOidcSigner) -> None:
    session = requests.Session()
    session.headers["X-Test"] = "session-used"
    handler = make_handler(store, clock=clock, session=session)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json())
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204
        assert mock.calls[0].request.headers["X-Test"] == "session-used"


def test_custom_certs_url(store: Any, clock: Clock, signer: TestOidcSigner) -> None:
    url = "https://certs.test/oauth2/v1/certs"
    handler = make_handler(store, clock=clock, google_certs_url=url)
    with responses.RequestsMock() as mock:
        mock.get(url, json=signer.certs_json())
        assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204


# ------------------------------------------------------------------ configuration


def test_no_audience_answers_403_and_logs(store: Any, signer: TestOidcSigner,
                                          caplog: pytest.LogCaptureFixture) -> None:
    handler = make_handler(store, google_audience=None, google_service_accounts=())
    response = handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA)))
    assert response.status == 403
    assert "configuration error" in caplog.text
    assert jobs_of(store) == []


def test_service_accounts_without_audience_raise(store: Any) -> None:
    with pytest.raises(ConfigurationError):
        make_handler(store, google_audience=None)


def test_audience_without_service_accounts_raises(store: Any) -> None:
    with pytest.raises(ConfigurationError):
        make_handler(store, google_service_accounts=())


def test_negative_body_limit_raises(store: Any) -> None:
    with pytest.raises(ConfigurationError):
        make_handler(store, max_body_bytes=-1)


def test_single_service_account_string_is_accepted(store: Any, certs: Any,
                                                   signer: TestOidcSigner) -> None:
    handler = make_handler(store, google_service_accounts=PUSH_SA)
    assert handler.handle_google(push(signer.push_token(AUDIENCE, PUSH_SA))).status == 204


def test_verification_disabled_explicitly(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    handler = make_handler(store, verify_google_tokens=False, google_audience=None,
                           google_service_accounts=())
    assert "DISABLED" in caplog.text
    assert handler.handle_google(push(None)).status == 204
    assert len(jobs_of(store)) == 1


# ------------------------------------------------------------------ store failures


def test_enqueue_failure_is_503(store: Any, certs: Any, signer: TestOidcSigner,
                                clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    store.fail_enqueue = {"*"}
    token = signer.push_token(AUDIENCE, PUSH_SA)
    response = make_handler(store, clock=clock).handle_google(push(token))
    assert response.status == 503
    assert store.get_meta(GMAIL_PROVIDER, "last_push_at") is None
    assert token not in caplog.text


def test_lookup_failure_is_503(store: Any, certs: Any, signer: TestOidcSigner,
                               clock: Clock) -> None:
    store.fail_lookup = True
    response = make_handler(store, clock=clock).handle_google(
        push(signer.push_token(AUDIENCE, PUSH_SA))
    )
    assert response.status == 503


def test_no_secret_in_logs_or_responses(handler: WebhookHandler, certs: Any,
                                        signer: TestOidcSigner,
                                        caplog: pytest.LogCaptureFixture) -> None:
    token = signer.push_token(AUDIENCE, PUSH_SA)
    body = pubsub_push_body(GMAIL_MAILBOX, 2000)
    response = handler.handle_google(push(token, body))
    assert response.status == 204
    assert token not in caplog.text
    assert body.decode() not in caplog.text
    assert_no_secrets(caplog.text, token)
