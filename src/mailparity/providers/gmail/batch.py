"""Gmail's batch endpoint (``POST /batch/gmail/v1``): many calls in one HTTP request.

Request: ``multipart/mixed``; each part is ``Content-Type: application/http`` with a
``Content-ID`` and a whole HTTP request with a path-only URL. Response: ``multipart/mixed`` whose
parts are whole HTTP responses, each with its own status, matched back through
``Content-ID: <response-{id}>``. Gmail rejects more than 100 calls and answers "Too many
concurrent requests for user" already at 50, hence at most 25 per batch here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_BATCH", "BatchPart", "BatchResponseError", "build_batch", "parse_batch"]

MAX_BATCH = 25
_BOUNDARY_RE = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


class BatchResponseError(ValueError):
    """The batch response could not be parsed."""


@dataclass
class BatchPart:
    """One inner response: status, headers (lower-cased names) and body."""

    content_id: str | None
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def build_batch(
    requests: Sequence[tuple[str, str]], *, boundary: str | None = None
) -> tuple[str, bytes]:
    """``(content_type, body)`` of a batch of ``(content_id, "GET /path?query")`` calls."""
    boundary = boundary or f"batch_{uuid.uuid4().hex}"
    lines: list[str] = []
    for content_id, request_line in requests:
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: <{content_id}>",
            "",
            f"{request_line} HTTP/1.1",
            "Accept: application/json",
            "",
            "",
        ]
    lines.append(f"--{boundary}--")
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(lines).encode("utf-8")


def _split_head(block: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = block.find(sep)
        if index >= 0:
            return block[:index], block[index + len(sep) :]
    return block, b""


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        if ":" in line:
            name, value = line.split(":", 1)
            out[name.strip().lower()] = value.strip()
    return out


def parse_batch(content_type: str, body: bytes) -> list[BatchPart]:
    """The inner responses of a batch response, in order."""
    match = _BOUNDARY_RE.search(content_type or "")
    if not match:
        raise BatchResponseError("batch response without a multipart boundary")
    delimiter = b"--" + match.group(1).strip().encode("latin-1")
    chunks = body.split(delimiter)
    parts: list[BatchPart] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        outer_head, inner = _split_head(chunk.lstrip(b"\r\n"))
        outer = _headers(outer_head)
        inner_head, inner_body = _split_head(inner)
        head_text = inner_head.decode("latin-1")
        status_line, _, rest = head_text.partition("\n")
        pieces = status_line.split()
        if len(pieces) < 2 or not pieces[0].upper().startswith("HTTP/") or not pieces[1].isdigit():
            raise BatchResponseError("batch part without an HTTP status line")
        # The part ends with the CRLF that belongs to the next delimiter.
        if inner_body.endswith(b"\r\n"):
            inner_body = inner_body[:-2]
        elif inner_body.endswith(b"\n"):
            inner_body = inner_body[:-1]
        content_id = outer.get("content-id")
        parts.append(
            BatchPart(
                content_id=content_id.strip("<>") if content_id else None,
                status=int(pieces[1]),
                headers=_headers(rest.encode("latin-1")),
                body=inner_body,
            )
        )
    return parts
