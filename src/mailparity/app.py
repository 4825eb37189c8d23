"""One composition root: :class:`App` wires the webhook handler, the processor, maintenance and
workers of one host over ONE :class:`~mailparity.processing.Processor`, so every part runs with
the same settings (adapter factory, retry cap, report callback, clock ...).

The parts' own constructors keep working; :class:`App` only saves repeating the same arguments,
and removes the risk of a handler and a worker that disagree::

    app = mailparity.App(store, publisher, secrets=secrets, retry_cap=8,
                         push={"google_audience": AUDIENCE,
                               "google_service_accounts": [PUSH_ACCOUNT]})
    wsgi_app = make_wsgi_app(app.webhooks)
    app.maintenance.run_once()
    app.worker(threads=4).run()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests

from .models import utcnow
from .protocols import EventPublisher, SecretStore, StateStore, require_publisher

if TYPE_CHECKING:
    from .attachments import AttachmentStream
    from .maintenance import Maintenance
    from .models import EmailMessage, InboundEmailReceived
    from .processing import Processor
    from .webhooks import WebhookHandler
    from .worker import Worker

__all__ = ["App"]


class App:
    """The library's parts for one store and one publisher, sharing one Processor.

    Args:
        store: the host's StateStore.
        publisher: the host's EventPublisher.
        secrets: the host's tenant secrets (client ids and secrets).
        session: a ``requests.Session`` for every outgoing call.
        clock: injectable time (UTC now), for every part.
        sleep: injectable waiting, for every part.
        push: the push sources' options (``WebhookHandler`` keyword arguments such as
            ``google_audience``, ``max_notification_items``, ``max_body_bytes``).
        renewal: the renewal rules' settings (``Maintenance`` keyword arguments such as
            ``graph_renew_before``), and ``silence_after`` / ``lock_seconds``.
        **processor_options: the Processor's options (``adapter_factory``, ``retry_cap``,
            ``on_report``, ``lease_seconds``, ``attachment_store``, ``attachment_max_bytes``
            ...), used by every part.

    The parts are built on first use and cached: ``app.webhooks is app.webhooks``.
    """

    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        *,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        push: Mapping[str, Any] | None = None,
        renewal: Mapping[str, Any] | None = None,
        **processor_options: Any,
    ) -> None:
        self.store = store
        self.publisher = require_publisher(publisher, "App")
        self.secrets = secrets
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.push_options = dict(push or {})
        self.renewal_options = dict(renewal or {})
        self.processor_options = dict(processor_options)
        self._lock = threading.Lock()
        self._processor: Processor | None = None
        self._webhooks: WebhookHandler | None = None
        self._maintenance: Maintenance | None = None

    def __repr__(self) -> str:
        return f"App(store={type(self.store).__name__}, publisher={type(self.publisher).__name__})"

    @property
    def processor(self) -> Processor:
        """The one Processor every part runs jobs with."""
        with self._lock:
            if self._processor is None:
                from .processing import Processor

                self._processor = Processor(
                    self.store,
                    self.publisher,
                    secrets=self.secrets,
                    session=self.session,
                    clock=self.clock,
                    sleep=self.sleep,
                    **self.processor_options,
                )
            return self._processor

    @property
    def webhooks(self) -> WebhookHandler:
        """The webhook handler; its ``run_pending`` runs on :attr:`processor`."""
        processor = self.processor
        with self._lock:
            if self._webhooks is None:
                from .webhooks import WebhookHandler

                self._webhooks = WebhookHandler(
                    store=self.store,
                    publisher=self.publisher,
                    secrets=self.secrets,
                    session=self.session,
                    clock=self.clock,
                    sleep=self.sleep,
                    processor=processor,
                    **self.push_options,
                )
            return self._webhooks

    @property
    def maintenance(self) -> Maintenance:
        """Renewal sweeps, silence detection and catch-up, running jobs on :attr:`processor`."""
        processor = self.processor
        with self._lock:
            if self._maintenance is None:
                from .maintenance import Maintenance

                self._maintenance = Maintenance(
                    self.store,
                    self.publisher,
                    secrets=self.secrets,
                    session=self.session,
                    clock=self.clock,
                    sleep=self.sleep,
                    adapter_factory=processor.adapter_factory,
                    processor=processor,
                    **self.renewal_options,
                )
            return self._maintenance

    def worker(self, *, threads: int = 4, **worker_options: Any) -> Worker:
        """A new :class:`~mailparity.worker.Worker` (``threads``, ``poll_interval``,
        ``listen`` ...) running jobs on :attr:`processor`."""
        from .worker import Worker

        return Worker(
            self.store,
            self.publisher,
            threads=threads,
            clock=self.clock,
            processor=self.processor,
            **worker_options,
        )

    def stream_attachment(
        self,
        source: InboundEmailReceived | EmailMessage | str,
        attachment_id: str,
        *,
        message_id: str | None = None,
        chunk_size: int = 65_536,
    ) -> AttachmentStream:
        """:func:`mailparity.attachments.stream_attachment` with this app's store, secrets,
        session and adapter factory (the processor's cached adapters, so tokens are shared)."""
        from .attachments import stream_attachment

        processor = self.processor

        def adapter_factory(config: Any, **_: Any) -> Any:
            return processor.adapter_for(config)

        return stream_attachment(
            source, attachment_id, store=self.store, message_id=message_id,
            adapter_factory=adapter_factory, chunk_size=chunk_size,
        )
