"""Build raw RFC 5322 messages for tests: ``build_message(...) -> bytes``.

The bytes are what a provider fake stores and renders (``FakeGraph.deliver``,
``FakeGmail.deliver``), so a test describes an email once and both providers show it. Built on the
standard library's :class:`email.message.EmailMessage`: non-ASCII subjects and display names
become RFC 2047 encoded-words, non-ASCII filenames RFC 2231 parameters, bodies quoted-printable or
base64 (7-bit clean output), lines end with CRLF.

Structure (each container only when needed): ``multipart/mixed`` (attachments) >
``multipart/alternative`` (text and HTML) > ``text/plain`` and ``multipart/related`` (inline
images) > ``text/html`` and the images, the layout that common mail clients send.
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import cast

__all__ = ["AttachmentSpec", "InlineImage", "build_message"]

#: 7-bit output: the fakes, like real servers, then see QP/base64 bodies and encoded-words.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")

AddressLike = str | tuple[str | None, str]


@dataclass(frozen=True)
class AttachmentSpec:
    """An attachment: ``content_type`` is guessed from the filename when None."""

    filename: str
    content: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class InlineImage:
    """An inline part referenced from the HTML as ``cid:{content_id}`` (no angle brackets)."""

    content_id: str
    content: bytes
    content_type: str = "image/png"
    filename: str | None = None


AttachmentLike = AttachmentSpec | tuple[str, bytes] | tuple[str, bytes, str]
InlineLike = InlineImage | tuple[str, bytes] | tuple[str, bytes, str]


def _address(value: AddressLike) -> Address:
    if isinstance(value, tuple):
        name, addr = value
    else:
        name, addr = parseaddr(value)
        if not addr:
            raise ValueError(f"not an address: {value!r}")
    if "@" not in addr:
        raise ValueError(f"not an address: {addr!r}")
    username, _, domain = addr.rpartition("@")
    return Address(display_name=name or "", username=username, domain=domain)


def _addresses(values: AddressLike | Iterable[AddressLike]) -> list[Address]:
    # A single address is a str or a (name, address) pair of strings; anything else is a list.
    if isinstance(values, str) or (
        isinstance(values, tuple)
        and len(values) == 2
        and all(item is None or isinstance(item, str) for item in values)
    ):
        return [_address(values)]  # type: ignore[arg-type]
    return [_address(item) for item in cast("Iterable[AddressLike]", values)]


def _attachment(value: AttachmentLike) -> AttachmentSpec:
    if isinstance(value, AttachmentSpec):
        return value
    if len(value) == 2:
        return AttachmentSpec(value[0], value[1])
    return AttachmentSpec(value[0], value[1], value[2])


def _inline(value: InlineLike) -> InlineImage:
    if isinstance(value, InlineImage):
        return value
    if len(value) == 2:
        return InlineImage(value[0], value[1])
    return InlineImage(value[0], value[1], value[2])


def _split_type(content_type: str) -> tuple[str, str]:
    maintype, _, subtype = content_type.partition("/")
    if not maintype or not subtype:
        raise ValueError(f"not a content type: {content_type!r}")
    return maintype.strip().lower(), subtype.strip().lower()


def _msg_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def build_message(
    *,
    from_: AddressLike,
    to: AddressLike | Sequence[AddressLike],
    subject: str,
    text: str | None = None,
    html: str | None = None,
    cc: Sequence[AddressLike] = (),
    attachments: Sequence[AttachmentLike] = (),
    inline_images: Sequence[InlineLike] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    message_id: str | None = None,
    date: datetime | str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Raw RFC 5322 bytes of a message.

    Addresses are ``"Name <a@example.com>"``, ``"a@example.com"`` or ``(name, address)``.
    Attachments are :class:`AttachmentSpec` or ``(filename, bytes[, content_type])``; inline images
    :class:`InlineImage` or ``(content_id, bytes[, content_type])`` and need an ``html`` body.
    ``message_id`` / ``in_reply_to`` / ``references`` take msg-ids with or without angle brackets.
    ``date`` defaults to now; ``message_id`` to a fresh id. ``headers`` are added as given (after
    the standard ones), duplicates allowed. A message without ``text`` and ``html`` gets an empty
    text body.
    """
    if inline_images and html is None:
        raise ValueError("inline_images need an html body that references them")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _addresses(from_)[0]
    msg["To"] = _addresses(to)
    if cc:
        msg["Cc"] = _addresses(cc)
    msg["Subject"] = subject
    if date is None:
        date = datetime.now(timezone.utc)
    msg["Date"] = date if isinstance(date, str) else format_datetime(date)
    msg["Message-ID"] = _msg_id(message_id) if message_id else make_msgid(domain="mailparity.test")
    if in_reply_to:
        msg["In-Reply-To"] = _msg_id(in_reply_to)
    if references:
        msg["References"] = " ".join(_msg_id(item) for item in references)
    msg["MIME-Version"] = "1.0"
    for name, value in headers:
        msg[name] = value

    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content("")

    if inline_images:
        html_part = msg.get_body(preferencelist=("html",))
        if not isinstance(html_part, EmailMessage):  # pragma: no cover - set just above
            raise ValueError("no html body to attach inline images to")
        for item in map(_inline, inline_images):
            maintype, subtype = _split_type(item.content_type)
            html_part.add_related(
                item.content,
                maintype=maintype,
                subtype=subtype,
                cid=_msg_id(item.content_id),
                filename=item.filename,
                disposition="inline",
            )

    for spec in map(_attachment, attachments):
        content_type = spec.content_type or (
            mimetypes.guess_type(spec.filename)[0] or "application/octet-stream"
        )
        maintype, subtype = _split_type(content_type)
        if (maintype, subtype) == ("message", "rfc822"):
            inner = email.message_from_bytes(spec.content, policy=_POLICY)
            msg.add_attachment(inner, filename=spec.filename)
        else:
            msg.add_attachment(
                spec.content, maintype=maintype, subtype=subtype, filename=spec.filename
            )
    return msg.as_bytes(policy=_POLICY)
