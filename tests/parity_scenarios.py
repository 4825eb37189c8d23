"""The parity scenarios: each email described ONCE, as raw RFC 5322 bytes.

``tests/test_parity.py`` delivers every scenario to both provider fakes (which render it the way
Graph and Gmail do), fetches it back through the real adapters and the raw MIME path, and expects
the same :class:`~mailparity.models.EmailMessage`. ``expect`` pins the values the scenario is
about, so that three paths agreeing on a wrong value still fails.

Most scenarios come from :func:`mailparity.testing.builder.build_message`; the two that the
builder cannot express (no ``Date`` header at all, repeated single-instance headers such as two
``To:`` lines) are written out byte for byte.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mailparity.testing.builder import AttachmentSpec, InlineImage, build_message

__all__ = ["SCENARIOS", "SENT_AT", "Scenario"]

#: The Date of every scenario that has one.
SENT_AT = datetime(2026, 2, 27, 9, 30, 15, tzinfo=timezone.utc)

#: A tiny but real PNG (1x1, transparent).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@dataclass(frozen=True)
class Scenario:
    """One email: its raw bytes, whether it carries a Date, and the values it must yield.

    ``expect`` maps an :class:`EmailMessage` attribute (``subject``, ``from_``, ``to``...) or a
    derived key (``attachment_names``, ``header:Name``, ``header_values:Name``, ``text_contains``,
    ``html_contains``) to the expected value; addresses are ``(email, name)`` pairs.
    """

    id: str
    raw: bytes
    has_date: bool = True
    expect: dict[str, Any] = field(default_factory=dict)


def _ids(count: int, stem: str) -> list[str]:
    return [f"<{stem}.{index:03d}.0123456789abcdef@mail.example.org>" for index in range(count)]


_REFERENCES = _ids(6, "thread")

_INNER = build_message(
    from_="Old Sender <old@example.com>",
    to="someone@example.com",
    subject="Original: löschen?",
    text="inner body\n",
    message_id="inner.1@example.com",
    date=SENT_AT,
)

_MANY_TO = [(f"Recipient {index:02d}", f"rcpt{index:02d}@example.com") for index in range(60)]
_MANY_CC = [f"cc{index:02d}@example.net" for index in range(25)]

_HTML_INLINE = (
    "<html><body><p>Logo below:</p><p><img src=\"cid:logo.123@example.com\" alt=\"logo\"></p>"
    "<p>Regards,<br>Support</p></body></html>"
)

_MISSING_DATE = (
    b"From: Nadia Date <nadia@example.com>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: No Date header here\r\n"
    b"Message-ID: <no-date.1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"This message was sent without a Date header.\r\n"
)

_DUPLICATE_HEADERS = (
    b"Received: from mx2.example.net (mx2.example.net [192.0.2.2])\r\n"
    b"\tby mx.example.com with ESMTPS id abc2; Fri, 27 Feb 2026 09:30:17 +0000\r\n"
    b"Received: from mx1.example.net (mx1.example.net [192.0.2.1])\r\n"
    b"\tby mx2.example.net with ESMTP id abc1; Fri, 27 Feb 2026 09:30:16 +0000\r\n"
    b"From: Dup Sender <dup@example.com>\r\n"
    b"To: First <first@example.com>\r\n"
    b"To: second@example.com\r\n"
    b"Subject: Duplicate headers\r\n"
    b"Date: Fri, 27 Feb 2026 09:30:15 +0000\r\n"
    b"Message-ID: <dup.1@example.com>\r\n"
    b"X-Ticket-Tag: alpha\r\n"
    b"X-Ticket-Tag: beta\r\n"
    b"X-Ticket-Tag: =?utf-8?q?gr=C3=BCn?=\r\n"
    b"Comments: first comment\r\n"
    b"Comments: second\r\n"
    b" comment, folded\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"Two To lines, repeated X- headers, two Received.\r\n"
)


_B64_PNG = base64.b64encode(PNG)

#: What Outlook sends: multipart/related without Content-Disposition on the image, an
#: encoded-word file name, ISO-8859-1 quoted-printable HTML, Reply-To with a quoted comma name,
#: In-Reply-To with a trailing comment, References folded with tabs.
_OUTLOOK_RELATED = (
    b'From: "Ortiz, Ana" <ana@example.com>\r\n'
    b"To: support@example.com\r\n"
    b'Reply-To: "Help, Desk" <help@example.com>, other@example.com\r\n'
    b"Subject: =?iso-8859-1?Q?R=E9sum=E9_attached?=\r\n"
    b"Date: Fri, 27 Feb 2026 09:30:15 +0000\r\n"
    b"Message-ID: <outlook.1@example.com>\r\n"
    b"In-Reply-To: <prev.3@example.com> (Ana's message of Thursday)\r\n"
    b"References: <prev.1@example.com>\r\n\t<prev.2@example.com>\r\n\t<prev.3@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/related; boundary="rel"; type="text/html"\r\n'
    b"\r\n"
    b"--rel\r\n"
    b'Content-Type: text/html; charset="iso-8859-1"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b'<html><body><p>Caf=E9 menu <img src=3D"cid:image001.png@01DA0000"></p></body></html>\r\n'
    b"--rel\r\n"
    b'Content-Type: image/png; name="image001.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-ID: <image001.png@01DA0000>\r\n"
    b"\r\n" + _B64_PNG + b"\r\n"
    b"--rel--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="=?utf-8?B?UsOpc3Vtw6kucGRm?="\r\n'
    b'Content-Disposition: attachment; filename="=?utf-8?B?UsOpc3Vtw6kucGRm?="\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--\r\n"
)

#: Outlook and Exchange fold long headers with a TAB; unfolded, CRLF + white space is one space.
_TAB_FOLDED = (
    b"From: =?utf-8?q?Ana_Mar=C3=ADa?=\r\n\t<ana@example.com>\r\n"
    b'To: "Long, Name"\r\n\t<long@example.com>, b@example.com\r\n'
    b"Subject: Outlook folds long subjects\r\n\twith a tab\r\n"
    b"Date: Fri, 27 Feb 2026 09:30:15 +0000\r\n"
    b"Message-ID: <tab.1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"body\r\n"
)

#: An image with a Content-ID that the HTML shows, but sent with Content-Disposition: attachment
#: (some webmail clients do this).
_CID_AS_ATTACHMENT = (
    b"From: web@example.com\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Screenshot\r\n"
    b"Date: Fri, 27 Feb 2026 09:30:15 +0000\r\n"
    b"Message-ID: <cid-att.1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/related; boundary="rel"\r\n'
    b"\r\n"
    b"--rel\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<p>Error shown here: <img src="cid:shot.1@example.com"></p>\r\n'
    b"--rel\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-ID: <shot.1@example.com>\r\n"
    b'Content-Disposition: attachment; filename="screenshot.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + _B64_PNG + b"\r\n"
    b"--rel--\r\n"
)


def _scenarios() -> list[Scenario]:
    return [
        Scenario(
            "plain_text",
            build_message(
                from_="Alice Sender <alice@example.com>",
                to="support@example.com",
                subject="Printer on floor 3 is down",
                text="Hello,\n\nthe printer on floor 3 shows error E-42.\n\nAlice\n",
                message_id="plain.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "subject": "Printer on floor 3 is down",
                "from_": ("alice@example.com", "Alice Sender"),
                "to": [("support@example.com", None)],
                "message_id": "<plain.1@example.com>",
                "text_contains": "error E-42",
                "html": None,
                "attachment_names": [],
            },
        ),
        Scenario(
            "html_only",
            build_message(
                from_="Bob <bob@example.com>",
                to="support@example.com",
                subject="HTML only",
                html=(
                    "<html><head><style>p{color:red}</style></head><body>"
                    "<p>Order <b>#1234</b> is late.</p><p>Thanks &amp; regards</p>"
                    "<script>alert(1)</script></body></html>"
                ),
                message_id="html.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "subject": "HTML only",
                "text_contains": "Thanks & regards",
                "text_excludes": ["alert(1)", "color:red", "<p>"],
                "html_contains": "<b>#1234</b>",
                "attachment_names": [],
            },
        ),
        Scenario(
            "alternative",
            build_message(
                from_="Carol <carol@example.com>",
                to="support@example.com",
                subject="Alternative bodies",
                text="Plain version: VPN keeps dropping.\n",
                html="<p>HTML version: <i>VPN</i> keeps dropping.</p>",
                message_id="alt.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "text_contains": "VPN keeps dropping",
                "html_contains": "<i>VPN</i>",
                "attachment_names": [],
            },
        ),
        Scenario(
            "inline_image",
            build_message(
                from_="Dave <dave@example.com>",
                to="support@example.com",
                subject="Inline logo",
                text="Logo below.\n",
                html=_HTML_INLINE,
                inline_images=[
                    InlineImage("logo.123@example.com", PNG, "image/png", filename="logo.png")
                ],
                message_id="inline.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "attachment_names": ["logo.png"],
                "attachments": [("logo.png", "image/png", "logo.123@example.com", True)],
                "html_contains": "cid:logo.123@example.com",
            },
        ),
        Scenario(
            "inline_image_without_filename",
            build_message(
                from_="Dave <dave@example.com>",
                to="support@example.com",
                subject="Inline logo, no file name",
                html=_HTML_INLINE,
                inline_images=[InlineImage("logo.123@example.com", PNG, "image/png")],
                message_id="inline.2@example.com",
                date=SENT_AT,
            ),
            expect={
                "attachments": [(None, "image/png", "logo.123@example.com", True)],
                "text_contains": "Logo below:",
            },
        ),
        Scenario(
            "attachments",
            build_message(
                from_="Erin <erin@example.com>",
                to="support@example.com",
                subject="Invoices attached",
                text="Two invoices and a log.\n",
                html="<p>Two invoices and a log.</p>",
                attachments=[
                    AttachmentSpec("invoice-2026-02.pdf", PDF, "application/pdf"),
                    AttachmentSpec("Übersicht März.csv", "a;b\n1;ä\n".encode(), "text/csv"),
                    AttachmentSpec("server.log", b"line 1\nline 2\n", "text/plain"),
                ],
                message_id="att.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "attachment_names": ["invoice-2026-02.pdf", "Übersicht März.csv", "server.log"],
                "attachments": [
                    ("invoice-2026-02.pdf", "application/pdf", None, False),
                    ("Übersicht März.csv", "text/csv", None, False),
                    ("server.log", "text/plain", None, False),
                ],
                # The text/plain attachment must not replace or join the body.
                "text_contains": "Two invoices and a log.",
                "text_excludes": ["line 2"],
            },
        ),
        Scenario(
            "reply_threading",
            build_message(
                from_="Frank <frank@example.com>",
                to="support@example.com",
                subject="Re: Ticket #77: laptop battery",
                text="> old text\n\nStill broken.\n",
                in_reply_to=_REFERENCES[-1],
                references=_REFERENCES,
                message_id="reply.7@example.com",
                date=SENT_AT,
            ),
            expect={
                "subject": "Re: Ticket #77: laptop battery",
                "in_reply_to": _REFERENCES[-1],
                "references": _REFERENCES,
                "message_id": "<reply.7@example.com>",
            },
        ),
        Scenario(
            "non_ascii",
            build_message(
                from_=("Jürgen Müller, Büro", "juergen.mueller@example.de"),
                to=[("Zoë Ångström", "zoe@example.com"), ("李小龍", "li@example.cn")],
                cc=[("Ørjan Æsir", "orjan@example.no")],
                subject="Grüße aus Köln \u2013 Störung 🚨 «dringend» 日本語の件名",
                text="Schöne Grüße \u2013 ça va? 你好\n",
                message_id="utf.1@example.de",
                date=SENT_AT,
            ),
            expect={
                "subject": "Grüße aus Köln \u2013 Störung 🚨 «dringend» 日本語の件名",
                "from_": ("juergen.mueller@example.de", "Jürgen Müller, Büro"),
                "to": [("zoe@example.com", "Zoë Ångström"), ("li@example.cn", "李小龍")],
                "cc": [("orjan@example.no", "Ørjan Æsir")],
                "text_contains": "Schöne Grüße \u2013 ça va? 你好",
            },
        ),
        Scenario(
            "many_recipients",
            build_message(
                from_="Grace <grace@example.com>",
                to=_MANY_TO,
                cc=_MANY_CC,
                subject="All hands",
                text="Meeting at 10.\n",
                message_id="many.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "to": [(address, name) for name, address in _MANY_TO],
                "cc": [(address, None) for address in _MANY_CC],
            },
        ),
        Scenario(
            "missing_date",
            _MISSING_DATE,
            has_date=False,
            expect={
                "subject": "No Date header here",
                "from_": ("nadia@example.com", "Nadia Date"),
                "header:Date": None,
                "text_contains": "without a Date header",
            },
        ),
        Scenario(
            "duplicate_headers",
            _DUPLICATE_HEADERS,
            expect={
                "to": [("first@example.com", "First"), ("second@example.com", None)],
                "header_values:Received": [
                    "from mx2.example.net (mx2.example.net [192.0.2.2]) by mx.example.com with"
                    " ESMTPS id abc2; Fri, 27 Feb 2026 09:30:17 +0000",
                    "from mx1.example.net (mx1.example.net [192.0.2.1]) by mx2.example.net with"
                    " ESMTP id abc1; Fri, 27 Feb 2026 09:30:16 +0000",
                ],
                "header_values:X-Ticket-Tag": ["alpha", "beta", "grün"],
                "header_values:Comments": ["first comment", "second comment, folded"],
                "header:x-ticket-tag": "alpha",
            },
        ),
        Scenario(
            "forwarded_message",
            build_message(
                from_="Hana <hana@example.com>",
                to="support@example.com",
                subject="Fwd: see the original",
                text="The original is attached.\n",
                attachments=[AttachmentSpec("original.eml", _INNER, "message/rfc822")],
                message_id="fwd.1@example.com",
                date=SENT_AT,
            ),
            expect={
                "attachments": [("original.eml", "message/rfc822", None, False)],
                "text_contains": "The original is attached.",
                "text_excludes": ["inner body"],
            },
        ),
        Scenario(
            "forwarded_message_without_filename",
            build_message(
                from_="Hana <hana@example.com>",
                to="support@example.com",
                subject="Fwd: see the original",
                text="The original is attached.\n",
                attachments=[AttachmentSpec("original.eml", _INNER, "message/rfc822")],
                message_id="fwd.2@example.com",
                date=SENT_AT,
            ).replace(b'; filename="original.eml"', b""),
            expect={
                # The shared normalizer names an unnamed attached message after its subject.
                "attachments": [("Original_ löschen_.eml", "message/rfc822", None, False)],
            },
        ),
        Scenario(
            "outlook_related_inline",
            _OUTLOOK_RELATED,
            expect={
                "subject": "Résumé attached",
                "from_": ("ana@example.com", "Ortiz, Ana"),
                "reply_to": [("help@example.com", "Help, Desk"), ("other@example.com", None)],
                "in_reply_to": "<prev.3@example.com>",
                "references": [
                    "<prev.1@example.com>", "<prev.2@example.com>", "<prev.3@example.com>"
                ],
                "attachments": [
                    ("image001.png", "image/png", "image001.png@01DA0000", True),
                    ("Résumé.pdf", "application/pdf", None, False),
                ],
                "text_contains": "Café menu",
            },
        ),
        Scenario(
            "tab_folded_headers",
            _TAB_FOLDED,
            expect={
                "subject": "Outlook folds long subjects with a tab",
                "from_": ("ana@example.com", "Ana María"),
                "to": [("long@example.com", "Long, Name"), ("b@example.com", None)],
                "header:Subject": "Outlook folds long subjects with a tab",
            },
        ),
        Scenario(
            "inline_image_sent_as_attachment",
            _CID_AS_ATTACHMENT,
            expect={
                # Shown by the HTML through its Content-ID: inline, whatever the disposition says
                # (the shared normalizer's rule for parts of a multipart/related).
                "attachments": [("screenshot.png", "image/png", "shot.1@example.com", True)],
            },
        ),
    ]


SCENARIOS: list[Scenario] = _scenarios()
