"""Unit tests of the shared normalizer (mailparity.mime), hostile input included."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailparity.mime import (
    MimeAttachment,
    ParsedMime,
    attachment_name,
    build_email_message,
    decode_bytes,
    decode_header_value,
    message_from_mime,
    normalize_content_id,
    parse_address,
    parse_address_list,
    parse_mime,
    parse_msg_ids,
    unfold,
)
from mailparity.models import Attachment, EmailAddress, EmailMessage, Header

RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

# ----------------------------------------------------------------------------------------------
# unfold


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\r\n b", "a b"),
        ("a\r\n\t\tb", "a b"),
        ("a\n    b\n c", "a b c"),
        ("  padded  ", "padded"),
        ("broken\r\nfold", "broken fold"),  # continuation without white space
        ("bare\rcr", "bare cr"),
        ("", ""),
        ("no fold", "no fold"),
    ],
)
def test_unfold(value: str, expected: str) -> None:
    assert unfold(value) == expected


# ----------------------------------------------------------------------------------------------
# decode_header_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?B?w6lsw6h2ZQ==?=", "élève"),
        ("=?UTF-8?Q?caf=C3=A9_cr=C3=A8me?=", "café crème"),
        ("=?iso-8859-1?q?this=20is=20some=20text?=", "this is some text"),
        # RFC 2047 section 8 examples: white space between adjacent words disappears.
        ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
        ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
        ("=?windows-1250?Q?odpowied=9F?=", "odpowiedź"),
        ("=?koi8-r?B?89DJ08/LLmRvYw==?=", "Список.doc"),
        ("=?ks_c_5601-1987?B?u+fB+A==?=", "사진"),
        ("=?iso-8859-8-i?B?7vLw5A==?=", "מענה"),
        ("=?windows-1251?B?wOLy7uri4A==?=", "Автоква"),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_decode_header_value(value: str, expected: str) -> None:
    assert decode_header_value(value) == expected


def test_iso_2022_jp_split_across_words_mid_escape_sequence() -> None:
    # The encoder split the JIS escape sequence between the two words; only joining the bytes
    # of adjacent words of one charset before decoding gives the right text.
    text = "日本語メールテスト"
    raw = text.encode("iso2022_jp")
    first, second = raw[:7], raw[7:]
    value = (
        f"=?ISO-2022-JP?B?{base64.b64encode(first).decode()}?=\r\n"
        f" =?ISO-2022-JP?B?{base64.b64encode(second).decode()}?="
    )
    assert decode_header_value(value) == text


def test_utf8_multibyte_split_across_words() -> None:
    raw = "ü€".encode()
    value = (
        f"=?utf-8?B?{base64.b64encode(raw[:1]).decode()}?= "
        f"=?utf-8?B?{base64.b64encode(raw[1:]).decode()}?="
    )
    assert decode_header_value(value) == "ü€"


def test_mixed_charsets_in_one_header() -> None:
    value = "=?ISO-8859-1?Q?Andr=E9?= Pirard =?utf-8?q?=c2=a2?= end"
    assert decode_header_value(value) == "André Pirard ¢ end"


def test_raw_8bit_bytes_utf8_then_windows_1252() -> None:
    assert decode_header_value("Grüße".encode()) == "Grüße"
    assert decode_header_value("L\xfctkebohle".encode("latin-1")) == "Lütkebohle"
    assert decode_header_value(b"\x93quoted\x94") == "\u201cquoted\u201d"


def test_surrogate_escaped_text_from_the_email_package_is_decoded() -> None:
    value = "J\udcc3\udcbcrgen".encode("utf-8", "surrogateescape").decode(
        "ascii", "surrogateescape"
    )
    assert decode_header_value(value) == "Jürgen"


def test_unknown_charset_in_encoded_word_falls_back() -> None:
    assert decode_header_value("=?x-unknown?Q?caf=C3=A9?=") == "café"
    assert decode_header_value("=?fakescii?B?aGVsbG8=?=") == "hello"


def test_broken_encoded_words_never_raise() -> None:
    assert decode_header_value("=?utf-8?B?###?=") == ""
    assert decode_header_value("=?utf-8?B?aGVsbG8?=") == "hello"  # missing padding
    assert decode_header_value("=?utf-8?Q?=ZZ=4?=") == "=ZZ=4"
    assert decode_header_value("=?utf-8?X?abc?=") == "=?utf-8?X?abc?="
    assert decode_header_value("=?utf-8?Q?") == "=?utf-8?Q?"


def test_encoded_control_characters_do_not_break_the_line() -> None:
    assert decode_header_value("=?utf-8?Q?a=0D=0Ab=00c?=") == "a  bc"


def test_dangerous_python_codecs_are_not_used_as_charsets() -> None:
    # "unicode_escape" would turn \\n into a newline; it is not a mail charset.
    assert decode_header_value("=?unicode_escape?Q?a\\x41?=") == "a\\x41"


# ----------------------------------------------------------------------------------------------
# decode_bytes


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("héllo".encode("latin-1"), "iso-8859-1", "héllo"),
        ("héllo".encode(), "us-ascii", "héllo"),  # lying label: valid UTF-8 wins
        ("héllo".encode(), "iso-8859-1", "héllo"),
        ("пример".encode("koi8-r"), "koi8-r", "пример"),
        ("пример".encode("mac_cyrillic"), "x-mac-cyrillic", "пример"),
        ("사진".encode("cp949"), "ks_c_5601-1987", "사진"),
        ("שלום".encode("iso-8859-8"), "iso-8859-8-i", "שלום"),
        ("źdźbło".encode("cp1250"), "windows-1250", "źdźbło"),
        ("日本".encode("iso2022_jp"), "iso-2022-jp", "日本"),
        ("日本".encode("shift_jis"), "iso-2022-jp", "日本"),  # mislabelled Shift_JIS
        ("日本".encode("euc_jp"), "euc-jp", "日本"),
        (b"abc", '"UTF-8"', "abc"),
        ("naïve".encode(), "charset", "naïve"),  # garbage label
        ("naïve".encode("cp1252"), "fakescii", "naïve"),
        ("\u201cq\u201d".encode("cp1252"), None, "\u201cq\u201d"),
        (b"\x81", "utf-8", "\x81"),  # undefined everywhere: Latin-1 decodes anything
        # Bytes windows-1252 leaves undefined: East Asian text under a wrong label.
        ("メール".encode("shift_jis"), "us-ascii", "メール"),
        # ISO-8859-1 and US-ASCII labels are read as windows-1252 (quotes, dashes).
        (b"\x93q\x94 \x96 x", "iso-8859-1", "\u201cq\u201d \u2013 x"),
        (b"it\x92s", "us-ascii", "it\u2019s"),
        # ISO-2022-JP with NEC extensions (circled digits), the CP50220 family.
        (b"\x1b$B-!-\"\x1b(B", "iso-2022-jp", "\u2460\u2461"),
        ("\ufeffbom".encode(), "utf-8", "bom"),
        (b"", "utf-8", ""),
        ("a+b".encode("utf-7"), "unicode-1-1-utf-7", "a+b"),
        ("中文".encode(), "gb2312", "中文"),  # UTF-8 labelled GB2312
        ("中文".encode("gb2312"), "gb2312", "中文"),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str) -> None:
    assert decode_bytes(data, charset) == expected


@pytest.mark.parametrize(
    "charset", ["rot13", "base64", "hex", "zlib", "idna", "raw_unicode_escape", "x" * 500, "\x00"]
)
def test_decode_bytes_ignores_non_charset_codecs(charset: str) -> None:
    assert decode_bytes(b"plain \\x41", charset) == "plain \\x41"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([None, "utf-8", "koi8-r", "iso-2022-jp", "bogus"]))
def test_decode_bytes_never_raises(data: bytes, charset: str | None) -> None:
    assert isinstance(decode_bytes(data, charset), str)


# ----------------------------------------------------------------------------------------------
# addresses


def test_address_list_with_names_quotes_and_comments() -> None:
    value = '"Doe, John" <John.Doe@Example.COM>, jane@example.org (Jane Roe), <bare@example.net>'
    assert parse_address_list(value) == [
        EmailAddress(email="John.Doe@Example.COM", name="Doe, John"),
        EmailAddress(email="jane@example.org", name="Jane Roe"),
        EmailAddress(email="bare@example.net"),
    ]


def test_address_case_is_kept() -> None:
    assert parse_address("MiXeD@Example.Com").email == "MiXeD@Example.Com"  # type: ignore[union-attr]


def test_encoded_display_names_are_decoded_after_parsing() -> None:
    # The encoded name holds a comma: it must stay one mailbox.
    value = "=?utf-8?Q?M=C3=BCller=2C_Hans?= <hans@example.de>, =?ISO-8859-1?Q?Andr=E9?= <a@b.c>"
    assert parse_address_list(value) == [
        EmailAddress(email="hans@example.de", name="Müller, Hans"),
        EmailAddress(email="a@b.c", name="André"),
    ]


def test_already_decoded_name_with_comma_stays_one_mailbox() -> None:
    assert parse_address_list("Müller, Hans <hans@example.de>, x@y.z") == [
        EmailAddress(email="hans@example.de", name="Müller, Hans"),
        EmailAddress(email="x@y.z"),
    ]


def test_groups_are_flattened() -> None:
    value = "Team: a@example.com, \"B\" <b@example.com>;, c@example.com, undisclosed-recipients:;"
    assert [a.email for a in parse_address_list(value)] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]


def test_two_mailboxes_without_comma() -> None:
    value = "Bob Dunite <bob@extern> Bobby Dunite <bobby@extern>"
    assert parse_address_list(value) == [
        EmailAddress(email="bob@extern", name="Bob Dunite"),
        EmailAddress(email="bobby@extern", name="Bobby Dunite"),
    ]
    assert parse_address_list("a@x.com b@y.com") == [
        EmailAddress(email="a@x.com"),
        EmailAddress(email="b@y.com"),
    ]


def test_encoded_word_inside_quotes_and_raw_utf8_names() -> None:
    assert parse_address('"=?windows-1252?B?Rm9ybWHn428=?=" <info@example.com>') == EmailAddress(
        email="info@example.com", name="Formação"
    )
    assert parse_address("Jöhn Doe <jd@example.com>") == EmailAddress(
        email="jd@example.com", name="Jöhn Doe"
    )


def test_folded_address_header_and_escaped_quotes() -> None:
    value = '"A \\"quoted\\" name"\r\n <a@example.com>,\r\n\t(comment) b@example.com'
    assert parse_address_list(value) == [
        EmailAddress(email="a@example.com", name='A "quoted" name'),
        EmailAddress(email="b@example.com", name="comment"),
    ]


def test_name_equal_to_address_is_no_name() -> None:
    assert parse_address("'bob@x.com' <bob@x.com>") == EmailAddress(email="bob@x.com")


def test_null_address_keeps_its_display_name() -> None:
    # Bounces come from "MAILER-DAEMON <>": the name is all there is of the sender.
    assert parse_address_list('"Nobody" <>, real@example.com, <>') == [
        EmailAddress(email="", name="Nobody"),
        EmailAddress(email="real@example.com"),
    ]
    assert parse_address("MAILER-DAEMON <>") == EmailAddress(email="", name="MAILER-DAEMON")


def test_source_route_and_mailto_removed() -> None:
    assert parse_address("<@relay.example:user@example.com>") == EmailAddress(
        email="user@example.com"
    )
    assert parse_address("<mailto:user@example.com>") == EmailAddress(email="user@example.com")


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", ",,,", "<", '"unterminated', "(((", ";;:", "Just A Name", "<<>>", ":;"],
)
def test_malformed_address_lists_never_raise(value: str | None) -> None:
    assert parse_address_list(value) == []
    assert parse_address(value) is None


def test_bare_local_mailbox_is_kept() -> None:
    assert parse_address_list("root") == [EmailAddress(email="root")]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('<>"(),;:@\\ ab.=?Q_\r\n')), max_size=80))
def test_address_fuzz_never_raises(value: str) -> None:
    for address in parse_address_list(value):
        assert address.email or address.name  # the null address only with a display name


# ----------------------------------------------------------------------------------------------
# msg-ids and Content-IDs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b>", ["<a@b>"]),
        ("<a@b> <c@d>\r\n <e@f>", ["<a@b>", "<c@d>", "<e@f>"]),
        ("<a@b>,<c@d>", ["<a@b>", "<c@d>"]),
        ("a@b", ["<a@b>"]),
        ("a@b c@d", ["<a@b>", "<c@d>"]),
        ("<a@b> (comment <x@y>)", ["<a@b>"]),
        ('"Your message of Mon" <a@b>', ["<a@b>"]),
        ("<broken\r\n @folded.example>", ["<broken@folded.example>"]),
        ("<no-at-sign>", ["<no-at-sign>"]),
        ("single-token", ["<single-token>"]),
        ("two tokens", []),
        ("", []),
        (None, []),
        ("<>", []),
        ("   ", []),
    ],
)
def test_parse_msg_ids(value: str | None, expected: list[str]) -> None:
    assert parse_msg_ids(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<part1.abc@example.com>", "part1.abc@example.com"),
        ("  <image001.png@01D>  ", "image001.png@01D"),
        ("plain-id", "plain-id"),
        ("cid:logo@x", "logo@x"),
        ("<a b>", "ab"),
        ("<>", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_content_id(value: str | None, expected: str | None) -> None:
    assert normalize_content_id(value) == expected


# ----------------------------------------------------------------------------------------------
# attachment names


@pytest.mark.parametrize(
    ("filename", "name", "ctype", "expected"),
    [
        ("report.pdf", "other.pdf", "application/pdf", "report.pdf"),
        (None, "from-ctype.pdf", "application/pdf", "from-ctype.pdf"),
        ("=?koi8-r?B?89DJ08/LLmRvYw==?=", None, "application/msword", "Список.doc"),
        ("=?UTF-8?B?VGhpcyBpcyBhIHRlc3QucGRm?=", None, "application/pdf", "This is a test.pdf"),
        ("C:\\Users\\me\\secret\\plan.xlsx", None, "application/octet-stream", "plan.xlsx"),
        ("../../etc/passwd", None, "text/plain", "passwd"),
        ("  ", None, "image/png", "attachment-3.png"),
        (None, None, "message/rfc822", "attachment-3.eml"),
        (None, None, "application/ms-tnef", "attachment-3.dat"),
        (None, None, "image/jpeg", "attachment-3.jpg"),
        (None, None, "text/calendar", "attachment-3.ics"),
        (None, None, "application/x-unheard-of", "attachment-3.bin"),
        (None, None, "", "attachment-3.bin"),
        ("..", None, "text/plain", "attachment-3.txt"),
        ("tab\there\x00.txt", None, "text/plain", "tab here.txt"),
    ],
)
def test_attachment_name(filename: str | None, name: str | None, ctype: str, expected: str) -> None:
    assert attachment_name(filename, name, ctype, 3) == expected


# ----------------------------------------------------------------------------------------------
# parse_mime

ALTERNATIVE_WITH_RELATED = b"""From: =?utf-8?Q?Jos=C3=A9?= <jose@example.com>
To: a@example.com, "B, Bee" <b@example.com>
Subject: =?utf-8?B?UmU6IMOpdMOp?=
Message-ID: <m1@example.com>
In-Reply-To: <m0@example.com>
References: <r1@example.com>
 <m0@example.com>
X-Dup: one
X-Dup: two
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 text
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>Hello <img src="cid:logo@x"></p>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel
Content-Type: image/gif
Content-ID: <unused@x>
Content-Transfer-Encoding: base64

R0lGODlh
--rel--
--alt--
--outer
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--outer
Content-Type: message/rfc822

From: inner@example.com
Subject: Inner subject

inner body
--outer
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Transfer-Encoding: base64

eJ8+IgAA
--outer--
"""


def test_parse_mime_structure() -> None:
    parsed = parse_mime(ALTERNATIVE_WITH_RELATED)
    assert parsed.text == "Café text"
    assert parsed.html == '<p>Hello <img src="cid:logo@x"></p>'
    by_id = {a.part_id: a for a in parsed.attachments}
    assert list(by_id) == ["1.2.2", "1.2.3", "2", "3", "4"]
    logo = by_id["1.2.2"]
    assert (logo.content_type, logo.content_id, logo.is_inline) == ("image/png", "logo@x", True)
    assert logo.payload == b"\x89PNG\r\n\x1a\n"
    assert logo.size == 8
    assert logo.name == "attachment-1.png"
    unused = by_id["1.2.3"]
    assert unused.content_id == "unused@x"
    assert unused.is_inline is False
    pdf = by_id["2"]
    assert (pdf.name, pdf.payload, pdf.size) == ("résumé.pdf", b"%PDF-1.4", 8)
    rfc822 = by_id["3"]
    assert rfc822.content_type == "message/rfc822"
    assert rfc822.name == "Inner subject.eml"
    assert b"inner body" in rfc822.payload
    assert rfc822.size == len(rfc822.payload)
    tnef = by_id["4"]
    assert (tnef.name, tnef.content_type) == ("winmail.dat", "application/ms-tnef")
    assert tnef.payload.startswith(b"\x78\x9f\x3e\x22")


def test_parse_mime_headers_in_order_with_duplicates_decoded() -> None:
    parsed = parse_mime(ALTERNATIVE_WITH_RELATED)
    names = [h.name for h in parsed.headers]
    assert names[:9] == [
        "From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "X-Dup", "X-Dup",
        "MIME-Version",
    ]
    assert parsed.headers[2].value == "Re: été"
    assert [h.value for h in parsed.headers if h.name == "X-Dup"] == ["one", "two"]
    assert parsed.headers[5].value == "<r1@example.com> <m0@example.com>"  # unfolded
    assert parsed.raw_headers[0].value == "=?utf-8?Q?Jos=C3=A9?= <jose@example.com>"


def test_part_ids_are_stable_for_the_same_bytes() -> None:
    first = [(a.part_id, a.name) for a in parse_mime(ALTERNATIVE_WITH_RELATED).attachments]
    second = [(a.part_id, a.name) for a in parse_mime(ALTERNATIVE_WITH_RELATED).attachments]
    assert first == second


def test_single_part_message() -> None:
    parsed = parse_mime(b"Subject: hi\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n"
                        + "привет".encode("koi8-r"))
    assert parsed.text == "привет"
    assert parsed.html is None
    assert parsed.attachments == []


def test_single_part_attachment_message_gets_part_id_1() -> None:
    raw = (
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n"
    )
    parsed = parse_mime(raw)
    assert [(a.part_id, a.name, a.payload) for a in parsed.attachments] == [
        ("1", "a.pdf", b"%PDF")
    ]


def test_inline_disposition_and_related_cid() -> None:
    raw = b"""Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

see picture
--b
Content-Type: image/jpeg; name="photo.jpg"
Content-Disposition: inline; filename="photo.jpg"

xx
--b--
"""
    parsed = parse_mime(raw)
    # "inline", but no HTML shows it: an ordinary attachment (the one inline rule).
    assert parsed.attachments[0].is_inline is False
    assert parsed.attachments[0].name == "photo.jpg"


def test_missing_boundary_parameter_recovers_parts() -> None:
    raw = b"""Content-Type: multipart/alternative

--abc
Content-Type: text/plain

recovered text
--abc
Content-Type: text/html

<b>recovered</b>
--abc--
"""
    parsed = parse_mime(raw)
    assert parsed.text == "recovered text"
    assert parsed.html == "<b>recovered</b>"


def test_missing_boundary_without_any_boundary_line_gives_text() -> None:
    parsed = parse_mime(b"Content-Type: multipart/report;\n\nI am the body\n")
    assert parsed.text == "I am the body\n"


def test_missing_final_boundary_keeps_the_body() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nbody\n"
    assert parse_mime(raw).text == "body"


def test_bad_transfer_encodings() -> None:
    raw = b"""Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable\x20

a=3Db=C3=A9
--x
Content-Type: application/octet-stream; name=a.bin
Content-Transfer-Encoding: base64

!!!not base64 at all!!!
--x
Content-Type: application/octet-stream; name=b.bin
Content-Transfer-Encoding: x-made-up

raw stays raw
--x--
"""
    parsed = parse_mime(raw)
    assert parsed.text == "a=bé"  # the stray space after the CTE token is tolerated
    assert parsed.attachments[1].payload == b"raw stays raw"
    assert isinstance(parsed.attachments[0].payload, bytes)


def test_uuencoded_attachment() -> None:
    import binascii

    line = binascii.b2a_uu(b"hello uu")
    raw = (
        b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nbody\n"
        b"--x\nContent-Type: application/octet-stream; name=u.bin\n"
        b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 u.bin\n" + line + b"`\nend\n--x--\n"
    )
    parsed = parse_mime(raw)
    assert parsed.attachments[0].payload == b"hello uu"


def test_lying_charset_on_body_and_unknown_charset() -> None:
    raw = "Content-Type: text/plain; charset=us-ascii\n\nnaïve".encode()
    assert parse_mime(raw).text == "naïve"
    raw = b"Content-Type: text/plain; charset=fakescii\n\nna\xefve"
    assert parse_mime(raw).text == "naïve"


def test_raw_8bit_header_and_filename() -> None:
    raw = (
        "From: Jürgen <j@example.de>\nSubject: Grüße\nContent-Type: multipart/mixed; boundary=x"
        "\n\n--x\nContent-Type: text/plain\n\nhi\n--x\nContent-Type: text/plain\n"
        'Content-Disposition: attachment; filename="cięście.txt"\n\nfile\n--x--\n'
    ).encode()
    parsed = parse_mime(raw)
    assert parsed.headers[1].value == "Grüße"
    assert parsed.attachments[0].name == "cięście.txt"
    message = message_from_mime(
        raw, id="1", provider="google", provider_id="p", tenant="t", mailbox="m",
        received_at=RECEIVED,
    )
    assert message.from_ == EmailAddress(email="j@example.de", name="Jürgen")


def test_alternative_only_renderings_are_not_attachments() -> None:
    raw = b"""Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

plain
--a
Content-Type: text/watch-html

<b>watch</b>
--a
Content-Type: text/html

<b>html</b>
--a
Content-Type: text/plain

second plain rendering
--a--
"""
    parsed = parse_mime(raw)
    assert (parsed.text, parsed.html, parsed.attachments) == ("plain", "<b>html</b>", [])


def test_later_text_parts_outside_alternative_are_attachments() -> None:
    raw = b"""Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/plain

first

--m
Content-Type: text/plain

second
--m
Content-Type: text/plain


--m--
"""
    parsed = parse_mime(raw)
    assert parsed.text == "first\n"
    assert [(a.part_id, a.name, a.payload) for a in parsed.attachments] == [
        ("2", "attachment-1.txt", b"second")
    ]


def test_empty_first_text_part_is_replaced_by_a_later_one() -> None:
    raw = b"""Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/plain


--m
Content-Type: text/plain

real
--m--
"""
    assert parse_mime(raw).text == "real"


def test_base64_encoded_message_rfc822_is_decoded() -> None:
    inner = b"Subject: Encoded inner\r\nFrom: x@y\r\n\r\nbody\r\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nouter\n"
        b"--m\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(inner)
        + b"--m--\n"
    )
    attachment = parse_mime(raw).attachments[0]
    assert attachment.name == "Encoded inner.eml"
    assert attachment.payload == inner


def test_multipart_related_content_location_is_inline() -> None:
    raw = b"""Content-Type: multipart/related; type="text/html"; boundary=r

--r
Content-Type: image/png
Content-Location: http://example.com/images/pic.png

png
--r
Content-Type: text/html

<img src="http://example.com/images/pic.png">
--r--
"""
    parsed = parse_mime(raw)
    assert parsed.attachments[0].is_inline is True
    assert parsed.attachments[0].name == "pic.png"


def test_utf8_bom_before_headers() -> None:
    parsed = parse_mime(b"\xef\xbb\xbfSubject: bom\n\nbody")
    assert parsed.headers == [Header(name="Subject", value="bom")]
    assert parsed.text == "body"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02",
        b"no headers at all",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b"Content-Type: multipart/mixed; boundary=x\n\n" + b"--x\nContent-Type: multipart/mixed;"
        b" boundary=x\n\n" * 200,
        b"Content-Type: message/rfc822\n\n" * 50,
        b"Content-Type: text/plain; charset=\"\xff\xfe\"\n\n\xff\xfe",
        b"Subject: =?utf-8?B?\xff?=\n: empty name\n\n",
        b"Content-Type: /\nContent-Disposition: ;;;filename*0*=bogus'%ZZ\n\nx",
        b"Content-Type: text/plain; name*=utf-8''%E2%82\nContent-Transfer-Encoding: base64\n\nA",
    ],
)
def test_parse_mime_hostile_input_never_raises(raw: bytes) -> None:
    parsed = parse_mime(raw)
    assert isinstance(parsed, ParsedMime)
    for attachment in parsed.attachments:
        assert attachment.size == len(attachment.payload)


def test_parse_mime_accepts_str_input() -> None:
    assert parse_mime("Subject: s\n\nbody").text == "body"  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_parse_mime_fuzz(raw: bytes) -> None:
    assert isinstance(parse_mime(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n" + raw),
                      ParsedMime)


def test_mime_attachment_to_model_and_repr() -> None:
    item = MimeAttachment(
        part_id="1.2", name="a.png", content_type="image/png", size=3, content_id="c@x",
        is_inline=True, payload=b"abc",
    )
    assert item.to_model("msg1:") == Attachment(
        id="msg1:1.2", name="a.png", content_type="image/png", size=3, content_id="c@x",
        is_inline=True,
    )
    assert "abc" not in repr(item)
    assert ParsedMime(attachments=[item]).attachment("1.2") is item
    assert ParsedMime(attachments=[item]).attachment("9") is None


# ----------------------------------------------------------------------------------------------
# build_email_message


def _build(**overrides: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "id": "m1",
        "provider": "microsoft",
        "provider_id": "p1",
        "tenant": "t1",
        "mailbox": "box@example.com",
        "received_at": RECEIVED,
        "headers": [],
        "text": None,
        "html": None,
        "attachments": [],
    }
    arguments.update(overrides)
    return build_email_message(**arguments)  # type: ignore[arg-type]


def test_build_from_headers() -> None:
    headers = [
        Header(name="From", value="Alice <alice@example.com>"),
        Header(name="from", value="Second <second@example.com>"),
        Header(name="To", value="b@example.com, \"C, See\" <c@example.com>"),
        Header(name="To", value="d@example.com"),
        Header(name="CC", value="cc@example.com"),
        Header(name="Bcc", value="bcc@example.com"),
        Header(name="Reply-To", value="reply@example.com"),
        Header(name="Subject", value="Hello"),
        Header(name="Message-ID", value="m@x"),
        Header(name="In-Reply-To", value="<p1@x> <p2@x>"),
        Header(name="References", value="<r1@x>\r\n <r2@x>, <r3@x>"),
        Header(name="References", value="<r4@x>"),
    ]
    message = _build(headers=headers, text="body", thread_id="conv-1")
    assert message.subject == "Hello"
    assert message.from_ == EmailAddress(email="alice@example.com", name="Alice")
    assert [a.email for a in message.to] == ["b@example.com", "c@example.com", "d@example.com"]
    assert message.to[1].name == "C, See"
    assert [a.email for a in message.cc] == ["cc@example.com"]
    assert [a.email for a in message.bcc] == ["bcc@example.com"]
    assert [a.email for a in message.reply_to] == ["reply@example.com"]
    assert message.message_id == "<m@x>"
    assert message.in_reply_to == "<p1@x>"
    assert message.references == ["<r1@x>", "<r2@x>", "<r3@x>", "<r4@x>"]
    assert message.headers == headers
    assert message.thread_id == "conv-1"
    assert message.header("REFERENCES") == "<r1@x>\r\n <r2@x>, <r3@x>"
    dumped = message.model_dump(mode="json", by_alias=True)
    assert dumped["from"] == {"email": "alice@example.com", "name": "Alice"}
    assert dumped["inReplyTo"] == "<p1@x>"


def test_build_defaults_when_headers_are_absent() -> None:
    message = _build()
    assert message.subject == ""
    assert message.from_ == EmailAddress(email="")
    assert message.to == []
    assert message.reply_to == []
    assert message.message_id is None
    assert message.in_reply_to is None
    assert message.references == []
    assert message.body.text == ""
    assert message.body.html is None


def test_build_explicit_fields_win() -> None:
    message = _build(
        headers=[Header(name="Subject", value="header"), Header(name="From", value="h@x")],
        subject="explicit",
        from_=EmailAddress(email="e@x", name="E"),
        to=[EmailAddress(email="t@x")],
        cc=[],
        message_id="no-brackets@x",
    )
    assert message.subject == "explicit"
    assert message.from_.email == "e@x"
    assert [a.email for a in message.to] == ["t@x"]
    assert message.cc == []
    assert message.message_id == "<no-brackets@x>"


def test_build_text_derived_from_html() -> None:
    message = _build(html="<p>Hi&amp;bye</p><script>x()</script>")
    assert message.body.text == "Hi&bye"
    assert message.body.html == "<p>Hi&amp;bye</p><script>x()</script>"
    message = _build(text="  \r\n", html="<div>from html</div>")
    assert message.body.text == "from html"
    message = _build(text="plain wins", html="<div>html</div>")
    assert message.body.text == "plain wins"


def test_build_empty_in_reply_to_and_encoded_subject() -> None:
    message = _build(
        headers=[
            Header(name="In-Reply-To", value=""),
            Header(name="Subject", value="=?utf-8?Q?d=C3=A9j=C3=A0?="),
        ]
    )
    assert message.in_reply_to is None
    assert message.subject == "déjà"


def test_build_received_at_is_utc_and_attachments_kept() -> None:
    local = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    attachment = Attachment(id="a1", name="x.pdf", content_type="application/pdf", size=1)
    message = _build(received_at=local, attachments=iter([attachment]))
    assert message.received_at == RECEIVED
    assert message.attachments == [attachment]


def test_build_rejects_unknown_provider() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        _build(provider="pop3")


def test_message_from_mime_end_to_end() -> None:
    message = message_from_mime(
        ALTERNATIVE_WITH_RELATED, id="g1", provider="google", provider_id="p", tenant="t",
        mailbox="m@example.com", received_at=RECEIVED, thread_id="th", attachment_id_prefix="g1:",
    )
    assert message.subject == "Re: été"
    assert message.from_ == EmailAddress(email="jose@example.com", name="José")
    assert [(a.email, a.name) for a in message.to] == [
        ("a@example.com", None),
        ("b@example.com", "B, Bee"),
    ]
    assert message.message_id == "<m1@example.com>"
    assert message.in_reply_to == "<m0@example.com>"
    assert message.references == ["<r1@example.com>", "<m0@example.com>"]
    assert message.body.text == "Café text"
    assert [a.id for a in message.attachments] == ["g1:1.2.2", "g1:1.2.3", "g1:2", "g1:3", "g1:4"]
    assert message.attachments[0].is_inline
    assert message.attachments[0].content_id == "logo@x"
