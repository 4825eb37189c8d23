"""MIME reading for the provider fakes: what a mail server derives from the raw bytes it stores.

Deliberately independent of :mod:`mailparity.mime` (the library's normalizer): the fakes play the
providers, and a test of the normalizer against a fake that used the normalizer would prove
nothing. Parsing uses the standard library ``email`` package (``compat32`` policy, so header values
stay as sent, the way providers show them in ``internetMessageHeaders`` / ``payload.headers``).
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import html as html_lib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message

__all__ = [
    "STORE_POLICY",
    "MimeLeafInfo",
    "ParsedRaw",
    "content_type",
    "decode_words",
    "header_text",
    "parse_raw",
    "text_from_html",
]

_FOLD = re.compile(r"\r?\n[ \t]+")

#: How the store's parser is told to keep an attached message (message/*) as the bytes it
#: received: mail servers store and serve attached messages as sent, never re-generated.
_STORED = "x-stored-message"
_MESSAGE_TYPE = re.compile(r"\s*message\s*/", re.IGNORECASE)


class _AsSent(str):
    """A header value the store's parser sees rewritten; ``sent`` is what the message said."""

    sent: str

    def __new__(cls, value: str, sent: str) -> _AsSent:
        made = super().__new__(cls, value)
        made.sent = sent
        return made


class _StorePolicy(email.policy.Compat32):
    """compat32 with attached messages kept opaque (see :func:`content_type`)."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if name.strip().lower() == "content-type" and _MESSAGE_TYPE.match(value):
            return name, _AsSent(_MESSAGE_TYPE.sub(f"{_STORED}/", value, count=1), value)
        return name, value


STORE_POLICY = _StorePolicy()


def content_type(part: Message) -> str:
    """The part's MIME type as sent (``message/rfc822`` included) and as a server reports it:
    ``type/subtype``, lower case, junk after the subtype (a missing ``;``) left out."""
    ctype = part.get_content_type()
    if ctype.startswith(f"{_STORED}/"):
        ctype = "message/" + ctype.split("/", 1)[1]
    match = re.match(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype.strip())
    return match.group(0) if match else "text/plain"


def header_text(value: object) -> str:
    """A header value as text: folding removed, raw 8-bit bytes read as UTF-8 (else latin-1)."""
    value = getattr(value, "sent", value)
    if isinstance(value, email.header.Header):
        value = str(value)
    text = str(value)
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in text):
        raw = text.encode("ascii", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    # Unfolding as mail servers show it: the line break and its indentation become one space.
    return _FOLD.sub(" ", text).strip()


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded (unknown charsets and broken words are left readable)."""
    try:
        parts = email.header.decode_header(value)
    except (ValueError, LookupError):
        return value
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        for candidate in (charset, "utf-8", "latin-1"):
            if not candidate:
                continue
            try:
                out.append(chunk.decode(candidate))
                break
            except (LookupError, UnicodeDecodeError):
                continue
    return "".join(out)


def decode_payload(data: bytes, charset: str | None) -> str:
    """Body bytes as text with the declared charset, falling back to UTF-8 then latin-1."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


_BLOCK = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)
_DROP = re.compile(r"<\s*(script|style)\b.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def text_from_html(markup: str) -> str:
    """A rough text rendering of HTML, as providers build previews and snippets."""
    text = _DROP.sub("", markup)
    text = _BLOCK.sub("\n", text)
    text = _TAG.sub("", text)
    return html_lib.unescape(text)


def preview(text: str, limit: int) -> str:
    """White space collapsed, cut at ``limit`` characters."""
    return " ".join(text.split())[:limit]


@dataclass
class MimeLeafInfo:
    """A non-body leaf part: an attachment or an inline part."""

    part_id: str
    name: str
    content_type: str
    content_id: str | None
    is_inline: bool
    payload: bytes
    is_message: bool = False


@dataclass
class ParsedRaw:
    """What the fakes need from a raw message."""

    message: Message
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[MimeLeafInfo] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        """The first raw value of header ``name`` (case-insensitive), unfolded."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def decoded(self, name: str) -> str | None:
        """The first value of ``name`` with encoded-words decoded."""
        value = self.first(name)
        return None if value is None else decode_words(value)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """``(display name, address)`` of every mailbox of the ``name`` headers, names decoded."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        out: list[tuple[str, str]] = []
        for display, address in email.utils.getaddresses(values):
            if not address:
                continue
            out.append((decode_words(display).strip(), address.strip()))
        return out

    def msg_ids(self, name: str) -> list[str]:
        """Every ``<id>`` of the header ``name`` (all occurrences), in order."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return re.findall(r"<[^<>\s]+>", " ".join(values))

    def sent_at(self) -> datetime | None:
        """The Date header as UTC, or None when absent or unparseable."""
        value = self.first("Date")
        if not value:
            return None
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed is None:  # pragma: no cover - older Pythons returned None
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)

    @property
    def preview_text(self) -> str:
        """The text a provider previews: the text body, else the HTML rendered as text."""
        if self.text is not None:
            return self.text
        if self.html is not None:
            return text_from_html(self.html)
        return ""


def part_filename(part: Message) -> str | None:
    """Content-Disposition ``filename`` (RFC 2231 joined) else Content-Type ``name``, decoded."""
    try:
        name = part.get_filename() or part.get_param("name")
    except (ValueError, LookupError):  # pragma: no cover - malformed RFC 2231 params
        name = None
    if isinstance(name, tuple):
        name = email.utils.collapse_rfc2231_value(name)
    if not name:
        return None
    return decode_words(header_text(name))


def disposition(part: Message) -> str | None:
    """The Content-Disposition type (``attachment`` / ``inline``), lower case, or None."""
    value = part.get("Content-Disposition")
    if value is None:
        return None
    return header_text(value).split(";", 1)[0].strip().lower() or None


def content_id(part: Message) -> str | None:
    """The Content-ID without angle brackets, or None."""
    value = part.get("Content-ID")
    if value is None:
        return None
    cid = header_text(value).strip().strip("<>").strip()
    return cid or None


def leaf_payload(part: Message) -> bytes:
    """The decoded bytes of a leaf part (message/* parts: the enclosed message's bytes as
    received)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError):  # pragma: no cover - the email package rarely raises here
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def iter_parts(part: Message, part_id: str = "") -> list[tuple[str, Message]]:
    """Depth-first ``(part id, part)`` pairs using Gmail's numbering (root "", then "0", "0.1")."""
    out: list[tuple[str, Message]] = [(part_id, part)]
    if is_container(part):
        children = part.get_payload()
        if isinstance(children, list):
            for index, child in enumerate(children):
                child_id = f"{part_id}.{index}" if part_id else str(index)
                out.extend(iter_parts(child, child_id))
    return out


def is_container(part: Message) -> bool:
    """True for multipart containers (message/rfc822 parts are leaves to the fakes)."""
    return part.get_content_maintype() == "multipart" and part.is_multipart()


#: Renderings a multipart/alternative may hold besides plain text and HTML.
_OTHER_RENDERINGS = frozenset(
    {"text/enriched", "text/richtext", "text/watch-html", "text/x-watch-html", "text/x-amp-html"}
)


#: A header line: a field name made of token characters (a line such as "h=a:b:c" is a
#: signature continuation that lost its indent, not a field), a colon after optional blanks.
_FIELD = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9!#$%&'*+.^_`|~-]*[ \t]*:")


def tolerant_header_block(raw: bytes) -> bytes:
    """The message as a tolerant mail server reads its header block: a UTF-8 byte-order mark
    dropped; ``Name  :`` (obsolete white space before the colon) read as ``Name:``; a line that
    is neither a header nor indented read as a continuation when more headers follow it (else
    the body starts there, without its blank line); a boundary line ends the headers."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.splitlines(keepends=True)
    end = 0
    while end < len(lines) and lines[end].strip(b"\r\n"):
        end += 1
    block = lines[:end]
    fixed: list[bytes] = []
    for index, line in enumerate(block):
        if line.startswith(b"--") or (not line.strip() and index + 1 < end
                                      and block[index + 1].startswith(b"--")):
            # The body begins at a boundary line (or the white space line before one).
            rest = block[index + 1 :] if not line.strip() else block[index:]
            return b"".join([*fixed, b"\r\n", *rest, *lines[end:]])
        if _FIELD.match(line):
            name, _, value = line.partition(b":")
            fixed.append(name.rstrip(b" \t") + b":" + value)
        elif line[:1] in (b" ", b"\t") or (index == 0 and line.startswith(b"From ")):
            fixed.append(line)
        elif any(_FIELD.match(later) for later in block[index + 1 :]):
            fixed.append(b" " + line)
        else:
            return b"".join([*fixed, b"\r\n", *block[index:], *lines[end:]])
    return b"".join([*fixed, *lines[end:]])


def parse_raw(raw: bytes) -> ParsedRaw:
    """Headers, the first text/plain and text/html bodies, and the other leaves as attachments."""
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("raw must be bytes")
    message = email.message_from_bytes(tolerant_header_block(bytes(raw)), policy=STORE_POLICY)
    parsed = ParsedRaw(
        message=message,
        headers=[(key, header_text(value)) for key, value in message.raw_items()],
    )
    leaves: list[tuple[str, Message, str, str | None, str | None, str | None, bool]] = []
    types = {}
    for part_id, part in iter_parts(message):
        types[part_id] = content_type(part)
        if is_container(part):
            continue
        ctype = content_type(part)
        if ctype.startswith("multipart/"):
            ctype = "text/plain"  # a multipart the parser could not split: its text is shown
        disp = disposition(part)
        filename = part_filename(part)
        parent = types.get(part_id.rpartition(".")[0] if "." in part_id else "", "")
        if parent == "multipart/alternative" and ctype in _OTHER_RENDERINGS and filename is None:
            continue  # another rendering of the body (Apple Watch, enriched): not a file
        body_candidate = (
            ctype in ("text/plain", "text/html") and disp != "attachment" and filename is None
        )
        if body_candidate:
            text = decode_payload(leaf_payload(part), part.get_content_charset())
            if ctype == "text/plain" and parsed.text is None:
                parsed.text = text
                continue
            if ctype == "text/html" and parsed.html is None:
                parsed.html = text
                continue
            if not text.strip():
                continue  # an empty filler part is no attachment
        cid = content_id(part)
        is_message = ctype == "message/rfc822"
        leaves.append((part_id, part, ctype, disp, filename, cid, is_message))
    for part_id, part, ctype, disp, filename, cid, is_message in leaves:
        # Exchange shows a part inline when the HTML references its Content-ID, whatever the
        # disposition says (some webmail clients send such images as "attachment").
        referenced = cid is not None and f"cid:{cid}" in (parsed.html or "")
        parsed.attachments.append(
            MimeLeafInfo(
                part_id=part_id,
                name=filename or cid or _default_name(part, is_message),
                content_type=ctype,
                content_id=cid,
                is_inline=cid is not None and (disp != "attachment" or referenced),
                payload=leaf_payload(part),
                is_message=is_message,
            )
        )
    return parsed


def _default_name(part: Message, is_message: bool) -> str:
    if is_message:
        inner = email.message_from_bytes(leaf_payload(part)[:65536], policy=STORE_POLICY)
        if inner.get("Subject"):
            return decode_words(header_text(inner["Subject"]))
    return "Untitled attachment"
