"""The three parity rules the providers' own shapes could break, tested on those shapes.

The parity suite drives the provider fakes; these tests feed the adapters the shapes the fakes do
not produce but a provider may: Graph's ``subject`` property keeping a folded header's TAB, Graph
marking a ``cid:``-referenced image ``isInline: false`` without a ``contentId``, Graph naming an
attached message after its subject, and Gmail listing an attached message as a leaf without its
headers. Each must still give what the raw MIME path gives.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import responses
from responses import matchers

from gmail_payloads import BASE, b64url, full_from_mime, raw_resource
from graph_payloads import GRAPH, config, message, store_with, tokens
from mailparity import mime
from mailparity.models import GmailProviderConfig, OAuthTokens
from mailparity.providers.gmail import GmailAdapter
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.stores.memory import InMemoryStore

ME = f"{GRAPH}/me"
HTML_WITH_CID = '<p>Error shown here: <img src="cid:shot.1@example.com"></p>'

# ------------------------------------------------------------------------------ shared helpers


def test_message_attachment_name_sanitizes_caps_and_adds_eml() -> None:
    assert mime.message_attachment_name("Original: löschen?", "message/rfc822", 1) == (
        "Original_ löschen_.eml"
    )
    assert mime.message_attachment_name('a/b\\c*d"e<f>g|h', "message/rfc822", 1) == (
        "a_b_c_d_e_f_g_h.eml"
    )
    assert mime.message_attachment_name(" .hidden. ", "message/global", 2) == "hidden.eml"
    assert mime.message_attachment_name("folded\r\n\tsubject", "message/rfc822", 1) == (
        "folded subject.eml"
    )
    long_name = mime.message_attachment_name("x" * 400, "message/rfc822", 1)
    assert long_name == "x" * 150 + ".eml"
    # Not an RFC 822 message: the stem alone (no misleading extension).
    assert mime.message_attachment_name("Report", "message/partial", 1) == "Report"


@pytest.mark.parametrize("subject", [None, "", "   ", " ... ", "\x00\x01"])
def test_message_attachment_name_without_subject_is_generated(subject: str | None) -> None:
    assert mime.message_attachment_name(subject, "message/rfc822", 3) == "attachment-3.eml"


def test_clean_header_text_normalises_white_space_but_never_decodes_again() -> None:
    assert mime.clean_header_text("Outlook folds\twith a tab") == "Outlook folds with a tab"
    assert mime.clean_header_text("  two\r\n lines\x07 ") == "two lines"
    assert mime.clean_header_text("=?utf-8?q?literal?=") == "=?utf-8?q?literal?="
    assert mime.clean_header_text(None) == ""


def test_is_inline_part_rule() -> None:
    html = '<IMG SRC="CID:Logo@X"><a href="https://x/doc.png"><div style="background: url(a.gif)">'
    # Shown by the HTML: inline, whatever the disposition or the structure says.
    assert mime.is_inline_part(declared_inline=False, content_id="<logo@x>", html=html)
    assert mime.is_inline_part(
        declared_inline=False, content_id="logo@x", html=html, related=False
    )
    assert mime.is_inline_part(
        declared_inline=False, content_id=None, html=html, location="https://x/doc.png"
    )
    assert mime.is_inline_part(declared_inline=False, content_id=None, html=html, location="A.gif")
    # Claimed inline but never shown: an ordinary attachment.
    assert not mime.is_inline_part(declared_inline=True, content_id=None, html=None)
    assert not mime.is_inline_part(declared_inline=True, content_id="other@x", html=html)
    assert not mime.is_inline_part(declared_inline=False, content_id="logo", html=html)
    assert not mime.is_inline_part(declared_inline=False, content_id="logo@x", html=None)
    assert not mime.is_inline_part(declared_inline=False, content_id=None, html=html, location=" ")


def test_html_references_are_read_once_and_match_exactly() -> None:
    refs = mime.HtmlReferences('<img src="cid:a%40b"><img src=\'cid:c@d\'> cid:e@f.')
    assert refs.cids == {"a@b", "a%40b", "c@d", "e@f"}
    assert refs.shows("<A@B>")
    assert refs.shows("e@f")
    assert not refs.shows("e")
    assert not mime.HtmlReferences(None).shows("a@b", "x.png")


# ------------------------------------------------------------------------------ Graph


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock


def _graph(clock: Any) -> MicrosoftGraphAdapter:
    cfg = config()
    return MicrosoftGraphAdapter(
        cfg, store=store_with(cfg, tokens(clock())), clock=clock, sleep=clock.sleep
    )


def _file(att_id: str, name: str, ctype: str, *, inline: bool = False) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": att_id,
        "name": name,
        "contentType": ctype,
        "size": 70,
        "isInline": inline,
    }


def test_graph_subject_comes_from_the_subject_header(rsps: Any, clock: Any) -> None:
    headers = [{"name": "Subject", "value": "Outlook folds long subjects\r\n\twith a tab"}]
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(subject="Outlook folds long subjects\twith a tab",
                     internetMessageHeaders=headers),
    )
    email = _graph(clock).get_message_details("AAMkMSG1=")
    assert email.subject == "Outlook folds long subjects with a tab"
    assert email.header("Subject") == email.subject


def test_graph_subject_property_is_normalised_when_headers_have_none(
    rsps: Any, clock: Any
) -> None:
    headers = [{"name": "Message-ID", "value": "<abc@example.com>"}]
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(subject=" Tabbed\tsubject\r\n line ", internetMessageHeaders=headers),
    )
    assert _graph(clock).get_message_details("AAMkMSG1=").subject == "Tabbed subject line"


def test_graph_subject_absent_everywhere_is_empty(rsps: Any, clock: Any) -> None:
    headers = [{"name": "Message-ID", "value": "<abc@example.com>"}]
    rsps.get(
        f"{ME}/messages/AAMkMSG1=", json=message(subject=None, internetMessageHeaders=headers)
    )
    assert _graph(clock).get_message_details("AAMkMSG1=").subject == ""


def test_graph_item_attachment_named_like_the_raw_path(rsps: Any, clock: Any) -> None:
    items = [
        {"@odata.type": "#microsoft.graph.itemAttachment", "id": "I1",
         "name": "Original: löschen?", "contentType": None, "size": 900, "isInline": False},
        {"@odata.type": "#microsoft.graph.itemAttachment", "id": "I2",
         "name": "saved.EML", "contentType": None, "size": 900, "isInline": False},
        {"@odata.type": "#microsoft.graph.itemAttachment", "id": "I3",
         "name": None, "contentType": None, "size": 900, "isInline": False},
        _file("F4", "Original: löschen?", "application/pdf"),
    ]
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message(attachments=items))
    email = _graph(clock).get_message_details("AAMkMSG1=")
    assert [(a.name, a.content_type) for a in email.attachments] == [
        ("Original_ löschen_.eml", "message/rfc822"),
        ("saved.EML", "message/rfc822"),
        ("attachment-3.eml", "message/rfc822"),
        # A file attachment's name is its file name: left alone.
        ("Original: löschen?", "application/pdf"),
    ]
    assert len(rsps.calls) == 1


def test_graph_cid_referenced_attachment_becomes_inline(rsps: Any, clock: Any) -> None:
    pdf = _file("PDF1", "report.pdf", "application/pdf")
    shot = _file("IMG1", "screenshot.png", "image/png")  # isInline false, as Exchange may say
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(body={"contentType": "html", "content": HTML_WITH_CID},
                     attachments=[pdf, shot]),
    )
    rsps.get(
        f"{ME}/messages/AAMkMSG1=/attachments/IMG1",
        json={**shot, "contentId": "<shot.1@example.com>", "contentBytes": "AA=="},
    )
    # No route for PDF1: the image resolves the only reference, so the PDF is never downloaded.
    email = _graph(clock).get_message_details("AAMkMSG1=")
    by_name = {a.name: a for a in email.attachments}
    assert (by_name["screenshot.png"].content_id, by_name["screenshot.png"].is_inline) == (
        "shot.1@example.com", True
    )
    assert (by_name["report.pdf"].content_id, by_name["report.pdf"].is_inline) == (None, False)
    assert [a.name for a in email.attachments] == ["report.pdf", "screenshot.png"]
    assert len(rsps.calls) == 2


def test_graph_without_cid_references_is_one_get(rsps: Any, clock: Any) -> None:
    items = [_file("PDF1", "report.pdf", "application/pdf"), _file("IMG1", "a.png", "image/png")]
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message(attachments=items))
    email = _graph(clock).get_message_details("AAMkMSG1=")
    assert [(a.content_id, a.is_inline) for a in email.attachments] == [(None, False)] * 2
    assert len(rsps.calls) == 1


def test_graph_unresolvable_cid_reference_looks_each_file_up_once(rsps: Any, clock: Any) -> None:
    doc = _file("DOC1", "notes.txt", "text/plain")
    img = _file("IMG1", "a.png", "image/png")
    item = {"@odata.type": "#microsoft.graph.itemAttachment", "id": "I1", "name": "Fwd",
            "contentType": None, "size": 10, "isInline": False}
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(body={"contentType": "html", "content": HTML_WITH_CID},
                     attachments=[doc, item, img]),
    )
    rsps.get(f"{ME}/messages/AAMkMSG1=/attachments/IMG1", json={**img, "contentId": None})
    rsps.get(f"{ME}/messages/AAMkMSG1=/attachments/DOC1", json={**doc, "contentId": "<other@x>"})
    email = _graph(clock).get_message_details("AAMkMSG1=")
    assert [(a.name, a.content_id, a.is_inline) for a in email.attachments] == [
        ("notes.txt", "other@x", False),
        ("Fwd.eml", None, False),
        ("a.png", None, False),
    ]
    # The message, then the image (images first), then the text file; never the item.
    assert [c.request.url.rsplit("/", 1)[-1] for c in rsps.calls][1:] == ["IMG1", "DOC1"]


def test_graph_inline_attachment_already_carrying_content_id_is_not_fetched(
    rsps: Any, clock: Any
) -> None:
    shot = {**_file("IMG1", "s.png", "image/png"), "contentId": "shot.1@example.com"}
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(body={"contentType": "html", "content": HTML_WITH_CID}, attachments=[shot]),
    )
    email = _graph(clock).get_message_details("AAMkMSG1=")
    assert (email.attachments[0].content_id, email.attachments[0].is_inline) == (
        "shot.1@example.com", True
    )
    assert len(rsps.calls) == 1


# ------------------------------------------------------------------------------ Gmail

_INNER = (
    b"From: old@example.com\r\n"
    b"Subject: =?utf-8?q?Original=3A_l=C3=B6schen=3F?=\r\n"
    b"\r\n"
    b"inner body\r\n"
)
_FORWARD = (
    b"From: hana@example.com\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Fwd: see the original\r\n"
    b"Message-ID: <fwd.2@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The original is attached.\r\n"
    b"--b\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Disposition: attachment\r\n"
    b"\r\n" + _INNER + b"--b--\r\n"
)
_EXPECTED_NAME = "Original_ löschen_.eml"


def _gmail(clock: Any) -> GmailAdapter:
    cfg = GmailProviderConfig(
        provider_id="gm-1", tenant="t1", mailbox="support@example.com", client_id="cid",
        client_secret="sec",
    )
    store = InMemoryStore()
    store.save_provider(cfg)
    store.save_tokens("gm-1", OAuthTokens(access_token="ya29.tok", refresh_token="1//r",
                                          expires_at=clock().replace(year=2030)))
    return GmailAdapter(cfg, store=store, sleep=clock.sleep, clock=clock)


def _reference_names() -> list[str]:
    return [item.name for item in mime.parse_mime(_FORWARD).attachments]


@responses.activate
def test_gmail_leaf_attached_message_behind_attachment_id_falls_back_to_raw(clock: Any) -> None:
    full, _ = full_from_mime(_FORWARD, as_attachment_ids=True)
    responses.get(f"{BASE}/messages/{full['id']}", json=full,
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/{full['id']}", json=raw_resource(_FORWARD),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    email = _gmail(clock).get_message_details(full["id"])
    assert _reference_names() == [_EXPECTED_NAME]
    assert [a.name for a in email.attachments] == [_EXPECTED_NAME]
    assert email.attachments[0].id.startswith("part:")
    assert len(responses.calls) == 2


@responses.activate
def test_gmail_leaf_attached_message_with_data_is_named_from_its_bytes(clock: Any) -> None:
    full, _ = full_from_mime(_FORWARD)
    responses.get(f"{BASE}/messages/{full['id']}", json=full)
    email = _gmail(clock).get_message_details(full["id"])
    assert [a.name for a in email.attachments] == [_EXPECTED_NAME]
    assert len(responses.calls) == 1


@responses.activate
def test_gmail_attached_message_listed_with_its_child_needs_no_raw(clock: Any) -> None:
    full, _ = full_from_mime(_FORWARD, as_attachment_ids=True)
    forwarded = copy.deepcopy(full)
    part = forwarded["payload"]["parts"][1]
    part["parts"] = [
        {
            "partId": "1.0",
            "mimeType": "text/plain",
            "filename": "",
            "headers": [
                {"name": "From", "value": "old@example.com"},
                {"name": "Subject", "value": "=?utf-8?q?Original=3A_l=C3=B6schen=3F?="},
            ],
            "body": {"size": 12, "data": b64url(b"inner body\r\n")},
        }
    ]
    responses.get(f"{BASE}/messages/{full['id']}", json=forwarded)
    email = _gmail(clock).get_message_details(full["id"])
    assert [a.name for a in email.attachments] == [_EXPECTED_NAME]
    assert len(responses.calls) == 1


@responses.activate
def test_gmail_empty_attached_message_is_generated_without_raw(clock: Any) -> None:
    full, _ = full_from_mime(_FORWARD)
    part = full["payload"]["parts"][1]
    part["body"] = {"size": 0}
    responses.get(f"{BASE}/messages/{full['id']}", json=full)
    email = _gmail(clock).get_message_details(full["id"])
    assert [a.name for a in email.attachments] == ["attachment-1.eml"]
    assert len(responses.calls) == 1
