"""The shared transport: retries, Retry-After, backoff, 401 refresh, error mapping."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from mailparity.errors import (
    AuthExpiredError,
    BadRequestError,
    ConfigurationError,
    CursorExpiredError,
    MailParityError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderUnavailableError,
    ThrottledError,
    UnauthorizedError,
)
from mailparity.http import (
    BatchAnswer,
    HttpClient,
    RetryPolicy,
    default_map_error,
    parse_retry_after,
    run_batch,
)

URL = "https://api.example.com/v1/items"


class Auth:
    def __init__(self) -> None:
        self.token = "tok-1"
        self.refreshes = 0

    def get_access_token(self) -> str:
        return self.token

    def force_refresh(self) -> str:
        self.refreshes += 1
        self.token = f"tok-{self.refreshes + 1}"
        return self.token


def client(clock: Any, **kwargs: Any) -> HttpClient:
    return HttpClient(sleep=clock.sleep, clock=clock, **kwargs)


# ------------------------------------------------------------------ Retry-After


def test_parse_retry_after_forms(clock: Any) -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=clock()) == 30.0
    # A date in the past means "now", never a negative wait.
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=clock()) == 0.0


@responses.activate
def test_429_retry_after_seconds_is_honoured(clock: Any) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "7"}, json={})
    responses.get(URL, json={"ok": True})
    response = client(clock).request("GET", URL)
    assert response.json() == {"ok": True}
    assert clock.sleeps == [7.0]
    assert len(responses.calls) == 2


@responses.activate
def test_retry_after_http_date_uses_injected_clock(clock: Any) -> None:
    responses.get(URL, status=503, headers={"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"})
    responses.get(URL, json={})
    client(clock).request("GET", URL)
    assert clock.sleeps == [30.0]


@responses.activate
def test_retry_after_longer_than_the_limit_is_never_shortened(clock: Any) -> None:
    """Graph asks for 120 s, the in-request limit is 60 s: no early retry (the old behaviour sent
    the request again after 60 s); the error carries the full wait for the job's due time."""
    responses.get(URL, status=429, headers={"Retry-After": "120"}, json={})
    responses.get(URL, json={"ok": True})
    with pytest.raises(ThrottledError) as info:
        client(clock, retry=RetryPolicy(max_delay=60.0, max_total=1000.0)).request("GET", URL)
    assert info.value.retry_after == 120.0
    assert clock.sleeps == []
    assert len(responses.calls) == 1  # nothing sent before the 120 s are over


@responses.activate
def test_retry_after_http_date_beyond_the_limit_counts_from_the_injected_clock(
    clock: Any,
) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "Thu, 01 Jan 2026 00:05:00 GMT"})
    with pytest.raises(ThrottledError) as info:
        client(clock).request("GET", URL)
    assert info.value.retry_after == 300.0
    assert len(responses.calls) == 1


@responses.activate
def test_a_503_asking_for_longer_than_the_limit_carries_its_wait(clock: Any) -> None:
    responses.get(URL, status=503, headers={"Retry-After": "300"})
    with pytest.raises(ProviderUnavailableError) as info:
        client(clock).request("GET", URL)
    assert info.value.retry_after == 300.0
    assert clock.sleeps == []
    assert len(responses.calls) == 1


@responses.activate
def test_shorter_retry_after_is_waited_exactly_within_the_request(clock: Any) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "2.128"})
    responses.get(URL, status=429, headers={"Retry-After": "60"})  # the limit itself: waited
    responses.get(URL, json={"ok": True})
    response = client(clock, retry=RetryPolicy(max_delay=60.0)).request("GET", URL)
    assert response.json() == {"ok": True}
    assert clock.sleeps == [pytest.approx(2.128), 60.0]


@responses.activate
def test_exponential_backoff_with_jitter_without_retry_after(clock: Any) -> None:
    for _ in range(3):
        responses.get(URL, status=503)
    responses.get(URL, json={})
    client(clock, retry=RetryPolicy(base_delay=2.0)).request("GET", URL)
    assert len(clock.sleeps) == 3
    # attempt n waits between half and all of base * 2**(n-1)
    for n, waited in enumerate(clock.sleeps, start=1):
        full = 2.0 * 2 ** (n - 1)
        assert full / 2 <= waited <= full


@responses.activate
def test_max_attempts_then_mapped_error(clock: Any) -> None:
    for _ in range(5):
        responses.get(URL, status=503, json={"error": {"code": "serviceNotAvailable",
                                                       "message": "down"}})
    with pytest.raises(ProviderUnavailableError) as info:
        client(clock, retry=RetryPolicy(max_attempts=3)).request("GET", URL)
    assert len(responses.calls) == 3
    assert len(clock.sleeps) == 2
    assert info.value.status == 503
    assert info.value.code == "serviceNotAvailable"


@responses.activate
def test_throttled_error_carries_retry_after_when_retries_run_out(clock: Any) -> None:
    for _ in range(2):
        responses.get(URL, status=429, headers={"Retry-After": "3"})
    with pytest.raises(ThrottledError) as info:
        client(clock, retry=RetryPolicy(max_attempts=2)).request("GET", URL)
    assert info.value.retry_after == 3.0
    assert info.value.status == 429


@responses.activate
def test_max_total_stops_before_waiting_too_long(clock: Any) -> None:
    for _ in range(5):
        responses.get(URL, status=429, headers={"Retry-After": "50"})
    with pytest.raises(ThrottledError):
        client(clock, retry=RetryPolicy(max_total=120.0, max_delay=60.0)).request("GET", URL)
    assert clock.sleeps == [50.0, 50.0]
    assert sum(clock.sleeps) <= 120.0


@responses.activate
def test_connection_error_is_retried_then_succeeds(clock: Any) -> None:
    responses.get(URL, body=requests.ConnectionError("reset"))
    responses.get(URL, json={"n": 1})
    assert client(clock).request("GET", URL).json() == {"n": 1}
    assert len(clock.sleeps) == 1


@responses.activate
def test_connection_errors_exhausted_name_no_query_string(clock: Any) -> None:
    for _ in range(3):
        responses.get(URL, body=requests.Timeout("slow"))
    with pytest.raises(ProviderUnavailableError) as info:
        client(clock, retry=RetryPolicy(max_attempts=3)).request(
            "GET", URL, params={"access_token": "SECRET"}
        )
    assert "SECRET" not in str(info.value)
    assert "Timeout" in str(info.value)
    assert len(responses.calls) == 3


@responses.activate
def test_no_retry_when_disabled(clock: Any) -> None:
    responses.get(URL, status=503)
    with pytest.raises(ProviderUnavailableError):
        client(clock).request("GET", URL, retry=False)
    assert len(responses.calls) == 1
    assert clock.sleeps == []


@responses.activate
def test_non_retryable_status_is_not_retried(clock: Any) -> None:
    responses.get(URL, status=400, json={"error": {"code": "BadRequest", "message": "nope"}})
    with pytest.raises(BadRequestError):
        client(clock).request("GET", URL)
    assert len(responses.calls) == 1


@responses.activate
def test_extra_retry_rule(clock: Any) -> None:
    responses.get(URL, status=403, json={"error": {"code": 403, "message": "quota",
                                                   "errors": [{"reason": "rateLimitExceeded"}]}})
    responses.get(URL, json={})
    http = client(clock, is_retryable=lambda r: r.status_code == 403)
    http.request("GET", URL)
    assert len(responses.calls) == 2


@responses.activate
def test_allow_status_returns_response(clock: Any) -> None:
    responses.delete(URL, status=404)
    assert client(clock).request("DELETE", URL, allow_status=frozenset({404})).status_code == 404


# ------------------------------------------------------------------ 401 refresh


@responses.activate
def test_401_refreshes_once_and_retries(clock: Any) -> None:
    responses.get(URL, status=401, json={"error": {"code": "InvalidAuthenticationToken",
                                                   "message": "expired"}})
    responses.get(URL, json={"ok": 1})
    auth = Auth()
    assert client(clock).request("GET", URL, auth=auth).json() == {"ok": 1}
    assert auth.refreshes == 1
    assert responses.calls[0].request.headers["Authorization"] == "Bearer tok-1"
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok-2"


@responses.activate
def test_second_401_is_unauthorized_error(clock: Any) -> None:
    for _ in range(3):
        responses.get(URL, status=401, json={"error": {"code": "InvalidAuthenticationToken",
                                                       "message": "bad audience"}})
    auth = Auth()
    with pytest.raises(UnauthorizedError) as info:
        client(clock).request("GET", URL, auth=auth)
    assert auth.refreshes == 1
    assert len(responses.calls) == 2
    assert info.value.code == "InvalidAuthenticationToken"


@responses.activate
def test_401_without_auth_is_not_refreshed(clock: Any) -> None:
    responses.get(URL, status=401)
    with pytest.raises(UnauthorizedError):
        client(clock).request("GET", URL)


@responses.activate
def test_headers_merge_and_on_attempt(clock: Any) -> None:
    responses.get(URL, status=503)
    responses.get(URL, json={})
    seen: list[tuple[str, str, int | None]] = []
    http = client(clock, headers={"Prefer": "a", "X-One": "1"},
                  on_attempt=lambda m, u, s: seen.append((m, u, s)))
    http.request("GET", URL, headers={"Prefer": "b"})
    sent = responses.calls[0].request.headers
    assert sent["Prefer"] == "b"
    assert sent["X-One"] == "1"
    assert [s for _, _, s in seen] == [503, 200]


def test_timeout_is_passed_on_every_request(clock: Any) -> None:
    class Session(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.kwargs: list[dict[str, Any]] = []

        def request(self, method: Any, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.kwargs.append(kwargs)
            response = requests.Response()
            response.status_code = 200
            response._content = b"{}"
            return response

    session = Session()
    HttpClient(session=session, timeout=(3.0, 9.0), sleep=clock.sleep).request("GET", URL)
    assert session.kwargs[0]["timeout"] == (3.0, 9.0)


# ------------------------------------------------------------------ error mapping


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> requests.Response:
    import json as _json

    response = requests.Response()
    response.status_code = status
    response._content = raw if raw is not None else _json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def test_graph_error_body_with_inner_request_id() -> None:
    error = default_map_error(_response(404, {"error": {
        "code": "ErrorItemNotFound", "message": "The specified object was not found in the store.",
        "innerError": {"request-id": "rid-9", "date": "2026-01-01T00:00:00"}}}), "microsoft")
    assert isinstance(error, NotFoundError)
    assert (error.status, error.code, error.request_id) == (404, "ErrorItemNotFound", "rid-9")
    assert error.provider == "microsoft"
    assert "rid-9" in str(error)
    assert "ErrorItemNotFound" in str(error)


def test_graph_throttle_body_and_header_request_id() -> None:
    body = {"error": {"code": "TooManyRequests", "message": "Please retry again later.",
                      "innerError": {"code": "429", "request-id": "inner-id"}}}
    error = default_map_error(
        _response(429, body, {"request-id": "hdr-id", "Retry-After": "2.5"}), "microsoft"
    )
    assert isinstance(error, ThrottledError)
    assert error.request_id == "hdr-id"
    assert error.retry_after == 2.5


def test_google_error_body_reason_wins() -> None:
    body = {"error": {"code": 403, "message": "Insufficient Permission", "status":
                      "PERMISSION_DENIED", "errors": [{"reason": "insufficientPermissions"}]}}
    error = default_map_error(_response(403, body), "google")
    assert isinstance(error, PermissionDeniedError)
    assert error.code == "insufficientPermissions"
    assert error.message == "Insufficient Permission"


def test_google_status_without_errors_list() -> None:
    body = {"error": {"code": 404, "message": "Requested entity was not found.",
                      "status": "NOT_FOUND"}}
    error = default_map_error(_response(404, body), "google")
    assert isinstance(error, NotFoundError)
    assert error.code == "NOT_FOUND"


def test_oauth_error_body() -> None:
    body = {"error": "invalid_grant", "error_description": "AADSTS700082: expired\nTrace ID: x"}
    error = default_map_error(_response(400, body))
    assert isinstance(error, BadRequestError)
    assert error.code == "invalid_grant"
    assert error.message == "AADSTS700082: expired"


def test_410_and_non_json_bodies() -> None:
    assert isinstance(default_map_error(_response(410, {"error": {"code": "syncStateNotFound",
                                                                  "message": "gone"}})),
                      CursorExpiredError)
    error = default_map_error(_response(502, raw=b"<html>bad gateway</html>"))
    assert isinstance(error, ProviderUnavailableError)
    assert error.code is None
    assert error.message == "HTTP 502"


# ---------------------------------------------------------------------------- the batch loop


class _Batch:
    """Scripted batch sends for ``run_batch``: each send answers from the next script entry
    (``{id: BatchAnswer}``, or an exception to raise); sleeps and refreshes are recorded."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.sent: list[list[str]] = []
        self.sleeps: list[float] = []
        self.refreshes = 0

    def send(self, ids: list[str]) -> Any:
        self.sent.append(list(ids))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    def run(self, ids: list[str], **options: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}

        def error(answer: BatchAnswer) -> MailParityError:
            if answer.status == 429:
                return ThrottledError("slow down", status=429, retry_after=answer.body)
            if answer.status == 401:
                return ProviderError("who are you", status=401)
            if answer.status == 503:
                return ProviderUnavailableError("busy", status=503)
            return NotFoundError("gone", status=answer.status)

        def refresh() -> None:
            self.refreshes += 1

        options.setdefault("policy", RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=30))
        run_batch(ids, results, send=self.send, read=lambda mid, answer: f"message {mid}",
                  error=error, refresh=refresh, sleep=self.sleeps.append, provider="test",
                  **options)
        return results


def _ok() -> BatchAnswer:
    return BatchAnswer(200, {}, {})


def test_batch_gives_each_member_its_own_outcome() -> None:
    batch = _Batch({"a": _ok(), "b": BatchAnswer(404, {}, None)})
    results = batch.run(["a", "b", "c"])
    assert results["a"] == "message a"
    assert isinstance(results["b"], NotFoundError)
    assert isinstance(results["c"], ProviderUnavailableError)  # no answer for it
    assert "no answer for message c" in str(results["c"])
    assert batch.sent == [["a", "b", "c"]]


def test_batch_resends_401_members_once_after_one_refresh() -> None:
    batch = _Batch(
        {"a": BatchAnswer(401, {}, None), "b": BatchAnswer(401, {}, None), "c": _ok()},
        {"a": _ok(), "b": BatchAnswer(401, {}, None)},
    )
    results = batch.run(["a", "b", "c"])
    assert batch.refreshes == 1
    assert batch.sent == [["a", "b", "c"], ["a", "b"]]
    assert results["a"] == "message a"
    assert isinstance(results["b"], UnauthorizedError)  # a 401 after the refresh is final
    assert results["b"].status == 401


def test_batch_waits_exactly_the_longest_retry_after_then_resends_throttled_members() -> None:
    batch = _Batch(
        {"a": BatchAnswer(429, {}, 2.0), "b": BatchAnswer(429, {}, 7.0), "c": _ok()},
        {"a": _ok(), "b": _ok()},
    )
    results = batch.run(["a", "b", "c"])
    assert batch.sleeps == [7.0]
    assert results == {"a": "message a", "b": "message b", "c": "message c"}


def test_batch_never_shortens_a_retry_after_beyond_the_in_request_limit() -> None:
    batch = _Batch({"a": BatchAnswer(429, {}, 120.0), "b": BatchAnswer(401, {}, None)},
                   {"b": _ok()})
    results = batch.run(["a", "b"])
    assert batch.sleeps == []
    assert batch.sent == [["a", "b"], ["b"]]  # the 401 member still gets its resend
    assert isinstance(results["a"], ThrottledError)
    assert results["a"].retry_after == 120.0  # the job is due after the full wait
    assert results["b"] == "message b"


def test_batch_backs_off_exponentially_no_shorter_than_the_minimum() -> None:
    throttled = {"a": BatchAnswer(503, {}, None)}
    batch = _Batch(throttled, throttled, throttled)
    results = batch.run(["a"], min_backoff=0.75)
    assert batch.sleeps == [0.75, 1.0]  # base 0.5 raised to the minimum, then 1.0
    assert len(batch.sent) == 3  # max_attempts sends in all
    assert isinstance(results["a"], ProviderUnavailableError)  # the last answer's error


def test_batch_retries_what_the_provider_calls_retryable() -> None:
    batch = _Batch({"a": BatchAnswer(403, {}, None)}, {"a": _ok()})
    results = batch.run(["a"], retryable=lambda answer: answer.status == 403)
    assert results["a"] == "message a"
    assert len(batch.sleeps) == 1


@pytest.mark.parametrize("raised", [
    AuthExpiredError("revoked", code="invalid_grant"),
    ConfigurationError("no client id"),
])
def test_batch_raises_what_no_member_can_survive(raised: Exception) -> None:
    with pytest.raises(type(raised)):
        _Batch(raised).run(["a", "b"])


def test_batch_records_another_whole_request_failure_for_every_member() -> None:
    outage = ProviderUnavailableError("batch endpoint down", status=503)
    results = _Batch(outage).run(["a", "b"])
    assert results == {"a": outage, "b": outage}


def test_batch_counts_a_wait_the_provider_asked_for(otel: Any) -> None:
    batch = _Batch({"a": BatchAnswer(429, {}, 3.0), "b": BatchAnswer(503, {}, None)},
                   {"a": _ok(), "b": _ok()})
    batch.run(["a", "b"])
    assert batch.sleeps == [3.0]
    assert otel.value("mailparity.throttle.waits", provider="test", scope="request") == 1
    # An outage without a Retry-After is backoff, not a request to slow down.
    outage = {"a": BatchAnswer(503, {}, None)}
    _Batch(outage, {"a": _ok()}).run(["a"])
    assert otel.value("mailparity.throttle.waits", provider="test", scope="request") == 1
