"""What the command line shows while messages are processed: ``sync``'s progress in messages
(a bar on a terminal, periodic lines in a log) and ``worker``'s line per message.

Both are :class:`~mailparity.processing.ProgressObserver` objects, called from worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from ._pipeline.base import MessageResult

__all__ = ["SyncProgress", "WorkerOutput"]

#: The order outcomes are listed in.
_OUTCOMES = ("published", "duplicate", "minimal", "deleted", "dead", "skipped", "retry")


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[name]} {name}" for name in _OUTCOMES if counts[name])


class SyncProgress:
    """Progress of a catch-up, counted in messages.

    On a terminal (``tty``) one line is redrawn in place with ``\\r`` as a bar, at most every
    ``redraw`` seconds; elsewhere (a log file, a pipe) a plain line is written at most every
    ``interval`` seconds, so a log gets periodic lines and never a carriage return.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 5.0,
        redraw: float = 0.1,
        width: int = 30,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.interval = interval
        self.redraw = redraw
        self.width = width
        self.found = 0
        self.done = 0
        self.counts: Counter[str] = Counter()
        self._last: float | None = None
        self._drawn = False
        self._lock = threading.Lock()

    def messages_found(self, provider_id: str, count: int) -> None:
        """A catch-up found ``count`` messages."""
        with self._lock:
            self.found += count
            self._show(force=False)

    def message_done(self, provider_id: str, message_id: str, result: MessageResult) -> None:
        """One message was handled."""
        with self._lock:
            self.done += 1
            self.counts[result.status] += 1
            self._show(force=False)

    def finish(self) -> None:
        """The last state, and the end of the line on a terminal."""
        with self._lock:
            self._show(force=True)
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()

    def line(self) -> str:
        """The progress as text (without the bar)."""
        total = max(self.found, self.done)
        detail = _summary(self.counts)
        text = f"sync: {self.done}/{total} messages"
        return f"{text} ({detail})" if detail else text

    def _show(self, *, force: bool) -> None:
        now = self.clock()
        wait = self.redraw if self.tty else self.interval
        if not force and self._last is not None and now - self._last < wait:
            return
        self._last = now
        if self.tty:
            total = max(self.found, self.done)
            filled = self.width if total == 0 else self.width * self.done // total
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


class WorkerOutput:
    """``mailparity worker``: one line per message handled, and per catch-up."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def messages_found(self, provider_id: str, count: int) -> None:
        """A catch-up found ``count`` messages."""
        if count:
            self._write(f"catch-up of {provider_id}: {count} messages to handle")

    def message_done(self, provider_id: str, message_id: str, result: MessageResult) -> None:
        """One message was handled: its outcome, and the event id when one went out."""
        shown = message_id if len(message_id) <= 40 else message_id[:39] + "…"
        text = f"{result.status:<9} {provider_id} message {shown}"
        if result.event_id and result.status in ("published", "minimal"):
            text += f" event {result.event_id}"
        elif result.error and result.status in ("retry", "dead", "deleted"):
            text += f": {result.error}"
        with self._lock:
            self.counts[result.status] += 1
        self._write(text)

    def summary(self) -> str:
        """What was handled, for the line printed when the worker stops."""
        with self._lock:
            detail = _summary(self.counts)
        return detail or "no messages"

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"worker: {' '.join(text.split())}\n")
            self.stream.flush()
