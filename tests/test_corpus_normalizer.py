# ruff: noqa: RUF001 - the real mail below is Chinese and Russian on purpose
"""Every real-world message of the shared corpus (``mime/`` and ``mime-world/``) is read right.

Each message goes through :func:`mailparity.mime.message_from_mime` and is checked against the
standard library's reading and a tolerant scan of its raw header block (``corpus_checks``): no
exception; no header, address, display name, body or attachment lost; nothing left encoded; every
content type a valid MIME type. Then one test per defect class found in real mail, on the corpus
file that showed it and on a hand-made message of the same class (so the rule, not the file, is
what is tested).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from conftest import corpus_files, require_corpus
from corpus_checks import problems, scan_header_names
from mailparity.mime import message_from_mime, parse_mime, repair_content_type
from mailparity.models import EmailAddress, EmailMessage

RECEIVED = datetime(2026, 1, 1, tzinfo=timezone.utc)
FOLDERS = ("mime", "mime-world")
CASES = [(folder, name) for folder in FOLDERS for name in corpus_files(folder)]


def _read(raw: bytes) -> EmailMessage:
    return message_from_mime(
        raw,
        id="m1",
        provider="google",
        provider_id="prov",
        tenant="tenant",
        mailbox="box@example.com",
        received_at=RECEIVED,
    )


def _corpus_message(folder: str, name: str) -> tuple[bytes, EmailMessage]:
    raw = (require_corpus() / folder / name).read_bytes()
    return raw, _read(raw)


@pytest.mark.parametrize(("folder", "name"), CASES, ids=[f"{f}/{n}" for f, n in CASES])
def test_every_corpus_message_is_read_right(folder: str, name: str) -> None:
    raw, message = _corpus_message(folder, name)
    found = problems(raw, message)
    assert not found, f"{folder}/{name}:\n  " + "\n  ".join(found)


def test_the_corpus_is_all_there() -> None:
    root = require_corpus()
    assert len(list((root / "mime").glob("*.eml"))) == 74
    assert len(list((root / "mime-world").glob("*.eml"))) == 213


# ------------------------------------------------------------------------------ the checker


def test_the_checker_finds_lost_headers_and_leftover_encodings() -> None:
    """The checks must fail on a wrong reading, or the corpus test proves nothing."""
    raw = b"From: A <a@x.example>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n"
    good = _read(raw)
    assert problems(raw, good) == []
    lost = good.model_copy(update={"headers": good.headers[:1], "subject": "=?utf-8?q?x?="})
    found = problems(raw, lost)
    assert any("header 'subject' lost" in item for item in found)
    assert any("encoded-word left" in item for item in found)
    nameless = good.model_copy(update={"from_": EmailAddress(email="a@x.example")})
    assert any("display name" in item for item in problems(raw, nameless))


def test_header_scan_accepts_obsolete_white_space_and_stops_at_a_boundary() -> None:
    raw = b"From  : a@x\r\nbroken line\r\nTo: b@x\r\n--boundary\r\nContent-Type: x/y\r\n\r\n"
    assert scan_header_names(raw) == ["from", "to"]


# ------------------------------------------------------------------------------ defect classes


def test_continuation_that_lost_its_indent_keeps_every_later_header() -> None:
    raw = (
        b"Received: from a (HELO b)\n"
        b"by localhost with SMTP; 19 Nov 2014 08:46:08 -0000\n"
        b"From: Ann <ann@example.com>\n"
        b"Subject: still here\n"
        b"Content-Type: text/plain; charset=utf-8\n\n"
        b"body\n"
    )
    message = _read(raw)
    assert message.subject == "still here"
    assert message.from_ == EmailAddress(email="ann@example.com", name="Ann")
    assert message.header("Received") == (
        "from a (HELO b) by localhost with SMTP; 19 Nov 2014 08:46:08 -0000"
    )
    assert message.body.text == "body\n"


def test_stray_text_line_in_the_headers_is_read_as_a_continuation() -> None:
    raw = (
        b"Received-SPF: softfail\r\n"
        b"quite Delivered-To: x@example.com\r\n"
        b"From: b@example.com\r\n"
        b"Subject: kept\r\n\r\nhello\r\n"
    )
    message = _read(raw)
    assert (message.subject, message.from_.email, message.body.text) == (
        "kept", "b@example.com", "hello\r\n"
    )


def test_text_without_any_header_after_it_starts_the_body() -> None:
    raw = b"From: a@example.com\nSubject: s\nno blank line before this body\nsecond line\n"
    message = _read(raw)
    assert message.subject == "s"
    assert message.body.text == "no blank line before this body\nsecond line\n"


def test_obsolete_white_space_before_the_colon() -> None:
    raw = (
        b"From  : John Doe <jdoe@machine.example>\r\n"
        b"To    : Mary Smith\r\n  \r\n          <mary@example.net>\r\n"
        b"Subject     : Saying Hello\r\n\r\nThis is a message just to say hello.\r\n"
    )
    message = _read(raw)
    assert message.subject == "Saying Hello"
    assert message.from_ == EmailAddress(email="jdoe@machine.example", name="John Doe")
    assert message.to == [EmailAddress(email="mary@example.net", name="Mary Smith")]


def test_white_space_line_before_a_boundary_ends_the_headers() -> None:
    raw = (
        b"Subject: t\n"
        b'Content-Type: multipart/mixed; boundary="b1"\n'
        b" \n"
        b"--b1\nContent-Type: text/plain\n\nhello\n--b1--\n"
    )
    assert _read(raw).body.text == "hello"


@pytest.mark.parametrize(
    ("name", "subject", "sender"),
    [
        ("phpmimeparser__issue84.eml", "Re: [PHP-DEV] [RFC] Remove PHP 4 Constructors",
         "tyra3l@gmail.com"),
        ("rubymail__plain_emails_raw_email_incorrect_header.eml",
         "Stop adware/spyware once and for all.", "xxx@xxx.xxx"),
        ("rubymail__rfc2822_example13.eml", "Saying Hello", "jdoe@machine.example"),
    ],
)
def test_malformed_header_lines_in_the_corpus(name: str, subject: str, sender: str) -> None:
    _, message = _corpus_message("mime-world", name)
    assert message.subject == subject
    assert "".join(message.from_.email.split()) == sender


def test_base64_with_a_list_footer_decodes_only_the_base64() -> None:
    body = "台灣 big5 text".encode("big5")
    raw = (
        b"Subject: x\nContent-Type: text/plain; charset=big5\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(body)
        + b"\n_______________________________________________\nA-list mailing list\n"
    )
    message = _read(raw)
    assert message.body.text.startswith("台灣 big5 text")
    assert message.body.text.rstrip().endswith("A-list mailing list")  # the footer is kept
    assert message.defects == ["text after the end of a base64 body"]


def test_base64_with_stray_characters_and_padded_blocks() -> None:
    data = b"first block" + b"second"
    encoded = base64.b64encode(b"first block") + b"\n" + base64.b64encode(b"second") + b"\n"
    raw = b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    parsed = parse_mime(raw + encoded)
    assert parsed.attachments[0].payload == data
    noisy = base64.b64encode(b"0123456789" * 6)
    noisy = noisy[:20] + b"!" + noisy[20:] + b"\n"
    assert parse_mime(raw + noisy).attachments[0].payload == b"0123456789" * 6


def test_big5_base64_corpus_message() -> None:
    _, message = _corpus_message("mime-world", "spamassassin__nice_cjk_big5-base64.1.eml")
    assert message.subject.startswith("[SLAT-talk] 鉅靡6月17日新片又到")
    assert message.body.html is not None
    assert "<title>鉅靡網站</title>" in message.body.html


def test_raw_8bit_headers_are_read_with_the_declared_charset() -> None:
    _, message = _corpus_message("mime-world", "spamassassin__nice_cjk_gb2312.1.eml")
    assert message.subject.startswith("全新原装进口，送货上门")
    assert message.from_.name == "台湾鑫龙商贸集团公司"
    raw = (
        "Subject: Привет\nFrom: Иван <ivan@example.ru>\n"
        "Content-Type: text/plain; charset=koi8-r\n\nтекст\n"
    ).encode("koi8-r")
    message = _read(raw)
    assert (message.subject, message.from_.name, message.body.text) == (
        "Привет", "Иван", "текст\n"
    )


def test_iso_2022_jp_with_microsoft_extensions() -> None:
    _, message = _corpus_message("mime-world", "phpmimeparser__issue116.eml")
    assert message.subject == "ЖД№41 от 28.09.2016"
    circled = base64.b64encode(b"\x1b$B-!-\"\x1b(B").decode()
    raw = f"Subject: =?ISO-2022-JP?B?{circled}?=\n\nx\n".encode()
    assert _read(raw).subject == "①②"


def test_content_type_without_semicolon_or_with_junk() -> None:
    _, message = _corpus_message("mime-world", "sisimai__bsd_lhost-x1-02.eml")
    assert message.body.text.startswith("The original message was received")
    assert all("\n" not in item.content_type for item in message.attachments)
    assert repair_content_type('text/plain\n   charset="iso-2022-jp"') == (
        'text/plain; charset="iso-2022-jp"'
    )
    assert repair_content_type("text/html junk; charset=utf-8") == "text/html; charset=utf-8"
    assert repair_content_type('multipart/mixed boundary="a b" x=1') == (
        'multipart/mixed; boundary="a b"; x=1'
    )
    assert repair_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"


def test_multipart_whose_parameters_lack_the_semicolon_is_split() -> None:
    raw = (
        b"Content-Type: multipart/mixed\n boundary=\"xyz\"\n\n"
        b"--xyz\nContent-Type: text/plain\n\nfirst\n"
        b"--xyz\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--xyz--\n"
    )
    message = _read(raw)
    assert message.body.text == "first"
    assert [(a.name, a.content_type) for a in message.attachments] == [
        ("a.pdf", "application/pdf")
    ]
    # The header shows what was sent; the parser worked on the repair.
    assert message.header("Content-Type") == 'multipart/mixed boundary="xyz"'


def test_boundary_folded_across_lines() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="Apple-Mail\r\n =_42"\r\n\r\n'
        b"--Apple-Mail =_42\r\nContent-Type: text/plain\r\n\r\none\r\n"
        b"--Apple-Mail =_42\r\nContent-Type: image/png; name=p.png\r\n\r\nPNG\r\n"
        b"--Apple-Mail =_42--\r\n"
    )
    message = _read(raw)
    assert message.body.text == "one"
    assert [a.name for a in message.attachments] == ["p.png"]


def test_bounce_sender_keeps_its_display_name() -> None:
    _, message = _corpus_message("mime-world", "sisimai__bsd_lhost-dragonfly-01.eml")
    assert message.from_ == EmailAddress(email="", name="MAILER-DAEMON")


def test_latin1_and_ascii_labels_are_read_as_windows_1252() -> None:
    raw = (
        b"Subject: =?iso-8859-1?q?=93quoted=94?=\n"
        b"Content-Type: text/plain; charset=us-ascii\n\n"
        b"It\x92s \x96 done\n"
    )
    message = _read(raw)
    assert message.subject == "\u201cquoted\u201d"
    assert message.body.text == "It\u2019s \u2013 done\n"


def test_too_deep_multipart_keeps_what_was_read_and_says_so() -> None:
    depth = 60
    head = b"".join(
        f'--b{level}\nContent-Type: multipart/mixed; boundary="b{level + 1}"\n\n'.encode()
        for level in range(depth)
    )
    tail = b"".join(f"--b{level}--\n".encode() for level in reversed(range(depth)))
    raw = (
        b'Subject: deep\nContent-Type: multipart/mixed; boundary="b0"\n\n'
        + head
        + f"--b{depth}\nContent-Type: text/plain\n\ndeep text\n".encode()
        + f"--b{depth}\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n".encode()
        + f"--b{depth}--\n".encode()
        + tail
    )
    message = _read(raw)
    assert message.body.text == "deep text"
    assert [a.name for a in message.attachments] == ["a.pdf"]
    assert message.defects == ["multipart nested deeper than 40 levels"]


def test_well_formed_mail_has_no_defects() -> None:
    raw = b"Subject: ok\nContent-Type: text/plain\n\nfine\n"
    assert _read(raw).defects == []


# ------------------------------------------------------------------------------ TNEF


def _wrapped_tnef(blob: bytes) -> bytes:
    encoded = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    return (
        b"From: Outlook User <user@example.com>\r\nTo: support@example.com\r\n"
        b"Subject: TNEF\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="t"\r\n\r\n'
        b"--t\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
        b'--t\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--t--\r\n"
    )


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("tnefparse__one-file.tnef", [("AUTHORS", "application/octet-stream", 244)]),
        ("tnefparse__unicode-mapi-attr.tnef", [("example.dat", "application/octet-stream", 1024)]),
        ("tnefparse__body.tnef", []),
    ],
)
def test_tnef_files_become_attachments_and_the_blob_is_kept(
    name: str, files: list[tuple[str, str, int]]
) -> None:
    blob = (require_corpus() / "mime" / "tnef" / name).read_bytes()
    parsed = parse_mime(_wrapped_tnef(blob))
    winmail, *inside = parsed.attachments
    assert (winmail.name, winmail.payload) == ("winmail.dat", blob)
    assert [(a.name, a.content_type, a.size) for a in inside] == files
    assert [a.part_id for a in inside] == [f"2.0.{n}" for n in range(1, len(files) + 1)]
    assert all(len(a.payload) == a.size for a in inside)


def test_damaged_tnef_keeps_the_blob_and_says_so() -> None:
    blob = (require_corpus() / "mime" / "tnef" / "tnefparse__one-file.tnef").read_bytes()
    message = _read(_wrapped_tnef(blob[:40]))
    assert [a.name for a in message.attachments] == ["winmail.dat"]
    assert message.defects == ["TNEF attachment without files (or unreadable)"]


def test_tnef_files_are_the_same_on_both_gmail_paths() -> None:
    from test_parity import fetched_raw

    blob = (require_corpus() / "mime" / "tnef" / "tnefparse__one-file.tnef").read_bytes()
    result = fetched_raw(_wrapped_tnef(blob))
    for path in ("gmail_full", "gmail_raw", "mime"):
        assert [a.name for a in result.messages[path].attachments] == ["winmail.dat", "AUTHORS"]
        assert result.contents[path] == result.contents["mime"]
    assert len(result.contents["mime"][1]) == 244
