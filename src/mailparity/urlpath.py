"""Provider ids put into URL paths, safely.

Message, attachment and subscription ids come from providers' answers and notifications, and
through them from whoever can send a notification. Put into a URL path as they are, an id of
``..`` or ``.`` becomes a dot segment that requests (like every RFC 3986 client) removes:
``/me/messages/..`` is sent as ``/me/``, and escaping the dots as ``%2E`` would hand the same
path to any server that decodes before routing. So every provider builds its paths through
:func:`path_segment`, which refuses such ids with a clear error instead.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from .errors import BadRequestError

__all__ = ["MAX_SEGMENT_LENGTH", "path_segment"]

#: Longest id accepted in a path (Gmail attachment ids are the longest seen, under 1 KB).
MAX_SEGMENT_LENGTH = 4096

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_segment(value: object, what: str, *, provider: str | None = None, safe: str = "") -> str:
    """``value`` escaped as ONE URL path segment.

    Every character outside RFC 3986's unreserved set (and ``safe``) is percent-escaped, ``/``
    included, so an id can never add a segment.

    Raises:
        BadRequestError: ``value`` is not a string, is empty, is a dot segment (``.`` or
            ``..``; a ``%`` is itself escaped, so ``%2E%2E`` stays harmless), is longer than
            ``MAX_SEGMENT_LENGTH`` or holds control characters. The message names ``what``
            (``"Graph message id"``) and the problem, the value only in a bounded repr.
    """
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{what} is empty or not a string", provider=provider)
    shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
    if len(value) > MAX_SEGMENT_LENGTH:
        raise BadRequestError(f"{what} is too long ({len(value)} characters)", provider=provider)
    if _CONTROL.search(value):
        raise BadRequestError(f"{what} {shown} holds control characters", provider=provider)
    if value in (".", ".."):
        raise BadRequestError(
            f"{what} {shown} is a dot segment: it would change the URL's path",
            provider=provider,
        )
    if "/" in safe:
        raise ValueError("a path segment cannot keep '/' unescaped")
    return quote(value, safe=safe)
