"""Webhook ingestion: provider pushes in, durable jobs out. Framework-free.

:class:`WebhookHandler` turns one HTTP request (a :class:`WebhookRequest`) into one
:class:`WebhookResponse`. It never fetches mail while the provider waits: it checks the request,
finds the mailbox, stores a job through the host's :class:`~mailparity.protocols.JobStore` and
answers. :meth:`WebhookHandler.run_pending` (or a worker) then runs the jobs, which fetch, dedupe
and publish. ``wsgi`` serves the handler over plain WSGI; ``contrib`` adapts Flask, FastAPI and
Django.

Microsoft Graph (:meth:`WebhookHandler.handle_microsoft`):

* validation handshake: any GET or POST carrying ``?validationToken=`` is answered ``200
  text/plain`` with the token, before and without reading the body;
* a notification (``{"value": [...]}``) is answered ``202`` once its jobs are stored, ``503`` when
  the store failed (Graph then retries), ``400`` for a body that is not a change-notification
  collection, ``413`` above ``max_body_bytes`` or with more than ``max_notification_items``
  items. Each item is checked on its own: an unknown subscription, a missing or wrong
  ``clientState`` (compared in constant time, the rotated-out token accepted until
  ``previous_token_valid_until``) or a malformed item is skipped, and never stops the valid items
  beside it. One summary line per request says what was queued and what was ignored, and why.

Google Pub/Sub push (:meth:`WebhookHandler.handle_google`):

* ``Authorization: Bearer <OIDC JWT>`` is verified against Google's certificates (cached as
  ``Cache-Control: max-age`` says; refetched on an unknown key id at most once a minute): RS256
  signature, expiry, issuer, ``aud == google_audience``, ``email`` one of
  ``google_service_accounts`` and ``email_verified``. Missing: ``401``; invalid: ``403``;
  certificates unreachable: ``503`` (Pub/Sub redelivers);
* the envelope must be a Pub/Sub push (``400`` otherwise). A message whose data is not Gmail's
  ``{"emailAddress", "historyId"}``, an unknown mailbox, a push from another subscription than
  the mailbox's configured ``pubsub_subscription_name``, or a stale ``historyId`` is acknowledged
  (``204``) and logged: redelivering it could never help. Otherwise a ``gmail_history`` job is
  stored (duplicate pushes coalesce on its unique key) and the answer is ``204``; ``503`` when the
  store failed.

Configuration of the Google side: verification is on unless ``verify_google_tokens=False`` is
passed (a warning is logged at construction). ``google_audience`` and ``google_service_accounts``
go together: giving one without the other raises :class:`~mailparity.errors.ConfigurationError` at
construction, because an audience alone accepts a token minted by *any* Google service account.
Giving neither is allowed (a Microsoft-only host): ``handle_google`` then answers ``403`` and logs
a configuration error.

Nothing here logs or answers a token, a ``clientState``, a JWT or a request body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import requests

from .errors import ConfigurationError
from .models import GmailProviderConfig, Job, MicrosoftProviderConfig, utcnow
from .protocols import EventPublisher, SecretStore, StateStore

if TYPE_CHECKING:
    from .processing import Processor

__all__ = [
    "GOOGLE_CERTS_URL",
    "GOOGLE_ISSUERS",
    "GRAPH_LIFECYCLE_EVENTS",
    "Headers",
    "WebhookHandler",
    "WebhookRequest",
    "WebhookResponse",
]

log = logging.getLogger("mailparity.webhooks")

#: Where Google publishes the certificates that sign its OIDC tokens ({kid: PEM certificate}).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
#: The ``iss`` values of Google-signed ID tokens.
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: The Graph lifecycle events that become ``lifecycle`` jobs.
GRAPH_LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

LAST_PUSH_META = "last_push_at"
#: Graph's validation tokens are short opaque strings; anything longer is not Graph.
MAX_VALIDATION_TOKEN_LENGTH = 1024
#: Longest Authorization header value considered (Google's ID tokens are about 1 KB).
MAX_BEARER_LENGTH = 16 * 1024
#: Identifiers we store or log (subscription ids, message ids, mailboxes) are bounded.
MAX_ID_LENGTH = 1024
#: Default cap on the items of one Graph notification POST. Graph batches a handful of
#: notifications per request; a body with more items than this is refused whole (413) before
#: any item is looked at, so a flood costs one parse and one log line.
DEFAULT_MAX_NOTIFICATION_ITEMS = 1000
#: How many distinct examples (subscription ids, provider ids) a summary log line names.
_SUMMARY_EXAMPLES = 3
_UINT64_MAX = 2**64 - 1

_TEXT_PLAIN = "text/plain; charset=utf-8"
_GRAPH_RESOURCE_MESSAGE_ID = re.compile(
    r"messages(?:/([^/()']+)|\('([^']+)'\))/?$", re.IGNORECASE
)
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*=*")
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Request and response


class Headers(Mapping[str, str]):
    """A read-only mapping of HTTP headers whose names are case-insensitive.

    The first spelling seen is kept for iteration; a later duplicate (in another case) wins.
    Its repr shows header names only, never values (they carry bearer tokens).
    """

    __slots__ = ("_items",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        pairs = data.items() if isinstance(data, Mapping) else data
        for name, value in pairs:
            key = str(name).lower()
            original = self._items[key][0] if key in self._items else str(name)
            self._items[key] = (original, str(value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(original for original, _ in self._items.values())!r})"


@dataclass(frozen=True)
class WebhookRequest:
    """One incoming webhook request, independent of any web framework.

    Attributes:
        method: the HTTP method (upper-cased on construction).
        query: the query parameters, values already URL-decoded (one value per name).
        headers: the headers; normalised to a case-insensitive :class:`Headers`.
        body: the raw body bytes.

    The repr shows the method, the query parameter names, the header names and the body size
    only: values can carry tokens.
    """

    method: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", str(self.method).upper())
        object.__setattr__(self, "query", {str(k): str(v) for k, v in self.query.items()})
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))
        body: object = self.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, bytearray | memoryview):
            body = bytes(body)
        elif body is None:
            body = b""
        if not isinstance(body, bytes):
            raise TypeError("WebhookRequest.body must be bytes")
        object.__setattr__(self, "body", body)

    def __repr__(self) -> str:
        return (
            f"WebhookRequest(method={self.method!r}, query={sorted(self.query)!r},"
            f" headers={self.headers!r}, body=<{len(self.body)} bytes>)"
        )


@dataclass(frozen=True)
class WebhookResponse:
    """The answer to give the provider: status, headers and body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (for tests and logs of our own answers)."""
        return self.body.decode("utf-8", errors="replace")


def _plain(status: int, message: str, **headers: str) -> WebhookResponse:
    # Our own fixed wording only: an answer never echoes what the caller sent (validation aside).
    all_headers = {"Content-Type": _TEXT_PLAIN, "Cache-Control": "no-store"}
    all_headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return WebhookResponse(status, all_headers, (message + "\n").encode("utf-8"))


def _empty(status: int) -> WebhookResponse:
    return WebhookResponse(status, {"Cache-Control": "no-store"}, b"")


def _method_not_allowed(allow: str) -> WebhookResponse:
    return _plain(405, "method not allowed", Allow=allow)


def _too_large() -> WebhookResponse:
    return _plain(413, "request body too large")


# --------------------------------------------------------------------------------------------
# Helpers


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_control_chars(value: str) -> bool:
    return _CONTROL_CHARS.search(value) is not None


def _safe(value: object, limit: int = 80) -> str:
    """A log-safe rendering of an untrusted, non-secret value (ids, mailboxes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _valid_id(value: object) -> bool:
    # "." and ".." are refused too: put into a URL path they would be dot segments.
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ID_LENGTH
        and not _has_control_chars(value)
        and value.strip() == value
        and value not in (".", "..")
    )


def _json_loads(body: bytes) -> Any:
    """Parse JSON; raise ValueError for anything that is not JSON (bad UTF-8, nesting bombs)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError("not JSON") from exc


def _decode_base64_lenient(data: str) -> bytes | None:
    """Decode base64 or base64url, padded or not; None when it is neither."""
    text = data.strip()
    if not _BASE64_CHARS.fullmatch(text):
        return None
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        return None
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_history_id(value: object) -> int | None:
    # Gmail documents a string; a JSON number is seen on the wire too.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        return None
    return number if 0 < number <= _UINT64_MAX else None


class _StoreFailedError(Exception):
    """A host store call raised: the provider must retry (503)."""


class _TokenRejectedError(Exception):
    """The push token is invalid (403). ``reason`` is our own wording, free of token data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CertsUnavailableError(Exception):
    """Google's certificates could not be obtained (503: not the caller's fault)."""


class _PendingRunner(Protocol):
    def run_pending(self, limit: int | None = None) -> int: ...


# --------------------------------------------------------------------------------------------
# Google certificates


class _GoogleCertCache:
    """Google's OIDC signing certificates, cached as the response's ``Cache-Control`` allows.

    An unknown key id triggers a refetch (Google rotates keys), at most once per
    ``refetch_interval`` so forged key ids cannot make us hammer Google. Thread-safe.
    """

    DEFAULT_MAX_AGE = 300.0
    MAX_MAX_AGE = 86_400.0

    def __init__(
        self,
        url: str,
        session: requests.Session | None,
        clock: Callable[[], datetime],
        *,
        refetch_interval: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._refetch_interval = timedelta(seconds=refetch_interval)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._expires_at: datetime | None = None
        self._last_attempt: datetime | None = None
        self.fetches = 0

    def certificate(self, kid: str) -> str | None:
        """The PEM certificate of ``kid``; None if Google does not (or no longer) publish it.

        Raises _CertsUnavailableError when no certificate set can be had at all.
        """
        with self._lock:
            now = self._clock()
            fresh = self._certs is not None and self._expires_at is not None and (
                now < self._expires_at
            )
            if not fresh:
                self._refresh(now, must_succeed=self._certs is None)
            assert self._certs is not None  # _refresh raised otherwise
            if kid in self._certs:
                return self._certs[kid]
            if self._last_attempt is None or now - self._last_attempt >= self._refetch_interval:
                self._refresh(now, must_succeed=False)
            return self._certs.get(kid)

    def _refresh(self, now: datetime, *, must_succeed: bool) -> None:
        if (
            must_succeed
            and self._last_attempt is not None
            and now - self._last_attempt < timedelta(seconds=5)
        ):
            # A failed fetch a moment ago: do not turn every push into a request to Google.
            raise _CertsUnavailableError("certificate fetch failed recently")
        self._last_attempt = now
        try:
            certs, max_age = self._fetch()
        except _CertsUnavailableError:
            if must_succeed:
                raise
            # Keep verifying with the certificates we have (Google keeps old keys published for
            # a while); the next push retries the fetch.
            log.warning("could not refresh Google's OIDC certificates; using the cached set")
            self._expires_at = now + timedelta(seconds=min(self.DEFAULT_MAX_AGE, 60.0))
            return
        self._certs = certs
        self._expires_at = now + timedelta(seconds=max_age)

    def _fetch(self) -> tuple[dict[str, str], float]:
        self.fetches += 1
        getter = self._session if self._session is not None else requests
        try:
            response = getter.get(self._url, timeout=self._timeout)
        except requests.RequestException as exc:
            log.error("fetching Google's OIDC certificates failed (%s)", type(exc).__name__)
            raise _CertsUnavailableError("network error") from exc
        if response.status_code != 200:
            log.error("fetching Google's OIDC certificates failed: HTTP %s", response.status_code)
            raise _CertsUnavailableError(f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise _CertsUnavailableError("certificates are not JSON") from exc
        if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and isinstance(v, str) and "-----BEGIN" in v
            for k, v in data.items()
        ):
            log.error("Google's OIDC certificate document has an unexpected shape")
            raise _CertsUnavailableError("unexpected certificate document")
        return dict(data), self._max_age(response.headers.get("Cache-Control", ""))

    def _max_age(self, cache_control: str) -> float:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            return 0.0
        match = _MAX_AGE.search(cache_control)
        if match is None:
            return self.DEFAULT_MAX_AGE
        return min(float(match.group(1)), self.MAX_MAX_AGE)


# --------------------------------------------------------------------------------------------
# One summary line per notification request


@dataclass(frozen=True)
class _ItemOutcome:
    """What became of one Graph notification item: queued (``reason`` None) or ignored.

    ``example``: a log-safe value worth naming (a provider id, a bounded repr of an id);
    ``level``: how loud an ignored item of this kind is."""

    reason: str | None
    example: str | None = None
    level: int = logging.WARNING


class _ItemTally:
    """Counts the outcomes of one request's items and logs them as ONE line.

    A 1 MB body holds tens of thousands of items: logging each would let one unauthenticated
    request write that many lines. The summary names each reason with its count and at most
    ``_SUMMARY_EXAMPLES`` distinct examples, at the level of its loudest reason."""

    def __init__(self) -> None:
        self.queued = 0
        self._counts: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}
        self._level = logging.DEBUG

    def add(self, outcome: _ItemOutcome) -> None:
        if outcome.reason is None:
            self.queued += 1
            return
        reason = outcome.reason
        self._counts[reason] = self._counts.get(reason, 0) + 1
        examples = self._examples.setdefault(reason, [])
        if (
            outcome.example is not None
            and outcome.example not in examples
            and len(examples) < _SUMMARY_EXAMPLES
        ):
            examples.append(outcome.example)
        self._level = max(self._level, outcome.level)

    def summary(self, total: int) -> str:
        text = f"Graph notification: {total} item(s), {self.queued} job(s) queued"
        if not self._counts:
            return text
        parts = []
        for reason, count in self._counts.items():
            examples = self._examples.get(reason)
            shown = f" ({', '.join(examples)}{', ...' if count > len(examples) else ''})" if (
                examples
            ) else ""
            parts.append(f"{count} {reason}{shown}")
        return f"{text}; ignored: {'; '.join(parts)}"

    def log(self, total: int) -> None:
        level = self._level if self._counts else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "%s", self.summary(total))


# --------------------------------------------------------------------------------------------
# The handler


class WebhookHandler:
    """Receives Microsoft Graph notifications and Gmail Pub/Sub pushes; stores jobs; answers fast.

    Args:
        store: the host's state store (providers, jobs, meta; see
            :class:`~mailparity.protocols.StateStore`).
        publisher: where :meth:`run_pending` publishes events.
        secrets: the host's tenant secrets (client ids and secrets), for the adapters.
        session: a ``requests.Session`` for every outgoing call (Google's certificates, and the
            provider APIs when jobs run).
        google_audience: the ``aud`` that Pub/Sub puts in its push tokens (the subscription's
            ``pushConfig.oidcToken.audience``, by default the push endpoint URL).
        google_service_accounts: the service-account e-mails allowed to sign pushes
            (``pushConfig.oidcToken.serviceAccountEmail``), compared case-insensitively.
        verify_google_tokens: ``False`` skips push authentication (only behind a trusted proxy
            that verifies it); a warning is logged.
        google_certs_url: where Google's certificates are fetched (a test server in tests).
        google_clock_skew_seconds: the tolerance of the ``exp`` / ``iat`` checks.
        max_body_bytes: larger bodies are refused with 413 before they are parsed.
        max_notification_items: a Graph notification POST with more items than this is
            refused whole with 413 before any item is looked at (default
            ``DEFAULT_MAX_NOTIFICATION_ITEMS``, far above the few items Graph batches).
        clock: injectable time, passed to the processor.
        sleep: injectable waiting (the handler itself never sleeps; it goes to the processor).
        processor: the object :meth:`run_pending` delegates to; by default a
            :class:`~mailparity.processing.Processor` created on first use.

    Raises:
        ConfigurationError: ``google_service_accounts`` without ``google_audience`` or the reverse
            (while verification is on), a negative ``max_body_bytes``, or a
            ``max_notification_items`` below 1.
    """

    def __init__(
        self,
        *,
        store: StateStore,
        publisher: EventPublisher,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        google_audience: str | None = None,
        google_service_accounts: Sequence[str] = (),
        verify_google_tokens: bool = True,
        google_certs_url: str = GOOGLE_CERTS_URL,
        google_clock_skew_seconds: int = 60,
        max_body_bytes: int = 1_000_000,
        max_notification_items: int = DEFAULT_MAX_NOTIFICATION_ITEMS,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        processor: _PendingRunner | None = None,
    ) -> None:
        if isinstance(google_service_accounts, str):
            google_service_accounts = (google_service_accounts,)
        accounts = tuple(a.strip().lower() for a in google_service_accounts if a and a.strip())
        if max_body_bytes < 0:
            raise ConfigurationError("max_body_bytes must not be negative")
        if max_notification_items < 1:
            raise ConfigurationError("max_notification_items must be at least 1")
        if verify_google_tokens:
            if accounts and not google_audience:
                raise ConfigurationError(
                    "google_service_accounts is set but google_audience is not: Pub/Sub push"
                    " tokens cannot be verified without the expected audience"
                )
            if google_audience and not accounts:
                raise ConfigurationError(
                    "google_audience is set but google_service_accounts is empty: any Google"
                    " service account could mint a token for that audience"
                )
        else:
            log.warning(
                "Pub/Sub push authentication is DISABLED (verify_google_tokens=False): anyone who"
                " can reach the Google webhook can enqueue work"
            )
        self.store = store
        self.publisher = publisher
        self.secrets = secrets
        self.session = session
        self.google_audience = google_audience
        self.google_service_accounts = accounts
        self.verify_google_tokens = verify_google_tokens
        self.max_body_bytes = max_body_bytes
        self.max_notification_items = max_notification_items
        self._skew = max(0, int(google_clock_skew_seconds))
        self._clock = clock
        self._sleep = sleep
        self._processor: _PendingRunner | None = processor
        self._processor_lock = threading.Lock()
        self._certs = _GoogleCertCache(google_certs_url, session, clock)

    def __repr__(self) -> str:
        return (
            f"WebhookHandler(google_audience={self.google_audience!r},"
            f" verify_google_tokens={self.verify_google_tokens!r})"
        )

    # ---------------------------------------------------------------- processing

    @property
    def processor(self) -> _PendingRunner:
        """The processor that :meth:`run_pending` delegates to (created on first use)."""
        with self._processor_lock:
            if self._processor is None:
                self._processor = self._make_processor()
            return self._processor

    def _make_processor(self) -> Processor:
        from .processing import Processor

        return Processor(
            self.store,
            self.publisher,
            secrets=self.secrets,
            session=self.session,
            clock=self._clock,
            sleep=self._sleep,
        )

    def run_pending(self) -> int:
        """Run the queued jobs that are due now; return how many ran (0 if none)."""
        return self.processor.run_pending()

    # ---------------------------------------------------------------- Microsoft Graph

    def handle_microsoft(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one request to the Microsoft Graph notification (and lifecycle) URL."""
        if request.method not in ("GET", "POST"):
            return _method_not_allowed("GET, POST")
        if "validationToken" in request.query:
            return self._graph_validation(request.query["validationToken"])
        if request.method != "POST":
            return _method_not_allowed("GET, POST")
        if len(request.body) > self.max_body_bytes:
            log.warning("Graph notification refused: body of %d bytes is too large",
                        len(request.body))
            return _too_large()
        try:
            payload = _json_loads(request.body)
        except ValueError:
            log.warning("Graph notification refused: the body is not JSON")
            return _plain(400, "body is not a change notification collection")
        if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
            log.warning("Graph notification refused: the body has no 'value' array")
            return _plain(400, "body is not a change notification collection")

        items = payload["value"]
        if len(items) > self.max_notification_items:
            log.warning("Graph notification refused: %d items, more than the %d allowed",
                        len(items), self.max_notification_items)
            return _plain(413, "too many notification items")

        now = self._clock()
        touched: set[str] = set()
        tally = _ItemTally()
        store_failed = False
        for index, item in enumerate(items):
            try:
                tally.add(self._graph_item(index, item, now, touched))
            except _StoreFailedError:
                # Keep going: the other items may still be stored; Graph retries the batch and
                # the jobs' unique keys coalesce the repeats.
                store_failed = True
        self._record_push(touched, now)
        tally.log(len(items))
        if store_failed:
            return _plain(503, "could not store the notifications; retry later",
                          Retry_After="10")
        return _empty(202)

    def _graph_validation(self, token: str) -> WebhookResponse:
        if not token or len(token) > MAX_VALIDATION_TOKEN_LENGTH or _has_control_chars(token):
            log.warning("Graph validation refused: the validationToken is empty, too long or"
                        " holds control characters")
            return _plain(400, "invalid validation token")
        log.info("answered a Graph validation request")
        return WebhookResponse(
            200,
            {
                "Content-Type": _TEXT_PLAIN,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
            token.encode("utf-8"),
        )

    def _graph_item(
        self, index: int, item: object, now: datetime, touched: set[str]
    ) -> _ItemOutcome:
        """Check one notification item and store its job; say what became of it.

        Nothing is logged per item (a hostile batch would make one line per item): the caller
        logs one summary line for the whole request."""
        if not isinstance(item, dict):
            return _ItemOutcome("not an object")
        subscription_id = item.get("subscriptionId")
        if not _valid_id(subscription_id):
            return _ItemOutcome("no valid subscriptionId")
        assert isinstance(subscription_id, str)
        try:
            config = self.store.find_provider_by_subscription(subscription_id)
        except Exception as exc:
            log.error("looking up Graph subscription %s failed", _safe(subscription_id),
                      exc_info=True)
            raise _StoreFailedError from exc
        if not isinstance(config, MicrosoftProviderConfig):
            return _ItemOutcome("unknown subscription", _safe(subscription_id))
        pid = config.provider_id
        if not self._client_state_ok(config, item.get("clientState"), now):
            # Never log the presented or stored value: a near-miss would leak the secret.
            return _ItemOutcome("missing or wrong clientState", pid)
        if not config.active:
            return _ItemOutcome("paused provider", pid, level=logging.INFO)
        touched.add(pid)

        lifecycle = item.get("lifecycleEvent")
        if lifecycle is not None:
            if lifecycle not in GRAPH_LIFECYCLE_EVENTS:
                return _ItemOutcome("unhandled lifecycle event", _safe(lifecycle))
            assert isinstance(lifecycle, str)
            return self._graph_job(Job(
                kind="lifecycle",
                provider_id=pid,
                payload={"event": lifecycle, "subscription_id": subscription_id},
                unique_key=f"lifecycle:{pid}:{lifecycle}",
                available_at=now,
                created_at=now,
            ))

        change_type = item.get("changeType")
        if not isinstance(change_type, str) or change_type.strip().lower() != "created":
            # Our own marking (isRead, categories) produces "updated"; deletions need no event.
            return _ItemOutcome("not a created message", _safe(change_type), level=logging.DEBUG)
        message_id = self._graph_message_id(item)
        if message_id is None:
            return _ItemOutcome("no message id", pid)
        return self._graph_job(Job(
            kind="graph_message",
            provider_id=pid,
            payload={"message_id": message_id, "received_hint": now.isoformat()},
            unique_key=f"graph:{pid}:{message_id}",
            available_at=now,
            created_at=now,
        ))

    def _graph_job(self, job: Job) -> _ItemOutcome:
        if self._enqueue(job):
            return _ItemOutcome(None)
        return _ItemOutcome("coalesced with a pending job", job.provider_id, level=logging.DEBUG)

    @staticmethod
    def _graph_message_id(item: Mapping[str, Any]) -> str | None:
        resource_data = item.get("resourceData")
        if resource_data is not None and not isinstance(resource_data, dict):
            return None
        if isinstance(resource_data, dict):
            odata_type = resource_data.get("@odata.type")
            # Messages and their subtypes (eventMessage) only; compared case-insensitively
            # because the docs' own examples spell it both ways.
            if isinstance(odata_type, str) and not odata_type.lower().endswith("message"):
                return None
            rid = resource_data.get("id")
            if _valid_id(rid):
                assert isinstance(rid, str)
                return rid
        resource = item.get("resource")
        if isinstance(resource, str) and len(resource) <= 4 * MAX_ID_LENGTH:
            match = _GRAPH_RESOURCE_MESSAGE_ID.search(resource)
            if match:
                found = match.group(1) or match.group(2)
                if _valid_id(found):
                    return found
        return None

    def _client_state_ok(
        self, config: MicrosoftProviderConfig, presented: object, now: datetime
    ) -> bool:
        if not isinstance(presented, str) or not presented:
            return False
        candidates = []
        if config.webhook_verification_token is not None:
            candidates.append(config.webhook_verification_token.get_secret_value())
        previous = config.previous_webhook_verification_token
        valid_until = config.previous_token_valid_until
        if previous is not None and valid_until is not None and now < valid_until:
            candidates.append(previous.get_secret_value())
        if not candidates:
            log.warning("provider %s has no webhook_verification_token: its notifications"
                        " cannot be trusted", config.provider_id)
        presented_bytes = presented.encode("utf-8", errors="surrogatepass")
        matched = False
        for candidate in candidates:
            if not candidate:
                continue
            # Compare against every candidate (no early exit): timing reveals nothing.
            matched |= hmac.compare_digest(presented_bytes, candidate.encode("utf-8"))
        return matched

    # ---------------------------------------------------------------- Google Pub/Sub

    def handle_google(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one Pub/Sub push carrying a Gmail notification."""
        if request.method != "POST":
            return _method_not_allowed("POST")
        if len(request.body) > self.max_body_bytes:
            log.warning("Pub/Sub push refused: body of %d bytes is too large", len(request.body))
            return _too_large()
        refused = self._authenticate_google(request)
        if refused is not None:
            return refused

        envelope = self._pubsub_envelope(request.body)
        if envelope is None:
            return _plain(400, "body is not a Pub/Sub push")
        message, pubsub_id, subscription = envelope
        notification = self._gmail_notification(message, pubsub_id)
        if notification is None:
            return _empty(204)
        email_address, history_id = notification

        try:
            config = self.store.find_provider_by_mailbox("google", email_address)
        except Exception:
            log.error("looking up the Gmail mailbox of Pub/Sub message %s failed",
                      _safe(pubsub_id), exc_info=True)
            return _plain(503, "could not look up the mailbox; retry later", Retry_After="10")
        if not isinstance(config, GmailProviderConfig):
            log.warning("Pub/Sub push for unknown Gmail mailbox %s; acknowledged",
                        _safe(email_address))
            return _empty(204)
        pid = config.provider_id
        now = self._clock()
        if not config.active:
            log.info("Pub/Sub push for paused provider %s; acknowledged", pid)
            return _empty(204)
        if not config.accepts_push_subscription(subscription):
            # Any allowed service account can sign a push naming any mailbox: a push is only
            # trusted for the mailbox whose own subscription delivered it.
            log.warning(
                "Pub/Sub push from subscription %s for provider %s, whose subscription is %s;"
                " acknowledged and ignored",
                _safe(subscription), pid, _safe(config.subscription_path),
            )
            return _empty(204)
        if config.history_id is not None and history_id <= config.history_id:
            log.debug("stale Pub/Sub push for provider %s (historyId %d <= cursor %d)",
                      pid, history_id, config.history_id)
            self._record_push({pid}, now)
            return _empty(204)
        try:
            self._enqueue(Job(
                kind="gmail_history",
                provider_id=pid,
                payload={"history_id": history_id},
                unique_key=f"gmail-history:{pid}",
                available_at=now,
                created_at=now,
            ))
        except _StoreFailedError:
            return _plain(503, "could not store the notification; retry later",
                          Retry_After="10")
        self._record_push({pid}, now)
        return _empty(204)

    def _authenticate_google(self, request: WebhookRequest) -> WebhookResponse | None:
        if not self.verify_google_tokens:
            return None
        if not self.google_audience or not self.google_service_accounts:
            log.error(
                "configuration error: a Pub/Sub push arrived but the handler has no"
                " google_audience / google_service_accounts to verify it; refused"
            )
            return _plain(403, "push authentication is not configured")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            log.warning("Pub/Sub push refused: no bearer token")
            return _plain(401, "missing bearer token", WWW_Authenticate="Bearer")
        try:
            claims = self._verify_google_token(token)
        except _TokenRejectedError as exc:
            log.warning("Pub/Sub push refused: %s", exc.reason)
            return _plain(403, "invalid push token")
        except _CertsUnavailableError:
            return _plain(503, "cannot verify the push token now; retry later",
                          Retry_After="30")
        log.debug("Pub/Sub push token accepted for %s", _safe(claims.get("email")))
        return None

    def _verify_google_token(self, token: str) -> Mapping[str, Any]:
        """Verify the OIDC token and return its claims.

        Raises _TokenRejectedError (403) or _CertsUnavailableError (503).
        """
        from google.auth import exceptions as google_exceptions
        from google.auth import jwt as google_jwt

        if len(token) > MAX_BEARER_LENGTH or token.count(".") != 2:
            raise _TokenRejectedError("malformed token")
        try:
            header = google_jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, google_exceptions.GoogleAuthError) as exc:
            raise _TokenRejectedError("malformed token") from exc
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise _TokenRejectedError("token is not RS256-signed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _TokenRejectedError("token has no key id")
        certificate = self._certs.certificate(kid)
        if certificate is None:
            raise _TokenRejectedError("token is signed with a key Google does not publish")
        try:
            claims = google_jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs={kid: certificate},
                audience=self.google_audience,
                clock_skew_in_seconds=self._skew,
            )
        except (ValueError, TypeError, google_exceptions.GoogleAuthError) as exc:
            # google-auth's messages can quote the token: log our own wording only.
            raise _TokenRejectedError(
                f"signature, audience or lifetime check failed ({type(exc).__name__})"
            ) from exc
        if not isinstance(claims, Mapping):
            raise _TokenRejectedError("token claims are not an object")
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _TokenRejectedError("token issuer is not Google")
        # google-auth checked the lifetime against the system clock; check it against ours too,
        # so an injected clock (tests, replay tools) is honoured.
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _TokenRejectedError("token has no expiry")
        if self._clock().timestamp() > float(exp) + self._skew:
            raise _TokenRejectedError("token expired")
        email = claims.get("email")
        if not isinstance(email, str) or email.strip().lower() not in self.google_service_accounts:
            raise _TokenRejectedError("token is not from an allowed service account")
        verified = claims.get("email_verified")
        if verified is not True and verified != "true":
            raise _TokenRejectedError("token e-mail is not verified")
        return claims

    @staticmethod
    def _pubsub_envelope(body: bytes) -> tuple[dict[str, Any], str, str] | None:
        try:
            payload = _json_loads(body)
        except ValueError:
            log.warning("Pub/Sub push refused: the body is not JSON")
            return None
        if not isinstance(payload, dict):
            log.warning("Pub/Sub push refused: the body is not a JSON object")
            return None
        message = payload.get("message")
        subscription = payload.get("subscription")
        if not isinstance(message, dict) or not isinstance(subscription, str) or not subscription:
            log.warning("Pub/Sub push refused: no 'message' object or 'subscription' name")
            return None
        pubsub_id = message.get("messageId", message.get("message_id"))
        if isinstance(pubsub_id, int) and not isinstance(pubsub_id, bool):
            pubsub_id = str(pubsub_id)
        if not _valid_id(pubsub_id):
            log.warning("Pub/Sub push refused: the message has no messageId")
            return None
        assert isinstance(pubsub_id, str)
        if len(subscription) > MAX_ID_LENGTH or _has_control_chars(subscription):
            log.warning("Pub/Sub push refused: the 'subscription' name is not valid")
            return None
        data = message.get("data")
        attributes = message.get("attributes")
        if (data is not None and not isinstance(data, str)) or (
            attributes is not None and not isinstance(attributes, dict)
        ):
            log.warning("Pub/Sub push refused: 'data' or 'attributes' has the wrong type")
            return None
        return message, pubsub_id, subscription

    @staticmethod
    def _gmail_notification(message: Mapping[str, Any], pubsub_id: str) -> tuple[str, int] | None:
        data = message.get("data")
        if not isinstance(data, str) or not data:
            log.warning("Pub/Sub message %s has no data; acknowledged", _safe(pubsub_id))
            return None
        decoded = _decode_base64_lenient(data)
        if decoded is None:
            log.warning("Pub/Sub message %s: data is not base64; acknowledged", _safe(pubsub_id))
            return None
        try:
            notification = _json_loads(decoded)
        except ValueError:
            log.warning("Pub/Sub message %s: data is not JSON; acknowledged", _safe(pubsub_id))
            return None
        if not isinstance(notification, dict):
            log.warning("Pub/Sub message %s: data is not a Gmail notification; acknowledged",
                        _safe(pubsub_id))
            return None
        email_address = notification.get("emailAddress")
        history_id = _parse_history_id(notification.get("historyId"))
        if not _valid_id(email_address) or history_id is None:
            log.warning(
                "Pub/Sub message %s: data lacks a valid emailAddress/historyId; acknowledged",
                _safe(pubsub_id),
            )
            return None
        assert isinstance(email_address, str)
        return email_address, history_id

    # ---------------------------------------------------------------- shared

    def _enqueue(self, job: Job) -> int:
        try:
            stored = self.store.enqueue_job(job)
        except Exception as exc:
            log.error("storing a %s job for provider %s failed", job.kind, job.provider_id,
                      exc_info=True)
            raise _StoreFailedError from exc
        if not stored:
            log.debug("%s job for provider %s coalesced with a pending one", job.kind,
                      job.provider_id)
            return 0
        return 1

    def _record_push(self, provider_ids: Iterable[str], now: datetime) -> None:
        # Advisory (silence detection reads it): a failure here must not make the provider retry
        # work that is already stored.
        for pid in provider_ids:
            try:
                self.store.set_meta(pid, LAST_PUSH_META, now.isoformat())
            except Exception:
                log.warning("recording the push time of provider %s failed", pid, exc_info=True)
