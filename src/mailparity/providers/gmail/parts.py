"""A small, bounded cache of the message parts one Gmail adapter read last.

``part:{partId}`` attachment ids (inline data, and every attachment in ``raw`` mode) have no
download of their own: their content comes out of the whole message. Saving the N attachments
of one message would download it (and in ``raw`` mode parse it) N times; the adapter keeps what
it read of the last few messages here, so the message is downloaded once.

Gmail never changes a message's content, so a cached part is the part. The cache belongs to one
adapter (one mailbox) and its keys carry the provider id too, so nothing crosses mailboxes. It
is bounded by message count and by bytes (inline data and parsed part payloads); a message whose
parts alone pass the byte bound is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MESSAGES", "PartCache", "inline_size"]

#: Messages kept (each format of a message counts once): enough for one message being saved.
DEFAULT_MAX_MESSAGES = 2
#: Bytes kept in all: above Gmail's 25 MB message limit, so any one message fits.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024

_Key = tuple[str, str, str]


class PartCache:
    """Least recently used ``(provider id, format, message id) -> parts`` within two bounds.

    Args:
        max_messages: the most entries kept (0 turns the cache off).
        max_bytes: the most bytes kept, as the sizes given to :meth:`put` add up.
    """

    def __init__(
        self, *, max_messages: int = DEFAULT_MAX_MESSAGES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_messages < 0 or max_bytes < 0:
            raise ValueError("the part cache's bounds must not be negative")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._entries: OrderedDict[_Key, tuple[Mapping[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: _Key) -> Mapping[str, Any] | None:
        """The parts stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: _Key, parts: Mapping[str, Any], size: int) -> None:
        """Keep ``parts`` (``size`` bytes) under ``key``, dropping the least recently used
        entries until both bounds hold; parts larger than ``max_bytes`` are not kept."""
        with self._lock:
            self._drop(key)
            if self.max_messages == 0 or size > self.max_bytes:
                return
            while self._entries and (
                len(self._entries) >= self.max_messages or self._bytes + size > self.max_bytes
            ):
                self._drop(next(iter(self._entries)))
            self._entries[key] = (parts, size)
            self._bytes += size

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def size(self) -> tuple[int, int]:
        """``(entries, bytes)`` kept now."""
        with self._lock:
            return len(self._entries), self._bytes

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def __repr__(self) -> str:
        entries, held = self.size
        return f"PartCache(entries={entries}, bytes={held})"


def inline_size(part: Mapping[str, Any]) -> int:
    """The characters of inline ``body.data`` in a ``format=full`` part and all its children:
    what holding that message's payload costs (the rest is small metadata)."""
    total = 0
    stack: list[Any] = [part]
    while stack:
        node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        body = node.get("body")
        if isinstance(body, Mapping) and isinstance(body.get("data"), str):
            total += len(body["data"])
        children = node.get("parts")
        if isinstance(children, list):
            stack.extend(children)
    return total
