"""Provider-neutral normalization, shared by both adapters and the raw MIME path.

Header decoding, address parsing, msg-id lists, charset handling, attachment naming, and the
assembly of an :class:`~mailparity.models.EmailMessage` from headers, bodies and attachments live
here and only here, so the same header, address or attachment yields the same field whichever
provider delivered it.

INTERFACE STUB: the signatures below are the contract; the bodies are being written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .models import Attachment, EmailAddress, EmailMessage, Header

__all__ = [
    "MimeAttachment",
    "ParsedMime",
    "attachment_name",
    "build_email_message",
    "decode_bytes",
    "decode_header_value",
    "normalize_content_id",
    "parse_address",
    "parse_address_list",
    "parse_mime",
    "parse_msg_ids",
    "unfold",
]


def unfold(value: str) -> str:
    """CRLF/LF followed by white space becomes one space (RFC 5322 unfolding); trims the ends."""
    raise NotImplementedError


def decode_header_value(value: str | bytes) -> str:
    """Unfold and decode RFC 2047 encoded-words (B and Q, any charset, adjacent words joined per
    RFC 2047 section 6.2); raw 8-bit bytes are decoded as UTF-8, falling back to windows-1252."""
    raise NotImplementedError


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode a body with its declared charset, falling back sanely: aliases (``ks_c_5601-1987``,
    ``iso-8859-8-i``, ``x-mac-cyrillic``, ``windows-1250``...), unknown or garbage names, and lying
    charsets (declared us-ascii / latin-1 but valid UTF-8) never raise."""
    raise NotImplementedError


def parse_address_list(value: str | None) -> list[EmailAddress]:
    """Every mailbox of an address header (groups flattened), display names decoded; [] for None,
    empty or unparseable input (never raises)."""
    raise NotImplementedError


def parse_address(value: str | None) -> EmailAddress | None:
    """The first mailbox of an address header, or None."""
    raise NotImplementedError


def parse_msg_ids(value: str | None) -> list[str]:
    """Every msg-id of a Message-ID / In-Reply-To / References value, in order, each with angle
    brackets (``<id@host>``); tolerant of commas, folding, missing brackets and comments."""
    raise NotImplementedError


def normalize_content_id(value: str | None) -> str | None:
    """A Content-ID without angle brackets and white space, or None."""
    raise NotImplementedError


def attachment_name(
    filename: str | None, name: str | None, content_type: str, index: int
) -> str:
    """The attachment's display name: ``filename`` (Content-Disposition, RFC 2231 already joined),
    else ``name`` (Content-Type), encoded-words decoded; else a generated ``attachment-{index}.{ext}``
    from the content type (``message/rfc822`` -> ``.eml``)."""
    raise NotImplementedError


@dataclass
class MimeAttachment:
    """One attachment found in raw MIME: ``part_id`` is its position path ("1.2"), stable for the
    same bytes; ``payload`` is the decoded content."""

    part_id: str
    name: str
    content_type: str
    size: int
    content_id: str | None = None
    is_inline: bool = False
    payload: bytes = b""

    def to_model(self, id_prefix: str = "") -> Attachment:
        """The public Attachment (``id`` = ``id_prefix + part_id``)."""
        return Attachment(
            id=f"{id_prefix}{self.part_id}",
            name=self.name,
            content_type=self.content_type,
            size=self.size,
            content_id=self.content_id,
            is_inline=self.is_inline,
        )


@dataclass
class ParsedMime:
    """A parsed RFC 5322 message: headers in order (duplicates kept), the bodies chosen from the
    MIME tree, and the attachments (inline parts included)."""

    headers: list[Header] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[MimeAttachment] = field(default_factory=list)


def parse_mime(raw: bytes) -> ParsedMime:
    """Parse raw RFC 5322 bytes with the stdlib ``email`` package; never raises on malformed input
    (missing boundaries, bad encodings, unknown charsets, broken folding)."""
    raise NotImplementedError


def build_email_message(
    *,
    id: str,
    provider: str,
    provider_id: str,
    tenant: str,
    mailbox: str,
    received_at: datetime,
    headers: Sequence[Header],
    text: str | None,
    html: str | None,
    attachments: Iterable[Attachment],
    thread_id: str | None = None,
    subject: str | None = None,
    from_: EmailAddress | None = None,
    to: list[EmailAddress] | None = None,
    cc: list[EmailAddress] | None = None,
    bcc: list[EmailAddress] | None = None,
    reply_to: list[EmailAddress] | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """Assemble the EmailMessage. Fields not given explicitly come from ``headers`` (subject,
    from, to, cc, bcc, reply-to, Message-ID, In-Reply-To, References). ``body.text`` is ``text``,
    or derived from ``html`` by :func:`mailparity.html.html_to_text` when there is no text."""
    raise NotImplementedError
