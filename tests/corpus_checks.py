"""What "read right" means for one real-world message, checked against two independent readers.

Used by ``test_corpus_normalizer.py`` over every message of the shared corpus (``mime/`` and
``mime-world/``). The normalizer's :class:`~mailparity.models.EmailMessage` is compared with:

- the standard library's ``email`` package (``policy.default``): the addresses, display names,
  bodies and named attachments it finds must all be there;
- a tolerant scan of the raw header block: every line that starts like a header field (a name,
  optional white space, a colon; RFC 5322 section 4.5 allows that white space) before the first
  blank line or the first boundary line is a header the message must keep, even when an earlier
  line is malformed.

and checked for what must never reach a consumer: encoded-words, base64 or ISO-2022 escape
sequences left in decoded text, and content types that are not valid MIME types.

:func:`problems` returns readable findings (empty when the message is read right); it never raises
for a message the normalizer read, so one bad message shows every problem it has.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from collections import Counter
from collections.abc import Iterator

from mailparity.models import EmailAddress, EmailMessage

__all__ = ["problems", "scan_header_names"]

#: A header field name as a tolerant reader recognises one: a token that starts with a letter
#: or digit (a line such as "----=_Part: x" is a broken boundary, not a header), white space
#: allowed before the colon (obsolete syntax, RFC 5322 section 4.5).
_HEADER_LINE = re.compile(rb"^([A-Za-z0-9][A-Za-z0-9!#$%&'*+.^_`|~-]*)[ \t]*:")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{60,}={0,2}")
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to")


def scan_header_names(raw: bytes) -> list[str]:
    """The lower-cased names of every header line of the top-level header block, in order."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    names: list[str] = []
    for index, line in enumerate(_LINE_END.split(raw)):
        if not line:
            break  # the blank line: the body starts
        if line.startswith(b"--"):
            break  # a boundary line: the body started without its blank line
        if index == 0 and line.startswith(b"From ") and _HEADER_LINE.match(line) is None:
            continue  # an mbox envelope line
        match = _HEADER_LINE.match(line)
        if match is not None:
            names.append(match.group(1).decode("ascii").lower())
    return names


def _stdlib(raw: bytes) -> email.message.EmailMessage | None:
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:
        return None
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def _stdlib_addresses(parsed: email.message.EmailMessage, name: str) -> list[tuple[str, str]]:
    """``(addr_spec, display name)`` of every mailbox the stdlib finds in header ``name``."""
    found: list[tuple[str, str]] = []
    try:
        values = parsed.get_all(name) or []
    except Exception:
        return found
    for value in values:
        try:
            addresses = tuple(getattr(value, "addresses", ()))
        except Exception:  # noqa: S112 - a header the stdlib cannot read gives it no mailbox
            continue
        found.extend(
            (str(address.addr_spec or ""), str(address.display_name or ""))
            for address in addresses
        )
    return found


def _norm_addr(value: str) -> str:
    return "".join(value.split()).strip("<>").lower()


def _leaves(part: email.message.Message) -> Iterator[email.message.Message]:
    """Leaf parts in order; an attached message is one leaf (its inside is not walked)."""
    try:
        is_container = part.is_multipart() and part.get_content_maintype() == "multipart"
    except Exception:
        return
    if not is_container:
        yield part
        return
    children = part.get_payload()
    if isinstance(children, list):
        for child in children:
            if isinstance(child, email.message.Message):
                yield from _leaves(child)


def _content(part: email.message.Message) -> str:
    """A stdlib leaf's text, decoded as the stdlib decodes it ("" when it cannot)."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except Exception:
        try:
            data = part.get_payload(decode=True)
        except Exception:
            return ""
        return data.decode("latin-1") if isinstance(data, bytes) else ""
    return content if isinstance(content, str) else ""


def _check_headers(raw: bytes, message: EmailMessage, out: list[str]) -> None:
    ours = Counter(item.name.strip().lower() for item in message.headers)
    for name, count in sorted(Counter(scan_header_names(raw)).items()):
        if ours[name] < count:
            out.append(f"header {name!r} lost ({ours[name]} of {count})")


def _our_addresses(message: EmailMessage, name: str) -> list[EmailAddress]:
    if name == "from":
        return [message.from_]
    field = {"reply-to": "reply_to"}.get(name, name)
    value = getattr(message, field)
    assert isinstance(value, list)
    return value


def _text(value: str) -> str:
    """The stdlib keeps raw 8-bit bytes as surrogates: read them as UTF-8 for comparison."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _found(addr_spec: str, ours: list[EmailAddress], header_values: list[str]) -> bool:
    """Whether the stdlib's mailbox is among ours. Where the stdlib reads a malformed mailbox
    differently ("Big Bug bb@bug.com", "a@x <b@y>"), the address it saw must still be there,
    as our address, inside our display name, or (for From) in the header we kept."""
    # An undecodable byte (U+FFFD here) is read differently by each reader: compare the rest.
    wanted = _norm_addr(addr_spec).replace('"', "").split("\ufffd")[-1]
    for item in ours:
        mine = _norm_addr(item.email)
        if mine and (mine == wanted or wanted.endswith(mine) or mine.endswith(wanted)):
            return True
        if wanted in _norm_addr(item.name or ""):
            return True
    return any(wanted in _norm_addr(value) for value in header_values)


def _check_addresses(parsed: email.message.EmailMessage, message: EmailMessage,
                     out: list[str]) -> None:
    for name in _ADDRESS_HEADERS:
        theirs = [(_text(a), _text(d)) for a, d in _stdlib_addresses(parsed, name)]
        ours = _our_addresses(message, name)
        header_values = message.header_values(name) if name == "from" else []
        by_email = {_norm_addr(item.email): item for item in ours}
        names = {(item.name or "").strip() for item in ours}
        for addr_spec, display in theirs:
            if addr_spec and "@" in addr_spec:
                if not _found(addr_spec, ours, header_values):
                    out.append(f"{name}: address {addr_spec!r} lost")
                    continue
                mine = by_email.get(_norm_addr(addr_spec))
                same = display.strip(" \"'").lower() == addr_spec.lower()
                if mine is not None and display.strip() and not same and not mine.name:
                    out.append(f"{name}: display name {display!r} of {addr_spec!r} lost")
            elif display.strip() and not addr_spec and display.strip() not in names:
                # "MAILER-DAEMON <>": the display name is all there is of the mailbox.
                out.append(f"{name}: display name {display!r} (empty address) lost")


def _words(text: str) -> str:
    return " ".join(text.split())


def _check_bodies(parsed: email.message.EmailMessage, message: EmailMessage,
                  out: list[str]) -> None:
    for kind in ("plain", "html"):
        try:
            part = parsed.get_body(preferencelist=(kind,))
        except Exception:
            part = None
        if part is None or part.get_content_type() != f"text/{kind}":
            continue
        if part.get_filename():
            continue
        content = _words(_content(part))
        if not content:
            continue
        mine = message.body.text if kind == "plain" else (message.body.html or "")
        if not _words(mine):
            out.append(f"text/{kind} body lost")


def _base64_tokens(text: str) -> int:
    return sum(1 for token in text.split() if _BASE64_TOKEN.fullmatch(token))


def _check_base64(parsed: email.message.EmailMessage, message: EmailMessage,
                  out: list[str]) -> None:
    """Base64 in a body that the stdlib's decoding of the same part does not have."""
    for kind, mine in (("plain", message.body.text), ("html", message.body.html or "")):
        try:
            part = parsed.get_body(preferencelist=(kind,))
        except Exception:
            part = None
        theirs = _content(part) if part is not None else ""
        if _base64_tokens(mine) >= _base64_tokens(theirs) + 3:
            out.append(f"body {kind}: still base64")


def _check_attachments(parsed: email.message.EmailMessage, message: EmailMessage,
                       out: list[str]) -> None:
    named = []
    for leaf in _leaves(parsed):
        try:
            filename = leaf.get_filename()
        except Exception:  # noqa: S112 - a malformed parameter: the stdlib names nothing
            continue
        if filename and filename.strip():
            named.append(filename.strip())
    ours = [item.name for item in message.attachments]
    if len(ours) < len(named):
        out.append(f"attachments lost: {len(ours)} of {len(named)} named parts ({named})")


def _left_encoded(label: str, text: str, out: list[str]) -> None:
    if _ENCODED_WORD.search(text):
        out.append(f"{label}: encoded-word left: {text[:120]!r}")
    if "\x1b" in text:
        out.append(f"{label}: ISO-2022 escape sequence left: {text[:120]!r}")


def _check_encoded(message: EmailMessage, out: list[str]) -> None:
    _left_encoded("subject", message.subject, out)
    for item in [message.from_, *message.to, *message.cc, *message.bcc, *message.reply_to]:
        _left_encoded("address name", item.name or "", out)
    for attachment in message.attachments:
        _left_encoded("attachment name", attachment.name, out)
    for header in message.headers:
        if header.name.lower() in ("subject", "from", "to", "cc", "reply-to", "sender"):
            _left_encoded(f"header {header.name}", header.value, out)
    if "\x1b" in message.body.text:
        out.append("body text: ISO-2022 escape sequence left")


_C1 = re.compile("[\x80-\x9f]")
_CHARSET_PARAM = re.compile(rb"charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_RAW_HEADER = re.compile(rb"^(Subject)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def _check_c1(message: EmailMessage, out: list[str]) -> None:
    """Windows quotes and dashes under an ISO-8859-1 / US-ASCII label must not become C1
    control characters (they are read as windows-1252, as mail clients do)."""
    fields = {"subject": message.subject, "body text": message.body.text,
              "body html": message.body.html or ""}
    for label, value in fields.items():
        if _C1.search(value):
            out.append(f"{label}: C1 control character {_C1.search(value)!r}")


def _check_declared_charset(raw: bytes, message: EmailMessage, out: list[str]) -> None:
    """A Subject sent as raw 8-bit bytes that are not UTF-8 is read with the charset the
    message declares (its first ``charset=``), when the bytes are valid in that charset."""
    header_end = re.search(rb"\r?\n\r?\n", raw)
    block = raw[: header_end.start()] if header_end else raw
    match = _RAW_HEADER.search(block)
    declared = _CHARSET_PARAM.search(raw)
    if match is None or declared is None:
        return
    value = re.sub(rb"\r?\n[ \t]+", b" ", match.group(2)).strip()
    if value.isascii() or b"=?" in value:
        return
    try:
        value.decode("utf-8")
        return  # raw UTF-8 (RFC 6532): not a declared-charset case
    except UnicodeDecodeError:
        pass
    charset = declared.group(1).decode("ascii").lower()
    try:
        expected = value.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return
    if " ".join(expected.split()) != " ".join(message.subject.split()):
        out.append(f"subject: raw 8-bit bytes not read as {charset}: {message.subject[:60]!r}")


def _check_types(message: EmailMessage, out: list[str]) -> None:
    for attachment in message.attachments:
        if not _MIME_TYPE.match(attachment.content_type):
            out.append(f"attachment {attachment.name!r}: invalid type {attachment.content_type!r}")


def problems(raw: bytes, message: EmailMessage) -> list[str]:
    """Everything the normalizer lost or left undecoded in ``message`` (read from ``raw``)."""
    out: list[str] = []
    parsed = _stdlib(raw)
    _check_headers(raw, message, out)
    if parsed is not None:
        _check_addresses(parsed, message, out)
        _check_bodies(parsed, message, out)
        _check_attachments(parsed, message, out)
        _check_base64(parsed, message, out)
    _check_encoded(message, out)
    _check_c1(message, out)
    _check_declared_charset(raw, message, out)
    _check_types(message, out)
    return out
