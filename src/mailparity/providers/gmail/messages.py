"""Gmail ``Message`` resources (``format=full`` and ``format=raw``) to :class:`EmailMessage`.

``format=full`` gives a tree of ``MessagePart`` objects (``partId``, ``mimeType``, ``filename``,
``headers``, ``body {size, data?, attachmentId?}``, ``parts``), with bodies already transfer-decoded
and base64url encoded. The tree is walked by the shared :class:`mailparity.mime.TreeWalker`,
the same walk as raw MIME (bodies, attachments, names and the inline rule are written once);
this module only supplies the view of Gmail's tree (``_GmailView``).

When the tree cannot be represented (no payload, a body that Gmail moved behind an attachmentId,
undecodable data, a leaf without any address) :class:`UnrepresentableError` is raised and the
adapter falls back to ``format=raw``, parsed by the shared MIME parser; both routes end in
:func:`mailparity.mime.build_email_message`, so they produce the same message.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import IO, Any

from ... import mime
from ...models import Attachment, EmailMessage, GmailProviderConfig, Header

__all__ = [
    "PART_PREFIX",
    "UnrepresentableError",
    "b64url_decode",
    "b64url_decode_chunks",
    "b64url_decode_into",
    "find_part",
    "message_from_full",
    "message_from_raw",
    "raw_bytes",
    "received_at",
]

#: Attachment ids that address a part (inline data, or any part of the raw message).
PART_PREFIX = "part:"
class UnrepresentableError(Exception):
    """The structured payload cannot be turned into a message faithfully: use ``format=raw``."""


_TO_URLSAFE = str.maketrans("+/", "-_")


def b64url_decode(data: str) -> bytes:
    """Decode Gmail's base64url (unpadded; standard-alphabet input tolerated)."""
    cleaned = "".join(data.split()).translate(_TO_URLSAFE).rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def b64url_decode_into(data: str, into: IO[bytes], *, chunk_chars: int = 1 << 18) -> int:
    """Decode ``data`` into ``into`` a chunk at a time; returns the bytes written."""
    written = 0
    for chunk in b64url_decode_chunks(data, chunk_chars=chunk_chars):
        into.write(chunk)
        written += len(chunk)
    return written


def b64url_decode_chunks(data: str, *, chunk_chars: int = 1 << 18) -> Iterator[bytes]:
    """Decode ``data`` a chunk at a time (each chunk from about ``chunk_chars`` characters), so
    that neither the decoded whole nor a cleaned copy of the text sits in memory beside the
    text. White space is skipped, the standard alphabet tolerated, padding optional. Raises
    ValueError (as ``base64`` does) on the chunk that is not base64url."""
    step = max(4, chunk_chars - chunk_chars % 4)
    carry = ""
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        if not piece.isalnum():  # the usual case needs no cleaning at all
            piece = "".join(piece.split()).translate(_TO_URLSAFE).rstrip("=")
        piece = carry + piece
        usable = len(piece) - len(piece) % 4
        carry = piece[usable:]
        if usable:
            chunk = base64.urlsafe_b64decode(piece[:usable])
            if chunk:
                yield chunk
    if carry:
        chunk = base64.urlsafe_b64decode(carry + "=" * (-len(carry) % 4))
        if chunk:
            yield chunk


def _header_list(part: Mapping[str, Any]) -> list[tuple[str, str]]:
    raw = part.get("headers") or []
    out: list[tuple[str, str]] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            value = item.get("value")
            out.append((str(item["name"]), value if isinstance(value, str) else ""))
    return out


def _header(part: Mapping[str, Any], name: str) -> str | None:
    """The first header ``name`` of the part (as :func:`_header_list` reads them), or None."""
    raw = part.get("headers")
    if not isinstance(raw, list):
        return None
    wanted = name.lower()
    for item in raw:
        if isinstance(item, Mapping):
            key = item.get("name")
            if isinstance(key, str) and key.lower() == wanted:
                value = item.get("value")
                return value if isinstance(value, str) else ""
    return None


def _params(part: Mapping[str, Any]) -> Message:
    """A stdlib Message holding the part's Content-Type/Disposition, for RFC 2231 parameters."""
    holder = Message()
    ctype = _header(part, "Content-Type")
    if ctype:
        holder["Content-Type"] = mime.unfold(ctype)
    disposition = _header(part, "Content-Disposition")
    if disposition:
        holder["Content-Disposition"] = mime.unfold(disposition)
    return holder


def _param(holder: Message, name: str, header: str = "content-type") -> str | None:
    """A Content-Type / Content-Disposition parameter; RFC 2231 values decoded."""
    try:
        value = holder.get_param(name, header=header)
    except Exception:  # a malformed parameter list is "no parameter", as on the raw path
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _language, text = value
        try:
            raw = str(text).encode("latin-1")
        except UnicodeEncodeError:
            raw = str(text).encode("utf-8", "surrogateescape")
        return mime.decode_bytes(raw, charset or None)
    return email.utils.unquote(str(value))


def _part_bytes(part: Mapping[str, Any]) -> bytes | None:
    body = part.get("body") or {}
    if not isinstance(body, Mapping):
        raise UnrepresentableError("body is not an object")
    data = body.get("data")
    if isinstance(data, str) and data:
        try:
            return b64url_decode(data)
        except (binascii.Error, ValueError) as exc:
            raise UnrepresentableError("undecodable body data") from exc
    return None


def _children(part: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    children = part.get("parts")
    return [c for c in children if isinstance(c, Mapping)] if isinstance(children, list) else []


def _enclosed_subject(part: Mapping[str, Any]) -> str | None:
    """The decoded subject of an attached message with no file name.

    Gmail may list the enclosed message as the part's child (its headers are the inner
    message's); a small part may carry the message's bytes as ``data``. When it has neither (an
    ``attachmentId`` only) the subject is unknown here, and guessing would name the attachment
    differently from the raw path (which names it after that subject): the raw bytes decide.
    """
    for candidate in _children(part):
        subject = _header(candidate, "Subject")
        if subject is not None:
            return mime.decode_header_value(subject)
    if _children(part):
        return None  # the enclosed message is shown and has no Subject
    data = _part_bytes(part)
    if data is not None:
        return mime.enclosed_subject(data)
    body = part.get("body")
    if isinstance(body, Mapping) and not body.get("size") and not body.get("attachmentId"):
        return None  # an empty part: nothing to name it after, on any path
    raise UnrepresentableError("attached message without its headers")


_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class _GmailView:
    """:class:`mailparity.mime.PartView` of Gmail's ``format=full`` payload tree: the shared
    :class:`~mailparity.mime.TreeWalker` applies every rule; only what is Gmail's own lives
    here (bodies already transfer-decoded as base64url ``data``, large parts behind an
    ``attachmentId``, Gmail's ``filename`` field, and when only the raw bytes can tell)."""

    def content_type(self, part: Mapping[str, Any]) -> str:
        value = part.get("mimeType")
        if isinstance(value, str):
            match = _MIME_TYPE.match(value.strip().lower())
            if match is not None:
                return match.group(0)
        holder = _params(part)
        return holder.get_content_type() if holder.get("Content-Type") else "text/plain"

    def children(self, part: Mapping[str, Any], ctype: str) -> list[Mapping[str, Any]] | None:
        return _children(part) if ctype.startswith("multipart/") else None

    def unsplit(
        self, walker: mime.TreeWalker[Mapping[str, Any], Attachment], part: Mapping[str, Any],
        visit: mime.Visit[Mapping[str, Any]],
    ) -> list[mime.Visit[Mapping[str, Any]]]:
        body = part.get("body") or {}
        if isinstance(body, Mapping) and (body.get("data") or body.get("attachmentId")):
            # Content but no parts: Gmail could not split it; the raw bytes can.
            raise UnrepresentableError("multipart without parts")
        return []

    def header(self, part: Mapping[str, Any], name: str) -> str:
        return _header(part, name) or ""

    def names(self, part: Mapping[str, Any]) -> tuple[str | None, str | None]:
        holder = _params(part)
        filename = _param(holder, "filename", "content-disposition")
        name = _param(holder, "name")
        if not (filename or name) and isinstance(part.get("filename"), str) and part["filename"]:
            # Gmail's own reading of the name: only when the headers name no file themselves.
            filename = str(part["filename"])
        return filename, name

    def body_text(
        self, walker: mime.TreeWalker[Mapping[str, Any], Attachment], part: Mapping[str, Any]
    ) -> str:
        body = part.get("body") or {}
        if not isinstance(body, Mapping):
            raise UnrepresentableError("body is not an object")
        if body.get("attachmentId") and not body.get("data"):
            # A large body Gmail moved behind an attachment id: raw has it inline.
            raise UnrepresentableError("body part stored as attachment")
        return mime.decode_bytes(_part_bytes(part) or b"", _param(_params(part), "charset"))

    def enclosed_subject(self, part: Mapping[str, Any]) -> str | None:
        return _enclosed_subject(part)

    def attachment(
        self, part: Mapping[str, Any], path: str, name: str, ctype: str, content_id: str | None
    ) -> Attachment:
        body = part.get("body") or {}
        if not isinstance(body, Mapping):
            raise UnrepresentableError("body is not an object")
        attachment_id = body.get("attachmentId")
        ident = (
            attachment_id
            if isinstance(attachment_id, str) and attachment_id
            else f"{PART_PREFIX}{path}"
        )
        size = body.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            size = len(_part_bytes(part) or b"")
        return Attachment(
            id=ident, name=name, content_type=ctype, size=size, content_id=content_id
        )

    def after_attachment(
        self, walker: mime.TreeWalker[Mapping[str, Any], Attachment], part: Mapping[str, Any],
        path: str, ctype: str, item: Attachment,
    ) -> None:
        if ctype in mime.TNEF_TYPES and mime.tnef_available():
            # The files inside winmail.dat are read from its bytes, as the raw path reads them.
            raise UnrepresentableError("TNEF attachment: unpacked from the raw message")


def _check_header_text(payload: Mapping[str, Any]) -> None:
    """Raise when a header of the tree was sent as raw 8-bit bytes in a legacy charset.

    Gmail shows such bytes already read as text, with a guess at their charset; the shared
    reader reads them with the charset the message declares, which only the raw bytes tell.
    Characters up to U+00FF only (a Latin-1 reading) or U+FFFD (an undecodable byte) are that
    sign; text with characters beyond U+00FF was read right (UTF-8, RFC 6532)."""
    stack = [payload]
    while stack:
        part = stack.pop()
        for _name, value in _header_list(part):
            if value.isascii():
                continue
            if "\ufffd" in value or max(value) <= "\xff":
                raise UnrepresentableError("raw 8-bit header bytes in a legacy charset")
        stack.extend(_children(part))


def received_at(
    message: Mapping[str, Any], headers: Sequence[Header], fallback: datetime | None = None
) -> datetime:
    """``internalDate`` (epoch ms, a JSON string): when Google accepted the message. A missing or
    zero value (seen on real spam) falls back to the Date header, then to ``fallback`` (the time
    of the fetch), then to the Unix epoch."""
    raw = message.get("internalDate")
    try:
        millis = int(str(raw)) if raw is not None else 0
    except ValueError:
        millis = 0
    if millis > 0:
        return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    for header in headers:
        if header.name.lower() == "date":
            try:
                parsed = parsedate_to_datetime(header.value)
            except (TypeError, ValueError, IndexError):
                break
            if parsed is None:
                break
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc)
    return fallback or datetime.fromtimestamp(0, tz=timezone.utc)


def _thread_id(message: Mapping[str, Any]) -> str | None:
    value = message.get("threadId")
    return value if isinstance(value, str) and value else None


def message_from_full(
    message: Mapping[str, Any], config: GmailProviderConfig, *, now: datetime | None = None
) -> EmailMessage:
    """Normalize a ``format=full`` (or ``metadata``) Message.

    Raises :class:`UnrepresentableError` when only the raw bytes can be represented faithfully."""
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise UnrepresentableError("message without id")
    payload = message.get("payload")
    if not isinstance(payload, Mapping):
        raise UnrepresentableError("message without payload")
    pairs = _header_list(payload)
    _check_header_text(payload)
    raw_headers = [Header(name=n, value=mime.unfold(v)) for n, v in pairs]
    headers = [Header(name=n, value=mime.decode_header_value(v)) for n, v in pairs]
    walker = mime.TreeWalker(_GmailView())
    walker.walk(payload)
    walker.finish_inline()
    return mime.build_email_message(
        id=message_id,
        provider="google",
        provider_id=config.provider_id,
        tenant=config.tenant,
        mailbox=config.mailbox,
        received_at=received_at(message, headers, now),
        headers=headers,
        raw_headers=raw_headers,
        text=walker.text,
        html=walker.html if walker.html and walker.html.strip() else None,
        attachments=walker.attachments,
        thread_id=_thread_id(message),
    )


def raw_bytes(message: Mapping[str, Any]) -> bytes:
    """The RFC 5322 bytes of a ``format=raw`` Message."""
    raw = message.get("raw")
    if not isinstance(raw, str) or not raw:
        raise UnrepresentableError("format=raw answer without raw")
    try:
        return b64url_decode(raw)
    except (binascii.Error, ValueError) as exc:
        raise UnrepresentableError("raw is not base64url") from exc


def message_from_raw(
    message: Mapping[str, Any], config: GmailProviderConfig, *, now: datetime | None = None
) -> EmailMessage:
    """Normalize a ``format=raw`` Message with the shared MIME parser (attachment ids
    ``part:{part_id}``)."""
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise UnrepresentableError("message without id")
    parsed = mime.parse_mime(raw_bytes(message))
    return mime.build_email_message(
        id=message_id,
        provider="google",
        provider_id=config.provider_id,
        tenant=config.tenant,
        mailbox=config.mailbox,
        received_at=received_at(message, parsed.headers, now),
        headers=parsed.headers,
        raw_headers=parsed.raw_headers,
        text=parsed.text,
        html=parsed.html,
        attachments=[a.to_model(PART_PREFIX) for a in parsed.attachments],
        thread_id=_thread_id(message),
        defects=parsed.defects,
    )


def find_part(payload: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The part at MIME position ``path`` ("1.2", as in attachment ids), or None."""
    ctype = payload.get("mimeType")
    is_multipart = isinstance(ctype, str) and ctype.lower().startswith("multipart/")
    if not is_multipart:
        return payload if path == "1" else None
    part: Mapping[str, Any] = payload
    for piece in path.split("."):
        if not piece.isdigit() or int(piece) < 1:
            return None
        usable = _children(part)
        if int(piece) > len(usable):
            return None
        part = usable[int(piece) - 1]
    return part
