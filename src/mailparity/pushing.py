"""The push contract: provider pushes in, durable jobs out. Framework-free.

The request and response types every push source speaks (re-exported by
:mod:`mailparity.webhooks`), the helpers they share (fixed-wording answers, bounded ids, lenient
JSON) and :class:`PushSource`, the base of each provider's push module (``providers/*/push.py``).

A push source answers one request: it authenticates it (a signature, a shared secret), finds the
mailbox, stores jobs through :meth:`PushSource._enqueue` and answers. The store-failure semantics
are the same for every provider and live here and in the handler, not in each source: a store call
made through ``PushSource.store`` that raises raises :class:`_StoreFailedError`, which the
:class:`~mailparity.webhooks.WebhookHandler` answers with ``503`` and ``Retry-After`` (the
provider retries) unless the source handles it itself (Graph keeps storing a batch's other
items); a job stored without a ``unique_key`` gets one derived from its kind, mailbox and payload,
so a redelivered identical push coalesces with the pending job; recording the push time is
advisory and never fails a request.

Nothing here logs or answers a token, a shared secret or a request body.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import requests

from . import telemetry
from .models import Job
from .protocols import StateStore

__all__ = [
    "LAST_PUSH_META",
    "LIFECYCLE_EVENTS",
    "LIFECYCLE_MISSED",
    "LIFECYCLE_REAUTHORIZATION_REQUIRED",
    "LIFECYCLE_SUBSCRIPTION_REMOVED",
    "MAX_ID_LENGTH",
    "Headers",
    "PushSource",
    "WebhookRequest",
    "WebhookResponse",
]

#: Push sources log under this name (hosts configure one webhook logger for every provider).
log = logging.getLogger("mailparity.webhooks")

#: Meta key of the last push of a mailbox (silence detection reads it).
LAST_PUSH_META = "last_push_at"
#: Identifiers we store or log (subscription ids, message ids, mailboxes) are bounded.
MAX_ID_LENGTH = 1024

_TEXT_PLAIN = "text/plain; charset=utf-8"

# The provider-neutral events of a push registration's lifecycle: the ``event`` of a
# ``lifecycle`` job. A push source maps its provider's own names onto these.
#: Pushes are paused until the registration is reauthorized (or renewed).
LIFECYCLE_REAUTHORIZATION_REQUIRED = "reauthorization_required"
#: The registration is gone: a new one must be created.
LIFECYCLE_SUBSCRIPTION_REMOVED = "subscription_removed"
#: Pushes were dropped: the mailbox must catch up from its cursor.
LIFECYCLE_MISSED = "missed"
#: Every lifecycle event the processor acts on (each one also queues a catch-up).
LIFECYCLE_EVENTS = frozenset(
    {LIFECYCLE_REAUTHORIZATION_REQUIRED, LIFECYCLE_SUBSCRIPTION_REMOVED, LIFECYCLE_MISSED}
)


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


class _StoreFailedError(Exception):
    """A host store call raised: the provider must retry (503)."""


def _store_failed() -> WebhookResponse:
    """The answer to a push whose work could not be stored: the provider redelivers it."""
    return _plain(503, "could not store the push; retry later", Retry_After="10")


class _GuardedStore:
    """The host store as a push source sees it: every call that raises raises
    :class:`_StoreFailedError` instead (chained to the cause), so a failed lookup or enqueue in any
    push source becomes the handler's ``503``. Attributes that are not callables pass through."""

    __slots__ = ("_store",)

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except _StoreFailedError:
                raise
            except Exception as exc:
                raise _StoreFailedError(f"the store's {name} failed") from exc

        return guarded

    def __repr__(self) -> str:
        return f"_GuardedStore({self._store!r})"


def _default_unique_key(job: Job) -> str:
    """A unique key for a push job that came without one: the same kind, mailbox and payload
    (before any trace context is added) give the same key, so a redelivery coalesces."""
    canonical = json.dumps(job.payload, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"push:{job.kind}:{job.provider_id}:{digest[:32]}"


# --------------------------------------------------------------------------------------------
# The base of every provider's push source


class PushSource:
    """Turns one provider's push requests into jobs. Subclassed by ``providers/*/push.py``.

    The :class:`~mailparity.webhooks.WebhookHandler` builds one per registered provider whose
    spec has a ``push``, with the handler's store, clock and session, plus the keyword arguments
    the spec lists in ``push_options``. Subclasses implement :meth:`handle`.

    Attributes:
        store: the host's state store (providers, jobs, meta), guarded: a call that raises raises
            :class:`_StoreFailedError`, which the handler answers ``503`` (catch it only to go on
            with other work, as Graph does for the other items of a batch, then answer 503).
        max_body_bytes: larger bodies are refused with 413 before they are parsed.
        push_key: the provider key this source answers for (set by the handler); the
            ``provider`` label of its metrics.
    """

    push_key: str = ""

    def __init__(
        self,
        *,
        store: StateStore,
        clock: Callable[[], datetime],
        session: requests.Session | None = None,
        max_body_bytes: int = 1_000_000,
    ) -> None:
        self.store: StateStore = cast(StateStore, _GuardedStore(store))
        self.session = session
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one push request (authenticate, find the mailbox, store jobs)."""
        raise NotImplementedError

    def describe(self) -> str:
        """A secret-free description for the handler's repr."""
        return type(self).__name__

    def _ignored(self, reason: str, count: int = 1) -> None:
        """Count a push (or notification items) acknowledged but ignored, by reason: an unknown
        mailbox, a wrong shared secret, a malformed item (``mailparity.pushes.rejected``)."""
        telemetry.push_rejected(self.push_key or type(self).__name__, reason, count)

    def _enqueue(self, job: Job) -> int:
        """Store ``job``; return 1, or 0 when it coalesced with a pending job of the same unique
        key (one is derived from the job's kind, mailbox and payload when it has none).

        Raises:
            _StoreFailedError: the store failed; the handler answers ``503``.
        """
        if job.unique_key is None:
            job = job.model_copy(update={"unique_key": _default_unique_key(job)})
        # The push's trace continues in whichever process runs the job.
        telemetry.inject(job.payload)
        # A failure raises _StoreFailedError (the store is guarded); whoever catches it logs it.
        if not self.store.enqueue_job(job):
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
