"""GmailAdapter messages: the structured walk, raw mode parity, attachments, the batch endpoint."""

from __future__ import annotations

import io
import json
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any

import pytest
import responses
from responses import matchers

from gmail_payloads import (
    BASE,
    BATCH_URL,
    b64url,
    batch_response,
    full_from_mime,
    google_error,
    raw_resource,
)
from mailparity.errors import (
    BadRequestError,
    NotFoundError,
    ThrottledError,
)
from mailparity.models import GmailProviderConfig, OAuthTokens
from mailparity.providers.gmail import GmailAdapter
from mailparity.providers.gmail.batch import build_batch, parse_batch
from mailparity.stores.memory import InMemoryStore

PID = "gm-1"


def make(clock: Any, **kwargs: Any) -> GmailAdapter:
    config = GmailProviderConfig(
        provider_id=PID, tenant="t1", mailbox="support@example.com", client_id="cid",
        client_secret="sec",
    )
    store = InMemoryStore()
    store.save_provider(config)
    store.save_tokens(PID, OAuthTokens(access_token="ya29.tok", refresh_token="1//r",
                                       expires_at=clock().replace(year=2030)))
    return GmailAdapter(config, store=store, sleep=clock.sleep, clock=clock, **kwargs)


def sample_mime() -> bytes:
    msg = MimeMessage()
    msg["From"] = "=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <jorg@example.org>"
    msg["To"] = "Support <support@example.com>, other@example.com"
    msg["Cc"] = "cc@example.com"
    msg["Subject"] = "=?UTF-8?Q?Caf=C3=A9_invoice?="
    msg["Message-ID"] = "<abc@example.org>"
    msg["In-Reply-To"] = "<prev@example.org>"
    msg["References"] = "<root@example.org> <prev@example.org>"
    msg["Date"] = "Thu, 1 Jan 2026 00:00:00 +0000"
    msg.set_content("Hello café\n", charset="utf-8")
    msg.add_alternative(
        '<p>Hello caf\u00e9 <img src="cid:logo@example.org"></p>', subtype="html", charset="utf-8"
    )
    html_part = msg.get_payload()[1]
    html_part.add_related(
        b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@example.org>"
    )
    msg.add_attachment(
        b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="r\u00e9sum\u00e9.pdf"
    )
    msg.add_attachment(b"plain attachment", maintype="text", subtype="plain", filename="notes.txt")
    return msg.as_bytes()


# ------------------------------------------------------------------------------ corpus


def _corpus_messages(corpus_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((corpus_dir / "gmail_api").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else [data.get("message", data)]
        out += [(path.name, item) for item in items]
    return out


@responses.activate
def test_every_corpus_message_through_structured_path(clock: Any, corpus_dir: Path) -> None:
    adapter = make(clock)
    messages = _corpus_messages(corpus_dir)
    assert len(messages) >= 7
    for name, data in messages:
        responses.get(f"{BASE}/messages/{data['id']}", json=data)
        result = adapter.get_message_details(data["id"])
        assert result.id == data["id"], name
        assert result.provider == "google"
        assert result.thread_id == data["threadId"]
        assert result.received_at.tzinfo is not None
        assert result.body.text is not None
        assert result.headers, name
        assert result.from_.email, name
    # format=raw was never needed for these.
    assert all("format=full" in c.request.url for c in responses.calls)


@responses.activate
def test_corpus_alternative_with_attachments(clock: Any, corpus_dir: Path) -> None:
    path = corpus_dir / "gmail_api" / "gmailparse__multipartAlternativeWithAttachmentsMessage.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    responses.get(f"{BASE}/messages/{data['id']}", json=data)
    result = make(clock).get_message_details(data["id"])
    assert result.subject == "This is my jam"
    assert result.body.html is not None
    assert [a.name for a in result.attachments] == ["a3Ln90e_460s.jpg", "feelthebern.jpg"]
    assert [a.size for a in result.attachments] == [66308, 100446]
    first = data["payload"]["parts"][1]["body"]["attachmentId"]
    assert result.attachments[0].id == first
    assert result.received_at.year == 2015


@responses.activate
def test_corpus_zero_internal_date_and_bad_date_fall_back_to_fetch_time(
    clock: Any, corpus_dir: Path
) -> None:
    path = corpus_dir / "gmail_api" / "demisto__GmailSingleUser__email_no_date.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    responses.get(f"{BASE}/messages/{data['id']}", json=data)
    result = make(clock).get_message_details(data["id"])
    assert result.received_at == clock()
    assert len(result.header_values("Return-Path")) == 2
    assert len(result.reply_to) > 10
    assert result.body.text.strip()
    assert result.body.html


# ------------------------------------------------------------------------------ structured walk


@responses.activate
def test_full_walk_fields(clock: Any) -> None:
    full, _ = full_from_mime(sample_mime(), as_attachment_ids=True)
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=full,
                  match=[matchers.query_param_matcher({"format": "full"})])
    result = make(clock).get_message_details("18f3c2a9d1e4b7a0")
    assert result.subject == "Café invoice"
    assert result.from_.name == "Jörg Müller"
    assert [a.email for a in result.to] == ["support@example.com", "other@example.com"]
    assert result.message_id == "<abc@example.org>"
    assert result.in_reply_to == "<prev@example.org>"
    assert result.references == ["<root@example.org>", "<prev@example.org>"]
    assert result.body.text == "Hello café\n"
    assert "cid:logo@example.org" in (result.body.html or "")
    names = [(a.name, a.content_type, a.is_inline, a.content_id) for a in result.attachments]
    assert names == [
        ("attachment-1.png", "image/png", True, "logo@example.org"),
        ("résumé.pdf", "application/pdf", False, None),
        ("notes.txt", "text/plain", False, None),
    ]
    assert result.attachments[1].size == len(b"%PDF-1.4 data")
    assert result.received_at.isoformat() == "2026-01-01T00:00:00+00:00"


def _comparable(message: Any) -> dict[str, Any]:
    return message.model_dump(mode="json", by_alias=True)


PARITY_FILES = [
    "nodemailparser__nodemailer.eml",
    "rubymail__attachment_message_rfc822.eml",
    "mimekit__multipart-related-mhtml.eml",
    "cpython__msg_44.eml",
    "rubymail__attachment_with_quoted_filename.eml",
]


@responses.activate
def test_raw_mode_equals_full_mode(clock: Any) -> None:
    raw = sample_mime()
    full, _ = full_from_mime(raw)
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=full,
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=raw_resource(raw),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    from_full = make(clock).get_message_details("18f3c2a9d1e4b7a0")
    from_raw = make(clock, message_format="raw").get_message_details("18f3c2a9d1e4b7a0")
    assert _comparable(from_full) == _comparable(from_raw)
    assert [a.id for a in from_full.attachments] == ["part:1.2.2", "part:2", "part:3"]


@pytest.mark.parametrize("name", PARITY_FILES)
@responses.activate
def test_raw_mode_equals_full_mode_on_corpus_mime(
    clock: Any, corpus_dir: Path, name: str
) -> None:
    raw = (corpus_dir / "mime" / name).read_bytes()
    full, _ = full_from_mime(raw)
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=full,
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=raw_resource(raw),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    from_full = make(clock).get_message_details("18f3c2a9d1e4b7a0")
    from_raw = make(clock, message_format="raw").get_message_details("18f3c2a9d1e4b7a0")
    assert _comparable(from_full) == _comparable(from_raw)


@responses.activate
def test_body_behind_attachment_id_falls_back_to_raw(clock: Any) -> None:
    raw = sample_mime()
    full, _ = full_from_mime(raw)
    text_part = full["payload"]["parts"][0]["parts"][0]
    text_part["body"] = {"attachmentId": "BIGBODY", "size": 11}
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=full,
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/18f3c2a9d1e4b7a0", json=raw_resource(raw),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    result = make(clock).get_message_details("18f3c2a9d1e4b7a0")
    assert result.body.text == "Hello café\n"
    assert len(responses.calls) == 2


@responses.activate
def test_missing_payload_falls_back_to_raw(clock: Any) -> None:
    raw = sample_mime()
    responses.get(f"{BASE}/messages/m1", json={"id": "m1", "threadId": "t"},
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/m1", json=raw_resource(raw, message_id="m1"),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    assert make(clock).get_message_details("m1").subject == "Café invoice"


@responses.activate
def test_message_not_found(clock: Any) -> None:
    responses.get(f"{BASE}/messages/gone", status=404, json=google_error(404, "notFound"))
    with pytest.raises(NotFoundError):
        make(clock).get_message_details("gone")


@pytest.mark.parametrize("bad", ["", "a/b", "x?y", "id with space", None])
def test_bad_message_ids(clock: Any, bad: Any) -> None:
    with pytest.raises(BadRequestError):
        make(clock).get_message_details(bad)


# ------------------------------------------------------------------------------ attachments


@responses.activate
def test_attachment_by_attachment_id_and_into(clock: Any) -> None:
    payload = bytes(range(256)) * 50
    responses.get(f"{BASE}/messages/m1/attachments/ANGjdJ_x-y",
                  json={"size": len(payload), "data": b64url(payload)})
    adapter = make(clock)
    assert adapter.get_attachment_content("m1", "ANGjdJ_x-y") == payload
    sink = io.BytesIO()
    assert adapter.get_attachment_content("m1", "ANGjdJ_x-y", into=sink) == b""
    assert sink.getvalue() == payload


def test_chunked_decode_matches_whole() -> None:
    from mailparity.providers.gmail.messages import b64url_decode_into

    payload = bytes(range(256)) * 33 + b"x"
    sink = io.BytesIO()
    written = b64url_decode_into(b64url(payload), sink, chunk_chars=10)
    assert sink.getvalue() == payload
    assert written == len(payload)


@pytest.mark.parametrize("chunk_chars", [4, 5, 13, 64, 1 << 18])
@pytest.mark.parametrize("size", [0, 1, 2, 3, 100, 4099])
def test_chunked_decode_of_every_spelling(chunk_chars: int, size: int) -> None:
    import base64

    from mailparity.providers.gmail.messages import b64url_decode_chunks

    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    standard = base64.b64encode(payload).decode()
    spellings = [
        b64url(payload),  # Gmail's: url-safe, no padding
        base64.urlsafe_b64encode(payload).decode(),  # padded
        standard,  # the standard alphabet
        "\r\n".join(standard[i : i + 76] for i in range(0, len(standard), 76)),  # MIME lines
    ]
    for text in spellings:
        chunks = list(b64url_decode_chunks(text, chunk_chars=chunk_chars))
        assert b"".join(chunks) == payload
        assert all(chunks)  # never an empty chunk


def test_chunked_decode_of_garbage_raises_value_error() -> None:
    from mailparity.providers.gmail.messages import b64url_decode_chunks

    with pytest.raises(ValueError, match=r"ASCII|base64|Incorrect|Invalid"):
        list(b64url_decode_chunks("abcd" * 10 + "é!", chunk_chars=8))


@responses.activate
def test_inline_part_attachment_refetches_message(clock: Any) -> None:
    full, _ = full_from_mime(sample_mime())
    responses.get(f"{BASE}/messages/m1", json={**full, "id": "m1"})
    adapter = make(clock)
    message = adapter.get_message_details("m1")
    pdf = message.attachments[1]
    assert pdf.id == "part:2"
    assert adapter.get_attachment_content("m1", pdf.id) == b"%PDF-1.4 data"
    assert adapter.get_attachment_content("m1", "part:1.2.2") == b"\x89PNG fake"


@responses.activate
def test_part_attachment_in_raw_mode(clock: Any) -> None:
    raw = sample_mime()
    responses.get(f"{BASE}/messages/m1", json=raw_resource(raw, message_id="m1"),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    adapter = make(clock, message_format="raw")
    sink = io.BytesIO()
    assert adapter.get_attachment_content("m1", "part:3", into=sink) == b""
    assert sink.getvalue() == b"plain attachment"


@responses.activate
def test_unknown_part_is_not_found(clock: Any) -> None:
    raw = sample_mime()
    full, _ = full_from_mime(raw)
    responses.get(f"{BASE}/messages/m1", json={**full, "id": "m1"},
                  match=[matchers.query_param_matcher({"format": "full"})])
    responses.get(f"{BASE}/messages/m1", json=raw_resource(raw, message_id="m1"),
                  match=[matchers.query_param_matcher({"format": "raw"})])
    with pytest.raises(NotFoundError):
        make(clock).get_attachment_content("m1", "part:9.9")


@pytest.mark.parametrize("bad", ["", "part:../x", "has space", "a/b"])
def test_bad_attachment_ids(clock: Any, bad: str) -> None:
    with pytest.raises(BadRequestError):
        make(clock).get_attachment_content("m1", bad)


# ------------------------------------------------------------------------------ batch


def test_batch_roundtrip_parser() -> None:
    content_type, body = build_batch([("item-0", "GET /gmail/v1/users/me/messages/a?format=full")],
                                     boundary="b1")
    assert content_type == "multipart/mixed; boundary=b1"
    assert b"Content-ID: <item-0>" in body
    assert body.endswith(b"--b1--")
    ctype, answer = batch_response([("item-0", 200, {"id": "a"}), ("item-1", 404, {})])
    parts = parse_batch(ctype, answer)
    assert [(p.content_id, p.status) for p in parts] == [("response-item-0", 200),
                                                         ("response-item-1", 404)]
    assert json.loads(parts[0].body) == {"id": "a"}


def test_batch_parser_rejects_garbage() -> None:
    from mailparity.providers.gmail.batch import BatchResponseError

    with pytest.raises(BatchResponseError):
        parse_batch("application/json", b"{}")
    with pytest.raises(BatchResponseError):
        parse_batch("multipart/mixed; boundary=x", b"--x\r\n\r\nnot http\r\n--x--")


@responses.activate
def test_get_messages_details_batch_with_per_item_errors_and_retry(clock: Any) -> None:
    full, _ = full_from_mime(sample_mime())
    ids = [f"m{i}" for i in range(30)]
    first = [(f"item-{i}", 200, {**full, "id": mid}) for i, mid in enumerate(ids[:25])]
    first[3] = ("item-3", 404, google_error(404, "notFound"))
    first[4] = ("item-4", 429, google_error(429, "rateLimitExceeded", "Too many concurrent"))
    ctype, body = batch_response(first)
    responses.post(BATCH_URL, body=body, headers={"Content-Type": ctype})
    # The throttled item is retried before the next chunk goes out.
    ctype3, body3 = batch_response([("item-0", 200, {**full, "id": "m4"})])
    responses.post(BATCH_URL, body=body3, headers={"Content-Type": ctype3})
    ctype2, body2 = batch_response([(f"item-{i}", 200, {**full, "id": mid})
                                    for i, mid in enumerate(ids[25:])])
    responses.post(BATCH_URL, body=body2, headers={"Content-Type": ctype2})

    results = make(clock).get_messages_details([*ids, "m0", "bad/id"])
    assert set(results) == {*ids, "bad/id"}
    assert isinstance(results["m3"], NotFoundError)
    assert isinstance(results["bad/id"], BadRequestError)
    assert results["m4"].id == "m4"  # retried after backoff
    assert results["m29"].subject == "Café invoice"
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 1.0
    posts = [c for c in responses.calls if c.request.url == BATCH_URL]
    assert posts[0].request.body.count(b"Content-Type: application/http") == 25
    assert posts[1].request.body.count(b"Content-Type: application/http") == 1
    assert posts[2].request.body.count(b"Content-Type: application/http") == 5
    assert b"GET /gmail/v1/users/me/messages/m0?format=full HTTP/1.1" in posts[0].request.body
    assert posts[0].request.headers["Authorization"] == "Bearer ya29.tok"


@responses.activate
def test_batch_throttled_items_give_up_after_max_attempts(clock: Any) -> None:
    ctype, body = batch_response([("item-0", 429, google_error(429, "rateLimitExceeded"))])
    for _ in range(5):
        responses.post(BATCH_URL, body=body, headers={"Content-Type": ctype})
    results = make(clock).get_messages_details(["m1"])
    assert isinstance(results["m1"], ThrottledError)
    assert len(clock.sleeps) == 4


@responses.activate
def test_batch_whole_request_failure_maps_every_id(clock: Any) -> None:
    responses.post(BATCH_URL, status=400, json=google_error(400, "badRequest"))
    results = make(clock).get_messages_details(["a1", "a2"])
    assert all(isinstance(results[k], BadRequestError) for k in ("a1", "a2"))


@responses.activate
def test_batch_in_raw_mode_fetches_each(clock: Any) -> None:
    raw = sample_mime()
    responses.get(f"{BASE}/messages/m1", json=raw_resource(raw, message_id="m1"))
    responses.get(f"{BASE}/messages/m2", status=404, json=google_error(404, "notFound"))
    results = make(clock, message_format="raw").get_messages_details(["m1", "m2"])
    assert results["m1"].subject == "Café invoice"
    assert isinstance(results["m2"], NotFoundError)


@responses.activate
def test_batch_item_401_refreshes_once(clock: Any) -> None:
    from gmail_payloads import TOKEN_URL, token_response

    full, _ = full_from_mime(sample_mime())
    ctype, body = batch_response([("item-0", 401, google_error(401, "authError"))])
    responses.post(BATCH_URL, body=body, headers={"Content-Type": ctype})
    responses.post(TOKEN_URL, json=token_response("ya29.renewed"))
    ctype2, body2 = batch_response([("item-0", 200, {**full, "id": "m1"})])
    responses.post(BATCH_URL, body=body2, headers={"Content-Type": ctype2},
                   match=[matchers.header_matcher({"Authorization": "Bearer ya29.renewed"})])
    adapter = make(clock)
    adapter.load_credentials()
    results = adapter.get_messages_details(["m1"])
    assert results["m1"].id == "m1"
    assert clock.sleeps == []


def test_full_tree_is_walked_by_the_shared_walker_at_any_depth() -> None:
    """One walker over both views: a Gmail tree nested deeper than the walker's flag depth is
    read whole, as raw MIME is (it used to stop silently at depth 40)."""
    from mailparity.mime import MAX_DEPTH
    from mailparity.providers.gmail.messages import message_from_full

    leaf: dict[str, Any] = {
        "mimeType": "text/plain",
        "headers": [{"name": "Content-Type", "value": "text/plain; charset=utf-8"}],
        "body": {"size": 4, "data": "ZGVlcA"},
    }
    part = leaf
    for _ in range(MAX_DEPTH + 10):
        part = {"mimeType": "multipart/mixed", "headers": [], "body": {"size": 0},
                "parts": [part]}
    part["headers"] = [{"name": "Subject", "value": "deep"}]
    config = GmailProviderConfig(provider_id=PID, tenant="t1", mailbox="support@example.com")
    message = message_from_full({"id": "m1", "threadId": "t1", "payload": part}, config)
    assert (message.subject, message.body.text) == ("deep", "deep")
