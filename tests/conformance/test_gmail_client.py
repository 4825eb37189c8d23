"""FakeGmail driven by Google's own ``google-api-python-client``, built from the discovery
document bundled with it (``static_discovery=True``), over real HTTP on 127.0.0.1.

The client forms every request from Google's description of the API (paths, parameter names and
types, repeated parameters, ``alt=json``, its multipart batch format) and refuses parameters the
API does not have; each answer is also checked against the discovery document's response schema
(``schema_errors``: no property Google does not define, uint64/int64 values as strings, bytes as
base64url). Every endpoint the library calls or the testing kit documents is called here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mailparity.testing.builder import build_message
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.server import FakeServer, serve

from ._clients import discovery_document, gmail_batch, gmail_service, schema_errors

pytest.importorskip(
    "googleapiclient", reason="google-api-python-client is in the testing and dev extras"
)

from googleapiclient.errors import HttpError

BOX = "help@example.test"
DOC = discovery_document()


@pytest.fixture
def served() -> Iterator[tuple[FakeGmail, FakeServer]]:
    gmail = FakeGmail(seed=12)
    with serve(gmail) as server:
        gmail.add_mailbox(BOX)
        yield gmail, server


@pytest.fixture
def users(served: tuple[FakeGmail, FakeServer]) -> Any:
    gmail, _ = served
    return gmail_service(gmail, BOX).users()


def _raw(n: int = 1, **extra: Any) -> bytes:
    values: dict[str, Any] = {
        "from_": ("Zoë Müller", "zoe@example.org"),
        "to": [("Help Desk", BOX)],
        "subject": f"Grüße {n}",
        "text": f"Hello {n}",
        "html": f"<p>Hello <b>{n}</b></p>",
        "attachments": [("résumé.pdf", b"%PDF-1.4 data", "application/pdf")],
        "message_id": f"<g{n}@example.org>",
    }
    values.update(extra)
    return build_message(**values)


def _conforms(schema: str, value: Any) -> Any:
    errors = schema_errors(DOC, schema, value)
    assert errors == [], errors
    return value


def _walk(part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield part
    for child in part.get("parts", []):
        yield from _walk(child)


# ------------------------------------------------------------------------ profile, messages


def test_profile(served: Any, users: Any) -> None:
    profile = _conforms("Profile", users.getProfile(userId="me").execute())
    assert profile["emailAddress"] == BOX
    assert int(profile["historyId"]) > 0
    # The mailbox's own address works as userId too; another one is refused.
    assert users.getProfile(userId=BOX).execute() == profile
    with pytest.raises(HttpError) as info:
        users.getProfile(userId="someone-else@example.test").execute()
    assert info.value.status_code == 403


def test_get_full_raw_metadata_and_minimal(served: Any, users: Any) -> None:
    gmail, _ = served
    raw = _raw()
    message_id = gmail.deliver(BOX, raw)
    get = users.messages().get
    full = _conforms("Message", get(userId="me", id=message_id, format="full").execute())
    raw_form = _conforms("Message", get(userId="me", id=message_id, format="raw").execute())
    metadata = _conforms(
        "Message",
        get(userId="me", id=message_id, format="metadata",
            metadataHeaders=["From", "Subject"]).execute(),
    )
    minimal = _conforms("Message", get(userId="me", id=message_id, format="minimal").execute())

    assert full["id"] == raw_form["id"] == message_id
    assert full["labelIds"] == ["INBOX", "UNREAD"]
    assert full["payload"]["mimeType"] == "multipart/mixed"
    leaves = [p for p in _walk(full["payload"]) if "parts" not in p]
    assert {p["mimeType"] for p in leaves} >= {"text/plain", "text/html", "application/pdf"}
    assert base64.urlsafe_b64decode(raw_form["raw"] + "==") == raw
    assert "payload" not in raw_form
    assert [h["name"] for h in metadata["payload"]["headers"]] == ["From", "Subject"]
    assert "parts" not in metadata["payload"]
    assert "payload" not in minimal
    with pytest.raises(TypeError):  # the discovery document knows the allowed formats
        get(userId="me", id=message_id, format="everything")


def test_attachment_by_its_id(served: Any, users: Any) -> None:
    gmail, _ = served
    message_id = gmail.deliver(BOX, _raw())
    full = users.messages().get(userId="me", id=message_id).execute()
    pdf = next(p for p in _walk(full["payload"]) if p.get("filename") == "résumé.pdf")
    answer = _conforms(
        "MessagePartBody",
        users.messages().attachments().get(
            userId="me", messageId=message_id, id=pdf["body"]["attachmentId"]
        ).execute(),
    )
    assert base64.urlsafe_b64decode(answer["data"] + "==") == b"%PDF-1.4 data"
    assert answer["size"] == pdf["body"]["size"] == len(b"%PDF-1.4 data")


def test_list_with_search_syntax_labels_and_pages(served: Any, users: Any) -> None:
    gmail, _ = served
    now = datetime.now(timezone.utc)
    inbox = [
        gmail.deliver(BOX, _raw(n), internal_date=now - timedelta(minutes=10 - n))
        for n in range(3)
    ]
    sent = gmail.deliver(BOX, _raw(7), ["SENT"], internal_date=now)
    draft = gmail.deliver(BOX, _raw(8), ["DRAFT"], internal_date=now)
    spam = gmail.deliver(BOX, _raw(9), ["SPAM"], internal_date=now)
    listing = users.messages().list
    since = int((now - timedelta(hours=1)).timestamp())

    # What the library's full sync sends after a history 404.
    full_sync = _conforms(
        "ListMessagesResponse",
        listing(userId="me", q=f"after:{since} -in:sent -in:drafts", maxResults=500).execute(),
    )
    assert [m["id"] for m in full_sync["messages"]] == list(reversed(inbox))
    assert sent not in [m["id"] for m in full_sync["messages"]]
    assert draft not in [m["id"] for m in full_sync["messages"]]

    first = listing(userId="me", labelIds=["INBOX"], maxResults=2).execute()
    second = listing(
        userId="me", labelIds=["INBOX"], maxResults=2, pageToken=first["nextPageToken"]
    ).execute()
    assert [m["id"] for m in first["messages"] + second["messages"]] == list(reversed(inbox))
    assert "nextPageToken" not in second
    assert spam not in [m["id"] for m in listing(userId="me").execute()["messages"]]
    with_spam = listing(userId="me", includeSpamTrash=True).execute()
    assert spam in [m["id"] for m in with_spam["messages"]]
    subject = listing(userId="me", q='subject:"Grüße 1" newer_than:1d').execute()
    assert [m["id"] for m in subject["messages"]] == [inbox[1]]

    with pytest.raises(HttpError) as info:  # the fake refuses what it cannot evaluate
        listing(userId="me", q="larger:10M").execute()
    assert info.value.status_code == 400


def test_labels_list_create_get_and_modify(served: Any, users: Any) -> None:
    gmail, _ = served
    message_id = gmail.deliver(BOX, _raw())
    listed = _conforms("ListLabelsResponse", users.labels().list(userId="me").execute())
    assert {"INBOX", "UNREAD", "SENT"} <= {label["id"] for label in listed["labels"]}
    created = _conforms(
        "Label", users.labels().create(userId="me", body={"name": "PSA/Processed"}).execute()
    )
    assert _conforms("Label", users.labels().get(userId="me", id=created["id"]).execute()) == (
        created
    )
    with pytest.raises(HttpError) as info:
        users.labels().create(userId="me", body={"name": "PSA/Processed"}).execute()
    assert info.value.status_code == 409
    modified = _conforms(
        "Message",
        users.messages().modify(
            userId="me", id=message_id,
            body={"addLabelIds": [created["id"]], "removeLabelIds": ["UNREAD"]},
        ).execute(),
    )
    assert modified["labelIds"] == ["INBOX", created["id"]]
    with pytest.raises(HttpError) as bad:
        users.messages().modify(userId="me", id=message_id,
                                body={"addLabelIds": ["Label_404"]}).execute()
    assert bad.value.status_code == 400


# ------------------------------------------------------------------------ history, watch


def test_history_types_paging_label_filter_and_404(served: Any, users: Any) -> None:
    gmail, _ = served
    start = users.getProfile(userId="me").execute()["historyId"]
    ids = [gmail.deliver(BOX, _raw(n)) for n in range(3)]
    users.messages().modify(userId="me", id=ids[0], body={"removeLabelIds": ["UNREAD"]}).execute()
    history = users.history().list

    records: list[dict[str, Any]] = []
    page = _conforms(
        "ListHistoryResponse",
        history(userId="me", startHistoryId=start, historyTypes=["messageAdded"],
                maxResults=2).execute(),
    )
    records += page["history"]
    while "nextPageToken" in page:
        page = _conforms(
            "ListHistoryResponse",
            history(userId="me", startHistoryId=start, historyTypes=["messageAdded"],
                    maxResults=2, pageToken=page["nextPageToken"]).execute(),
        )
        records += page.get("history", [])
    assert [r["messagesAdded"][0]["message"]["id"] for r in records] == ids
    removed = history(userId="me", startHistoryId=start, historyTypes=["labelRemoved"]).execute()
    assert [r["labelsRemoved"][0]["labelIds"] for r in removed["history"]] == [["UNREAD"]]
    inbox_only = history(userId="me", startHistoryId=start, labelId="INBOX").execute()
    assert len(inbox_only["history"]) == 4
    with pytest.raises(TypeError):  # not a history type in the discovery document
        history(userId="me", startHistoryId=start, historyTypes=["messageChanged"])

    gmail.expire_history(BOX)
    with pytest.raises(HttpError) as info:
        history(userId="me", startHistoryId=start).execute()
    assert info.value.status_code == 404
    assert info.value.error_details[0]["reason"] == "notFound"


def test_watch_and_stop(served: Any, users: Any) -> None:
    gmail, _ = served
    answer = _conforms(
        "WatchResponse",
        users.watch(userId="me", body={
            "topicName": "projects/mailparity-test/topics/gmail", "labelIds": ["INBOX"],
            "labelFilterBehavior": "include",
        }).execute(),
    )
    assert int(answer["expiration"]) > int(datetime.now(timezone.utc).timestamp() * 1000)
    assert gmail.mailbox(BOX).watch is not None
    users.stop(userId="me").execute()
    assert gmail.mailbox(BOX).watch is None
    with pytest.raises(HttpError) as info:
        users.watch(userId="me", body={"topicName": "not-a-topic"}).execute()
    assert info.value.status_code == 400


# ------------------------------------------------------------------------ batch, faults


def test_batch_mixes_answers_per_part(served: Any, users: Any) -> None:
    gmail, _ = served
    service = gmail_service(gmail, BOX)
    ids = [gmail.deliver(BOX, _raw(n)) for n in range(3)]
    answers: dict[str, Any] = {}

    def callback(request_id: str, response: Any, exception: Any) -> None:
        answers[request_id] = exception if exception is not None else response

    batch = gmail_batch(gmail, callback)
    for message_id in ids:
        batch.add(service.users().messages().get(userId="me", id=message_id, format="full"),
                  request_id=message_id)
    batch.add(service.users().messages().get(userId="me", id="ffffffffffffffff"),
              request_id="missing")
    gmail.fail_next(1, status=429, retry_after=None, path=f"/messages/{ids[2]}")
    batch.execute()

    assert [answers[i]["id"] for i in ids[:2]] == ids[:2]
    for message_id in ids[:2]:
        _conforms("Message", answers[message_id])
    assert isinstance(answers[ids[2]], HttpError)
    assert answers[ids[2]].status_code == 429
    assert answers[ids[2]].error_details[0]["reason"] == "rateLimitExceeded"
    assert isinstance(answers["missing"], HttpError)
    assert answers["missing"].status_code == 404


def test_rate_limits_and_retry_by_the_client(served: Any, users: Any) -> None:
    gmail, _ = served
    request = users.getProfile(userId="me")
    gmail.fail_next(1, status=403, retry_after=None)
    with pytest.raises(HttpError) as info:
        request.execute()
    assert info.value.status_code == 403
    assert info.value.error_details[0]["reason"] == "userRateLimitExceeded"

    # googleapiclient retries a 429 itself (num_retries); its sleep is stubbed (no real wait).
    gmail.fail_next(2, status=429, retry_after=None)
    request._sleep = lambda seconds: None
    assert request.execute(num_retries=2)["emailAddress"] == BOX

    # An expired access token: the fake answers 401, google-auth refreshes through the fake's
    # token endpoint and the client repeats the call.
    gmail.expire_tokens()
    assert users.getProfile(userId="me").execute()["emailAddress"] == BOX
    calls = [r.url for r in gmail.requests[-3:]]
    assert calls[0].startswith(f"{gmail.base_url}/gmail/v1/users/me/profile")
    assert calls[1] == gmail.token_uri
    assert calls[2] == calls[0]


def test_push_tokens_verify_with_google_auth_against_the_fakes_certificates(served: Any) -> None:
    """google-auth's own ID-token verification accepts the fake's signed Pub/Sub push tokens
    with the certificates the fake serves (what ``WebhookHandler`` checks as well)."""
    import google.auth.transport.requests
    import requests
    from google.oauth2 import id_token

    gmail, _ = served
    audience = "https://hooks.example.com/webhooks/google"
    account = "gmail-push@mailparity-test.iam.gserviceaccount.com"
    session = requests.Session()
    session.trust_env = False
    claims = id_token.verify_token(
        gmail.signer.push_token(audience, account),
        google.auth.transport.requests.Request(session=session),
        audience=audience,
        certs_url=gmail.certs_url,
    )
    assert claims["email"] == account
    assert claims["email_verified"] is True
    assert claims["iss"] == "https://accounts.google.com"


def test_batch_after_the_access_token_expired(served: Any) -> None:
    """Each part carries its own token: googleapiclient refreshes through the fake's token
    endpoint and sends the parts answered 401 again."""
    gmail, _ = served
    service = gmail_service(gmail, BOX)
    ids = [gmail.deliver(BOX, _raw(n)) for n in range(2)]
    answers: dict[str, Any] = {}

    def callback(request_id: str, response: Any, exception: Any) -> None:
        answers[request_id] = exception if exception is not None else response

    gmail.expire_tokens()
    batch = gmail_batch(gmail, callback)
    for message_id in ids:
        batch.add(service.users().messages().get(userId="me", id=message_id, format="minimal"),
                  request_id=message_id)
    batch.execute()
    assert {key: value["id"] for key, value in answers.items()} == {i: i for i in ids}
    assert any(r.url == gmail.token_uri for r in gmail.requests)


def test_service_account_with_delegation_and_the_librarys_batch_path(served: Any) -> None:
    """google-auth's service-account credentials (domain-wide delegation: a signed JWT with
    ``sub``) against the fake's token endpoint, then googleapiclient's batch on the path the
    library uses (``/batch/gmail/v1``)."""
    import google_auth_httplib2
    import httplib2
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account
    from googleapiclient.discovery import build
    from googleapiclient.http import BatchHttpRequest

    gmail, _ = served
    message_id = gmail.deliver(BOX, _raw())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    credentials = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account", "client_email": "mail-sync@project.iam.gserviceaccount.com",
            "private_key": pem, "private_key_id": "key-1", "token_uri": gmail.token_uri,
        },
        scopes=["https://www.googleapis.com/auth/gmail.modify"], subject=BOX,
    )
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(proxy_info=None))
    service = build("gmail", "v1", http=http, static_discovery=True, cache_discovery=False,
                    client_options={"api_endpoint": gmail.base_url + "/"})
    assert service.users().getProfile(userId="me").execute()["emailAddress"] == BOX
    answers: dict[str, Any] = {}
    batch = BatchHttpRequest(
        callback=lambda rid, response, exc: answers.__setitem__(rid, exc or response),
        batch_uri=f"{gmail.base_url}/batch/gmail/v1",
    )
    batch.add(service.users().messages().get(userId="me", id=message_id), request_id="one")
    batch.execute()
    assert answers["one"]["id"] == message_id
    grants = [r for r in gmail.requests if r.url == gmail.token_uri]
    assert grants
    assert b"jwt-bearer" in (grants[0].body or b"")
