"""Graph message fetch and normalization, attachments, processed marking, connection test."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from graph_payloads import (
    GRAPH,
    MAILBOX,
    assert_immutable_everywhere,
    config,
    graph_error,
    load,
    message,
    recipient,
    store_with,
    tokens,
)
from mailparity.errors import (
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    ThrottledError,
)
from mailparity.http import RetryPolicy
from mailparity.providers.graph import MicrosoftGraphAdapter

ME = f"{GRAPH}/me"


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock
        assert_immutable_everywhere(mock)


def _adapter(clock: Any, **overrides: Any) -> MicrosoftGraphAdapter:
    cfg = config(**overrides)
    return MicrosoftGraphAdapter(
        cfg, store=store_with(cfg, tokens(clock())), clock=clock, sleep=clock.sleep
    )


def _query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(call.request.url).query)


# ------------------------------------------------------------------ get_message_details


def test_message_is_normalized_in_one_request(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message())
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert len(rsps.calls) == 1
    query = _query(rsps.calls[0])
    assert "internetMessageHeaders" in query["$select"][0]
    assert query["$expand"] == ["attachments($select=id,name,contentType,size,isInline)"]
    assert email.id == "AAMkMSG1="
    assert email.provider == "microsoft"
    assert email.received_at == datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
    assert email.subject == "Printer on fire"
    assert (email.from_.email, email.from_.name) == ("alice@example.com", "Alice Example")
    assert [a.email for a in email.to] == [MAILBOX]
    assert email.message_id == "<abc@example.com>"
    assert email.in_reply_to == "<parent@example.com>"
    assert email.references == ["<root@example.com>", "<parent@example.com>"]
    assert email.thread_id == "conv-1"
    assert email.header("x-ticket") == "42"
    assert email.header("Subject") == "Printer on fire"  # encoded-word decoded
    assert email.body.html is not None
    assert "on fire" in email.body.text
    assert "<b>" not in email.body.text


def test_corpus_message_without_headers_falls_back_to_mime(
    rsps: Any, clock: Any, corpus_dir: Any
) -> None:
    data = load(corpus_dir, "msgraphdocs__message-get__get_message.json")
    mid = data["id"]
    rsps.get(f"{ME}/messages/{mid}", json=data)
    raw = (b"Message-ID: <MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>\r\n"
           b"References: <r1@x>\r\n <r2@x>\r\nX-Folded: a\r\n b\r\nSubject: 9/9/2018: concert\r\n"
           b"\r\nbody\r\n")
    rsps.get(f"{ME}/messages/{mid}/$value", body=raw)
    email = _adapter(clock).get_message_details(mid)
    assert email.message_id == "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>"
    assert email.references == ["<r1@x>", "<r2@x>"]
    assert email.header("X-Folded") == "a b"
    assert email.from_.email == "adelev@contoso.OnMicrosoft.com"
    assert email.to[0].email == "AlexW@contoso.OnMicrosoft.com"
    assert email.cc == []
    assert email.thread_id == data["conversationId"]
    assert email.body.text.strip()


def test_corpus_message_with_headers_and_text_body(
    rsps: Any, clock: Any, corpus_dir: Any
) -> None:
    data = load(corpus_dir, "demisto__MicrosoftGraphMail__emails_data_full_body.json")["value"][0]
    rsps.get(f"{ME}/messages/{data['id']}", json=data)
    email = _adapter(clock).get_message_details(data["id"])
    assert len(rsps.calls) == 1  # headers were there: no MIME fetch
    assert email.header("Message-ID") == "<dummy_message_id_1>"
    assert email.body.text.strip()
    # sentDateTime has a five-digit year in this payload; receivedDateTime is what counts.
    assert email.received_at == datetime(2019, 11, 12, 15, 0, 30, tzinfo=timezone.utc)


def test_corpus_text_message_sender_differs_from_from(
    rsps: Any, clock: Any, corpus_dir: Any
) -> None:
    data = load(corpus_dir, "demisto__MicrosoftGraphMail__mail.json")
    data.setdefault("id", "demisto-1")
    data["internetMessageHeaders"] = [{"name": "X-A", "value": "1"}]
    rsps.get(f"{ME}/messages/{data['id']}", json=data)
    email = _adapter(clock).get_message_details(data["id"])
    assert email.from_.email == data["from"]["emailAddress"]["address"]
    assert email.body.html is None
    assert email.body.text == data["body"]["content"]
    assert email.subject == data["subject"]
    assert email.message_id == "<msg_id.url.com>"


def test_corpus_headers_payload(rsps: Any, clock: Any, corpus_dir: Any) -> None:
    headers = load(corpus_dir, "msgraphdocs__message-get__get_message_headers.json")
    payload = message(internetMessageHeaders=headers["internetMessageHeaders"])
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=payload)
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert email.header("x-custom-header-group-name") == "Washington"
    assert [h.name for h in email.headers][:2] == ["MIME-Version", "Content-Type"]


def test_corpus_attachments_item_reference_and_inline(
    rsps: Any, clock: Any, corpus_dir: Any
) -> None:
    listed = load(corpus_dir, "demisto__MicrosoftGraphMail__mail_with_attachments.json")
    reference = load(corpus_dir, "msgraphdocs__attachment-get__get_reference_attachment.json")
    item = load(corpus_dir, "msgraphdocs__attachment-get__get_item_attachment.json")
    shown = {"contentType": "html",
             "content": '<p>See <img src="cid:f1145f66-90fe-4604-a7ea-faac8c33684e"></p>'}
    rsps.get(
        f"{ME}/messages/AAMkMSG1=",
        json=message(attachments=[*listed, reference, item], body=shown),
    )
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert len(rsps.calls) == 1
    by_id = {a.id: a for a in email.attachments}
    assert by_id["exampleID0"].content_type == "message/rfc822"
    # An item attachment's name is the attached message's subject: named as a file by the
    # shared rule (mime.message_attachment_name), as the raw and Gmail paths name it.
    assert by_id["exampleID0"].name == "Test it0.eml"
    inline = [a for a in email.attachments if a.is_inline and a.content_type == "image/png"]
    assert inline[0].content_id == "f1145f66-90fe-4604-a7ea-faac8c33684e"
    ref = by_id[reference["id"]]
    # isInline claimed but never shown by the HTML: an ordinary attachment (the one rule).
    assert (ref.size, ref.is_inline) == (1060, False)
    assert by_id[item["id"]].size == 32005
    assert len(email.attachments) == len(listed) + 2


def test_inline_attachment_content_id_fetched_separately(rsps: Any, clock: Any) -> None:
    att = {"@odata.type": "#microsoft.graph.fileAttachment", "id": "ATT1", "name": "logo.png",
           "contentType": "image/png", "size": 10, "isInline": True}
    plain = {"@odata.type": "#microsoft.graph.fileAttachment", "id": "ATT2", "name": None,
             "contentType": "application/pdf", "size": "12", "isInline": False}
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message(attachments=[att, plain]))
    rsps.get(f"{ME}/messages/AAMkMSG1=/attachments/ATT1",
             json={**att, "contentId": "<logo@x>", "contentBytes": "AA=="})
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert email.attachments[0].content_id == "logo@x"
    assert email.attachments[1].name  # generated from the content type
    assert email.attachments[1].size == 12
    assert len(rsps.calls) == 2


def test_html_without_text_uses_preview_last(rsps: Any, clock: Any) -> None:
    payload = message(body={"contentType": "html", "content": "<html><img src='cid:x'></html>"},
                      bodyPreview="preview text")
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=payload)
    assert _adapter(clock).get_message_details("AAMkMSG1=").body.text == "preview text"


def test_missing_properties_come_from_headers(rsps: Any, clock: Any) -> None:
    payload = message(internetMessageHeaders=[
        {"name": "From", "value": "=?utf-8?b?QsOpYQ==?= <bea@example.com>"},
        {"name": "To", "value": "a@example.com, b@example.com"},
        {"name": "Subject", "value": "from headers"},
    ])
    for key in ("from", "sender", "toRecipients", "subject", "internetMessageId",
                "receivedDateTime"):
        payload.pop(key)
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=payload)
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert (email.from_.email, email.from_.name) == ("bea@example.com", "Béa")
    assert [a.email for a in email.to] == ["a@example.com", "b@example.com"]
    assert email.subject == "from headers"
    assert email.received_at == clock()


def test_display_name_equal_to_address_is_no_name(rsps: Any, clock: Any) -> None:
    payload = message(toRecipients=[recipient(MAILBOX)], ccRecipients=[{"bad": 1}, None])
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=payload)
    email = _adapter(clock).get_message_details("AAMkMSG1=")
    assert email.to[0].name is None
    assert email.cc == []


def test_404_error_item_not_found(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/stale", status=404, json=graph_error(
        "ErrorItemNotFound", "The specified object was not found in the store.", "rid-404"))
    with pytest.raises(NotFoundError) as info:
        _adapter(clock).get_message_details("stale")
    assert (info.value.code, info.value.request_id) == ("ErrorItemNotFound", "rid-404")
    assert len(rsps.calls) == 1  # a 404 is not retried


def test_malformed_id_is_not_found(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/x", status=400, json=graph_error("ErrorInvalidIdMalformed"))
    with pytest.raises(NotFoundError):
        _adapter(clock).get_message_details("x")


def test_429_retry_after_is_honoured(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/AAMkMSG1=", status=429, headers={"Retry-After": "4"},
             json=graph_error("TooManyRequests", "Please retry again later."))
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message())
    assert _adapter(clock).get_message_details("AAMkMSG1=").id == "AAMkMSG1="
    assert clock.sleeps == [4.0]


def test_429_exhausted_is_throttled_error(rsps: Any, clock: Any) -> None:
    adapter = _adapter(clock)
    adapter.http.retry = RetryPolicy(max_attempts=2)
    for _ in range(2):
        rsps.get(f"{ME}/messages/AAMkMSG1=", status=429, headers={"Retry-After": "1"},
                 json=graph_error("TooManyRequests"))
    with pytest.raises(ThrottledError) as info:
        adapter.get_message_details("AAMkMSG1=")
    assert info.value.retry_after == 1.0


def test_503_then_success(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/AAMkMSG1=", status=503)
    rsps.get(f"{ME}/messages/AAMkMSG1=", json=message())
    assert _adapter(clock).get_message_details("AAMkMSG1=").subject == "Printer on fire"
    assert len(clock.sleeps) == 1


def test_non_json_answer_is_provider_unavailable(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/AAMkMSG1=", body="<html>proxy</html>")
    with pytest.raises(ProviderUnavailableError):
        _adapter(clock).get_message_details("AAMkMSG1=")


def test_mailbox_not_enabled_is_permission_denied(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/AAMkMSG1=", status=404, json=graph_error(
        "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is"
        " hosted on-premise."))
    with pytest.raises(PermissionDeniedError):
        _adapter(clock).get_message_details("AAMkMSG1=")


# ------------------------------------------------------------------ attachments


def test_attachment_bytes(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/M1/attachments/A1/$value", body=b"\x00\x01binary")
    assert _adapter(clock).get_attachment_content("M1", "A1") == b"\x00\x01binary"


def test_attachment_streams_into_a_file(rsps: Any, clock: Any) -> None:
    blob = bytes(range(256)) * 1000  # 256 kB: several chunks
    rsps.get(f"{ME}/messages/M1/attachments/A1/$value", body=blob)
    sink = io.BytesIO()
    assert _adapter(clock).get_attachment_content("M1", "A1", into=sink) == b""
    assert sink.getvalue() == blob


def test_attachment_stream_interrupted(rsps: Any, clock: Any, monkeypatch: Any) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        yield b"partial"
        raise requests.exceptions.ChunkedEncodingError("connection cut")

    monkeypatch.setattr(requests.Response, "iter_content", broken)
    rsps.get(f"{ME}/messages/M1/attachments/A1/$value", body=b"x")
    with pytest.raises(ProviderUnavailableError):
        _adapter(clock).get_attachment_content("M1", "A1", into=io.BytesIO())


def test_reference_attachment_has_no_bytes(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/messages/M1/attachments/R1/$value", status=405,
             json=graph_error("ErrorInvalidRequest", "not supported"))
    with pytest.raises(BadRequestError):
        _adapter(clock).get_attachment_content("M1", "R1")


# ------------------------------------------------------------------ processed marking


def test_mark_none_makes_no_request(rsps: Any, clock: Any) -> None:
    _adapter(clock).mark_message_processed("M1")
    assert len(rsps.calls) == 0


def test_mark_read(rsps: Any, clock: Any) -> None:
    rsps.patch(f"{ME}/messages/M1", json={"id": "M1"})
    _adapter(clock, processed_strategy="mark_read").mark_message_processed("M1")
    assert json.loads(rsps.calls[0].request.body) == {"isRead": True}


def test_category_created_once_and_appended(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/outlook/masterCategories", json={"value": [{"displayName": "Red"}]})
    rsps.post(f"{ME}/outlook/masterCategories", status=201, json={"id": "c1"})
    rsps.get(f"{ME}/messages/M1", json={"categories": ["Red"]})
    rsps.patch(f"{ME}/messages/M1", json={})
    rsps.get(f"{ME}/messages/M2", json={"categories": ["psa/processed"]})
    adapter = _adapter(clock, processed_strategy="category")
    adapter.mark_message_processed("M1")
    adapter.mark_message_processed("M2")  # already tagged: no PATCH; master list not re-read
    methods = [(c.request.method, urlparse(c.request.url).path) for c in rsps.calls]
    assert methods == [
        ("GET", "/v1.0/me/outlook/masterCategories"),
        ("POST", "/v1.0/me/outlook/masterCategories"),
        ("GET", "/v1.0/me/messages/M1"),
        ("PATCH", "/v1.0/me/messages/M1"),
        ("GET", "/v1.0/me/messages/M2"),
    ]
    assert json.loads(rsps.calls[1].request.body)["displayName"] == "PSA/Processed"
    assert json.loads(rsps.calls[3].request.body) == {"categories": ["Red", "PSA/Processed"]}


def test_category_without_master_list_permission(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/outlook/masterCategories", status=403, json=graph_error("ErrorAccessDenied"))
    rsps.get(f"{ME}/messages/M1", json={"categories": []})
    rsps.patch(f"{ME}/messages/M1", json={})
    _adapter(clock, processed_strategy="category").mark_message_processed("M1")
    assert json.loads(rsps.calls[-1].request.body) == {"categories": ["PSA/Processed"]}


def test_move_to_well_known_folder(rsps: Any, clock: Any) -> None:
    rsps.post(f"{ME}/messages/M1/move", status=201, json={"id": "M1"})
    _adapter(clock, processed_strategy="move", processed_folder="Archive").mark_message_processed(
        "M1")
    assert json.loads(rsps.calls[0].request.body) == {"destinationId": "archive"}


def test_move_resolves_display_name_once(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/mailFolders", json={"value": [{"id": "F-top", "displayName": "Other"}],
                                        "@odata.nextLink": f"{ME}/mailFolders?$skip=1"})
    rsps.get(f"{ME}/mailFolders", json={"value": []})
    rsps.get(f"{ME}/mailFolders/inbox/childFolders",
             json={"value": [{"id": "F-done", "displayName": "done"}]})
    rsps.post(f"{ME}/messages/M1/move", status=201, json={})
    rsps.post(f"{ME}/messages/M2/move", status=201, json={})
    adapter = _adapter(clock, processed_strategy="move", processed_folder="Done")
    adapter.mark_message_processed("M1")
    adapter.mark_message_processed("M2")
    moves = [json.loads(c.request.body) for c in rsps.calls if c.request.url.endswith("/move")]
    assert moves == [{"destinationId": "F-done"}, {"destinationId": "F-done"}]
    assert len(rsps.calls) == 5


def test_move_creates_a_missing_folder(rsps: Any, clock: Any) -> None:
    rsps.get(f"{ME}/mailFolders", json={"value": []})
    rsps.get(f"{ME}/mailFolders/inbox/childFolders", json={"value": []})
    rsps.post(f"{ME}/mailFolders", status=201, json={"id": "F-new", "displayName": "Done"})
    rsps.post(f"{ME}/messages/M1/move", status=201, json={})
    _adapter(clock, processed_strategy="move", processed_folder="Done").mark_message_processed(
        "M1")
    assert json.loads(rsps.calls[-1].request.body) == {"destinationId": "F-new"}


def test_move_without_folder_is_configuration_error(clock: Any) -> None:
    with pytest.raises(ConfigurationError):
        _adapter(clock, processed_strategy="move").mark_message_processed("M1")


# ------------------------------------------------------------------ test_connection


def test_connection_ok_case_insensitive(rsps: Any, clock: Any) -> None:
    rsps.get(ME, json={"mail": None, "userPrincipalName": "Support@Contoso.com"})
    rsps.get(f"{ME}/mailFolders/inbox/messages", json={"value": []})
    result = _adapter(clock).test_connection()
    assert result.success
    assert result.mailbox == MAILBOX


def test_connection_mailbox_mismatch_names_both(rsps: Any, clock: Any) -> None:
    rsps.get(ME, json={"mail": "other@contoso.com", "userPrincipalName": "other@contoso.com"})
    result = _adapter(clock).test_connection()
    assert not result.success
    assert result.error is not None
    assert "other@contoso.com" in result.error
    assert MAILBOX in result.error
    assert result.code == "mailbox_mismatch"


def test_connection_error_is_reported_not_raised(rsps: Any, clock: Any) -> None:
    rsps.get(ME, json={"mail": MAILBOX})
    rsps.get(f"{ME}/mailFolders/inbox/messages", status=403,
             json=graph_error("ErrorAccessDenied", "Access is denied.", "rid-403"))
    result = _adapter(clock).test_connection()
    assert not result.success
    assert (result.status, result.code, result.request_id) == (403, "ErrorAccessDenied", "rid-403")
    assert result.error == "Access is denied."


def test_connection_without_tokens_is_reported(clock: Any) -> None:
    cfg = config()
    adapter = MicrosoftGraphAdapter(cfg, store=store_with(cfg, None), clock=clock)
    result = adapter.test_connection()
    assert not result.success
    assert result.error is not None
    assert "connect the mailbox" in result.error
