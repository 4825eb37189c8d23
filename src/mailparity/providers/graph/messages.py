"""Graph message JSON to the shared models, through the shared normalizer (``mailparity.mime``).

Graph gives addresses, subject, ids and bodies as properties, and the RFC 5322 headers as
``internetMessageHeaders``. Properties win for what they carry; the headers give the rest (threading
headers, custom ``X-`` headers) and are decoded by the same helpers the Gmail adapter uses.

Bodies: the adapter sends no ``Prefer: outlook.body-content-type``, so Graph returns the body as
stored (HTML for HTML mail, text for plain-text mail). ``body.html`` is the HTML when there is one,
and ``body.text`` the plain text, or text derived from the HTML by the shared ``html_to_text`` (as
for HTML-only Gmail mail); ``bodyPreview`` is used only when that derivation is empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import TypeAdapter

from ... import mime
from ...models import Attachment, EmailAddress, EmailMessage, Header

__all__ = [
    "ATTACHMENT_EXPAND",
    "MESSAGE_SELECT",
    "graph_attachment",
    "graph_bool",
    "graph_headers",
    "graph_message_to_email",
    "parse_graph_datetime",
    "recipient",
    "recipients",
]

#: The properties one message fetch asks for (``internetMessageHeaders`` only comes with $select).
MESSAGE_SELECT = ",".join(
    [
        "id",
        "internetMessageId",
        "internetMessageHeaders",
        "receivedDateTime",
        "subject",
        "body",
        "bodyPreview",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "conversationId",
        "hasAttachments",
    ]
)
#: Attachment metadata without ``contentBytes``: a nested $select keeps a 25 MB attachment out of
#: the message response (``contentId`` lives on fileAttachment only and needs a type cast, so it
#: is read separately for inline attachments, see the adapter).
ATTACHMENT_EXPAND = "attachments($select=id,name,contentType,size,isInline)"

_FRACTION_RE = re.compile(r"\.(\d+)")

#: Content types of attachments that carry none of their own.
_ITEM_TYPES = {
    "#microsoft.graph.itemattachment": "message/rfc822",
    "#microsoft.graph.referenceattachment": "application/octet-stream",
}


def parse_graph_datetime(value: Any) -> datetime | None:
    """An ISO 8601 Graph timestamp as aware UTC; None when absent or malformed.

    Graph sends up to seven fractional digits and a ``Z`` (``2016-11-20T18:23:45.9356913Z``),
    which ``datetime.fromisoformat`` of Python 3.10 refuses; malformed values (the corpus has a
    five-digit year) give None instead of raising.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION_RE.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_graph_datetime(value: datetime) -> str:
    """``2026-01-01T00:00:00.000000Z``: the form Graph accepts for expirationDateTime/$filter."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def graph_bool(value: Any) -> bool:
    """A Graph boolean, parsed defensively (delta samples send ``"true"`` as a string)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def recipient(value: Any) -> EmailAddress | None:
    """``{"emailAddress": {"name", "address"}}`` to an EmailAddress; None when unusable."""
    if not isinstance(value, Mapping):
        return None
    inner = value.get("emailAddress")
    if not isinstance(inner, Mapping):
        return None
    address = inner.get("address")
    name = inner.get("name")
    if not isinstance(address, str) or not address.strip():
        return None
    clean_name = name.strip() if isinstance(name, str) else None
    # Exchange fills an absent display name with the address itself; that is not a name.
    if clean_name and clean_name.lower() == address.strip().lower():
        clean_name = None
    return EmailAddress(email=address.strip(), name=clean_name or None)


def recipients(value: Any) -> list[EmailAddress] | None:
    """A recipient collection; None when Graph did not send the property (headers then decide)."""
    if value is None:
        return None
    if not isinstance(value, list):
        return []
    found = (recipient(item) for item in value)
    return [item for item in found if item is not None]


#: Validates a whole header list in one call (the same validation as ``Header(...)`` per item,
#: without a Python-level constructor call for each of a message's headers).
_HEADER_LIST: TypeAdapter[list[Header]] = TypeAdapter(list[Header])


def graph_headers(value: Any) -> list[Header]:
    """``internetMessageHeaders`` as Headers (values unfolded and encoded-words decoded)."""
    if not isinstance(value, list):
        return []
    decode = mime.decode_header_value
    fields: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        name = item.get("name")
        raw = item.get("value")
        if not isinstance(name, str) or not name:
            continue
        fields.append({"name": name, "value": decode(raw if isinstance(raw, str) else "")})
    return _HEADER_LIST.validate_python(fields) if fields else []


def graph_attachment(item: Mapping[str, Any], index: int) -> Attachment | None:
    """One attachment's metadata; item and reference attachments included (never raises)."""
    att_id = item.get("id")
    if not isinstance(att_id, str) or not att_id:
        return None
    odata_type = str(item.get("@odata.type") or "").lower()
    content_type = item.get("contentType")
    if not isinstance(content_type, str) or not content_type.strip():
        content_type = _ITEM_TYPES.get(odata_type, "application/octet-stream")
    content_type = content_type.strip().lower()
    raw_name = item.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) and raw_name.strip() else None
    if odata_type == "#microsoft.graph.itemattachment" and not (
        name and name.lower().endswith((".eml", ".msg"))
    ):
        # Exchange names an attached message after its subject ("Original: löschen?"), not as a
        # file: the shared rule makes the file name every other path gives it.
        name = mime.message_attachment_name(name, content_type, index)
    else:
        # The sender chose this name: the rule of the Gmail and raw-MIME paths makes it safe
        # (no directories, no ``..``, no control characters), so one email gives one name.
        name = mime.attachment_name(name, None, content_type, index)
    try:
        size = max(0, int(item.get("size") or 0))
    except (TypeError, ValueError):
        size = 0
    content_id = item.get("contentId")
    return Attachment(
        id=att_id,
        name=name or mime.attachment_name(None, None, content_type, index),
        content_type=content_type,
        size=size,
        content_id=mime.normalize_content_id(content_id) if isinstance(content_id, str) else None,
        is_inline=graph_bool(item.get("isInline")),
    )


def graph_message_to_email(
    data: Mapping[str, Any],
    *,
    provider_id: str,
    tenant: str,
    mailbox: str,
    headers: Sequence[Header],
    attachments: Sequence[Attachment],
    fallback_received_at: datetime,
) -> EmailMessage:
    """Assemble the EmailMessage of one Graph message (``headers`` already resolved)."""
    message_id = data.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("Graph message without an id")
    body = data.get("body") if isinstance(data.get("body"), Mapping) else {}
    assert isinstance(body, Mapping)
    content = body.get("content")
    content = content if isinstance(content, str) else ""
    is_html = str(body.get("contentType") or "").lower() == "html"
    text: str | None = None
    html: str | None = None
    if is_html and content.strip():
        html = content
    elif content:
        text = content
    received = parse_graph_datetime(data.get("receivedDateTime"))
    if received is None:
        received = _date_header(headers) or fallback_received_at
    sender = recipient(data.get("from")) or recipient(data.get("sender"))
    internet_id = data.get("internetMessageId")
    ids = mime.parse_msg_ids(internet_id) if isinstance(internet_id, str) else []
    thread = data.get("conversationId")
    message = mime.build_email_message(
        id=message_id,
        provider="microsoft",
        provider_id=provider_id,
        tenant=tenant,
        mailbox=mailbox,
        received_at=received,
        headers=headers,
        text=text,
        html=html,
        attachments=attachments,
        thread_id=thread if isinstance(thread, str) and thread else None,
        subject=_subject(data, headers),
        from_=sender,
        to=recipients(data.get("toRecipients")),
        cc=recipients(data.get("ccRecipients")),
        bcc=recipients(data.get("bccRecipients")),
        reply_to=recipients(data.get("replyTo")),
        message_id=ids[0] if ids else None,
    )
    if not message.body.text.strip():
        preview = data.get("bodyPreview")
        if isinstance(preview, str) and preview.strip():
            # Last resort: an HTML body whose text is empty (only images, say) still gets text.
            message.body.text = preview
    return message


def _subject(data: Mapping[str, Any], headers: Sequence[Header]) -> str | None:
    """None when the headers carry a Subject: the shared assembly then takes it from there, as on
    every other path. Graph's ``subject`` property only when they have none (it can keep a folded
    header's TAB), with its white space normalised the way a header value is."""
    if any(header.name.lower() == "subject" for header in headers):
        return None
    value = data.get("subject")
    return mime.clean_header_text(value) if isinstance(value, str) else None


def _date_header(headers: Sequence[Header]) -> datetime | None:
    import email.utils

    for header in headers:
        if header.name.lower() == "date":
            try:
                parsed = email.utils.parsedate_to_datetime(header.value)
            except (TypeError, ValueError, IndexError):
                return None
            if parsed is None:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc)
    return None
