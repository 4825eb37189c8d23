"""Shared machinery of the provider fakes: request records, faults, routing glue, ``responses``.

Each fake implements its HTTP surface ONCE, as ``handle(method, url, headers, body) -> (status,
headers, body)``; :meth:`ProviderFake.register` plugs that into a ``responses.RequestsMock`` and
:mod:`mailparity.testing.server` serves it over a real socket. Both paths therefore see exactly the
same behaviour, faults and request records.
"""

from __future__ import annotations

import abc
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from requests.structures import CaseInsensitiveDict

if TYPE_CHECKING:
    import responses

    from ..models import OAuthTokens

__all__ = [
    "Delivery",
    "FakeRequest",
    "HandlerResult",
    "ProviderFake",
    "RecordedRequest",
]

Clock = Callable[[], datetime]


class HandlerResult(NamedTuple):
    """What ``handle`` returns: the status, the response headers and the body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (for tests and the batch endpoints)."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received (batch members are recorded too, with ``in_batch=True``)."""

    method: str
    url: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    in_batch: bool = False

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class FakeRequest:
    """A parsed incoming request, as the routing code of a fake sees it."""

    method: str
    url: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    in_batch: bool = False

    @classmethod
    def parse(
        cls,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | str | None,
        *,
        in_batch: bool = False,
    ) -> FakeRequest:
        parts = urlsplit(url)
        if isinstance(body, str):
            body = body.encode("utf-8")
        return cls(
            method=method.upper(),
            url=url,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=CaseInsensitiveDict(dict(headers or {})),
            body=body or b"",
            in_batch=in_batch,
        )

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (case-sensitive, as providers are)."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` for a body that is not a JSON document."""
        if not self.body:
            raise ValueError("empty body")
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        """The body as an ``application/x-www-form-urlencoded`` form (first value of each key)."""
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def bearer(self) -> str | None:
        """The bearer token of the ``Authorization`` header, or None."""
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


def split_path(path: str) -> list[str]:
    """Path segments, percent-decoded, without empty ones."""
    return [unquote(segment) for segment in path.split("/") if segment]


@dataclass
class Delivery:
    """One notification POST made by ``FakeGraph.push`` or ``FakeGmail.push``."""

    url: str
    body: dict[str, Any]
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: float | None
    path: str | None
    reason: str | None


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> HandlerResult:
    """A JSON response (``application/json; charset=utf-8``)."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    out = {"Content-Type": "application/json; charset=utf-8"}
    out.update(headers or {})
    return HandlerResult(status, out, body)


def empty_response(status: int = 204, headers: Mapping[str, str] | None = None) -> HandlerResult:
    """A response without a body."""
    return HandlerResult(status, dict(headers or {}), b"")


def bytes_response(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> HandlerResult:
    """A response with a non-JSON body."""
    out = {"Content-Type": content_type}
    out.update(headers or {})
    return HandlerResult(status, out, body)


def format_retry_after(value: float) -> str:
    """Retry-After as providers send it: whole seconds when integral, else a decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class ProviderFake(abc.ABC):
    """The base of :class:`FakeGraph` and :class:`FakeGmail`: records every request, injects faults,
    serialises access with a re-entrant lock (the server is threaded) and adapts to ``responses``.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._state = _State()

    # ------------------------------------------------------------------ tokens

    @abc.abstractmethod
    def issue_tokens(self, mailbox: str, client_id: str = ..., scope: str = ...) -> dict[str, Any]:
        """Tokens for ``mailbox`` as after the user's consent: ``{"access_token",
        "refresh_token", "expires_at", "expires_in", "scope"}``."""

    def oauth_tokens(self, mailbox: str, client_id: str | None = None) -> OAuthTokens:
        """:meth:`issue_tokens` as the library's ``OAuthTokens`` (for a ``CredentialStore``);
        ``client_id`` defaults to the fake's own default client."""
        from ..models import OAuthTokens

        if client_id is None:
            issued = self.issue_tokens(mailbox)
        else:
            issued = self.issue_tokens(mailbox, client_id)
        return OAuthTokens(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=issued["expires_at"],
            scope=issued["scope"],
        )

    #: Issued tokens, kept by each fake: access token -> record with ``expires_at``, refresh
    #: token -> record with ``revoked``.
    _access: dict[str, Any]
    _refresh: dict[str, Any]

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (the next API call gets 401)."""
        with self._lock:
            past = self.now() - timedelta(seconds=1)
            for token in self._access.values():
                token.expires_at = past

    def revoke_refresh_token(self, token: str | None = None) -> None:
        """Revoke one refresh token, or all: the refresh grant then answers ``invalid_grant``
        (the user must consent again)."""
        with self._lock:
            for value, grant in self._refresh.items():
                if token is None or value == token:
                    grant.revoked = True

    # ------------------------------------------------------------------ clock and records

    def now(self) -> datetime:
        """The fake's current time (timezone-aware UTC)."""
        value = self._clock()
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._state.requests)

    def count(self, path_substring: str = "", method: str | None = None) -> int:
        """How many requests had ``path_substring`` in their path (and ``method``, if given)."""
        with self._lock:
            return sum(
                1
                for item in self._state.requests
                if path_substring in item.path and (method is None or item.method == method.upper())
            )

    def clear_requests(self) -> None:
        """Forget the recorded requests (state is kept)."""
        with self._lock:
            self._state.requests.clear()

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        retry_after: float | None = 1,
        *,
        path: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer the next ``n`` API requests with ``status`` (429, 403, 500, 503...).

        ``retry_after`` adds a Retry-After header (None: no header). ``path`` limits the fault to
        requests whose path contains it; without it, token and discovery endpoints are spared, so
        that a fault hits the API call under test and not the sign-in. ``reason`` overrides the
        provider's error reason/code. Batch members count as requests of their own, after the
        batch request itself.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        if status < 400:
            raise ValueError("a fault needs an error status (>= 400)")
        with self._lock:
            self._state.faults.append(_Fault(n, status, retry_after, path, reason))

    def _take_fault(self, request: FakeRequest) -> _Fault | None:
        for fault in self._state.faults:
            if fault.path is not None:
                if fault.path not in request.path:
                    continue
            elif not self._is_api_request(request):
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._state.faults.remove(fault)
            return fault
        return None

    # ------------------------------------------------------------------ the HTTP surface

    @abc.abstractmethod
    def base_urls(self) -> list[str]:
        """Every URL prefix this fake answers (API, token, discovery...)."""

    @abc.abstractmethod
    def mount(self, root_url: str) -> None:
        """Point every base URL of the fake below ``root_url`` (used by the server)."""

    @abc.abstractmethod
    def _is_api_request(self, request: FakeRequest) -> bool:
        """True for API requests (faults without a path apply to those only)."""

    @abc.abstractmethod
    def _dispatch(self, request: FakeRequest) -> HandlerResult:
        """Route one request (the lock is held)."""

    @abc.abstractmethod
    def _fault_response(self, request: FakeRequest, fault: _Fault) -> HandlerResult:
        """The provider-shaped error body of an injected fault."""

    def owns(self, url: str) -> bool:
        """True when ``url`` starts with one of this fake's base URLs."""
        return any(_under(url, base) for base in self.base_urls())

    def handle(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> HandlerResult:
        """Answer one HTTP request: the single entry point of both running modes."""
        request = FakeRequest.parse(method, url, headers, body)
        return self._handle_parsed(request)

    def _handle_parsed(self, request: FakeRequest) -> HandlerResult:
        with self._lock:
            self._state.requests.append(
                RecordedRequest(
                    method=request.method,
                    url=request.url,
                    path=request.path,
                    query={key: list(values) for key, values in request.query.items()},
                    headers=dict(request.headers),
                    body=request.body,
                    in_batch=request.in_batch,
                )
            )
            fault = self._take_fault(request)
            if fault is not None:
                result = self._fault_response(request, fault)
                if fault.retry_after is not None:
                    result.headers["Retry-After"] = format_retry_after(fault.retry_after)
                return result
            return self._dispatch(request)

    def register(self, mock: responses.RequestsMock) -> None:
        """Answer every request to this fake's base URLs from ``mock`` (a ``responses`` mock).

        One catch-all route per base URL, any method. The routes never count as "not fired":
        the fake is a service, not an expectation, so ``assert_all_requests_are_fired`` stays
        meaningful for the test's own routes.
        """
        import responses as responses_lib

        fake = self

        class _Route(responses_lib.CallbackResponse):
            def matches(self, request: Any) -> tuple[bool, str]:
                if not _under(str(request.url), self._base):
                    return False, "URL does not match"
                return True, ""

            @property
            def call_count(self) -> int:
                return max(1, len(self.calls))

            _base: str = ""

        def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
            body = request.body
            if hasattr(body, "read"):
                body = body.read()
            result = fake.handle(str(request.method), str(request.url), dict(request.headers), body)
            return result.status, dict(result.headers), result.body

        for base in _dedupe(self.base_urls()):
            route = _Route("GET", re.compile(re.escape(base)), callback, content_type=None)
            route._base = base
            mock.add(route)


def _under(url: str, base: str) -> bool:
    if not url.startswith(base):
        return False
    rest = url[len(base) :]
    return rest == "" or rest[0] in "/?#" or base.endswith("/")


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def isoformat_z(value: datetime) -> str:
    """``2026-01-01T00:00:00Z`` (Graph's format; microseconds dropped)."""
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` and up to 7 fraction digits accepted); UTC-aware."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:
        # Graph sends 7 fraction digits; fromisoformat wants at most 6 on Python 3.10.
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
