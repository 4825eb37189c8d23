"""Every real-world message of the shared corpus (corpus/mime, see its SOURCES.md) goes through
parse_mime + build_email_message; interesting files get specific assertions.

The corpus is read in place (never copied into the project); the tests skip without it.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailparity.mime import build_email_message, message_from_mime, parse_mime
from mailparity.models import EmailMessage

RECEIVED = datetime(2026, 1, 1, tzinfo=timezone.utc)

#: What each corpus file exercises (from SOURCES.md and from reading the files).
EXERCISES: dict[str, str] = {
    "cpython__msg_10.eml": "7bit, QP with mixed-case token, base64 parts, part without CTE",
    "cpython__msg_12.eml": "nested multipart, empty parts in many charsets (no content at all)",
    "cpython__msg_35.eml": "no blank line between headers and body",
    "cpython__msg_41.eml": "missing boundary parameter",
    "cpython__msg_44.eml": "duplicate attachment filenames",
    "cpython__msg_45.eml": "multipart/signed (PGP)",
    "cpython__msg_46.eml": "top-level message/rfc822",
    "cpython__msg_47.eml": "part headers run into the body",
    "enmime__bad-header-wrap.eml": "broken header folding",
    "enmime__html-mime-bad-charset-inline.eml": "related cid image, garbage charset",
    "enmime__malformed-multiple-address-header-values.eml": "two mailboxes without comma",
    "enmime__mime-bad-content-transfer-encoding.eml": "unknown CTE",
    "enmime__multipart-wo-boundary.eml": "multipart/report without boundary",
    "enmime__qp-utf8-header.eml": "encoded-words mixing ISO-8859-1 and UTF-8",
    "enmime__unk-charset-part.eml": "unknown charset 'fakescii'",
    "flanker__bounce_office365.eml": "Office 365 NDR, threading headers",
    "flanker__disposition-notification.eml": "MDN read receipt",
    "flanker__enclosed-global.eml": "message/global attachment",
    "flanker__enclosed.eml": "message/rfc822 attachment (multipart inside)",
    "flanker__false-multipart.eml": "multipart without boundary or parts (no content)",
    "flanker__from-encoding.eml": "raw Latin-1 byte in From",
    "flanker__mailformed-headers.eml": "raw 8-bit headers, mangled boundary, bad base64",
    "flanker__missing-final-boundary.eml": "missing closing boundary",
    "flanker__no-ctype.eml": "no Content-Type",
    "flanker__signed.eml": "S/MIME multipart/signed",
    "mime4j__base64encoded-rfc822message-nested.eml": "base64-encoded message/rfc822",
    "mime4j__boundary-name-clash.eml": "inner boundary prefix of the outer",
    "mime4j__russian-headers.eml": "KOI8-R encoded-words in name= and filename=",
    "mimekit__feedback-report.eml": "ARF report, UTF-8 BOM before the headers",
    "mimekit__japanese.eml": "ISO-2022-JP subject split mid escape sequence",
    "mimekit__multipart-related-mhtml.eml": "related image before the html root, Content-Location",
    "mimekit__ukr.eml": "TNEF winmail.dat, koi8-r text",
    "nodemailparser__nodemailer.eml": "mixed > alternative > related, cid images, RFC 2231",
    "phpmimeparser__issue149.eml": "iso-8859-8-i encoded-word",
    "phpmimeparser__issue212.eml": "windows-1250 Q encoded-word, iso-2022-jp parts",
    "phpmimeparser__issue230.eml": "x-mac-cyrillic text and html",
    "phpmimeparser__m0018.eml": "ks_c_5601-1987 encoded-word filename",
    "phpmimeparser__m0020.eml": "text/calendar meeting request",
    "phpmimeparser__m0023.eml": "RFC 2047 examples in address headers",
    "rubymail__attachment_message_rfc822.eml": "forwarded message/rfc822 with PDF",
    "rubymail__attachment_message_rfc822_inline_image.eml": "rfc822 with related cid image",
    "rubymail__attachment_nonascii_filename.eml": "raw 8-bit filename",
    "rubymail__attachment_with_base64_encoded_name.eml": "encoded-word in filename",
    "rubymail__attachment_with_quoted_filename.eml": "RFC 2231 filename*= and encoded name",
    "rubymail__content_transfer_encoding_qp_with_space.eml": "'quoted-printable ' token",
    "rubymail__content_transfer_encoding_x_uuencode.eml": "x-uuencode attachment, Content-ID",
    "rubymail__empty_in_reply_to.eml": "empty In-Reply-To (body truncated: no content)",
    "rubymail__encoding_madness.eml": "8-bit Reply-To name with empty <>",
    "rubymail__invalid_subject_characters.eml": "windows-1252 word in quotes, raw Latin-1",
    "rubymail__japanese_attachment_long_name.eml": "RFC 2231 continuation, Japanese filename",
    "rubymail__japanese_iso_2022.eml": "ISO-2022-JP body",
    "rubymail__japanese_shift_jis.eml": "8bit Shift_JIS body",
    "rubymail__multipart_report_multiple_status.eml": "DSN with several status blocks",
    "rubymail__multiple_content_types.eml": "duplicate Content-Type",
    "rubymail__multiple_references_with_one_invalid.eml": "two References, one broken",
    "rubymail__raw_email_bad_time.eml": "windows-1251 encoded-words, bad Date",
    "rubymail__raw_email_with_nested_attachment.eml": "S/MIME over multipart/mixed",
    "rubymail__raw_email_with_partially_quoted_subject.eml": "mbox From line, EUC-KR body",
    "rubymail__two_from_in_message.eml": "duplicate From",
    "rubymail__utf8_headers.eml": "RFC 6532 raw UTF-8 headers",
    "sisimai__lhost-amazonworkmail-01.eml": "bounce with rfc822 and TNEF",
    "sisimai__lhost-office365-13.eml": "ISO-2022-JP encoded-words, Japanese html",
    "sisimai__lhost-outlook-01.eml": "unicode-1-1-utf-7 charset",
    "sisimai__lhost-postfix-09.eml": "Shift_JIS bytes labelled ISO-2022-JP",
    "spamscope__mail_malformed_2.eml": "malformed bounce",
    "spamscope__mail_test_12.eml": "UTF-8 body labelled GB2312",
    "spamscope__mail_test_9.eml": "GB2312 spam",
    "stalwart__malformed_002.eml": "malformed structure",
    "stalwart__malformed_016.eml": "over-long unterminated boundaries",
    "stalwart__malformed_021.eml": "related part before the root",
    "stalwart__thirdparty_000.eml": "binary junk in a text body",
    "stalwart__thirdparty_005.eml": "several text parts",
    "stalwart__thirdparty_019.eml": "plaintext + (HTML + embedded image) + attachment",
    "zbateson__invalid-charset.eml": "invalid charset on the body",
}

#: Files in which nothing at all carries content (empty parts or truncated bodies).
NO_CONTENT = {
    "cpython__msg_12.eml",
    "flanker__false-multipart.eml",
    "rubymail__empty_in_reply_to.eml",
}


def _corpus_files() -> list[str]:
    return sorted(EXERCISES)


def _message(corpus_dir: Path, name: str) -> EmailMessage:
    raw = (corpus_dir / "mime" / name).read_bytes()
    return message_from_mime(
        raw,
        id=name,
        provider="microsoft",
        provider_id="prov",
        tenant="tenant",
        mailbox="box@example.com",
        received_at=RECEIVED,
    )


def test_the_table_covers_every_corpus_file(corpus_dir: Path) -> None:
    on_disk = sorted(path.name for path in (corpus_dir / "mime").glob("*.eml"))
    assert on_disk == _corpus_files()
    assert len(on_disk) == 74


@pytest.mark.parametrize("name", _corpus_files())
def test_every_corpus_message_normalizes(corpus_dir: Path, name: str) -> None:
    raw = (corpus_dir / "mime" / name).read_bytes()
    parsed = parse_mime(raw)
    message = build_email_message(
        id=name,
        provider="google",
        provider_id="prov",
        tenant="tenant",
        mailbox="box@example.com",
        received_at=RECEIVED,
        headers=parsed.headers,
        raw_headers=parsed.raw_headers,
        text=parsed.text,
        html=parsed.html,
        attachments=[item.to_model() for item in parsed.attachments],
    )
    if name not in NO_CONTENT:
        assert message.body.text.strip() or message.attachments, name
    # Invariants of the normalized form, whatever the input.
    for header in message.headers:
        assert "\n" not in header.value
        assert "\r" not in header.value
        assert not any("\udc80" <= ch <= "\udcff" for ch in header.value)
    assert not any("\udc80" <= ch <= "\udcff" for ch in message.body.text)
    for item in parsed.attachments:
        assert item.size == len(item.payload)
        assert item.name
    ids = [a.id for a in message.attachments]
    assert len(ids) == len(set(ids))
    # Stable part ids for the same bytes.
    assert [a.part_id for a in parse_mime(raw).attachments] == [
        a.part_id for a in parsed.attachments
    ]
    dumped = message.model_dump(mode="json", by_alias=True)
    assert dumped["from"]["email"] == message.from_.email
    assert isinstance(dumped["body"]["text"], str)


# ----------------------------------------------------------------------------------------------
# Specific files


def test_japanese_subject_split_mid_escape_sequence(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "mimekit__japanese.eml")
    assert message.subject == "日本語メールテスト (testing Japanese emails)"
    assert "日本語が" in message.body.text


def test_koi8r_encoded_word_filenames(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "mime4j__russian-headers.eml")
    assert [a.name for a in message.attachments] == ["Список.doc"]


def test_cid_inline_image_with_garbage_charset(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "enmime__html-mime-bad-charset-inline.eml")
    assert message.body.text == "Test of text section"
    assert message.body.html is not None
    [image] = message.attachments
    assert image.name == "favicon.png"
    assert image.content_id == "8B8481A2-25CA-4886-9B5A-8EB9115DD064@skynet"
    assert image.is_inline is True
    assert f"cid:{image.content_id}" in message.body.html


def test_nodemailer_nested_structure(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "nodemailparser__nodemailer.eml")
    assert message.subject == "Nodemailer is unicode friendly ✔ (1476358788189)"
    assert message.body.text == "Hello to myself!"
    assert message.body.html is not None
    summary = [(a.id, a.name, a.content_id, a.is_inline) for a in message.attachments]
    assert summary == [
        ("1.3.2", "image.png", "note@example.com", True),
        ("1.3.3", "nyan cat ✔.gif", "nyan@example.com", True),
        ("2", "notes.txt", None, False),
    ]
    assert [(a.email, a.name) for a in message.to] == [
        ("andris+123@kreata.ee", "Andris Reinman"),
        ("andris.reinman@gmail.com", None),
    ]


def test_message_rfc822_attachment(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "rubymail__attachment_message_rfc822.eml")
    assert message.body.text.startswith("This is the first part.")
    [forwarded] = message.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.name == "ForwardedMessage.eml"
    assert forwarded.size > 1000


def test_top_level_message_rfc822(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "cpython__msg_46.eml")
    [enclosed] = message.attachments
    assert (enclosed.id, enclosed.name, enclosed.content_type) == (
        "1",
        "GroupwiseForwardingTest.eml",
        "message/rfc822",
    )


def test_base64_encoded_rfc822_is_named_from_its_decoded_subject(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "mime4j__base64encoded-rfc822message-nested.eml")
    [enclosed] = message.attachments
    assert enclosed.name == "a simple rfc822 message encoded in a base64 body.eml"


def test_missing_final_boundary_still_yields_the_body(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "flanker__missing-final-boundary.eml")
    assert message.body.text == "Some body"
    assert [a.email for a in message.to] == ["bob@example.com", "hithere@example.com"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cpython__msg_41.eml", "Blah blah blah\n"),
        ("enmime__multipart-wo-boundary.eml", "I'm  multipart message without boundary\n"),
    ],
)
def test_multipart_without_boundary(corpus_dir: Path, name: str, text: str) -> None:
    assert _message(corpus_dir, name).body.text == text


def test_tnef_winmail_dat_is_an_attachment(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "mimekit__ukr.eml")
    assert message.body.text.startswith("шостий")  # koi8-r text part
    [tnef] = message.attachments
    assert (tnef.name, tnef.content_type) == ("winmail.dat", "application/ms-tnef")
    assert tnef.size > 0


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        (
            "phpmimeparser__issue212.eml",
            "Automatyczna odpowiedź: Piotrze, test z 6 miesięcy nauki ciągle na Ciebie czeka",
        ),
        ("phpmimeparser__issue149.eml", "מענה 'אני לא נמצא': Invoice 02722027"),
        ("sisimai__lhost-office365-13.eml", "Undeliverable: にゃーん"),
        ("enmime__qp-utf8-header.eml", "MIME UTF8 Test ¢ More Text"),
        ("rubymail__utf8_headers.eml", "Säying Hello"),
        (
            "rubymail__invalid_subject_characters.eml",
            "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro",
        ),
        (
            "rubymail__raw_email_with_partially_quoted_subject.eml",
            'Re: Test: "漢字" mid "漢字" tail',
        ),
        ("rubymail__japanese_iso_2022.eml", "まみむめも"),
        ("mimekit__feedback-report.eml", "FW: Earn money"),  # BOM before the first header
    ],
)
def test_subjects_decoded(corpus_dir: Path, name: str, subject: str) -> None:
    assert _message(corpus_dir, name).subject == subject


def test_ks_c_5601_attachment_name(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "phpmimeparser__m0018.eml")
    names = [a.name for a in message.attachments]
    assert names[0] == "사진.JPG"


def test_rfc2231_continuation_japanese_filename(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "rubymail__japanese_attachment_long_name.eml")
    assert [a.name for a in message.attachments] == ["かきくけこ" * 5 + ".txt"]


def test_rfc2231_and_encoded_word_filenames(corpus_dir: Path) -> None:
    quoted = _message(corpus_dir, "rubymail__attachment_with_quoted_filename.eml")
    assert [a.name for a in quoted.attachments] == ["Eelanalüüsi päring.jpg"]
    encoded = _message(corpus_dir, "rubymail__attachment_with_base64_encoded_name.eml")
    assert [a.name for a in encoded.attachments] == ["This is a test.pdf"]


def test_raw_8bit_names(corpus_dir: Path) -> None:
    assert _message(corpus_dir, "flanker__from-encoding.eml").from_.name == "Ingo Lütkebohle"
    invalid = _message(corpus_dir, "zbateson__invalid-charset.eml")
    assert [(a.email, a.name) for a in invalid.to] == [
        ("schmuergen@example.com", "Jürgen Schmürgen")
    ]
    utf8 = _message(corpus_dir, "rubymail__utf8_headers.eml")
    assert (utf8.from_.email, utf8.from_.name) == ("jdöe@mächine.example", "Jöhn Doe")


def test_two_mailboxes_without_comma_in_from(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "enmime__malformed-multiple-address-header-values.eml")
    assert (message.from_.email, message.from_.name) == ("bob@extern", "Bob Dunite")
    assert message.body.text.startswith("Simple text.")
    assert [a.name for a in message.attachments] == ["test.pdf", "test.txt"]


def test_threading_headers(corpus_dir: Path) -> None:
    refs = _message(corpus_dir, "rubymail__multiple_references_with_one_invalid.eml")
    assert refs.references == ["<foo@bar.net>", "<baz@bar.net>"]
    bounce = _message(corpus_dir, "flanker__bounce_office365.eml")
    assert bounce.in_reply_to == "<20171013111011.20866.254C2F3A4D7AA526@ninomail.com>"
    assert bounce.message_id is not None
    assert bounce.message_id.startswith("<2ab24bbc-")
    empty = _message(corpus_dir, "rubymail__empty_in_reply_to.eml")
    assert empty.in_reply_to is None


def test_from_comes_from_the_top_level_headers(corpus_dir: Path) -> None:
    # The second From of this file sits in a body part: it must not replace the sender.
    message = _message(corpus_dir, "rubymail__two_from_in_message.eml")
    assert (message.from_.email, message.from_.name) == ("tester1@test.com", "Tester 1")
    assert message.header_values("From") == ["Tester 1 <tester1@test.com>"]


def test_mislabelled_charsets_in_bodies(corpus_dir: Path) -> None:
    gb = _message(corpus_dir, "spamscope__mail_test_12.eml")
    assert gb.body.text.startswith("你好\uff01我公司可代开各类增值税发票")
    sjis = _message(corpus_dir, "rubymail__japanese_shift_jis.eml")
    assert sjis.body.text.startswith("あいうえお")
    korean = _message(corpus_dir, "rubymail__raw_email_with_partially_quoted_subject.eml")
    assert "제 이름은 Jamis입니다." in korean.body.text
    mac = _message(corpus_dir, "phpmimeparser__issue230.eml")
    assert "\ufffd" not in mac.body.text


def test_shift_jis_labelled_iso_2022_jp_encoded_word(corpus_dir: Path) -> None:
    # The returned message's Subject sits inside text/rfc822-headers: its bytes lie about the
    # charset; the decoder's family fallback must still read it.
    parsed = parse_mime((corpus_dir / "mime" / "sisimai__lhost-postfix-09.eml").read_bytes())
    [headers_part] = [a for a in parsed.attachments if a.content_type == "text/rfc822-headers"]
    inner = parse_mime(headers_part.payload)
    subject = next(h.value for h in inner.headers if h.name.lower() == "subject")
    assert subject.startswith("■緊急値下げ\uff01\uff01■")


def test_mhtml_related_image_before_root_is_inline(corpus_dir: Path) -> None:
    message = _message(corpus_dir, "mimekit__multipart-related-mhtml.eml")
    assert message.body.html is not None
    [image] = message.attachments
    assert image.content_type == "image/png"
    assert image.is_inline is True


def test_signed_messages_keep_the_content_and_list_the_signature(corpus_dir: Path) -> None:
    pgp = _message(corpus_dir, "cpython__msg_45.eml")
    assert pgp.body.text == "This is the signed contents.\n"
    assert [a.content_type for a in pgp.attachments] == ["application/pgp-signature"]
    smime = _message(corpus_dir, "rubymail__raw_email_with_nested_attachment.eml")
    assert smime.body.text.startswith("Here is a test of an attachment via email.")
    assert [a.name for a in smime.attachments] == ["truncated.png", "smime.p7s"]


def test_tnef_blob_wrapped_in_a_generated_message(corpus_dir: Path) -> None:
    blob = (corpus_dir / "mime" / "tnef" / "tnefparse__one-file.tnef").read_bytes()
    assert blob[:4] == b"\x78\x9f\x3e\x22"  # the TNEF signature
    encoded = base64.encodebytes(blob)
    raw = (
        b"From: Outlook User <user@example.com>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: TNEF wrapped\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="tnef-boundary"\r\n\r\n'
        b"--tnef-boundary\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"See the attachment.\r\n"
        b"--tnef-boundary\r\n"
        b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="winmail.dat"\r\n\r\n'
        + encoded.replace(b"\n", b"\r\n")
        + b"--tnef-boundary--\r\n"
    )
    parsed = parse_mime(raw)
    assert parsed.text == "See the attachment."
    tnef, inside = parsed.attachments  # the blob is kept; its file is unpacked beside it
    assert (inside.part_id, inside.name, inside.size) == ("2.0.1", "AUTHORS", 244)
    assert (tnef.part_id, tnef.name) == ("2", "winmail.dat")
    assert tnef.content_type == "application/ms-tnef"
    assert tnef.payload == blob
    assert tnef.size == len(blob)
