"""Push listeners: the long-running push sources of providers without webhooks (IMAP IDLE).

A provider whose spec names a ``listener`` (see
:class:`~mailparity.providers.base.PushListener`) is watched by one listener object per process;
it turns what it hears into durable jobs, like a webhook push. :class:`ListenerGroup` starts one
thread per such provider and stops them together. ``mailparity listen`` and
``Worker(listen=True)`` use it; a host can too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .models import utcnow
from .providers import specs

__all__ = ["ListenerGroup"]

log = logging.getLogger("mailparity.listeners")


class ListenerGroup:
    """The push listeners of every registered provider that has one.

    Args:
        store: the StateStore the listeners read mailboxes from and enqueue jobs into.
        stop_event: stops every listener when set (one is made if None).
        clock, sleep: passed to the listeners (tests inject them); without ``sleep`` a listener
            waits on ``stop_event``, so stopping wakes it at once.
        **options: passed to every listener class (each ignores what it does not know), for
            example ``secrets`` or IMAP's ``idle_timeout``.
    """

    def __init__(
        self,
        store: Any,
        *,
        stop_event: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        **options: Any,
    ) -> None:
        self.stop_event = stop_event or threading.Event()
        if sleep is not None:
            options["sleep"] = sleep
        self.listeners: list[Any] = []
        for spec in specs():
            cls = spec.listener_class()
            if cls is not None:
                self.listeners.append(
                    cls(store, stop_event=self.stop_event, clock=clock, **options)
                )
        self._threads: list[threading.Thread] = []

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def start(self) -> None:
        """Run every listener on its own daemon thread."""
        for listener in self.listeners:
            thread = threading.Thread(
                target=self._run, args=(listener,), name=f"mailparity-{type(listener).__name__}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _run(listener: Any) -> None:
        try:
            listener.run()
        except Exception:  # a listener must not die silently
            log.exception("listener %s stopped on an error", type(listener).__name__)

    def stop(self, timeout: float = 10.0) -> None:
        """Set the stop event and wait (up to ``timeout`` seconds each) for the threads."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def run(self) -> None:
        """Start the listeners and block until the stop event is set."""
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()
