"""One requests-based HTTP layer for the whole library.

Every call of the library (Graph, Gmail, token endpoints) goes through :class:`HttpClient`, so that:

* every request has a timeout;
* 429, 503, 504 and connection errors (plus whatever a provider's ``is_retryable`` adds, such as
  Gmail's quota 403s) are retried with tenacity, waiting exactly the ``Retry-After`` asked for
  (seconds or an HTTP date), with exponential backoff and jitter otherwise;
* a ``Retry-After`` longer than the in-request limit (``RetryPolicy.max_delay``) is never
  shortened: the request ends at once with a :class:`~mailparity.errors.ThrottledError` whose
  ``retry_after`` is the full wait, and the caller (the job pipeline) gives the work back due at
  that time (Graph's throttling guidance: sending earlier only extends the throttling);
* a 401 refreshes the access token once and retries once;
* every failure becomes a :class:`~mailparity.errors.MailParityError` subclass named by its cause,
  carrying status, code and request id (the provider supplies ``map_error``);
* sleep and clock are injectable, so tests never wait for real.

:func:`run_batch` is the one loop of batched reads (Graph's JSON ``$batch``, Gmail's multipart
batch): each member gets its own outcome, throttled members are sent again, 401 members once
after a token refresh; the provider supplies only how a batch is sent and how a member's answer
reads.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import random
import time
import urllib.request
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
import requests.cookies
import requests.hooks
import requests.structures
import requests.utils

from . import _speedups, telemetry
from .errors import (
    AuthError,
    BadRequestError,
    ConfigurationError,
    CursorExpiredError,
    MailParityError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    ThrottledError,
    UnauthorizedError,
)
from .models import utcnow

if TYPE_CHECKING:  # tenacity is imported when a request is first retried (cold start)
    from tenacity import RetryCallState
from .tls import tls_verification_error

__all__ = [
    "AccessTokenProvider",
    "BatchAnswer",
    "HttpClient",
    "RetryPolicy",
    "default_map_error",
    "parse_retry_after",
    "run_batch",
]

log = logging.getLogger("mailparity.http")

RETRY_STATUSES = frozenset({429, 503, 504})

#: (environment snapshot, {origin and session settings: merged settings}), shared by every
#: client (one adapter per mailbox); see :meth:`HttpClient._environment_settings`.
_env_cache: tuple[object, dict[Hashable, dict[str, Any]]] = (None, {})

_QUERY_PROBE = "http://query.invalid/?"


def _netrc_locations() -> tuple[str, ...]:
    """The files ``requests.utils.get_netrc_auth`` looks for (they depend on the environment)."""
    netrc_file = os.environ.get("NETRC")
    names = (netrc_file,) if netrc_file is not None else tuple(
        f"~/{name}" for name in requests.utils.NETRC_FILES
    )
    return _expand_users(names, os.environ.get("HOME"))


@functools.lru_cache(maxsize=16)
def _expand_users(names: tuple[str, ...], home: str | None) -> tuple[str, ...]:
    # ``home`` is part of the key: expanduser reads $HOME.
    return tuple(os.path.expanduser(name) for name in names)


def _prepare_plain(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    data: bytes | str | None,
    json: Any,
) -> requests.PreparedRequest | None:
    """``session.prepare_request`` for a session in its plain state: no cookies, no session
    ``auth``, ``params`` or hooks, no netrc file. requests then merges nothing but the headers,
    and its generic merging (protocol checks on every setting, two cookie jars, the netrc search)
    costs more than the preparing itself. None when the session is not in that state."""
    if (
        session.auth is not None
        or session.params
        or len(session.cookies)
        or session.hooks != {"response": []}
        or type(session.headers) is not requests.structures.CaseInsensitiveDict
    ):
        return None
    if session.trust_env and any(os.path.exists(path) for path in _netrc_locations()):
        return None  # requests would read credentials from it
    merged = requests.structures.CaseInsensitiveDict(session.headers)
    merged.update(headers)
    for key in [key for key, value in merged.items() if value is None]:
        del merged[key]  # requests drops headers set to None
    if not data and json is None:
        direct = _speedups.prepare_direct(method, url, merged)
        if direct is not None:
            return direct
    prepared = requests.PreparedRequest()
    prepared.prepare(
        method=method.upper(), url=url, files=[], data=data or {}, json=json, headers=merged,
        params={}, auth=None, cookies=requests.cookies.RequestsCookieJar(),
        hooks=requests.hooks.default_hooks(),
    )
    return prepared


def _encode_params(params: Mapping[str, Any]) -> str | None:
    """The query string requests makes of ``params`` (``PreparedRequest._encode_params``): values
    that are None are left out, a list or tuple gives the name once per item, everything else its
    ``str()``, all of it ``urlencode``d. None for anything else (bytes, nested mappings, objects
    with their own iteration): requests then encodes it itself."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if type(name) is not str:
            return None
        values = value if type(value) in (list, tuple) else (value,)
        for item in values:
            if item is None:
                continue
            if type(item) not in (str, int, bool, float):
                return None
            pairs.append((name, str(item)))
    return urlencode(pairs)


def _with_query(url: str, query: str) -> str | None:
    """``url`` with ``query`` added as requests adds encoded params; None when the URL has a
    fragment or an empty ``?`` (requests rewrites those: it prepares them itself)."""
    if "#" in url or url.endswith("?"):
        return None
    if not query:
        return url
    return f"{url}&{query}" if "?" in url else f"{url}?{query}"


@functools.lru_cache(maxsize=256)
def _query_kept(query: str) -> bool:
    """Whether requests prepares a URL with this query string without changing the query."""
    probe = requests.PreparedRequest()
    try:
        probe.prepare_url(_QUERY_PROBE + query, None)
    except (requests.RequestException, ValueError, UnicodeError):
        return False
    return probe.url == _QUERY_PROBE + query


class AccessTokenProvider(Protocol):
    """What the HTTP layer needs from an adapter's credentials."""

    def get_access_token(self) -> str:
        """A valid access token (refreshing first when it is about to expire)."""
        ...

    def force_refresh(self) -> str:
        """Refresh now (after a 401) and return the new access token."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        max_attempts: attempts in all, the first included.
        base_delay: first backoff delay in seconds (doubles each attempt, with jitter).
        max_delay: cap of one backoff delay, and the longest ``Retry-After`` waited within the
            request. A longer ``Retry-After`` is not shortened: the request gives up at once with
            a ThrottledError carrying the full wait (the job is then due at that time).
        max_total: give up when the next wait would push the total wait over this many seconds.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total: float = 300.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def _request_id(response: requests.Response) -> str | None:
    for name in ("request-id", "client-request-id", "x-ms-request-id", "x-request-id"):
        value = response.headers.get(name)
        if value:
            return value
    return None


def default_map_error(response: requests.Response, provider: str | None = None) -> MailParityError:
    """Map an error response to an exception by status, reading Graph and Google error bodies.

    Graph: ``{"error": {"code", "message", "innerError": {"request-id"}}}``; Google:
    ``{"error": {"code": 404, "message", "status", "errors": [{"reason"}]}}``; OAuth:
    ``{"error": "invalid_grant", "error_description"}``.
    """
    code: str | None = None
    message = f"HTTP {response.status_code}"
    request_id = _request_id(response)
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            raw_code = err.get("code")
            code = raw_code if isinstance(raw_code, str) else None
            errors = err.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
                reason = errors[0].get("reason")
                if isinstance(reason, str):
                    code = reason
            if code is None and isinstance(err.get("status"), str):
                code = err["status"]
            if isinstance(err.get("message"), str):
                message = err["message"]
            inner = err.get("innerError") or err.get("innererror")
            if isinstance(inner, Mapping) and not request_id:
                rid = inner.get("request-id") or inner.get("client-request-id")
                request_id = rid if isinstance(rid, str) else None
        elif isinstance(err, str):
            code = err
            desc = body.get("error_description")
            message = desc.splitlines()[0] if isinstance(desc, str) and desc else err
    status = response.status_code
    kwargs: dict[str, Any] = {
        "status": status, "code": code, "request_id": request_id, "provider": provider,
    }
    if status == 429:
        return ThrottledError(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs
        )
    if status == 401:
        return UnauthorizedError(message, **kwargs)
    if status == 403:
        return PermissionDeniedError(message, **kwargs)
    if status == 404:
        return NotFoundError(message, **kwargs)
    if status == 410:
        return CursorExpiredError(message, **kwargs)
    if status >= 500:
        return ProviderUnavailableError(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs
        )
    return BadRequestError(message, **kwargs)


class _RetryableResponseError(Exception):
    """Internal: carries a retryable response through tenacity."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class HttpClient:
    """The shared transport. One instance per adapter (it holds the session's connection pool).

    Args:
        session: the ``requests.Session`` to use (a new one when None).
        timeout: ``(connect, read)`` seconds applied to every request.
        retry: the retry policy.
        sleep: called with seconds to wait between attempts (inject a fake in tests).
        clock: returns the current UTC time (used for HTTP-date ``Retry-After``).
        provider: the provider's registry key, recorded on errors.
        map_error: turns an error response into an exception (provider-specific codes).
        is_retryable: extra retry rule for a response (Gmail: 403 ``rateLimitExceeded``).
        headers: sent on every request (Graph: ``Prefer: IdType="ImmutableId"``).
    """

    session: requests.Session = field(default_factory=requests.Session)
    timeout: tuple[float, float] = (10.0, 60.0)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = utcnow
    provider: str | None = None
    map_error: Callable[[requests.Response], MailParityError] | None = None
    is_retryable: Callable[[requests.Response], bool] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Called after every attempt with (method, url, status or None); for metrics and tests.
    on_attempt: Callable[[str, str, int | None], None] | None = None

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        data: bytes | str | None,
        headers: Mapping[str, str],
        stream: bool,
    ) -> requests.Response:
        """What ``session.request(...)`` does, with the environment settings cached.

        ``Session.request`` reads the proxy and CA-bundle environment variables on every call
        (all of ``os.environ``, twice), which costs about as much as the rest of preparing the
        request. Here the merged settings are kept per origin for as long as the environment and
        the session's own settings are unchanged, so the result is the same. A session whose
        ``request`` or ``merge_environment_settings`` is overridden is called as it is."""
        session = self.session
        kind = type(session)
        if (
            kind.request is not requests.Session.request
            or kind.merge_environment_settings is not requests.Session.merge_environment_settings
        ):
            return session.request(
                method, url, params=params, json=json, data=data, headers=dict(headers),
                timeout=self.timeout, stream=stream,
            )
        if params:
            # Encoded here as requests would, the URL can take the prepared-query path below
            # (requests' own params merging and URL normalization cost more than the request).
            query = _encode_params(params)
            joined = None if query is None else _with_query(url, query)
            if joined is not None:
                url, params = joined, None
        prepared = self._prepare_with_query(
            session, method, url, headers=headers, data=data, json=json, params=params
        )
        if prepared is None:
            prepared = session.prepare_request(
                requests.Request(
                    method=method.upper(), url=url, headers=dict(headers), data=data or {},
                    json=json, params=dict(params) if params else {},
                )
            )
        send_kwargs: dict[str, Any] = {"timeout": self.timeout, "allow_redirects": True}
        send_kwargs.update(self._environment_settings(session, str(prepared.url), stream))
        return session.send(prepared, **send_kwargs)

    @staticmethod
    def _prepare_with_query(
        session: requests.Session,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: bytes | str | None,
        json: Any,
        params: Mapping[str, Any] | None,
    ) -> requests.PreparedRequest | None:
        """``session.prepare_request(...)`` for a URL that carries an already-encoded query (a
        Graph fetch's long ``$select``), without normalizing that query again on every call.

        requests normalizes a URL component by component; its query, character by character
        in Python, is most of the cost of preparing a request. When the query is one that
        requests leaves unchanged (checked once per distinct query) and the rest of the URL is
        also left unchanged, the prepared URL is the URL itself: the request is prepared without
        the query (cookies, netrc and URL credentials depend only on scheme, host and path) and
        the query put back. None: prepare the usual way (params given, a session ``auth`` that
        may sign the full URL, a fragment, or anything requests would rewrite)."""
        if (
            params
            or session.auth is not None
            or not url.startswith(("https://", "http://"))
            or "#" in url
        ):
            return None
        base, _, query = url.partition("?")
        if not query or not _query_kept(query):
            return None
        prepared = _prepare_plain(session, method, base, headers=headers, data=data, json=json)
        if prepared is None:
            prepared = session.prepare_request(
                requests.Request(
                    method=method.upper(), url=base, headers=dict(headers), data=data or {},
                    json=json, params={},
                )
            )
        if prepared.url != base:
            return None  # requests rewrites this URL: let it do so with the query in place
        prepared.url = url
        return prepared

    def _environment_settings(
        self, session: requests.Session, url: str, stream: bool
    ) -> dict[str, Any]:
        """``session.merge_environment_settings(url, {}, stream, None, None)``, cached.

        The proxies requests finds depend only on the environment and the URL's scheme, host and
        port; the CA bundle only on the environment. The cache is used only where proxies come
        from the environment alone (not the macOS / Windows system settings)."""
        snapshot = _speedups.environ_snapshot()
        if snapshot is None or (
            getattr(requests.utils, "getproxies", None) is not urllib.request.getproxies_environment
        ):
            return dict(session.merge_environment_settings(url, {}, stream, None, None))
        try:
            parts = urlsplit(url)
            key: Hashable = (
                parts.scheme, parts.netloc, session.trust_env,
                tuple(sorted(session.proxies.items())), session.verify, session.cert,
                session.stream, stream,
            )
            hash(key)
        except (TypeError, ValueError):
            return dict(session.merge_environment_settings(url, {}, stream, None, None))
        global _env_cache
        cached_env, cache = _env_cache
        if cached_env != snapshot:
            cache = {}
            _env_cache = (snapshot, cache)
        settings = cache.get(key)
        if settings is None:
            settings = dict(session.merge_environment_settings(url, {}, stream, None, None))
            if len(cache) < 64:
                cache[key] = settings
        # Copies: requests may add to the dicts it is handed.
        out = dict(settings)
        if isinstance(out.get("proxies"), dict):
            out["proxies"] = dict(out["proxies"])
        return out

    def _map(self, response: requests.Response) -> MailParityError:
        if self.map_error is not None:
            return self.map_error(response)
        return default_map_error(response, self.provider)

    def _retryable(self, response: requests.Response) -> bool:
        if response.status_code in RETRY_STATUSES:
            return True
        return bool(self.is_retryable and self.is_retryable(response))

    def _asked_wait(self, state: RetryCallState) -> float | None:
        """The ``Retry-After`` of the failed attempt, in seconds from the injected clock."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponseError):
            return parse_retry_after(exc.response.headers.get("Retry-After"), now=self.clock())
        return None

    def _wait(self, state: RetryCallState) -> float:
        after = self._asked_wait(state)
        if after is not None:
            # Exactly what the provider asked for; ``stop`` ends the request instead when that
            # is longer than the in-request limit (never retry earlier than asked).
            return max(after, 0.0)
        backoff = min(
            self.retry.max_delay, self.retry.base_delay * (2 ** (state.attempt_number - 1))
        )
        # Full jitter on the upper half keeps many workers from retrying in lockstep.
        return float(backoff / 2 + random.uniform(0, backoff / 2))

    def _mapped(self, response: requests.Response) -> MailParityError:
        """The error of a failed response; the ``retry_after`` of a ThrottledError or a 503's
        ProviderUnavailableError counted from the injected clock (an HTTP-date ``Retry-After``
        depends on what "now" is)."""
        error = self._map(response)
        if isinstance(error, ThrottledError | ProviderUnavailableError):
            after = parse_retry_after(response.headers.get("Retry-After"), now=self.clock())
            if after is not None:
                error.retry_after = after
        return error

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        auth: AccessTokenProvider | None = None,
        stream: bool = False,
        allow_status: frozenset[int] = frozenset(),
        retry: bool = True,
    ) -> requests.Response:
        """Send one request with retries; return the response or raise a mapped error.

        Args:
            auth: when given, sends ``Authorization: Bearer`` and refreshes once on 401.
            allow_status: error statuses returned to the caller instead of raised (e.g. 404 on a
                delete that tolerates it).
            retry: False disables the transient-failure retries (the 401 refresh still applies).
        """
        refreshed = False
        throttled = False  # the failed attempt asked to slow down (429, or a Retry-After)
        total_wait = 0.0

        def attempt() -> requests.Response:
            nonlocal refreshed, throttled
            throttled = False
            merged = dict(self.headers)
            if headers:
                merged.update(headers)
            if auth is not None:
                merged["Authorization"] = f"Bearer {auth.get_access_token()}"
            try:
                response = self._send(
                    method, url, params=params, json=json, data=data, headers=merged,
                    stream=stream,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if self.on_attempt:
                    self.on_attempt(method, url, None)
                # An untrusted certificate is not an outage: never retried, cause named.
                tls_error = tls_verification_error(exc, url, provider=self.provider)
                if tls_error is not None:
                    raise tls_error from None
                raise ProviderUnavailableError(
                    f"{method} {_safe_url(url)} failed: {type(exc).__name__}",
                    provider=self.provider,
                ) from None
            if self.on_attempt:
                self.on_attempt(method, url, response.status_code)
            if response.status_code == 401 and auth is not None and not refreshed:
                refreshed = True
                log.info("401 from %s; refreshing the access token once", _safe_url(url))
                response.close()
                merged["Authorization"] = f"Bearer {auth.force_refresh()}"
                try:
                    response = self._send(
                        method, url, params=params, json=json, data=data, headers=merged,
                        stream=stream,
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    tls_error = tls_verification_error(exc, url, provider=self.provider)
                    if tls_error is not None:
                        raise tls_error from None
                    raise ProviderUnavailableError(
                        f"{method} {_safe_url(url)} failed: {type(exc).__name__}",
                        provider=self.provider,
                    ) from None
                if self.on_attempt:
                    self.on_attempt(method, url, response.status_code)
            if (
                response.status_code >= 400
                and response.status_code not in allow_status
                and retry
                and self._retryable(response)
            ):
                if response.status_code == 429 or "Retry-After" in response.headers:
                    throttled = True
                if stream:
                    response.close()  # give the connection back before waiting to retry
                raise _RetryableResponseError(response)
            return response

        def sleep(seconds: float) -> None:
            nonlocal total_wait
            total_wait += seconds
            if throttled:
                telemetry.throttle_wait(self.provider, "request")
            log.info("retrying %s %s in %.1fs", method, _safe_url(url), seconds)
            self.sleep(seconds)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.retry.max_attempts:
                return True
            asked = self._asked_wait(state)
            if asked is not None and asked > self.retry.max_delay:
                # Too long to wait here: the caller reschedules its work for then.
                log.info("%s %s asks to wait %.1fs; not retried within the request",
                         method, _safe_url(url), asked)
                return True
            return total_wait + self._wait(state) > self.retry.max_total

        # The first attempt runs outside tenacity: most requests succeed at once, and setting
        # up a Retrying costs about as much as preparing the request. A failure that may be
        # retried is replayed to tenacity as its first attempt, so what follows is unchanged.
        first_error: _RetryableResponseError | ProviderUnavailableError | None = None
        try:
            response: requests.Response = attempt()
        except (_RetryableResponseError, ProviderUnavailableError) as exc:
            first_error = exc
        if first_error is not None:

            def replay() -> requests.Response:
                nonlocal first_error
                if first_error is not None:
                    error, first_error = first_error, None
                    raise error
                return attempt()

            from tenacity import Retrying, retry_if_exception, stop_after_attempt

            retrying = Retrying(
                stop=stop_after_attempt(1) if not retry else stop,
                wait=self._wait,
                sleep=sleep,
                retry=retry_if_exception(
                    lambda e: isinstance(e, _RetryableResponseError | ProviderUnavailableError)
                ),
                reraise=True,
            )
            try:
                response = retrying(replay)
            except _RetryableResponseError as exc:
                raise self._mapped(exc.response) from None
        if response.status_code >= 400 and response.status_code not in allow_status:
            raise self._mapped(response)
        return response


def _safe_url(url: str) -> str:
    """The URL without its query string (which may hold tokens or ids worth keeping out of logs)."""
    return url.split("?", 1)[0]


# --------------------------------------------------------------------------------------------
# Batched reads

_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchAnswer:
    """One member's answer in a batch response: its HTTP status, headers and body (parsed JSON
    for Graph's JSON ``$batch``, bytes for Gmail's multipart batch: the provider's hooks read
    it)."""

    status: int
    headers: Mapping[str, str]
    body: Any


def _never(answer: BatchAnswer) -> bool:
    return False


def run_batch(
    ids: Sequence[str],
    results: dict[str, _T | MailParityError],
    *,
    send: Callable[[list[str]], Mapping[str, BatchAnswer]],
    read: Callable[[str, BatchAnswer], _T],
    error: Callable[[BatchAnswer], MailParityError],
    refresh: Callable[[], object],
    sleep: Callable[[float], None],
    policy: RetryPolicy,
    provider: str,
    retryable: Callable[[BatchAnswer], bool] = _never,
    min_backoff: float = 0.0,
) -> None:
    """Read ``ids`` (one batch's worth) through a provider's batch endpoint, giving each id its
    outcome in ``results``: what ``read`` made of its 200 answer, or the error of its own answer,
    exactly as a single request would have raised it.

    * ``send(pending)`` sends one batch request and returns the answers by id (an id without an
      answer gets a :class:`~mailparity.errors.ProviderUnavailableError`). When the whole
      request fails, an :class:`~mailparity.errors.AuthError` or
      :class:`~mailparity.errors.ConfigurationError` is raised (nothing can succeed); any other
      library error becomes every pending id's outcome.
    * ``read(id, answer)`` turns a 200 answer into the result (an AuthError or
      ConfigurationError it raises is raised; another library error is that id's outcome);
      ``error(answer)`` maps any other answer to its exception (a 401 always to an
      :class:`~mailparity.errors.UnauthorizedError`).
    * Members answered 401 are sent again once, after ``refresh()`` (one refresh per batch).
    * Members answered 429, 503 or 504 (or that ``retryable`` accepts, such as Gmail's quota
      403s) are sent again after the longest ``Retry-After`` among them, exactly as asked, or
      after exponential backoff (``policy``, never shorter than ``min_backoff``), up to
      ``policy.max_attempts`` sends. A ``Retry-After`` longer than ``policy.max_delay`` is never
      shortened: those members keep their throttling error, whose ``retry_after`` makes their
      job due after it.
    """
    pending = list(ids)
    refreshed = False
    attempt = 0
    while pending:
        attempt += 1
        try:
            answers = send(pending)
        except (AuthError, ConfigurationError):
            raise
        except MailParityError as exc:
            for mid in pending:
                results[mid] = exc
            return
        unauthorized: list[str] = []
        throttled: list[str] = []
        retry_after: float | None = None
        slow_down = False  # a member asked to slow down (429, or a Retry-After)
        for mid in pending:
            answer = answers.get(mid)
            if answer is None:
                results[mid] = ProviderUnavailableError(
                    f"the batch response has no answer for message {mid}", provider=provider
                )
                continue
            if answer.status == 200:
                try:
                    results[mid] = read(mid, answer)
                except (AuthError, ConfigurationError):
                    raise
                except MailParityError as exc:
                    results[mid] = exc
                continue
            failure = error(answer)
            if answer.status == 401 and not isinstance(failure, UnauthorizedError):
                failure = UnauthorizedError(
                    failure.message, status=401, code=failure.code, provider=provider
                )
            results[mid] = failure  # kept if the retries run out
            if answer.status == 401:
                if not refreshed:
                    unauthorized.append(mid)
            elif answer.status in RETRY_STATUSES or retryable(answer):
                throttled.append(mid)
                asked = getattr(failure, "retry_after", None)  # 429 and 503 may say
                if asked is not None:
                    retry_after = max(retry_after or 0.0, float(asked))
                slow_down = slow_down or answer.status == 429 or asked is not None
        if unauthorized:
            refreshed = True
            refresh()
        if throttled and (
            attempt >= policy.max_attempts
            or (retry_after is not None and retry_after > policy.max_delay)
        ):
            throttled = []  # their throttling errors stay recorded (see above)
        if throttled:
            if slow_down:
                telemetry.throttle_wait(provider, "request")
            if retry_after is not None:
                sleep(retry_after)  # exactly as asked (the longest of the members)
            else:
                backoff = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                sleep(max(min_backoff, backoff))
        pending = unauthorized + throttled
