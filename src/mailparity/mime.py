"""Provider-neutral normalization, shared by both adapters and the raw MIME path.

Header decoding, address parsing, msg-id lists, charset handling, attachment naming, and the
assembly of an :class:`~mailparity.models.EmailMessage` from headers, bodies and attachments live
here and only here, so the same header, address or attachment yields the same field whichever
provider delivered it.

Every function here is total: malformed input (mail in the wild is full of it) gives the most
useful value that can be recovered, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.message
import email.policy
import email.utils
import logging
import mimetypes
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.generator import BytesGenerator
from io import BytesIO
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote

from .html import html_to_text
from .models import Attachment, EmailAddress, EmailBody, EmailMessage, Header

__all__ = [
    "TNEF_TYPES",
    "HtmlReferences",
    "MimeAttachment",
    "ParsedMime",
    "PartView",
    "ShownPart",
    "TreeWalker",
    "attachment_name",
    "build_email_message",
    "clean_header_text",
    "decode_bytes",
    "decode_header_value",
    "enclosed_subject",
    "is_inline_part",
    "message_attachment_name",
    "message_from_mime",
    "normalize_content_id",
    "parse_address",
    "parse_address_list",
    "parse_mime",
    "parse_msg_ids",
    "safe_file_name",
    "tnef_available",
    "tnef_files",
    "unfold",
]

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Text and charsets

_FOLD = re.compile(r"(?:\r\n|\r|\n)+[ \t]*")


def unfold(value: str) -> str:
    """CRLF/LF followed by white space becomes one space (RFC 5322 unfolding); trims the ends.

    A line break *without* following white space (broken folding) also becomes one space, so a
    header value never carries a line break.
    """
    if not value:
        return ""
    return _FOLD.sub(" ", value).strip()


#: Charset labels seen in mail that Python does not know, or knows as a narrower charset than
#: the one mailers actually use (the superset decodes everything the narrow one does).
_CHARSET_ALIASES: dict[str, str] = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-8-e": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-6-e": "iso-8859-6",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "x-mac-ce": "mac_latin2",
    "x-mac-greek": "mac_greek",
    "x-mac-turkish": "mac_turkish",
    "x-mac-icelandic": "mac_iceland",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode-1-1-utf-7": "utf-7",
    "unicode-1-1-utf-8": "utf-8",
    "x-unicode20utf8": "utf-8",
    "utf8": "utf-8",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "x-euc-cn": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "x-euc-jp": "euc_jp",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "x-user-defined": "windows-1252",
    "ansi_x3.4-1968": "us-ascii",
    "646": "us-ascii",
}

#: Pseudo codec name: ISO-2022-JP with the Microsoft extensions (the CP50220 family).
_ISO2022JP_MS = "iso2022_jp_ms"

#: When a charset of a family fails, its siblings are tried before the generic fallbacks: a
#: message labelled ISO-2022-JP that is really Shift_JIS is common (and in the corpus).
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("iso2022_jp_ext", _ISO2022JP_MS, "iso2022_jp_2", "cp932", "euc_jp"),
    ("cp949", "iso2022_kr"),
    ("gb18030", "big5hkscs"),
)

#: Charsets whose bytes are not ASCII-compatible: the "valid UTF-8 wins" rule never applies.
_NOT_ASCII_COMPATIBLE = ("utf_16", "utf_32", "utf_7", "iso2022")

#: Python codecs that are "text encodings" but not charsets a mail could legitimately name.
_FORBIDDEN_CODECS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs", "oem"}
)


def _codec_for(charset: str | None) -> str | None:
    """The Python codec name for a MIME charset label, or None when unknown or unusable."""
    if not charset or not isinstance(charset, str):
        return None
    label = charset.strip().strip("\"'").strip().lower()
    # RFC 2231 language suffix ("utf-8*en") and stray parameters ("utf-8; format=flowed").
    label = label.split("*", 1)[0].split(";", 1)[0].strip()
    if not label or len(label) > 64:
        return None
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    name = info.name.replace("-", "_")  # Python spells some canonical names with "-"
    if name in _FORBIDDEN_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    # Text labelled ISO-8859-1 or US-ASCII is read as windows-1252, as every mail client and
    # browser does (WHATWG Encoding): Windows mailers put their curly quotes and dashes (bytes
    # 0x80-0x9F) under those labels, and ISO-8859-1 would turn them into C1 control characters.
    return _WINDOWS_SUPERSETS.get(name, name)


#: Labels read as their Windows superset (the bytes they define decode the same).
_WINDOWS_SUPERSETS = {"latin_1": "cp1252", "iso8859_1": "cp1252", "ascii": "cp1252"}


def _try_decode(data: bytes, codec: str) -> str | None:
    if codec == _ISO2022JP_MS:
        return _decode_iso2022jp_ms(data)
    try:
        return data.decode(codec)
    except Exception:  # any codec failure means "try the next one"
        return None

_ISO2022_ESCAPE = re.compile(rb"\x1b(\$\(D|\$[@B]|\$\(Q|\$\(O|\([BJHI])")


def _jis_to_sjis(first: int, second: int) -> bytes:
    """One JIS X 0208 code (two 7-bit bytes) as the Shift_JIS bytes of the same character."""
    low = second + 31 + (1 if second >= 96 else 0) if first & 1 else second + 126
    high = ((first - 0x21) >> 1) + 0x81
    if high > 0x9F:
        high += 0x40
    return bytes((high, low))


def _decode_iso2022jp_ms(data: bytes) -> str | None:
    """ISO-2022-JP as Microsoft writes it (CP50220/50221/50222): JIS X 0208 rows include the NEC
    and IBM extension characters (circled digits, Roman numerals, ...) that Python's ISO-2022-JP
    codecs reject. Each JIS X 0208 run is mapped to Shift_JIS and read as cp932, which holds
    those extensions; JIS X 0201 katakana (``ESC ( I`` or SO/SI) and JIS X 0212 are read too.
    None when the bytes are not ISO-2022-JP (8-bit bytes, broken sequences)."""
    if any(byte > 0x7F for byte in data):
        return None
    out: list[str] = []
    mode = b"(B"
    shifted = False
    pos = 0
    length = len(data)
    while pos < length:
        byte = data[pos]
        if byte == 0x1B:
            match = _ISO2022_ESCAPE.match(data, pos)
            if match is None:
                return None
            mode = match.group(1)
            pos = match.end()
            continue
        if byte == 0x0E:  # SO: half-width katakana until SI (CP50222)
            shifted, pos = True, pos + 1
            continue
        if byte == 0x0F:
            shifted, pos = False, pos + 1
            continue
        if byte in (0x0A, 0x0D):
            out.append(chr(byte))  # a line break always returns to ASCII in practice
            pos += 1
            continue
        if shifted or mode == b"(I":
            out.append(bytes((byte | 0x80,)).decode("cp932", "replace"))
            pos += 1
        elif mode in (b"$@", b"$B", b"$(Q", b"$(O"):
            if pos + 1 >= length:
                return None
            second = data[pos + 1]
            if not (0x21 <= byte <= 0x7E and 0x21 <= second <= 0x7E):
                return None
            try:
                out.append(_jis_to_sjis(byte, second).decode("cp932"))
            except UnicodeDecodeError:
                return None
            pos += 2
        elif mode == b"$(D":  # JIS X 0212: EUC-JP's three-byte form
            if pos + 1 >= length:
                return None
            try:
                out.append(bytes((0x8F, byte | 0x80, data[pos + 1] | 0x80)).decode("euc_jp"))
            except UnicodeDecodeError:
                return None
            pos += 2
        else:  # ASCII, JIS-Roman
            out.append(chr(byte))
            pos += 1
    return "".join(out)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode a body with its declared charset, falling back sanely: aliases (``ks_c_5601-1987``,
    ``iso-8859-8-i``, ``x-mac-cyrillic``, ``windows-1250``...), unknown or garbage names, and lying
    charsets (declared us-ascii / latin-1 but valid UTF-8) never raise.

    Order: UTF-8 when the bytes are valid non-ASCII UTF-8, the declared charset (strict), its
    family (ISO-2022-JP/Shift_JIS/EUC-JP...), UTF-8 (strict), UTF-8 with replacement when only a
    few bytes are broken, windows-1252, then Latin-1, which decodes any byte.
    """
    if not data:
        return ""
    if isinstance(data, str):  # tolerate callers that already hold text
        return data
    codec = _codec_for(charset)
    candidates: list[str] = []
    if (
        codec != "utf_8"
        and not (codec or "").startswith(_NOT_ASCII_COMPATIBLE)
        and not data.isascii()
    ):
        # Text that is valid UTF-8 and not ASCII is UTF-8 whatever the label says: legacy
        # charsets practically never form valid multi-byte UTF-8 sequences by chance, while
        # mislabelled UTF-8 (us-ascii, latin-1, gb2312 on UTF-8 text) is common.
        candidates.append("utf-8")
    if codec:
        candidates.append(codec)
        for family in _FAMILIES:
            if codec in family:
                candidates.extend(c for c in family if c != codec)
    candidates.append("utf-8")
    seen: set[str] = set()
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.add(candidate)
        text = _try_decode(data, candidate)
        if text is not None:
            return _strip_bom(text)
    # Mostly UTF-8 with a few broken bytes (a truncated or corrupted character) reads better as
    # UTF-8 with U+FFFD than as windows-1252 mojibake of every character.
    lenient = data.decode("utf-8", "replace")
    broken = lenient.count("\ufffd")
    if sum(1 for ch in lenient if ch > "\x7f") - broken > 2 * broken:
        return _strip_bom(lenient)
    text = _try_decode(data, "cp1252")
    if text is None:
        # Bytes windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) almost never occur
        # in Western text: this is East Asian text under a wrong or missing label.
        for candidate in _UNLABELLED_CJK:
            text = _try_decode(data, candidate)
            if text is not None:
                break
    return _strip_bom(text) if text is not None else data.decode("latin-1")


#: Tried, in this order, on 8-bit text that is neither UTF-8 nor windows-1252.
_UNLABELLED_CJK = ("cp932", "big5hkscs", "cp949", "gb18030")


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


_SURROGATE = re.compile("[\udc80-\udcff]")


def _surrogates_to_text(value: str, charset: str | None = None) -> str:
    """Text parsed by :mod:`email` keeps raw 8-bit bytes as lone surrogates; decode those bytes
    (UTF-8, else ``charset``: the charset the message declares, else windows-1252) so no
    surrogate ever reaches a model."""
    if _SURROGATE.search(value) is None:
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8", "replace")
    return decode_bytes(raw, charset)


def _as_text(value: str | bytes | None, charset: str | None = None) -> str:
    """Header text without surrogates; raw 8-bit bytes read as UTF-8, else as ``charset``."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return decode_bytes(value, charset)
    if not isinstance(value, str):
        value = str(value)  # email.header.Header objects and the like
    return _surrogates_to_text(value, charset)


# --------------------------------------------------------------------------------------------
# RFC 2047 encoded-words

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_PLAIN_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _b64decode_lenient(data: bytes) -> bytes | None:
    """Base64 with junk ignored and padding repaired; None when it cannot be base64 at all."""
    if _PLAIN_BASE64.fullmatch(data) is not None:
        # The usual body: the standard alphabet, line breaks, padding at the end. Decoded in
        # place (the C decoder skips the line breaks), without the copies the repairs need.
        try:
            return binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            pass  # bad padding: repaired below
    clean = _B64_JUNK.sub(b"", data.replace(b"-", b"+").replace(b"_", b"/"))
    if len(clean) % 4 == 1:
        # One character left over can never be base64: drop it (a truncated last quantum).
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        return None


def _q_decode(data: bytes) -> bytes:
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))


def _decode_encoded_words(text: str) -> str:
    parts: list[tuple[bool, str, bytes | str]] = []  # (is_word, codec label, payload)
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        if match.start() > pos:
            parts.append((False, "", text[pos : match.start()]))
        charset, kind, payload = match.group(1), match.group(2).upper(), match.group(3)
        raw = payload.encode("latin-1", "replace")
        decoded = _b64decode_lenient(raw) if kind == "B" else _q_decode(raw)
        if decoded is None:
            parts.append((False, "", match.group(0)))
        else:
            parts.append((True, charset.split("*", 1)[0].lower(), decoded))
        pos = match.end()
    if pos < len(text):
        parts.append((False, "", text[pos:]))

    out: list[str] = []
    index = 0
    while index < len(parts):
        is_word, charset, payload = parts[index]
        if not is_word:
            assert isinstance(payload, str)
            # RFC 2047 6.2: white space between two encoded-words is not displayed.
            between_words = (
                0 < index < len(parts) - 1 and parts[index - 1][0] and parts[index + 1][0]
            )
            if not (between_words and not payload.strip(" \t")):
                out.append(payload)
            index += 1
            continue
        # Adjacent words of the same charset are joined as bytes first: encoders split
        # multi-byte characters and ISO-2022-JP escape sequences across words.
        chunk = bytearray(payload if isinstance(payload, bytes) else b"")
        nxt = index + 1
        while nxt < len(parts):
            if parts[nxt][0] and parts[nxt][1] == charset:
                data = parts[nxt][2]
                chunk += data if isinstance(data, bytes) else b""
                nxt += 1
                continue
            if (
                not parts[nxt][0]
                and not str(parts[nxt][2]).strip(" \t")
                and nxt + 1 < len(parts)
                and parts[nxt + 1][0]
                and parts[nxt + 1][1] == charset
            ):
                nxt += 1
                continue
            break
        out.append(decode_bytes(bytes(chunk), charset))
        index = nxt
    return "".join(out)


def decode_header_value(value: str | bytes) -> str:
    """Unfold and decode RFC 2047 encoded-words (B and Q, any charset, adjacent words joined per
    RFC 2047 section 6.2); raw 8-bit bytes are decoded as UTF-8, falling back to windows-1252."""
    if type(value) is str and "=?" not in value and value.isprintable():
        # The usual header (To, Date, Message-ID, a plain Subject): one line of printable text.
        # It has no line break to unfold, no surrogate, no control character and no
        # encoded-word, so the full path would only trim it. Same result, a fraction of the cost.
        return value.strip()
    return _decode_header_value_full(value)


def _decode_header_value_full(value: str | bytes) -> str:
    """:func:`decode_header_value` without its fast path (also the reference the tests compare
    the fast path with)."""
    text = unfold(_as_text(value))
    if "=?" in text:
        text = _decode_encoded_words(text)
    return _one_line(text)


#: CR, LF and TAB become a space; every other C0 control character is dropped.
_ONE_LINE = {code: (" " if chr(code) in "\r\n\t" else None) for code in range(0x20)}
_C0 = re.compile("[\x00-\x1f]")


def _one_line(text: str) -> str:
    # Decoded words may carry control characters (a Q-encoded CR/LF); a header value is one line.
    if _C0.search(text) is None:  # the usual case: nothing to translate
        return text
    return text.translate(_ONE_LINE)


def clean_header_text(value: str | bytes | None) -> str:
    """Already-decoded header text (a provider's ``subject`` property, say) in the form
    :func:`decode_header_value` gives: unfolded, tabs and line breaks as spaces, other control
    characters dropped, ends trimmed. Encoded-words are *not* decoded again: the text is final."""
    return _one_line(unfold(_as_text(value)))


# --------------------------------------------------------------------------------------------
# Addresses


def _tokenize_address_piece(piece: str) -> tuple[list[str], list[str], list[str]]:
    """Split one mailbox's text into (phrase words, angle addresses, comments)."""
    words: list[str] = []
    angles: list[str] = []
    comments: list[str] = []
    i, n = 0, len(piece)
    current: list[str] = []

    def flush() -> None:
        if current:
            words.append("".join(current))
            current.clear()

    while i < n:
        ch = piece[i]
        if ch == '"':
            flush()
            i += 1
            buf: list[str] = []
            while i < n and piece[i] != '"':
                if piece[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(piece[i])
                i += 1
            words.append("".join(buf))
            i += 1
        elif ch == "(":
            flush()
            depth, i, buf = 1, i + 1, []
            while i < n and depth:
                if piece[i] == "\\" and i + 1 < n:
                    buf.append(piece[i + 1])
                    i += 2
                    continue
                if piece[i] == "(":
                    depth += 1
                elif piece[i] == ")":
                    depth -= 1
                    if not depth:
                        break
                buf.append(piece[i])
                i += 1
            comments.append("".join(buf).strip())
            i += 1
        elif ch == "<":
            flush()
            end = piece.find(">", i + 1)
            if end < 0:
                end = n
            angles.append(piece[i + 1 : end])
            i = end + 1
        elif ch in " \t\r\n":
            flush()
            i += 1
        else:
            current.append(ch)
            i += 1
    flush()
    return words, angles, comments


def _split_top_level(value: str) -> list[str]:
    """Split an address list on top-level commas and group punctuation (``:`` and ``;``)."""
    pieces: list[str] = []
    buf: list[str] = []
    quoted = False
    depth = 0
    angle = False
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(value):
                buf.append(value[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
        elif depth:
            buf.append(ch)
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        elif angle:
            buf.append(ch)
            if ch == ">":
                angle = False
        elif ch == '"':
            quoted = True
            buf.append(ch)
        elif ch == "(":
            depth = 1
            buf.append(ch)
        elif ch == "<":
            angle = True
            buf.append(ch)
        elif ch in ",;":
            pieces.append("".join(buf))
            buf = []
        elif ch == ":" and "@" not in "".join(buf) and "".join(buf).strip():
            # "Group name: a@x, b@y;" - the group's name is not a mailbox. A colon after an
            # "@" belongs to the address (source routes, IPv6 literals).
            buf = []
        else:
            buf.append(ch)
        i += 1
    pieces.append("".join(buf))
    return [piece.strip() for piece in pieces if piece.strip()]


def _clean_addr(addr: str) -> str:
    if "(" in addr:
        addr = _COMMENT.sub("", addr)  # obsolete syntax: comments inside the addr-spec
    addr = "".join(addr.split())
    if ":" in addr and addr.startswith("@"):
        addr = addr.split(":", 1)[1]  # obsolete source route "@relay:user@host"
    if addr.lower().startswith("mailto:"):
        addr = addr[7:]
    return addr


def _mailboxes_of(piece: str) -> list[EmailAddress]:
    words, angles, comments = _tokenize_address_piece(piece)
    result: list[EmailAddress] = []
    if angles:
        if len(angles) == 1:
            name = " ".join(words) or None
            email_addr = _clean_addr(angles[0])
            if email_addr or name:
                # "MAILER-DAEMON <>" (bounces): the null address, and the name is all there is.
                result.append(_address(email_addr, name))
            return result
        # Several "<...>" without commas between them ("A <a@x> B <b@y>"): split them again.
        for match in re.finditer(r'((?:"[^"]*"|[^<"])*)<([^>]*)>?', piece):
            name_words, _, _ = _tokenize_address_piece(match.group(1))
            email_addr = _clean_addr(match.group(2))
            if email_addr:
                result.append(_address(email_addr, " ".join(name_words) or None))
        return result
    with_at = [word for word in words if "@" in word]
    if len(with_at) > 1:
        # Several bare addresses separated by spaces only.
        return [_address(_clean_addr(word), None) for word in with_at]
    if with_at:
        name = " ".join(comments) or None
        return [_address(_clean_addr(with_at[0]), name)]
    if len(words) == 1 and words[0] and '"' not in piece:
        # A bare local mailbox ("root"): keep it, it is what the header says.
        return [_address(_clean_addr(words[0]), " ".join(comments) or None)]
    return result


_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+")


def _plausible(addr: str) -> bool:
    """An addr-spec worth reporting: no list punctuation, some letter or digit in it."""
    if not addr or any(ch in addr for ch in "<>,;()"):
        return False
    if "@" not in addr:
        return _ATOM.fullmatch(addr) is not None  # a bare local mailbox
    return any(ch.isalnum() for ch in addr)


def _address(email_addr: str, name: str | None) -> EmailAddress:
    decoded = decode_header_value(name).strip() if name else ""
    if decoded and decoded.strip("'\"") == email_addr:
        decoded = ""  # 'bob@x <bob@x>' carries no name
    return EmailAddress(email=_surrogates_to_text(email_addr), name=decoded or None)


def parse_address_list(value: str | None) -> list[EmailAddress]:
    """Every mailbox of an address header (groups flattened), display names decoded; [] for None,
    empty or unparseable input (never raises). A display name with the null address
    (``MAILER-DAEMON <>``) is kept as a mailbox with an empty ``email``.

    Parsing happens before display names are decoded, so a name that decodes to a comma stays
    one mailbox. When the value was decoded already ("Doe, John <j@x>"), a piece that holds no
    address is joined to the name of the mailbox that follows it.
    """
    try:
        text = unfold(_as_text(value))
        if not text:
            return []
        pieces = _split_top_level(text)
        merged: list[str] = []
        pending = ""
        for index, piece in enumerate(pieces):
            has_addr = "@" in piece or "<" in piece
            following = pieces[index + 1] if index + 1 < len(pieces) else ""
            next_is_name_addr = "<" in following and not following.lstrip().startswith("<")
            if not has_addr and (pending or next_is_name_addr or " " in piece.strip()):
                # A name fragment cut off by a comma of an already-decoded display name.
                pending = f"{pending}, {piece}" if pending else piece
                continue
            if pending and "<" in piece and not piece.lstrip().startswith("<"):
                merged.append(f"{pending}, {piece}")
            elif pending and piece.lstrip().startswith("<"):
                merged.append(f"{pending} {piece}")
            else:
                merged.append(piece)
            pending = ""
        result: list[EmailAddress] = []
        for piece in merged:
            text_piece = piece
            if '"' not in piece and "," in piece.split("<", 1)[0]:
                # Re-quote a decoded name that holds a comma so the tokenizer keeps it whole.
                name, _, rest = piece.partition("<")
                text_piece = '"' + name.strip().replace('"', "") + '" <' + rest
            result.extend(_mailboxes_of(text_piece))
        return [
            address
            for address in result
            if _plausible(address.email) or (not address.email and address.name)
        ]
    except Exception:  # the contract is "never raises"
        return []


def parse_address(value: str | None) -> EmailAddress | None:
    """The first mailbox of an address header, or None."""
    addresses = parse_address_list(value)
    return addresses[0] if addresses else None


# --------------------------------------------------------------------------------------------
# Message ids and Content-IDs

_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_MSG_ID_TOKEN = re.compile(r"<([^<>]*)>|([^\s,<>]+)")


def parse_msg_ids(value: str | None) -> list[str]:
    """Every msg-id of a Message-ID / In-Reply-To / References value, in order, each with angle
    brackets (``<id@host>``); tolerant of commas, folding, missing brackets and comments.

    A msg-id broken by folding white space inside its brackets is rejoined. Without any bracketed
    id, bare tokens that contain "@" are taken (or the value itself when it is a single token).
    """
    text = unfold(_as_text(value))
    if not text:
        return []
    for _ in range(5):  # nested comments, innermost first
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _QUOTED.sub(" ", text)
    bracketed: list[str] = []
    bare: list[str] = []
    for match in _MSG_ID_TOKEN.finditer(text):
        if match.group(1) is not None:
            inner = "".join(match.group(1).split())
            if inner:
                bracketed.append(f"<{inner}>")
        elif match.group(2):
            bare.append(match.group(2))
    if bracketed:
        return bracketed
    with_at = [f"<{token}>" for token in bare if "@" in token]
    if with_at:
        return with_at
    return [f"<{bare[0]}>"] if len(bare) == 1 else []


def normalize_content_id(value: str | None) -> str | None:
    """A Content-ID without angle brackets and white space, or None."""
    text = "".join(_as_text(value).split())
    if text.lower().startswith("cid:"):
        text = text[4:]
    text = text.strip("<>")
    return text or None


# --------------------------------------------------------------------------------------------
# Attachment names

_EXTENSIONS: dict[str, str] = {
    "message/rfc822": "eml",
    "message/global": "eml",
    "message/partial": "eml",
    "message/delivery-status": "txt",
    "message/global-delivery-status": "txt",
    "message/disposition-notification": "txt",
    "message/feedback-report": "txt",
    "text/rfc822-headers": "txt",
    "text/plain": "txt",
    "text/html": "html",
    "text/calendar": "ics",
    "text/csv": "csv",
    "application/ms-tnef": "dat",
    "application/vnd.ms-tnef": "dat",
    "application/octet-stream": "bin",
    "application/pgp-signature": "asc",
    "application/pgp-encrypted": "asc",
    "application/pkcs7-signature": "p7s",
    "application/x-pkcs7-signature": "p7s",
    "application/pkcs7-mime": "p7m",
    "application/x-pkcs7-mime": "p7m",
    "image/jpeg": "jpg",
    "image/pjpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "application/pdf": "pdf",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _extension_for(content_type: str) -> str:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in _EXTENSIONS:
        return _EXTENSIONS[ctype]
    guessed = mimetypes.guess_extension(ctype, strict=False) if "/" in ctype else None
    return guessed.lstrip(".") if guessed else "bin"


def _clean_name(raw: str | None) -> str:
    if not raw:
        return ""
    name = decode_header_value(raw)
    # Some clients send full paths ("C:\\Users\\me\\report.pdf"); the name is the last segment.
    name = re.split(r"[\\/]", name)[-1]
    return _CONTROL.sub("", name).strip().strip('"').strip()


def attachment_name(
    filename: str | None, name: str | None, content_type: str, index: int
) -> str:
    """The attachment's display name: ``filename`` (Content-Disposition, RFC 2231 already joined),
    else ``name`` (Content-Type), encoded-words decoded; else a generated
    ``attachment-{index}.{ext}`` from the content type (``message/rfc822`` -> ``.eml``).

    Directory parts of a sent path are dropped and control characters removed."""
    for candidate in (filename, name):
        cleaned = _clean_name(candidate)
        if cleaned and cleaned not in (".", ".."):
            return cleaned
    return f"attachment-{index}.{_extension_for(content_type)}"


#: Characters that cannot be in a file name on common systems; a subject loses them.
_UNSAFE_FILE_CHARS = re.compile(r'[\\/:*?"<>|]')
#: Longest file-name stem made from a subject (file systems allow 255 bytes).
_SUBJECT_NAME_LIMIT = 150


def safe_file_name(name: str, *, limit: int = _SUBJECT_NAME_LIMIT) -> str:
    """``name`` made safe as one file name on common systems: characters unsafe in file names
    (``\\ / : * ? " < > |``) become ``_``, control characters are removed, surrounding spaces
    and dots are dropped, and at most ``limit`` characters are kept. ``""`` when nothing is
    left (the caller picks a name then). The rule of attached messages' names, also used by
    the attachment stores, so a name can never be a path (``..`` and separators cannot
    survive)."""
    stem = _UNSAFE_FILE_CHARS.sub("_", name).strip(" .")
    return _CONTROL.sub("", stem[:limit]).strip(" .")


def message_attachment_name(subject: str | None, content_type: str, index: int) -> str:
    """The display name of an attached message that carries no file name of its own.

    ``subject`` is the enclosed message's subject, already decoded (from its ``Subject`` header,
    or Exchange's name of an item attachment). The rule shared by every path: characters that are
    unsafe in file names become ``_``, surrounding spaces and dots are dropped, the stem is capped
    at 150 characters, and ``.eml`` is added for ``message/rfc822`` and ``message/global``. With
    no usable subject: :func:`attachment_name`'s generated ``attachment-{index}.eml``.
    """
    stem = safe_file_name(clean_header_text(subject), limit=_SUBJECT_NAME_LIMIT)
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if not stem:
        return attachment_name(None, None, ctype, index)
    return f"{stem}.eml" if ctype in ("message/rfc822", "message/global") else stem


#: ``cid:`` URLs (RFC 2392) anywhere in the HTML: attributes, CSS, even text.
_CID_URL = re.compile(r"cid:\s*([^\s\"'<>()]+)", re.IGNORECASE)
#: URLs of attributes and CSS that show content: where a Content-Location can be referenced.
_SHOWN_URL = re.compile(
    r"""(?:\b(?:src|href|background|poster|data)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))"""
    r"""|url\(\s*["']?([^"')\s]+)""",
    re.IGNORECASE,
)


class HtmlReferences:
    """What an HTML body shows by reference: its ``cid:`` Content-IDs and the URLs of its
    ``src``/``href``/``background`` attributes and CSS ``url()``s, lower case.

    Built once per message (one linear scan of the HTML), then asked about each part in
    constant time: a message with thousands of related parts beside a large HTML body stays
    linear (asking the HTML once per part was quadratic)."""

    __slots__ = ("cids", "urls")

    def __init__(self, html: str | None) -> None:
        self.cids: set[str] = set()
        self.urls: set[str] = set()
        if not html:
            return
        if "cid:" in html or "CID:" in html or "cid:" in html.lower():
            for match in _CID_URL.finditer(html):
                value = match.group(1).rstrip(".,;")
                for candidate in (value, unquote(value)):
                    cid = normalize_content_id(candidate)
                    if cid:
                        self.cids.add(cid.lower())
        for match in _SHOWN_URL.finditer(html):
            url = next((group for group in match.groups() if group), "")
            url = url.strip().lower()
            if url:
                self.urls.add(url)
                self.urls.add(unquote(url))

    def shows(self, content_id: str | None, location: str | None = None) -> bool:
        """Whether the HTML shows the part with ``content_id`` or ``location``."""
        cid = normalize_content_id(content_id)
        if cid and cid.lower() in self.cids:
            return True
        place = (location or "").strip().lower()
        return bool(place) and (place in self.urls or f"cid:{place}" in self.urls)


def is_inline_part(
    *,
    declared_inline: bool,
    content_id: str | None,
    html: str | None,
    location: str | None = None,
    related: bool = True,
    references: HtmlReferences | None = None,
) -> bool:
    """The one inline rule of every path (raw MIME, Gmail ``format=full``, Graph).

    A part is inline exactly when the HTML body shows it: through ``cid:{content_id}`` or
    through its ``Content-Location`` (an ``src``/``href``/``background`` or CSS ``url()``).
    What the sender claims (``Content-Disposition: inline``, Graph's ``isInline``) and where the
    part sits (``related``) do not decide: a part that claims to be inline but is never shown
    is an ordinary attachment, and a part the HTML shows is inline whatever its disposition
    (Graph does not show the MIME structure, so the reference is the only evidence every path
    shares). Comparisons ignore case. Pass ``references`` (built once per message) when asking
    about many parts; ``html`` is then not read again.
    """
    del declared_inline, related  # kept for callers; the rule above does not use them
    refs = references if references is not None else HtmlReferences(html)
    return refs.shows(content_id, location)


# --------------------------------------------------------------------------------------------
# Raw MIME


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

    def __repr__(self) -> str:  # the payload can be megabytes: keep reprs readable
        return (
            f"MimeAttachment(part_id={self.part_id!r}, name={self.name!r}, "
            f"content_type={self.content_type!r}, size={self.size}, "
            f"content_id={self.content_id!r}, is_inline={self.is_inline})"
        )


@dataclass
class ParsedMime:
    """A parsed RFC 5322 message: headers in order (duplicates kept), the bodies chosen from the
    MIME tree, and the attachments (inline parts included).

    ``raw_headers`` holds the same headers unfolded but with encoded-words still encoded; address
    headers are parsed from them so that a display name that decodes to a comma stays whole.
    """

    headers: list[Header] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[MimeAttachment] = field(default_factory=list)
    raw_headers: list[Header] = field(default_factory=list)
    #: Problems met while reading (a structure recovered, a nesting too deep, a walk stopped
    #: early): what was read is kept, and the message says so.
    defects: list[str] = field(default_factory=list)

    def attachment(self, part_id: str) -> MimeAttachment | None:
        """The attachment at ``part_id``, or None."""
        for item in self.attachments:
            if item.part_id == part_id:
                return item
        return None


class _Repaired(str):
    """A header value the parser repaired; ``original`` is the value as sent (unfolded headers
    of the message show what was sent, the parser works on the repair)."""

    original: str

    def __new__(cls, value: str, original: str) -> _Repaired:
        made = super().__new__(cls, value)
        made.original = original
        return made


class _RawHeaderPolicy(email.policy.Compat32):
    """compat32, except that header values are returned as parsed: compat32 would replace raw
    8-bit bytes by U+FFFD (it wraps them in an ``unknown-8bit`` Header), losing a UTF-8 or
    Latin-1 display name or filename that :func:`_as_text` can still decode.

    ``Content-Type`` values are repaired as they are read (:func:`repair_content_type`), so the
    parser splits a multipart whose parameters lack their ``;`` at every nesting level."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if name.strip().lower() == "content-type":
            fixed = repair_content_type(value)
            match = _TYPE_START.match(fixed)
            if match is not None and match.group(1).lower() == "message":
                # An attached message is kept as the bytes received (a signature over it must
                # still verify): the parser is told it is an opaque leaf, not a message to
                # parse and regenerate. _content_type reports it as the message/* it is.
                fixed = f"{_ENCLOSED}/{match.group(2)}{match.group(3)}"
            if fixed != value:
                return name, _Repaired(fixed, value)
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


#: The parser's name for message/* parts, which it must not parse (see header_source_parse).
_ENCLOSED = "x-mailparity-enclosed"

_TYPE_START = re.compile(
    r"[ \t]*([A-Za-z0-9!#$&^_.+-]+)[ \t]*/[ \t]*([A-Za-z0-9!#$&^_.+-]+)(.*)", re.DOTALL
)
_PARAM_START = re.compile(r"[A-Za-z0-9!#$&^_.+*-]+[ \t]*=")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def repair_content_type(value: str) -> str:
    """A ``Content-Type`` value as its sender meant it: line breaks removed (RFC 5322 unfolding,
    so a boundary folded across lines is whole again), junk between the type and the first
    parameter dropped, and the ``;`` that some mailers leave out before a parameter restored
    (``text/plain  charset="iso-2022-jp"``). A value without a ``type/subtype`` is returned
    unfolded (the parser then falls back to its default type)."""
    text = _LINE_BREAK.sub("", value)
    match = _TYPE_START.match(text)
    if match is None:
        return text
    rest = match.group(3)
    out = [f"{match.group(1)}/{match.group(2)}"]
    index, length = 0, len(rest)
    # Before the first ";": anything but a parameter is junk.
    head = rest.split(";", 1)[0]
    if head.strip():
        found = re.search(r"(?:^|[ \t])(" + _PARAM_START.pattern + ")", head)
        if found is None:
            index = len(head)  # junk only: skip to the first ";"
        else:
            out.append("; ")
            index = found.start(1)
    quoted = False
    seen_equals = False
    while index < length:
        char = rest[index]
        if quoted:
            if char == "\\" and index + 1 < length:
                out.append(rest[index : index + 2])
                index += 2
                continue
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == ";":
            seen_equals = False
        elif char == "=":
            seen_equals = True
        elif char in " \t" and seen_equals and _PARAM_START.match(rest, index + 1):
            # "a=1 b=2": a parameter follows a complete one without its ";".
            out.append(";")
            seen_equals = False
        out.append(char)
        index += 1
    return "".join(out)


_HEADER_FIELD = re.compile(rb"([A-Za-z0-9][A-Za-z0-9!#$%&'*+.^_`|~-]*)([ \t]*):")
#: Header lines examined for repairs (a header block is far smaller in any real message).
_MAX_HEADER_LINES = 20000


def repair_header_block(raw: bytes) -> bytes:
    """The message with its top-level header block made readable, or ``raw`` itself when the
    block is well-formed (the usual case costs one scan of the header lines).

    A strict reader ends the headers at the first line that is not a header, so one broken line
    turns every later header, the MIME structure included, into body text. Here:

    - a line that is neither a header nor indented (a continuation that lost its indent, a
      stray text line) is read as a continuation of the header before it, when header lines
      follow it; with no header line after it, the body starts there;
    - white space before the colon (``Subject  : x``; obsolete syntax that RFC 5322 section
      4.5 requires readers to accept) is removed;
    - a boundary line (``--...``) or a line of white space followed by one ends the headers,
      as a blank line would.
    """
    lines: list[bytes] = []
    pos, length = 0, len(raw)
    while pos < length and len(lines) < _MAX_HEADER_LINES:
        end = raw.find(b"\n", pos)
        end = length if end < 0 else end + 1
        line = raw[pos:end]
        if b"\r" in line[:-2]:
            # Bare CR line ends (old Mac mail): the first CR ends the line.
            end = pos + line.index(b"\r") + 1
            if end < length and raw[end : end + 1] == b"\n":
                end += 1
            line = raw[pos:end]
        if not line.rstrip(b"\r\n"):
            break
        lines.append(line)
        pos = end
    kinds = [_line_kind(line, index) for index, line in enumerate(lines)]
    # Whether a header line follows index i before the block's first boundary line.
    header_after = [False] * (len(kinds) + 1)
    for index in range(len(kinds) - 1, -1, -1):
        kind = kinds[index]
        header_after[index] = kind == "header" or (kind != "boundary" and header_after[index + 1])
    out: list[bytes] = []
    changed = False
    for index, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        ending = line[len(line.rstrip(b"\r\n")) :] or b"\r\n"
        following = kinds[index + 1] if index + 1 < len(kinds) else "end"
        if kind == "boundary" or (kind == "stray" and not header_after[index + 1]):
            out.append(ending)  # the body starts at this line: give it its blank line
            out.append(raw[sum(map(len, lines[:index])) :])
            return b"".join(out)
        if kind == "blank" and (
            following == "boundary" or (following == "stray" and not header_after[index + 1])
        ):
            out.append(ending)
            out.append(raw[sum(map(len, lines[: index + 1])) :])
            return b"".join(out)
        if kind == "stray":
            out.append(b" " + line)
            changed = True
        elif kind == "header" and (match := _HEADER_FIELD.match(line)) and match.group(2):
            out.append(match.group(1) + line[match.end() - 1 :])
            changed = True
        else:
            out.append(line)
    if not changed:
        return raw
    return b"".join(out) + raw[pos:]


def _line_kind(line: bytes, index: int) -> str:
    """What one line of a header block is: header, continuation, blank (white space only),
    boundary, envelope (an mbox ``From `` line first) or stray."""
    if line[:1] in (b" ", b"\t"):
        return "blank" if not line.strip() else "continuation"
    if line.startswith(b"--"):
        return "boundary"
    if _HEADER_FIELD.match(line):
        return "header"
    if index == 0 and line.startswith(b"From "):
        return "envelope"
    return "stray"


_POLICY = _RawHeaderPolicy()

#: Alternative renderings of the body that are neither the text nor the HTML and are not files.
_ALTERNATIVE_ONLY = frozenset(
    {"text/enriched", "text/richtext", "text/watch-html", "text/x-watch-html", "text/x-amp-html"}
)
_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200}?)(--)?[ \t]*\r?$", re.MULTILINE)


def _to_bytes(payload: str) -> bytes:
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return payload.encode("utf-8", "surrogateescape")


def _header_str(part: email.message.Message, name: str) -> str:
    try:
        value = part.get(name)
    except Exception:
        return ""
    return _as_text(value) if value is not None else ""


def _param(
    part: email.message.Message,
    name: str,
    header: str = "content-type",
    charset: str | None = None,
) -> str | None:
    """A Content-Type / Content-Disposition parameter, RFC 2231 charsets decoded robustly; raw
    8-bit bytes read as UTF-8, else as ``charset`` (the message's declared charset)."""
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _language, text = value
        raw = _to_bytes_latin(str(text))
        return decode_bytes(raw, charset or None)
    text = email.utils.unquote(str(value))
    return _surrogates_to_text(text, charset)


def _to_bytes_latin(text: str) -> bytes:
    # RFC 2231 %XX escapes are unquoted by email into code points 0-255 (one per byte).
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _content_type(part: email.message.Message) -> str:
    """The part's MIME type, always a valid ``type/subtype`` (lower case)."""
    try:
        ctype = part.get_content_type()
    except Exception:
        return "application/octet-stream"
    ctype = ctype.strip().lower()
    match = _TYPE_START.match(ctype)
    if match is None:
        return "text/plain"
    major = "message" if match.group(1) == _ENCLOSED else match.group(1)
    return f"{major}/{match.group(2)}".lower()


def _disposition(part: email.message.Message) -> str:
    value = _header_str(part, "content-disposition")
    return value.split(";", 1)[0].strip().lower()


def _decode_uu(data: bytes) -> bytes:
    out = bytearray()
    started = False
    for line in data.splitlines():
        stripped = line.strip()
        if not started:
            started = stripped.lower().startswith(b"begin")
            continue
        if stripped.lower() == b"end":
            break
        if not stripped:
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Workaround for encoders that pad lines wrongly (same as the stdlib's fallback).
            count = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(line[:count])
            except binascii.Error:
                continue
    return bytes(out) if started else data


_CLEAN_BASE64 = re.compile(rb"[A-Za-z0-9+/\s]*(?:=[\s=]*)?")
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def split_base64(raw: bytes) -> tuple[bytes, bytes]:
    """``raw`` (a base64 body) as (decoded content, trailing text).

    Mailing lists append their footer in clear after a base64 part, and some mailers leave
    stray characters in it: decoding stops where the base64 ends (its padding, or the first
    line that is not base64), so neither the footer nor what follows the padding is decoded as
    data. A line with a few stray characters among base64 is still base64 (the strays are
    dropped). Several padded blocks in a row (encoders that pad each chunk) are all decoded.
    """
    if _CLEAN_BASE64.fullmatch(raw) is not None:
        # The usual body: nothing but base64, padding only at the end. One C-speed decode.
        decoded = _b64decode_lenient(raw)
        return (decoded if decoded is not None else raw), b""
    lines = raw.splitlines(keepends=True)
    data: list[bytes] = []
    started = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            if started and index + 1 < len(lines) and not _is_base64_line(lines[index + 1]):
                return _decode_blocks(data), b"".join(lines[index:])
            continue
        if not _is_base64_line(stripped):
            if not started:
                return raw, b""  # not base64 at all: kept as it is
            return _decode_blocks(data), b"".join(lines[index:])
        data.append(stripped)
        started = True
    return _decode_blocks(data), b""


def _is_base64_line(line: bytes) -> bool:
    """Base64, maybe with a few stray characters (no more than 1 in 10, and not text)."""
    stripped = line.strip()
    if not stripped:
        return False
    junk = sum(1 for byte in stripped if byte not in _B64_CHARS)
    if not junk:
        return True
    return len(stripped) >= 16 and junk * 10 <= len(stripped) and b" " not in stripped


def _decode_blocks(lines: list[bytes]) -> bytes:
    """Decode base64 lines; a padded line ends one block and the next block starts after it."""
    out = bytearray()
    block: list[bytes] = []
    for line in lines:
        clean = line.strip()
        if not clean:
            continue
        block.append(clean)
        if clean.endswith(b"="):
            out += _b64decode_lenient(b"".join(block)) or b""
            block = []
    if block:
        out += _b64decode_lenient(b"".join(block)) or b""
    return bytes(out)


def _transfer_decode(raw: bytes, cte: str) -> bytes:
    if cte == "base64":
        stripped = b"".join(raw.split())
        if len(stripped) % 4 == 1 and _CLEAN_BASE64.fullmatch(raw) is not None:
            return raw  # text labelled base64 that cannot be base64 is kept as it is
        return split_base64(raw)[0]
    if cte in ("quoted-printable", "quotedprintable", "qp"):
        return binascii.a2b_qp(raw)
    if cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        return _decode_uu(raw)
    return raw


def _base64_trailer(part: email.message.Message) -> bytes:
    """Clear text after the end of a base64 body (a list footer), b"" when there is none."""
    if _cte(part) != "base64":
        return b""
    payload = _raw_payload(part)
    if isinstance(payload, str):
        payload = _to_bytes(payload)
    if not isinstance(payload, bytes) or _CLEAN_BASE64.fullmatch(payload) is not None:
        return b""
    return split_base64(payload)[1]


def _cte(part: email.message.Message) -> str:
    value = _header_str(part, "content-transfer-encoding").strip().lower()
    return value.split()[0].strip(";\"'") if value else ""


def _flatten(message: email.message.Message) -> bytes:
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=email.policy.compat32).flatten(
            message, unixfrom=False
        )
    except Exception:  # a part we cannot regenerate still counts as one
        return b""
    return buffer.getvalue()


def _raw_payload(part: email.message.Message) -> object:
    """The payload exactly as parsed. ``get_payload()`` is not used for text: when the body holds
    raw 8-bit bytes, compat32 decodes it with the declared charset and ``errors="replace"``, which
    destroys mislabelled text that :func:`decode_bytes` would recover."""
    return getattr(part, "_payload", None)


def _leaf_payload(part: email.message.Message) -> bytes:
    """The decoded content of a leaf part; for an attached message, its bytes as received
    (a forbidden but seen base64 or quoted-printable encoding of it undone)."""
    payload = _raw_payload(part)
    cte = _cte(part)
    if isinstance(payload, list):
        # message/rfc822 (and friends): the enclosed message, flattened. A (forbidden but seen)
        # base64 or quoted-printable encoding of the enclosed message is undone.
        raw = b"".join(_flatten(sub) for sub in payload if isinstance(sub, email.message.Message))
        if cte in ("base64", "quoted-printable"):
            return _transfer_decode(raw.lstrip(b"\r\n"), cte)
        return raw
    if isinstance(payload, bytes):
        return _transfer_decode(payload, cte)
    if not isinstance(payload, str):
        return b""
    return _transfer_decode(_to_bytes(payload), cte)


#: Nesting depth beyond which a message is flagged (it is still read, without recursion).
MAX_DEPTH = 40

PartT = TypeVar("PartT")
ItemT = TypeVar("ItemT", bound="ShownPart")
#: A part to walk: (part, path "1.2", the types of its containers, depth).
Visit = tuple[PartT, str, tuple[str, ...], int]


class ShownPart(Protocol):
    """What the inline rule needs of an attachment: its Content-ID, and the flag it sets."""

    content_id: str | None
    is_inline: bool


class PartView(Protocol[PartT, ItemT]):
    """How :class:`TreeWalker` reads one kind of part tree. Two views exist: the stdlib MIME
    tree (raw mail, :func:`parse_mime`) and Gmail's ``format=full`` payload tree
    (``providers/gmail/messages.py``); every rule about bodies, attachments, names and inline
    parts lives in the walker, once."""

    def content_type(self, part: PartT) -> str:
        """The part's ``type/subtype`` (lower case, always valid)."""

    def children(self, part: PartT, ctype: str) -> list[PartT] | None:
        """The parts of a container (``[]`` for a multipart without usable parts); None for a
        leaf (an attached message is a leaf)."""

    def unsplit(
        self, walker: TreeWalker[PartT, ItemT], part: PartT, visit: Visit[PartT]
    ) -> list[Visit[PartT]]:
        """A multipart whose parts could not be split: the parts recovered, or ``[]``."""

    def header(self, part: PartT, name: str) -> str:
        """The part's header ``name`` as text ("" when absent)."""

    def names(self, part: PartT) -> tuple[str | None, str | None]:
        """``(filename, name)``: the Content-Disposition and Content-Type file names."""

    def body_text(self, walker: TreeWalker[PartT, ItemT], part: PartT) -> str:
        """The decoded text of a body part."""

    def enclosed_subject(self, part: PartT) -> str | None:
        """The decoded subject of an attached message without a file name."""

    def attachment(
        self, part: PartT, path: str, name: str, ctype: str, content_id: str | None
    ) -> ItemT:
        """The attachment record of a leaf."""

    def after_attachment(
        self, walker: TreeWalker[PartT, ItemT], part: PartT, path: str, ctype: str, item: ItemT
    ) -> None:
        """Called after a leaf became an attachment (TNEF unpacking)."""


def _location_name(location: str) -> str | None:
    """The file name a Content-Location gives (MHTML names related parts only that way)."""
    path_part = location.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if "/" in path_part or "." in path_part:
        return path_part.rsplit("/", 1)[-1]
    return None


class TreeWalker(Generic[PartT, ItemT]):
    """The one walk of a message's part tree, over a :class:`PartView`.

    Depth-first: the first text/plain and text/html that are not attachments become the
    bodies; another rendering of a body already chosen inside a ``multipart/alternative``, an
    empty filler part, and the alternative-only renderings (``text/enriched``,
    ``text/watch-html``...) are dropped; every other leaf is an attachment (an attached message
    is one leaf, named after its subject; a part without a file name takes the one its
    Content-Location gives). :meth:`finish_inline` applies the one inline rule. The walk uses an
    explicit stack, so no nesting depth exhausts recursion; parts nested deeper than
    :data:`MAX_DEPTH` are still read and the message says so in ``defects``."""

    def __init__(self, view: PartView[PartT, ItemT]) -> None:
        self.view = view
        self.text: str | None = None
        self.html: str | None = None
        self.attachments: list[ItemT] = []
        # (attachment, Content-Location) of every attachment: the HTML may show any of them.
        self.related: list[tuple[ItemT, str]] = []
        self.defects: list[str] = []

    def defect(self, text: str) -> None:
        """Record a problem once (the message keeps a short, readable list)."""
        if text not in self.defects and len(self.defects) < 20:
            self.defects.append(text)

    def walk(self, part: PartT, path: str = "", parents: tuple[str, ...] = ()) -> None:
        """Walk the tree under ``part`` (its path and the types of its containers)."""
        stack: list[Visit[PartT]] = [(part, path, parents, 0)]
        while stack:
            visit = stack.pop()
            if visit[3] > MAX_DEPTH:
                self.defect(f"multipart nested deeper than {MAX_DEPTH} levels")
            stack.extend(reversed(self._visit(visit)))

    def _visit(self, visit: Visit[PartT]) -> list[Visit[PartT]]:
        part, path, parents, depth = visit
        ctype = self.view.content_type(part)
        children = self.view.children(part, ctype)
        if children is None:
            self._leaf(part, path or "1", ctype, parents)
            return []
        if not children:
            return self.view.unsplit(self, part, visit)
        return [
            (child, f"{path}.{position}" if path else str(position), (*parents, ctype), depth + 1)
            for position, child in enumerate(children, start=1)
        ]

    def _leaf(self, part: PartT, path: str, ctype: str, parents: tuple[str, ...]) -> None:
        view = self.view
        disposition = view.header(part, "content-disposition").split(";", 1)[0].strip().lower()
        filename, name = view.names(part)
        in_alternative = bool(parents) and parents[-1] == "multipart/alternative"
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not (
            filename or name
        ):
            text = view.body_text(self, part)
            slot = "text" if ctype == "text/plain" else "html"
            current = self.text if slot == "text" else self.html
            if current is None or not current.strip():
                setattr(self, slot, text)
                return
            if in_alternative or not text.strip():
                return  # another rendering of a body already chosen, or an empty filler part
        elif in_alternative and ctype in _ALTERNATIVE_ONLY and not (filename or name):
            return
        content_id = normalize_content_id(view.header(part, "content-id"))
        location = view.header(part, "content-location").strip()
        index = len(self.attachments) + 1
        if ctype.startswith("message/") and not (filename or name):
            display = message_attachment_name(view.enclosed_subject(part), ctype, index)
        else:
            if not (filename or name):
                name = _location_name(location)
            display = attachment_name(filename, name, ctype, index)
        item = view.attachment(part, path, display, ctype, content_id)
        self.attachments.append(item)
        self.related.append((item, location))
        view.after_attachment(self, part, path, ctype, item)

    def finish_inline(self) -> None:
        """Apply the one inline rule (:func:`is_inline_part`), reading the HTML once."""
        references = HtmlReferences(self.html)
        for item, location in self.related:
            item.is_inline = references.shows(item.content_id, location)


class _MimeView:
    """:class:`PartView` of the stdlib MIME tree of raw mail."""

    def __init__(self, charset: str | None = None) -> None:
        self.charset = charset

    def content_type(self, part: email.message.Message) -> str:
        return _content_type(part)

    def children(
        self, part: email.message.Message, ctype: str
    ) -> list[email.message.Message] | None:
        if part.is_multipart() and not ctype.startswith("message/"):
            payload = part.get_payload()
            if not isinstance(payload, list):
                return []
            return [child for child in payload if isinstance(child, email.message.Message)]
        if ctype.startswith("multipart/"):
            return []  # declared multipart but the parser found no parts (no boundary)
        return None

    def unsplit(
        self,
        walker: TreeWalker[email.message.Message, MimeAttachment],
        part: email.message.Message,
        visit: Visit[email.message.Message],
    ) -> list[Visit[email.message.Message]]:
        _, path, parents, depth = visit
        raw = b""
        try:
            preamble = part.preamble or ""
            payload = _raw_payload(part)
            body = payload if isinstance(payload, str) else ""
            raw = _to_bytes(preamble + ("\n" if preamble and body else "") + body)
        except Exception:
            raw = b""
        match = _BOUNDARY_LINE.search(raw)
        if match:
            # Recover the structure from the first boundary-looking line.
            boundary = match.group(1).decode("ascii", "replace").replace('"', "")
            synthetic = (
                f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode()
                + raw[match.start() :]
            )
            reparsed = email.message_from_bytes(synthetic, policy=_POLICY)
            subparts = reparsed.get_payload()
            if reparsed.is_multipart() and isinstance(subparts, list) and subparts:
                walker.defect("multipart boundary not found; structure recovered")
                return [
                    (child, f"{path}.{position}" if path else str(position),
                     (*parents, "multipart/mixed"), depth + 1)
                    for position, child in enumerate(subparts, start=1)
                    if isinstance(child, email.message.Message)
                ]
        if raw.strip():
            text = decode_bytes(raw, _param(part, "charset"))
            if walker.text is None or not walker.text.strip():
                walker.text = text
        return []

    def header(self, part: email.message.Message, name: str) -> str:
        return _header_str(part, name)

    def names(self, part: email.message.Message) -> tuple[str | None, str | None]:
        return (
            _param(part, "filename", "content-disposition", self.charset),
            _param(part, "name", charset=self.charset),
        )

    def body_text(
        self, walker: TreeWalker[email.message.Message, MimeAttachment],
        part: email.message.Message,
    ) -> str:
        charset = _param(part, "charset")
        text = decode_bytes(_leaf_payload(part), charset)
        trailer = _base64_trailer(part)
        if trailer.strip():
            # A mailing-list footer added in clear after a base64 body: part of the text.
            walker.defect("text after the end of a base64 body")
            text = f"{text.rstrip()}\n\n{decode_bytes(trailer, charset).strip()}\n"
        return text

    def enclosed_subject(self, part: email.message.Message) -> str | None:
        return enclosed_subject(_leaf_payload(part))

    def attachment(
        self, part: email.message.Message, path: str, name: str, ctype: str,
        content_id: str | None,
    ) -> MimeAttachment:
        payload = _leaf_payload(part)
        return MimeAttachment(
            part_id=path, name=name, content_type=ctype, size=len(payload),
            content_id=content_id, payload=payload,
        )

    def after_attachment(
        self, walker: TreeWalker[email.message.Message, MimeAttachment],
        part: email.message.Message, path: str, ctype: str, item: MimeAttachment,
    ) -> None:
        if ctype in TNEF_TYPES or item.name.lower() == "winmail.dat":
            _unpack_tnef(walker, item.payload, path)


def _unpack_tnef(
    walker: TreeWalker[email.message.Message, MimeAttachment], payload: bytes, path: str
) -> None:
    """The files inside an Outlook ``winmail.dat`` become attachments too (ids
    ``{path}.0.{n}``: position 0 never names a MIME part); the TNEF part itself is kept."""
    files = tnef_files(payload)
    if files is None:
        return  # the optional ``tnef`` extra is not installed: the blob stays as it is
    if not files and payload:
        walker.defect("TNEF attachment without files (or unreadable)")
    for index, (name, data) in enumerate(files, start=1):
        ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        walker.attachments.append(
            MimeAttachment(
                part_id=f"{path}.0.{index}",
                name=attachment_name(name, None, ctype, len(walker.attachments) + 1),
                content_type=ctype.lower(),
                size=len(data),
                payload=data,
            )
        )


def _declared_charset(message: email.message.Message) -> str | None:
    """The charset the message declares for its text: the top-level ``charset`` parameter, else
    the first one of its parts (the first 100). Raw 8-bit header bytes that are not UTF-8 are
    read with it (mailers write headers in the charset of the body they send)."""
    try:
        for index, part in enumerate(message.walk()):
            if index >= 100:
                break
            value = part.get_param("charset")
            if isinstance(value, tuple):
                value = value[2]
            if isinstance(value, str) and _codec_for(value) is not None:
                return value
    except Exception:
        return None
    return None


#: Content types of Outlook's TNEF (``winmail.dat``).
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


def tnef_available() -> bool:
    """Whether the optional ``tnef`` extra (tnefparse) is installed."""
    try:
        import tnefparse  # noqa: F401
    except ImportError:
        return False
    return True


def tnef_files(data: bytes) -> list[tuple[str, bytes]] | None:
    """The files inside a TNEF blob (Outlook's ``winmail.dat``) as ``(name, bytes)``, in order.

    None when the optional ``tnef`` extra (tnefparse) is not installed; ``[]`` when the blob
    holds no file or cannot be read (a damaged blob never raises)."""
    try:
        from tnefparse import TNEF
    except ImportError:
        return None
    try:
        tnef = TNEF(data, do_checksum=False)
        found: list[tuple[str, bytes]] = []
        for item in tnef.attachments:
            content = item.data if isinstance(item.data, bytes) else b""
            name = item.long_filename()
            if isinstance(name, bytes):
                name = decode_bytes(name, None)
            found.append((_CONTROL.sub("", str(name or "")).strip(), content))
    except Exception:  # a damaged blob (tnefparse raises on truncated objects): no files
        return []
    return found


def enclosed_subject(payload: bytes) -> str | None:
    """The decoded ``Subject`` of an attached message's bytes (None when it has none).

    Only the first 64 KiB are parsed: the headers are all that is needed."""
    if not payload:
        return None
    try:
        inner = email.message_from_bytes(payload[:65536], policy=_POLICY)
        subject = inner.get("subject")
    except Exception:
        return None
    if subject is None:
        return None
    return decode_header_value(_as_text(subject))


def parse_mime(raw: bytes) -> ParsedMime:
    """Parse raw RFC 5322 bytes with the stdlib ``email`` package; never raises on malformed input
    (missing boundaries, bad encodings, unknown charsets, broken folding).

    The ``compat32`` policy is used: it keeps header values as sent (the modern policy raises
    on some malformed headers when they are read) and never decodes behind our back, so every
    decoding decision is taken here with the fallbacks above.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark would turn the first header into body text
    if not raw:
        return ParsedMime()
    raw = repair_header_block(raw)
    try:
        message = email.message_from_bytes(raw, policy=_POLICY)
    except Exception as exc:  # e.g. a nesting too deep for the stdlib parser's recursion
        return ParsedMime(
            text=decode_bytes(raw, None),
            defects=[f"message could not be parsed ({type(exc).__name__}); kept as text"],
        )

    headers: list[Header] = []
    raw_headers: list[Header] = []
    try:
        items = list(message.raw_items())
    except Exception:
        items = []
    charset = _declared_charset(message)
    for name, value in items:
        clean_name = _as_text(name).strip()
        if not clean_name:
            continue
        raw_value = unfold(_as_text(getattr(value, "original", value), charset))
        raw_headers.append(Header(name=clean_name, value=raw_value))
        headers.append(Header(name=clean_name, value=decode_header_value(raw_value)))

    walker = TreeWalker(_MimeView(charset))
    try:
        walker.walk(message)
        walker.finish_inline()
    except Exception as exc:  # keep what was found; a hostile part must not lose the mail
        _log.debug("MIME walk stopped early: %s", type(exc).__name__)
        walker.defect(f"MIME walk stopped early ({type(exc).__name__}); parts read are kept")
    return ParsedMime(
        headers=headers,
        text=walker.text,
        html=walker.html if walker.html and walker.html.strip() else None,
        attachments=walker.attachments,
        raw_headers=raw_headers,
        defects=walker.defects,
    )


# --------------------------------------------------------------------------------------------
# EmailMessage assembly


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
    raw_headers: Sequence[Header] | None = None,
    defects: Sequence[str] | None = None,
) -> EmailMessage:
    """Assemble the EmailMessage. Fields not given explicitly come from ``headers`` (subject,
    from, to, cc, bcc, reply-to, Message-ID, In-Reply-To, References). ``body.text`` is ``text``,
    or derived from ``html`` by :func:`mailparity.html.html_to_text` when there is no text.

    ``raw_headers`` (optional, e.g. :attr:`ParsedMime.raw_headers`): the headers with their
    encoded-words still encoded; address fields are parsed from them when given. Several headers
    of one address field (two ``To:``) are read together; ``From`` is the first mailbox of the
    first ``From``. References are collected from every ``References`` header, in order.
    ``defects``: what the reader met and worked around (:attr:`ParsedMime.defects`).
    """
    header_list = [
        item if isinstance(item, Header) else Header.model_validate(item) for item in headers
    ]
    # Each header's name lower-cased once: every field below looks headers up by name.
    named = [(item.name.lower(), item.value) for item in header_list]
    address_named = (
        [(item.name.lower(), item.value) for item in raw_headers] if raw_headers else named
    )

    def values(source: list[tuple[str, str]], name: str) -> list[str]:
        return [value for key, value in source if key == name]

    def addresses(name: str) -> list[EmailAddress]:
        found: list[EmailAddress] = []
        for value in values(address_named, name):
            found.extend(parse_address_list(value))
        return found

    if subject is None:
        subjects = values(named, "subject")
        subject = decode_header_value(subjects[0]) if subjects else ""
    if from_ is None:
        senders = values(address_named, "from")
        from_ = (parse_address(senders[0]) if senders else None) or EmailAddress(email="")
    if message_id is None:
        ids = [mid for value in values(named, "message-id") for mid in parse_msg_ids(value)]
        message_id = ids[0] if ids else None
    else:
        ids = parse_msg_ids(message_id)
        message_id = ids[0] if ids else None
    in_reply_to_ids = [
        mid for value in values(named, "in-reply-to") for mid in parse_msg_ids(value)
    ]
    references = [mid for value in values(named, "references") for mid in parse_msg_ids(value)]

    body_text = text if text is not None else ""
    if html and not body_text.strip():
        body_text = html_to_text(html)

    message = EmailMessage(
        id=id,
        provider=provider,
        provider_id=provider_id,
        tenant=tenant,
        mailbox=mailbox,
        received_at=received_at,
        subject=subject,
        to=to if to is not None else addresses("to"),
        cc=cc if cc is not None else addresses("cc"),
        bcc=bcc if bcc is not None else addresses("bcc"),
        reply_to=reply_to if reply_to is not None else addresses("reply-to"),
        body=EmailBody(text=body_text, html=html),
        attachments=list(attachments),
        thread_id=thread_id,
        message_id=message_id,
        in_reply_to=in_reply_to_ids[0] if in_reply_to_ids else None,
        references=references,
        headers=header_list,
        defects=list(defects or ()),
    )
    # Assigned after construction: the constructor keyword is the alias "from".
    message.from_ = from_
    return message


def message_from_mime(
    raw: bytes,
    *,
    id: str,
    provider: str,
    provider_id: str,
    tenant: str,
    mailbox: str,
    received_at: datetime,
    thread_id: str | None = None,
    attachment_id_prefix: str = "",
) -> EmailMessage:
    """Parse raw MIME and assemble its EmailMessage in one step (attachment ids are
    ``attachment_id_prefix + part_id``)."""
    parsed = parse_mime(raw)
    return build_email_message(
        id=id,
        provider=provider,
        provider_id=provider_id,
        tenant=tenant,
        mailbox=mailbox,
        received_at=received_at,
        headers=parsed.headers,
        raw_headers=parsed.raw_headers,
        text=parsed.text,
        html=parsed.html,
        attachments=[item.to_model(attachment_id_prefix) for item in parsed.attachments],
        thread_id=thread_id,
        defects=parsed.defects,
    )
