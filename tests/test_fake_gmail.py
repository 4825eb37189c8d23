"""FakeGmail: every endpoint through ``requests``, in both running modes, checked against the
shapes of the real Gmail payloads in the corpus; faults, history semantics, batch, pushes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from mailparity.testing.builder import build_message
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.oidc import TestOidcSigner
from mailparity.testing.server import serve

MAILBOX = "user@example.com"


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback through an environment proxy
    return session


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="test-kid")


@pytest.fixture
def http() -> requests.Session:
    return _session()


@pytest.fixture(params=["responses", "server"])
def gmail(
    request: pytest.FixtureRequest, clock: Any, signer: TestOidcSigner
) -> Iterator[FakeGmail]:
    fake = FakeGmail(clock=clock, signer=signer, seed=11)
    if request.param == "responses":
        with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
            fake.register(mock)
            yield fake
    else:
        with serve(fake):
            yield fake


@pytest.fixture
def mocked(
    clock: Any, signer: TestOidcSigner
) -> Iterator[tuple[FakeGmail, responses.RequestsMock]]:
    fake = FakeGmail(clock=clock, signer=signer, seed=5)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.register(mock)
        yield fake, mock


def _auth(fake: FakeGmail, mailbox: str = MAILBOX) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.issue_tokens(mailbox)['access_token']}"}


def _api(fake: FakeGmail, path: str, user: str = "me") -> str:
    return f"{fake.base_url}/gmail/v1/users/{user}/{path}"


def _sample(**overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "from_": ("Zoë Müller", "zoe@example.org"),
        "to": MAILBOX,
        "subject": "Grüße: it's here",
        "text": "Hi, see attached.",
        "html": "<div>Hi, <b>see</b> attached.</div>",
        "attachments": [("invoice.pdf", b"%PDF-1.4 invoice", "application/pdf")],
        "message_id": "<first@example.org>",
    }
    values.update(overrides)
    return build_message(**values)


def _decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _corpus(corpus_dir: Path, name: str) -> Any:
    return json.loads((corpus_dir / "gmail_api" / name).read_text(encoding="utf-8"))


def _keys(node: dict[str, Any]) -> set[str]:
    return set(node)


# ---------------------------------------------------------------------- rendering vs the corpus


def test_full_format_has_gmails_payload_tree(
    gmail: FakeGmail, http: requests.Session, corpus_dir: Path
) -> None:
    real = _corpus(corpus_dir, "gmailparse__multipartAlternativeWithAttachmentsMessage.json")
    message_id = gmail.deliver(MAILBOX, _sample())
    response = http.get(_api(gmail, f"messages/{message_id}"), headers=_auth(gmail))
    assert response.status_code == 200
    body = response.json()
    assert set(real) <= set(body)
    assert body["labelIds"] == ["INBOX", "UNREAD"]
    assert body["threadId"] == message_id
    assert body["snippet"] == "Hi, see attached."
    assert body["internalDate"] == str(int(gmail.now().timestamp() * 1000))
    payload = body["payload"]
    assert payload["partId"] == ""
    assert payload["mimeType"] == "multipart/mixed"
    assert payload["body"] == {"size": 0}
    # Same node keys as Gmail, container and leaves alike.
    real_leaf = real["payload"]["parts"][1]
    assert {"mimeType", "filename", "headers", "body", "parts"} <= _keys(payload)
    alternative, attachment = payload["parts"]
    assert alternative["partId"] == "0"
    assert alternative["mimeType"] == "multipart/alternative"
    plain, html = alternative["parts"]
    assert (plain["partId"], html["partId"]) == ("0.0", "0.1")
    assert _keys(plain) == _keys(real["payload"]["parts"][0]["parts"][0])
    assert _decode(plain["body"]["data"]) == b"Hi, see attached.\r\n"  # CRLF, as Gmail
    assert plain["body"]["size"] == len(b"Hi, see attached.\r\n")
    assert _decode(html["body"]["data"]).startswith(b"<div>Hi, <b>see</b>")
    assert _keys(attachment) == _keys(real_leaf)
    assert attachment["filename"] == "invoice.pdf"
    assert set(attachment["body"]) == {"attachmentId", "size"}
    assert attachment["body"]["size"] == len(b"%PDF-1.4 invoice")
    # Root headers are the message's headers, encoded-words kept as sent.
    names = [h["name"] for h in payload["headers"]]
    assert names[:3] == ["From", "To", "Subject"]
    subject = next(h["value"] for h in payload["headers"] if h["name"] == "Subject")
    assert subject.startswith("=?utf-8?")

    fetched = http.get(
        _api(gmail, f"messages/{message_id}/attachments/{attachment['body']['attachmentId']}"),
        headers=_auth(gmail),
    ).json()
    assert _decode(fetched["data"]) == b"%PDF-1.4 invoice"
    assert fetched["size"] == 16


def test_single_part_message(gmail: FakeGmail, http: requests.Session, corpus_dir: Path) -> None:
    real = _corpus(corpus_dir, "gmailparse__plainTextMessage.json")
    raw = build_message(from_="a@example.org", to=MAILBOX, subject="plain", text="The text")
    message_id = gmail.deliver(MAILBOX, raw)
    body = http.get(_api(gmail, f"messages/{message_id}?format=full"), headers=_auth(gmail)).json()
    assert _keys(body["payload"]) == _keys(real["payload"])
    assert body["payload"]["partId"] == ""
    assert body["payload"]["mimeType"] == "text/plain"
    assert _decode(body["payload"]["body"]["data"]) == b"The text\r\n"


def test_raw_metadata_and_minimal_formats(
    gmail: FakeGmail, http: requests.Session, corpus_dir: Path
) -> None:
    real = _corpus(corpus_dir, "demisto__GmailSingleUser__search_email_list.json")[0]
    raw = _sample()
    message_id = gmail.deliver(MAILBOX, raw)
    headers = _auth(gmail)
    as_raw = http.get(_api(gmail, f"messages/{message_id}?format=raw"), headers=headers).json()
    assert _decode(as_raw["raw"]) == raw
    assert "payload" not in as_raw
    metadata = http.get(
        _api(
            gmail,
            f"messages/{message_id}?format=metadata&metadataHeaders=Subject&metadataHeaders=from",
        ),
        headers=headers,
    ).json()
    assert _keys(metadata["payload"]) == _keys(real["payload"])
    assert [h["name"] for h in metadata["payload"]["headers"]] == ["From", "Subject"]
    minimal = http.get(_api(gmail, f"messages/{message_id}?format=MINIMAL"), headers=headers).json()
    assert "payload" not in minimal
    assert minimal["labelIds"] == ["INBOX", "UNREAD"]
    bad = http.get(_api(gmail, f"messages/{message_id}?format=html"), headers=headers)
    assert bad.status_code == 400
    missing = http.get(_api(gmail, "messages/ffff"), headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["errors"][0]["reason"] == "notFound"


def test_inline_images_forwarded_mail_and_large_bodies(
    gmail: FakeGmail, http: requests.Session
) -> None:
    inner = build_message(from_="b@example.org", to=MAILBOX, subject="Inner", text="inner")
    raw = _sample(
        inline_images=[("logo", b"PNGDATA", "image/png")],
        html='<p><img src="cid:logo"></p>',
        attachments=[("fwd.eml", inner, "message/rfc822")],
        text="x" * 50,
    )
    gmail.body_attachment_threshold = 40
    message_id = gmail.deliver(MAILBOX, raw)
    body = http.get(_api(gmail, f"messages/{message_id}"), headers=_auth(gmail)).json()
    leaves: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any]) -> None:
        leaves[node["mimeType"]] = node
        for child in node.get("parts", []):
            walk(child)

    walk(body["payload"])
    assert "attachmentId" in leaves["text/plain"]["body"]  # a big body part
    assert "data" in leaves["text/html"]["body"]
    image = leaves["image/png"]
    assert any(h["name"] == "Content-ID" and h["value"] == "<logo>" for h in image["headers"])
    forwarded = leaves["message/rfc822"]
    assert forwarded["filename"] == "fwd.eml"
    assert "parts" not in forwarded
    content = http.get(
        _api(gmail, f"messages/{message_id}/attachments/{forwarded['body']['attachmentId']}"),
        headers=_auth(gmail),
    ).json()
    assert b"Subject: Inner" in _decode(content["data"])


def test_attachment_errors(gmail: FakeGmail, http: requests.Session) -> None:
    first = gmail.deliver(MAILBOX, _sample())
    second = gmail.deliver(MAILBOX, _sample())
    headers = _auth(gmail)
    payload = http.get(_api(gmail, f"messages/{first}"), headers=headers).json()["payload"]
    attachment_id = payload["parts"][1]["body"]["attachmentId"]
    # An attachment id belongs to its message.
    other = http.get(_api(gmail, f"messages/{second}/attachments/{attachment_id}"), headers=headers)
    assert other.status_code == 400
    assert (
        http.get(_api(gmail, f"messages/{first}/attachments/garbage"), headers=headers).status_code
        == 400
    )


# ---------------------------------------------------------------------- list, modify, labels


def test_list_filters_and_pages(gmail: FakeGmail, http: requests.Session, clock: Any) -> None:
    ids = []
    for index in range(5):
        ids.append(gmail.deliver(MAILBOX, _sample(subject=f"n{index}")))
        clock.now += timedelta(minutes=10)
    spam = gmail.deliver(MAILBOX, _sample(), label_ids=["SPAM"])
    headers = _auth(gmail)
    listed = http.get(_api(gmail, "messages?labelIds=INBOX&maxResults=2"), headers=headers).json()
    assert [m["id"] for m in listed["messages"]] == [ids[4], ids[3]]
    assert listed["resultSizeEstimate"] == 5
    seen = [m["id"] for m in listed["messages"]]
    while "nextPageToken" in listed:
        listed = http.get(
            _api(
                gmail, f"messages?labelIds=INBOX&maxResults=2&pageToken={listed['nextPageToken']}"
            ),
            headers=headers,
        ).json()
        seen += [m["id"] for m in listed["messages"]]
    assert seen == list(reversed(ids))
    everything = http.get(_api(gmail, "messages"), headers=headers).json()
    assert spam not in [m["id"] for m in everything["messages"]]
    with_spam = http.get(_api(gmail, "messages?includeSpamTrash=true"), headers=headers).json()
    assert spam in [m["id"] for m in with_spam["messages"]]
    cutoff = int((clock.now - timedelta(minutes=25)).timestamp())
    recent = http.get(_api(gmail, f"messages?q=after:{cutoff} in:inbox"), headers=headers).json()
    assert [m["id"] for m in recent["messages"]] == [ids[4], ids[3]]
    subject = http.get(_api(gmail, "messages?q=subject:n2 from:zoe"), headers=headers).json()
    assert [m["id"] for m in subject["messages"]] == [ids[2]]
    none = http.get(_api(gmail, "messages?q=is:starred"), headers=headers).json()
    assert none == {"resultSizeEstimate": 0}
    # Negated terms (what the library's full sync sends), spam asked for in the query itself.
    not_sent = http.get(_api(gmail, f"messages?q=after:{cutoff} -in:sent -in:drafts"),
                        headers=headers).json()
    assert [m["id"] for m in not_sent["messages"]] == [ids[4], ids[3]]
    not_n2 = http.get(_api(gmail, '-subject:"n2" in:inbox'.join(["messages?q=", ""])),
                      headers=headers).json()
    assert ids[2] not in [m["id"] for m in not_n2["messages"]]
    assert len(not_n2["messages"]) == 4
    in_spam = http.get(_api(gmail, "messages?q=in:spam"), headers=headers).json()
    assert [m["id"] for m in in_spam["messages"]] == [spam]
    for unsupported in ("larger:10M", "n1 OR n2", "{in:inbox in:sent}", "plainword"):
        answer = http.get(_api(gmail, "messages"), params={"q": unsupported}, headers=headers)
        assert answer.status_code == 400, unsupported
    assert http.get(_api(gmail, "messages?pageToken=bogus"), headers=headers).status_code == 400


def test_modify_labels_and_history(gmail: FakeGmail, http: requests.Session) -> None:
    headers = _auth(gmail)
    start = int(http.get(_api(gmail, "profile"), headers=headers).json()["historyId"])
    message_id = gmail.deliver(MAILBOX, _sample())
    label = http.post(
        _api(gmail, "labels"),
        headers=headers,
        json={
            "name": "PSA/Processed",
            "labelListVisibility": "labelShow",
            "messageListVisibility": "show",
        },
    ).json()
    assert label["id"].startswith("Label_")
    assert label["type"] == "user"
    modified = http.post(
        _api(gmail, f"messages/{message_id}/modify"),
        headers=headers,
        json={"addLabelIds": [label["id"]], "removeLabelIds": ["UNREAD"]},
    ).json()
    assert modified == {
        "id": message_id,
        "threadId": message_id,
        "labelIds": ["INBOX", label["id"]],
    }

    history = http.get(_api(gmail, f"history?startHistoryId={start}"), headers=headers).json()
    kinds = [
        next(k for k in record if k not in ("id", "messages")) for record in history["history"]
    ]
    assert kinds == ["messagesAdded", "labelsAdded", "labelsRemoved"]
    ids = [int(record["id"]) for record in history["history"]]
    assert ids == sorted(ids)
    assert ids[0] > start
    assert history["historyId"] == str(ids[-1])
    added = history["history"][0]["messagesAdded"][0]["message"]
    assert added == {"id": message_id, "threadId": message_id, "labelIds": ["INBOX", "UNREAD"]}
    assert history["history"][1]["labelsAdded"][0]["labelIds"] == [label["id"]]

    only_added = http.get(
        _api(gmail, f"history?startHistoryId={start}&historyTypes=messageAdded"), headers=headers
    ).json()
    assert len(only_added["history"]) == 1
    by_label = http.get(
        _api(gmail, f"history?startHistoryId={start}&labelId={label['id']}"), headers=headers
    ).json()
    assert len(by_label["history"]) == 2
    current = http.get(_api(gmail, f"history?startHistoryId={ids[-1]}"), headers=headers).json()
    assert current == {"historyId": str(ids[-1])}  # nothing new: no "history" key at all

    profile = http.get(_api(gmail, "profile"), headers=headers).json()
    assert profile["historyId"] == str(ids[-1])
    assert profile["messagesTotal"] == 1

    bad = http.post(
        _api(gmail, f"messages/{message_id}/modify"),
        headers=headers,
        json={"addLabelIds": ["SENT"]},
    )
    assert bad.status_code == 400
    unknown = http.post(
        _api(gmail, f"messages/{message_id}/modify"),
        headers=headers,
        json={"addLabelIds": ["Label_99"]},
    )
    assert unknown.status_code == 400


def test_labels_list_and_duplicates(gmail: FakeGmail, http: requests.Session) -> None:
    headers = _auth(gmail)
    labels = http.get(_api(gmail, "labels"), headers=headers).json()["labels"]
    inbox = next(label for label in labels if label["id"] == "INBOX")
    assert set(inbox) == {"id", "name", "messageListVisibility", "labelListVisibility", "type"}
    assert inbox["type"] == "system"
    created = http.post(_api(gmail, "labels"), headers=headers, json={"name": "Tickets"})
    assert created.status_code == 200
    assert (
        http.post(_api(gmail, "labels"), headers=headers, json={"name": "tickets"}).status_code
        == 409
    )
    assert (
        http.post(_api(gmail, "labels"), headers=headers, json={"name": "INBOX"}).status_code == 400
    )
    assert http.post(_api(gmail, "labels"), headers=headers, json={}).status_code == 400
    assert http.post(_api(gmail, "labels"), headers=headers, data=b"{oops").status_code == 400
    one = http.get(_api(gmail, f"labels/{created.json()['id']}"), headers=headers).json()
    assert one["name"] == "Tickets"


def test_history_paging_and_expiry(gmail: FakeGmail, http: requests.Session) -> None:
    headers = _auth(gmail)
    start = int(http.get(_api(gmail, "profile"), headers=headers).json()["historyId"])
    ids = [gmail.deliver(MAILBOX, _sample(subject=str(i))) for i in range(5)]
    url = _api(gmail, f"history?startHistoryId={start}&historyTypes=messageAdded&maxResults=2")
    page = http.get(url, headers=headers).json()
    seen = [r["messagesAdded"][0]["message"]["id"] for r in page["history"]]
    while "nextPageToken" in page:
        page = http.get(f"{url}&pageToken={page['nextPageToken']}", headers=headers).json()
        seen += [r["messagesAdded"][0]["message"]["id"] for r in page["history"]]
    assert seen == ids
    gmail.expire_history(MAILBOX)
    gone = http.get(_api(gmail, f"history?startHistoryId={start}"), headers=headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["status"] == "NOT_FOUND"
    fresh = gmail.mailbox(MAILBOX).history_id
    assert (
        http.get(_api(gmail, f"history?startHistoryId={fresh}"), headers=headers).status_code == 200
    )
    assert http.get(_api(gmail, "history"), headers=headers).status_code == 400
    assert http.get(_api(gmail, "history?startHistoryId=abc"), headers=headers).status_code == 400
    assert (
        http.get(
            _api(gmail, f"history?startHistoryId={fresh}&historyTypes=bogus"), headers=headers
        ).status_code
        == 400
    )


def test_history_ids_have_gaps_and_threads_follow_references(gmail: FakeGmail) -> None:
    first = gmail.deliver(MAILBOX, _sample())
    reply = gmail.deliver(
        MAILBOX,
        _sample(message_id="<reply@example.org>", in_reply_to="<first@example.org>"),
    )
    box = gmail.mailbox(MAILBOX)
    assert box.messages[reply].thread_id == box.messages[first].thread_id == first
    steps = [b.id - a.id for a, b in zip(box.history, box.history[1:], strict=False)]
    assert all(step >= 1 for step in steps)


# ---------------------------------------------------------------------- watch, auth, faults


def test_watch_and_stop(gmail: FakeGmail, http: requests.Session, clock: Any) -> None:
    headers = _auth(gmail)
    watched = http.post(
        _api(gmail, "watch"),
        headers=headers,
        json={
            "topicName": "projects/p/topics/gmail",
            "labelIds": ["INBOX"],
            "labelFilterBehavior": "include",
        },
    )
    assert watched.status_code == 200
    body = watched.json()
    assert body["historyId"] == str(gmail.mailbox(MAILBOX).history_id)
    assert int(body["expiration"]) == int((clock.now + timedelta(days=7)).timestamp() * 1000)
    assert gmail.mailbox(MAILBOX).watch is not None
    bad = http.post(_api(gmail, "watch"), headers=headers, json={"topicName": "gmail"})
    assert bad.status_code == 400
    stopped = http.post(_api(gmail, "stop"), headers=headers)
    assert stopped.status_code == 204
    assert stopped.content == b""
    assert gmail.mailbox(MAILBOX).watch is None


def test_tokens_refresh_revoke_and_expiry(gmail: FakeGmail, http: requests.Session) -> None:
    issued = gmail.issue_tokens(MAILBOX)
    form = {
        "grant_type": "refresh_token",
        "client_id": "fake-google-client",
        "client_secret": "x",
        "refresh_token": issued["refresh_token"],
    }
    refreshed = http.post(gmail.token_uri, data=form)
    assert refreshed.status_code == 200
    token = refreshed.json()
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert http.get(_api(gmail, "profile"), headers=headers).json()["emailAddress"] == MAILBOX
    gmail.expire_tokens()
    expired = http.get(_api(gmail, "profile"), headers=headers)
    assert expired.status_code == 401
    assert expired.json()["error"]["errors"][0]["reason"] == "authError"
    gmail.revoke_refresh_token(issued["refresh_token"])
    revoked = http.post(gmail.token_uri, data=form)
    assert revoked.status_code == 400
    assert revoked.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert http.post(gmail.token_uri, data={"grant_type": "password"}).status_code == 400


def test_registered_clients_and_service_accounts(mocked: tuple[FakeGmail, Any]) -> None:
    gmail, _ = mocked
    gmail.add_client("client-1", "secret-1")
    issued = gmail.issue_tokens(MAILBOX, client_id="client-1")
    form = {
        "grant_type": "refresh_token",
        "client_id": "client-1",
        "refresh_token": issued["refresh_token"],
    }
    wrong = _session().post(gmail.token_uri, data={**form, "client_secret": "nope"})
    assert wrong.status_code == 401
    assert "nope" not in wrong.text
    assert _session().post(gmail.token_uri, data={**form, "client_secret": "secret-1"}).ok
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "other@example.com"}).encode()).decode()
    grant = (
        _session()
        .post(
            gmail.token_uri,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": f"e30.{claims}.sig",
            },
        )
        .json()
    )
    profile = _session().get(
        _api(gmail, "profile"), headers={"Authorization": f"Bearer {grant['access_token']}"}
    )
    assert profile.json()["emailAddress"] == "other@example.com"
    broken = _session().post(
        gmail.token_uri,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x"},
    )
    assert broken.json()["error"] == "invalid_grant"


def test_other_mailbox_is_denied(gmail: FakeGmail, http: requests.Session) -> None:
    headers = _auth(gmail)
    assert (
        http.get(_api(gmail, "profile", user=MAILBOX.upper()), headers=headers).status_code == 200
    )
    denied = http.get(_api(gmail, "profile", user="someone@example.com"), headers=headers)
    assert denied.status_code == 403
    assert http.get(f"{gmail.base_url}/gmail/v1/nothing", headers=headers).status_code == 404


def test_faults(gmail: FakeGmail, http: requests.Session) -> None:
    headers = _auth(gmail)
    gmail.fail_next(1, status=429, retry_after=2)
    throttled = http.get(_api(gmail, "profile"), headers=headers)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    error = throttled.json()["error"]
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["status"] == "RESOURCE_EXHAUSTED"
    gmail.fail_next(1, status=403, retry_after=None)
    limited = http.get(_api(gmail, "profile"), headers=headers)
    assert limited.status_code == 403
    assert limited.json()["error"]["errors"][0] == {
        "message": "User Rate Limit Exceeded",
        "domain": "usageLimits",
        "reason": "userRateLimitExceeded",
    }
    gmail.fail_next(1, status=503)
    assert (
        http.get(_api(gmail, "profile"), headers=headers).json()["error"]["errors"][0]["reason"]
        == "backendError"
    )
    gmail.fail_next(1, status=500, path="/token")
    assert http.post(gmail.token_uri, data={}).status_code == 500
    assert http.get(_api(gmail, "profile"), headers=headers).status_code == 200


# ---------------------------------------------------------------------- batch


def _multipart(boundary: str, parts: list[str]) -> bytes:
    chunks = []
    for index, part in enumerate(parts):
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\n"
            f"Content-ID: <item-{index}>\r\n\r\n{part}\r\n"
        )
    return ("".join(chunks) + f"--{boundary}--\r\n").encode()


def _parse_batch(response: requests.Response) -> list[tuple[str, int, Any]]:
    envelope = message_from_bytes(
        b"Content-Type: "
        + response.headers["Content-Type"].encode()
        + b"\r\n\r\n"
        + response.content,
        policy=compat32,
    )
    out = []
    for part in envelope.get_payload():
        text = part.get_payload()
        head, _, body = text.partition("\r\n\r\n")
        status = int(head.split()[1])
        out.append((part["Content-ID"], status, json.loads(body) if body.strip() else None))
    return out


def test_batch_multipart(gmail: FakeGmail, http: requests.Session) -> None:
    first = gmail.deliver(MAILBOX, _sample())
    token = gmail.issue_tokens(MAILBOX)["access_token"]
    prefix = "/" + gmail.base_url.split("/", 3)[3] if gmail.base_url.count("/") > 2 else ""
    parts = [
        f"GET {prefix}/gmail/v1/users/me/messages/{first}?format=minimal HTTP/1.1\r\n"
        f"Authorization: Bearer {token}",
        f"GET {prefix}/gmail/v1/users/me/messages/missing HTTP/1.1\r\n"
        f"Authorization: Bearer {token}",
        # A part relative to the API root, as some hand-built batches send.
        f"POST /gmail/v1/users/me/messages/{first}/modify HTTP/1.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\r\n"
        '{"removeLabelIds": ["UNREAD"]}',
        "GET /gmail/v1/users/me/profile HTTP/1.1",
    ]
    response = http.post(
        f"{gmail.base_url}/batch/gmail/v1",
        data=_multipart("b0und", parts),
        headers={"Content-Type": "multipart/mixed; boundary=b0und"},
    )
    assert response.status_code == 200
    results = _parse_batch(response)
    assert [r[0] for r in results] == [f"<response-item-{i}>" for i in range(4)]
    assert results[0][1] == 200
    assert results[0][2]["labelIds"] == ["INBOX", "UNREAD"]
    assert results[1][1] == 404
    assert results[2][1] == 200
    assert results[2][2]["labelIds"] == ["INBOX"]
    assert results[3][1] == 401  # each part needs credentials (here none, outer had none either)
    assert gmail.count("/modify") == 1


def test_batch_limits(gmail: FakeGmail, http: requests.Session) -> None:
    parts = ["GET /gmail/v1/users/me/profile HTTP/1.1"] * 101
    response = http.post(
        f"{gmail.base_url}/batch",
        data=_multipart("xyz", parts),
        headers={"Content-Type": "multipart/mixed; boundary=xyz", **_auth(gmail)},
    )
    assert response.status_code == 400
    assert "Limit: 100" in response.json()["error"]["message"]
    hundred = http.post(
        f"{gmail.base_url}/batch",
        data=_multipart("xyz", parts[:100]),
        headers={"Content-Type": "multipart/mixed; boundary=xyz", **_auth(gmail)},
    )
    assert hundred.status_code == 200
    assert len(_parse_batch(hundred)) == 100
    assert all(status == 200 for _, status, _ in _parse_batch(hundred))
    not_multipart = http.post(f"{gmail.base_url}/batch", data=b"{}", headers=_auth(gmail))
    assert not_multipart.status_code == 400


def test_google_api_client_batch_runs_against_the_fake(mocked: tuple[FakeGmail, Any]) -> None:
    from googleapiclient.discovery import build
    from googleapiclient.http import HttpRequest

    gmail, _ = mocked
    first = gmail.deliver(MAILBOX, _sample())
    second = gmail.deliver(MAILBOX, _sample(subject="two"))
    token = gmail.issue_tokens(MAILBOX)["access_token"]
    session = _session()

    class RequestsHttp:
        """The smallest httplib2-shaped transport over requests (as the adapter uses)."""

        def request(
            self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any
        ) -> Any:
            import httplib2

            response = session.request(method, uri, data=body, headers=headers)
            info = {k.lower(): v for k, v in response.headers.items()}
            info["status"] = str(response.status_code)
            return httplib2.Response(info), response.content

    service = build(
        "gmail",
        "v1",
        http=RequestsHttp(),
        static_discovery=True,
        cache_discovery=False,
        requestBuilder=HttpRequest,
    )
    results: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        results[request_id] = exception or response

    batch = service.new_batch_http_request(callback=collect)
    for message_id in (first, second):
        request = service.users().messages().get(userId="me", id=message_id, format="metadata")
        request.headers["authorization"] = f"Bearer {token}"
        batch.add(request, request_id=message_id)
    batch.execute()
    assert {key: value["id"] for key, value in results.items()} == {first: first, second: second}


# ---------------------------------------------------------------------- pushes


def test_push_body_is_a_pubsub_envelope(gmail: FakeGmail) -> None:
    gmail.deliver(MAILBOX, _sample())
    body = json.loads(gmail.push_body(MAILBOX))
    data = json.loads(base64.b64decode(body["message"]["data"]))
    assert data == {"emailAddress": MAILBOX, "historyId": gmail.mailbox(MAILBOX).history_id}
    assert body["subscription"] == gmail.subscription
    assert body["message"]["messageId"] == body["message"]["message_id"]
    with pytest.raises(KeyError):
        gmail.push_body("nobody@example.com")


def test_push_sends_a_verifiable_oidc_token(
    mocked: tuple[FakeGmail, responses.RequestsMock], signer: TestOidcSigner
) -> None:
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    gmail, mock = mocked
    gmail.deliver(MAILBOX, _sample())
    received: list[Any] = []

    def webhook(request: Any) -> tuple[int, dict[str, str], str]:
        received.append(request)
        return 204, {}, ""

    url = "https://app.example/hooks/gmail"
    mock.add_callback(responses.POST, url, callback=webhook)
    with pytest.raises(RuntimeError, match="no active watch"):
        gmail.push(url, MAILBOX)
    _session().post(
        _api(gmail, "watch"), headers=_auth(gmail), json={"topicName": "projects/p/topics/t"}
    )
    delivery = gmail.push(url, MAILBOX)
    assert delivery.ok
    assert delivery.status == 204
    (request,) = received
    token = request.headers["Authorization"].removeprefix("Bearer ")
    # The fake serves the signer's certificates, so google-auth verifies the token end to end.
    session = _session()
    claims = id_token.verify_token(
        token, Request(session=session), audience=url, certs_url=gmail.certs_url
    )
    assert claims["email"] == "gmail-push@mailparity-test.iam.gserviceaccount.com"
    assert claims["aud"] == url
    sent = json.loads(request.body)
    assert sent["message"]["data"] == json.loads(gmail.push_body(MAILBOX))["message"]["data"]
    assert request.headers["Content-Type"] == "application/json"
    assert gmail.count("/certs") == 1


def test_push_reports_connection_errors(mocked: tuple[FakeGmail, responses.RequestsMock]) -> None:
    gmail, mock = mocked
    gmail.deliver(MAILBOX, _sample())
    mock.add(responses.POST, "https://down.example/hook", body=requests.ConnectionError("down"))
    delivery = gmail.push("https://down.example/hook", MAILBOX, require_watch=False)
    assert delivery.status is None
    assert delivery.error == "ConnectionError"
    assert not delivery.ok


def test_deliver_rejects_bad_input(gmail: FakeGmail) -> None:
    with pytest.raises(KeyError):
        gmail.deliver(MAILBOX, _sample(), label_ids=["NOPE"])
    with pytest.raises(TypeError):
        gmail.deliver(MAILBOX, "text")  # type: ignore[arg-type]
    assert gmail.add_label(MAILBOX, "Custom").startswith("Label_")


# ---------------------------------------------------------------------- builder


def test_builder_output_is_7bit_and_decodes_back() -> None:
    from email import message_from_bytes as parse
    from email.policy import default

    raw = build_message(
        from_="Zoë Müller <zoe@example.org>",
        to=[("Ünïcode Name", "u@example.com"), "plain@example.com"],
        subject="Grüße ☕",
        text="Grüße",
        attachments=[("résumé.pdf", b"%PDF")],
        references=["a@x", "<b@x>"],
        date="Thu, 01 Jan 2026 00:00:00 +0000",
        headers=[("X-Dup", "1"), ("X-Dup", "2")],
    )
    raw.decode("ascii")  # 7-bit clean: encoded-words, QP/base64, RFC 2231
    message = parse(raw, policy=default)
    assert message["Subject"] == "Grüße ☕"
    assert message["From"].addresses[0].display_name == "Zoë Müller"
    assert [a.addr_spec for a in message["To"].addresses] == ["u@example.com", "plain@example.com"]
    assert message["References"] == "<a@x> <b@x>"
    assert message.get_all("X-Dup") == ["1", "2"]
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "résumé.pdf"
    assert b"\r\n" in raw


def test_builder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not an address"):
        build_message(from_="nobody", to=MAILBOX, subject="x")
    with pytest.raises(ValueError, match="inline_images need an html body"):
        build_message(from_=MAILBOX, to=MAILBOX, subject="x", inline_images=[("c", b"x")])
    with pytest.raises(ValueError, match="not a content type"):
        build_message(from_=MAILBOX, to=MAILBOX, subject="x", attachments=[("a", b"x", "bogus")])
