"""Webhook ingestion: provider pushes in, durable jobs out. Framework-free.

:class:`WebhookHandler` turns one HTTP request (a :class:`WebhookRequest`) into one
:class:`WebhookResponse`. It never fetches mail while the provider waits: the provider's push
source checks the request, finds the mailbox, stores a job through the host's
:class:`~mailparity.protocols.JobStore` and answers. :meth:`WebhookHandler.run_pending` (or a
worker) then runs the jobs, which fetch, dedupe and publish. ``wsgi`` serves the handler over plain
WSGI; ``contrib`` adapts Flask, FastAPI and Django.

:meth:`WebhookHandler.handle` takes the provider key (``handler.handle(key, request)``);
``handler.handle_<key>(request)`` is the same call (``handle_microsoft``, ``handle_google``). What
each provider answers, and when, is documented in its push module (``providers/graph/push.py``:
validation handshake and ``clientState``; ``providers/gmail/push.py``: Pub/Sub OIDC tokens). The
semantics they share live in :mod:`mailparity.pushing`: a store that fails makes the answer
``503`` (the provider retries, job unique keys coalesce the repeats), a body above
``max_body_bytes`` is refused with ``413`` before it is parsed, and nothing logs or answers a
token, a shared secret, a JWT or a request body. A key with no push source is answered ``404``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import requests

from . import telemetry
from .errors import ConfigurationError
from .models import utcnow
from .protocols import EventPublisher, SecretStore, StateStore, require_publisher
from .providers import specs
from .pushing import (
    LAST_PUSH_META,
    Headers,
    PushSource,
    WebhookRequest,
    WebhookResponse,
    _has_control_chars,  # noqa: F401  (kept importable from here, its former home)
    _plain,
    _store_failed,
    _StoreFailedError,
)

if TYPE_CHECKING:
    from .processing import Processor

__all__ = [
    "DEFAULT_PREFIX",
    "LAST_PUSH_META",
    "Headers",
    "WebhookHandler",
    "WebhookRequest",
    "WebhookResponse",
    "notify_hook",
    "push_routes",
]

log = logging.getLogger("mailparity.webhooks")



#: Where the web integrations mount each provider's endpoint: ``{prefix}/{key}``.
DEFAULT_PREFIX = "/webhooks"


def push_routes(
    handler: WebhookHandler | Any, *, prefix: str = DEFAULT_PREFIX, paths: Mapping[str, str] = {}
) -> dict[str, str]:
    """``{provider key: path}`` for every provider ``handler`` takes pushes for: the path is
    ``paths["<key>_path"]`` when given (``microsoft_path="/graph"``), else ``{prefix}/{key}``.

    Raises:
        TypeError: a ``*_path`` for a provider without a push source.
    """
    keys = getattr(handler, "push_keys", None)
    if keys is None:  # a stand-in with ``handle_<key>`` methods only: every push provider
        keys = tuple(spec.key for spec in specs() if spec.push is not None)
    routes = {key: f"{prefix.rstrip('/')}/{key}" for key in keys}
    for name, value in paths.items():
        key = name.removesuffix("_path")
        if not name.endswith("_path") or key not in routes:
            raise TypeError(f"unexpected keyword argument {name!r} (no such push endpoint)")
        routes[key] = value
    return routes


def notify_hook(notify: object | None) -> Callable[[WebhookResponse], None] | None:
    """The ``notify=`` of the web integrations as a function called with every webhook answer.

    ``notify`` is the Celery integration (:class:`~mailparity.contrib.celery.MailParityCelery`:
    its ``notify_after`` sends ``mailparity.process_jobs`` when the answer says work was
    stored, so a Celery worker starts on it at once), or any callable taking the
    :class:`WebhookResponse`. The jobs are durable before the answer exists, so a hook that
    raises (a broker that is down) is logged and the provider still gets its answer; the
    Celery beat schedule or a worker runs the jobs anyway.

    Raises:
        TypeError: ``notify`` is neither callable nor has a ``notify_after`` method.
    """
    if notify is None:
        return None
    target = getattr(notify, "notify_after", notify)
    if not callable(target):
        raise TypeError(
            "notify= needs the Celery integration (mailparity.contrib.celery.configure(...)) or"
            f" a function taking the WebhookResponse; got {type(notify).__name__}"
        )

    def after(response: WebhookResponse) -> None:
        try:
            target(response)
        except Exception as exc:  # the work is stored: the provider must still get its 2xx
            log.warning("the notify hook failed after a webhook answer: %s", type(exc).__name__)

    return after


class _PendingRunner(Protocol):
    def run_pending(self, limit: int | None = None) -> int: ...


class WebhookHandler:
    """Receives every registered provider's pushes; stores jobs; answers fast.

    Args:
        store: the host's state store (providers, jobs, meta; see
            :class:`~mailparity.protocols.StateStore`).
        publisher: where :meth:`run_pending` publishes events.
        secrets: the host's tenant secrets (client ids and secrets), for the adapters.
        session: a ``requests.Session`` for every outgoing call (certificates of a push signer,
            and the provider APIs when jobs run).
        max_body_bytes: larger bodies are refused with 413 before they are parsed.
        clock: injectable time, passed to the push sources and the processor.
        sleep: injectable waiting (the handler itself never sleeps; it goes to the processor).
        processor: the object :meth:`run_pending` delegates to; by default a
            :class:`~mailparity.processing.Processor` created on first use.
        **push_options: the options of the providers' push sources, each listed in its spec's
            ``push_options``. The built-in ones: ``google_audience``,
            ``google_service_accounts``, ``verify_google_tokens``, ``google_certs_url``,
            ``google_clock_skew_seconds`` (Gmail, ``providers/gmail/push.py``) and
            ``max_notification_items`` (Graph, ``providers/graph/push.py``). They read back as
            attributes (``handler.google_audience``).

    Raises:
        ConfigurationError: a negative ``max_body_bytes``, or options a push source refuses
            (for example ``google_service_accounts`` without ``google_audience``).
        TypeError: an option no registered push source takes.
    """

    def __init__(
        self,
        *,
        store: StateStore,
        publisher: EventPublisher,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        max_body_bytes: int = 1_000_000,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        processor: _PendingRunner | None = None,
        **push_options: Any,
    ) -> None:
        if max_body_bytes < 0:
            raise ConfigurationError("max_body_bytes must not be negative")
        self.store = store
        self.publisher = require_publisher(publisher, "WebhookHandler")
        self.secrets = secrets
        self.session = session
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._sleep = sleep
        self._processor: _PendingRunner | None = processor
        self._processor_lock = threading.Lock()
        self._sources = self._build_sources(push_options)

    def _build_sources(self, options: dict[str, Any]) -> dict[str, PushSource]:
        sources: dict[str, PushSource] = {}
        taken: set[str] = set()
        for spec in specs():
            cls = spec.push_source_class()
            if cls is None:
                continue
            own = {name: options[name] for name in spec.push_options if name in options}
            taken.update(own)
            sources[spec.key] = cls(
                store=self.store,
                clock=self._clock,
                session=self.session,
                max_body_bytes=self.max_body_bytes,
                **own,
            )
            sources[spec.key].push_key = spec.key
        unknown = sorted(set(options) - taken)
        if unknown:
            raise TypeError(f"WebhookHandler() got unexpected keyword arguments: {unknown}")
        return sources

    def __repr__(self) -> str:
        return f"WebhookHandler({', '.join(s.describe() for s in self._sources.values())})"

    @property
    def push_keys(self) -> tuple[str, ...]:
        """The keys of the providers this handler answers pushes for."""
        return tuple(self._sources)

    def push_source(self, key: str) -> PushSource | None:
        """The push source of provider ``key`` (None when it has none)."""
        return self._sources.get(key)

    def __getattr__(self, name: str) -> Any:
        # ``handle_<key>`` for every push source, and the push sources' options as attributes.
        if name.startswith("_"):
            raise AttributeError(name)
        sources = self.__dict__.get("_sources", {})
        if name.startswith("handle_") and name[len("handle_"):] in sources:
            return functools.partial(self.handle, name[len("handle_"):])
        for source in sources.values():
            if name in vars(source):
                return getattr(source, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---------------------------------------------------------------- pushes

    def handle(self, key: str, request: WebhookRequest) -> WebhookResponse:
        """Answer one push request for provider ``key`` (404 when it has no push source).

        A store failure the push source lets through (:class:`~mailparity.pushing.PushSource`'s
        store raises ``_StoreFailedError``) is answered ``503`` with ``Retry-After`` here, for
        every push source: the provider redelivers, and the job unique keys coalesce the repeats.
        """
        source = self._sources.get(key)
        if source is None:
            log.warning("push for provider %r, which takes no pushes; refused", key[:40])
            return _plain(404, "no such webhook")
        with telemetry.push(key) as recorder:
            try:
                response = source.handle(request)
            except _StoreFailedError:
                log.error("a %s push could not be stored; answered 503 (the provider retries)",
                          key, exc_info=True)
                response = _store_failed()
            recorder.answered(response.status)
        return response

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


def __getattr__(name: str) -> Any:
    # The push modules' public constants (GOOGLE_CERTS_URL, GRAPH_LIFECYCLE_EVENTS, ...) stay
    # importable from here, where they lived before moving into their provider packages.
    for spec in specs():
        cls = spec.push_source_class()
        if cls is None:
            continue
        module = __import__(cls.__module__, fromlist=["__all__"])
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
