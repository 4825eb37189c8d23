"""FakeGraph: every endpoint through ``requests``, in both running modes, checked against the
shapes of the real Graph payloads in the corpus; faults, delta semantics, batch, notifications."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from mailparity.testing.builder import build_message
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import serve

MAILBOX = "alex@contoso.example"


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback through an environment proxy
    return session


@pytest.fixture
def http() -> requests.Session:
    return _session()


@pytest.fixture(params=["responses", "server"])
def graph(request: pytest.FixtureRequest, clock: Any) -> Iterator[FakeGraph]:
    fake = FakeGraph(clock=clock, seed=7)
    if request.param == "responses":
        with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
            fake.register(mock)
            yield fake
    else:
        with serve(fake):
            yield fake


@pytest.fixture
def mocked(clock: Any) -> Iterator[tuple[FakeGraph, responses.RequestsMock]]:
    fake = FakeGraph(clock=clock, seed=3)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.register(mock)
        yield fake, mock


def _auth(fake: FakeGraph, mailbox: str = MAILBOX, immutable: bool = True) -> dict[str, str]:
    token = fake.issue_tokens(mailbox)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    if immutable:
        headers["Prefer"] = 'IdType="ImmutableId"'
    return headers


def _sample(**overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "from_": ("Zoë Müller", "zoe@example.org"),
        "to": [("Alex Wilber", MAILBOX)],
        "cc": ["carol@example.org"],
        "subject": "Grüße: invoice ☕",
        "text": "Hello Alex,\nsee attached.",
        "html": '<p>Hello <b>Alex</b>,<br>see attached.</p><img src="cid:logo1">',
        "inline_images": [("logo1", b"\x89PNG-bytes", "image/png")],
        "attachments": [("résumé.pdf", b"%PDF-1.4 data", "application/pdf")],
        "message_id": "<first@example.org>",
        "headers": [("X-Custom-Header", "WA001")],
    }
    values.update(overrides)
    return build_message(**values)


def _corpus(corpus_dir: Path, name: str) -> Any:
    return json.loads((corpus_dir / "graph_api" / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- rendering vs the corpus


def test_message_has_the_keys_of_a_real_graph_message(
    graph: FakeGraph, http: requests.Session, corpus_dir: Path
) -> None:
    real = _corpus(corpus_dir, "msgraphdocs__message-get__get_message.json")
    message_id = graph.deliver(MAILBOX, _sample())
    response = http.get(f"{graph.base_url}/me/messages/{message_id}", headers=_auth(graph))
    assert response.status_code == 200
    body = response.json()
    assert set(real) <= set(body)
    assert "internetMessageHeaders" not in body  # only with $select, as in Graph
    assert body["id"] == message_id
    assert body["subject"] == "Grüße: invoice ☕"
    assert body["from"] == {"emailAddress": {"name": "Zoë Müller", "address": "zoe@example.org"}}
    assert body["sender"] == body["from"]
    assert body["toRecipients"] == [{"emailAddress": {"name": "Alex Wilber", "address": MAILBOX}}]
    # Exchange fills a missing display name with the address.
    assert body["ccRecipients"][0]["emailAddress"]["name"] == "carol@example.org"
    assert body["body"]["contentType"] == "html"
    assert "<b>Alex</b>" in body["body"]["content"]
    assert body["bodyPreview"] == "Hello Alex, see attached."
    assert body["internetMessageId"] == "<first@example.org>"
    assert body["hasAttachments"] is True
    assert body["isRead"] is False
    assert body["parentFolderId"] == graph.user(MAILBOX).folder("inbox").id  # type: ignore[union-attr]
    assert body["@odata.etag"] == f'W/"{body["changeKey"]}"'
    for key in ("receivedDateTime", "sentDateTime", "createdDateTime"):
        assert body[key].endswith("Z")


def test_select_headers_and_expand_attachments_like_graph(
    graph: FakeGraph, http: requests.Session, corpus_dir: Path
) -> None:
    real_headers = _corpus(corpus_dir, "msgraphdocs__message-get__get_message_headers.json")
    real_attachment = _corpus(
        corpus_dir, "msgraphdocs__attachment-get__get_file_attachment_v1.json"
    )
    message_id = graph.deliver(MAILBOX, _sample())
    url = (
        f"{graph.base_url}/users/{MAILBOX}/messages/{message_id}"
        "?$select=id,subject,internetMessageHeaders,hasAttachments&$expand=attachments"
    )
    body = http.get(url, headers=_auth(graph)).json()
    assert set(real_headers) - {"@odata.context"} <= set(body)
    assert set(body) - {"@odata.context", "attachments@odata.context"} == {
        "@odata.etag",
        "id",
        "subject",
        "internetMessageHeaders",
        "hasAttachments",
        "attachments",
    }
    names = [item["name"] for item in body["internetMessageHeaders"]]
    assert names[:2] == ["From", "To"]
    assert {"name": "X-Custom-Header", "value": "WA001"} in body["internetMessageHeaders"]
    # Header values are as sent: encoded-words stay encoded.
    subject = next(i["value"] for i in body["internetMessageHeaders"] if i["name"] == "Subject")
    assert subject.startswith("=?utf-8?")
    attachments = body["attachments"]
    assert len(attachments) == 2
    for item in attachments:
        assert set(real_attachment) - {"@odata.context"} <= set(item)
    inline, pdf = attachments
    assert inline["isInline"] is True
    assert inline["contentId"] == "logo1"
    assert pdf["name"] == "résumé.pdf"
    assert pdf["isInline"] is False
    assert base64.b64decode(pdf["contentBytes"]) == b"%PDF-1.4 data"
    assert pdf["size"] == len(b"%PDF-1.4 data")

    narrow = http.get(
        f"{graph.base_url}/me/messages/{message_id}?$select=id&$expand=attachments($select=id,name)",
        headers=_auth(graph),
    ).json()
    assert [set(item) for item in narrow["attachments"]] == [{"@odata.type", "id", "name"}] * 2


def test_bad_select_and_expand_are_rejected(graph: FakeGraph, http: requests.Session) -> None:
    message_id = graph.deliver(MAILBOX, _sample())
    base = f"{graph.base_url}/me/messages/{message_id}"
    bad = http.get(f"{base}?$select=nope", headers=_auth(graph))
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "RequestBroker--ParseUri"
    assert http.get(f"{base}?$expand=whatever", headers=_auth(graph)).status_code == 400


def test_raw_mime_and_attachment_value(graph: FakeGraph, http: requests.Session) -> None:
    raw = _sample()
    message_id = graph.deliver(MAILBOX, raw)
    headers = _auth(graph)
    value = http.get(f"{graph.base_url}/me/messages/{message_id}/$value", headers=headers)
    assert value.status_code == 200
    assert value.content == raw
    listing = http.get(f"{graph.base_url}/me/messages/{message_id}/attachments", headers=headers)
    pdf = listing.json()["value"][1]
    one = http.get(
        f"{graph.base_url}/me/messages/{message_id}/attachments/{pdf['id']}", headers=headers
    )
    assert one.json()["name"] == "résumé.pdf"
    content = http.get(
        f"{graph.base_url}/me/messages/{message_id}/attachments/{pdf['id']}/$value", headers=headers
    )
    assert content.content == b"%PDF-1.4 data"
    assert content.headers["Content-Type"] == "application/pdf"
    missing = http.get(
        f"{graph.base_url}/me/messages/{message_id}/attachments/nope", headers=headers
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"


def test_text_body_preference(graph: FakeGraph, http: requests.Session) -> None:
    message_id = graph.deliver(MAILBOX, _sample())
    headers = _auth(graph)
    headers["Prefer"] += ', outlook.body-content-type="text"'
    response = http.get(f"{graph.base_url}/me/messages/{message_id}", headers=headers)
    assert response.json()["body"] == {
        "contentType": "text",
        "content": "Hello Alex,\r\nsee attached.\r\n",
    }
    assert response.headers["Preference-Applied"] == 'outlook.body-content-type="text"'


def test_forwarded_message_is_an_item_attachment(graph: FakeGraph, http: requests.Session) -> None:
    inner = build_message(from_="a@example.org", to=MAILBOX, subject="Inner", text="x")
    message_id = graph.deliver(
        MAILBOX,
        _sample(attachments=[("fwd.eml", inner, "message/rfc822")], inline_images=(), html=None),
    )
    body = http.get(
        f"{graph.base_url}/me/messages/{message_id}?$expand=attachments", headers=_auth(graph)
    ).json()
    (item,) = body["attachments"]
    assert item["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert item["contentType"] is None
    assert "contentBytes" not in item
    raw = http.get(
        f"{graph.base_url}/me/messages/{message_id}/attachments/{item['id']}/$value",
        headers=_auth(graph),
    )
    assert b"Subject: Inner" in raw.content


# ---------------------------------------------------------------------- ids, updates, folders


def test_ids_follow_the_immutable_id_preference(graph: FakeGraph, http: requests.Session) -> None:
    message_id = graph.deliver(MAILBOX, _sample())
    rest_before = graph.rest_id(message_id)
    plain = _auth(graph, immutable=False)
    assert http.get(f"{graph.base_url}/me/messages/{rest_before}", headers=plain).json()["id"] == (
        rest_before
    )
    moved = http.post(
        f"{graph.base_url}/me/messages/{message_id}/move",
        headers=_auth(graph),
        json={"destinationId": "archive"},
    )
    assert moved.status_code == 201
    assert moved.json()["id"] == message_id  # immutable ids survive a move
    assert moved.json()["parentFolderId"] == graph.user(MAILBOX).folder("archive").id  # type: ignore[union-attr]
    stale = http.get(f"{graph.base_url}/me/messages/{rest_before}", headers=plain)
    assert stale.status_code == 404
    assert stale.json()["error"]["code"] == "ErrorItemNotFound"
    assert http.get(f"{graph.base_url}/me/messages/{message_id}", headers=plain).json()["id"] == (
        graph.rest_id(message_id)
    )
    bad = http.post(
        f"{graph.base_url}/me/messages/{message_id}/move", headers=_auth(graph), json={}
    )
    assert bad.status_code == 400


def test_patch_read_and_categories(graph: FakeGraph, http: requests.Session) -> None:
    message_id = graph.deliver(MAILBOX, _sample())
    url = f"{graph.base_url}/me/messages/{message_id}"
    before = http.get(url, headers=_auth(graph)).json()["changeKey"]
    patched = http.patch(
        url, headers=_auth(graph), json={"isRead": True, "categories": ["PSA/Processed"]}
    )
    assert patched.status_code == 200
    assert patched.json()["isRead"] is True
    assert patched.json()["categories"] == ["PSA/Processed"]
    assert patched.json()["changeKey"] != before
    assert graph.message(message_id).is_read is True
    assert http.patch(url, headers=_auth(graph), json={"subject": "x"}).status_code == 400
    assert http.patch(url, headers=_auth(graph), json={"isRead": "yes"}).status_code == 400
    assert http.patch(url, headers=_auth(graph), data=b"{not json").status_code == 400


def test_master_categories(graph: FakeGraph, http: requests.Session) -> None:
    url = f"{graph.base_url}/me/outlook/masterCategories"
    assert http.get(url, headers=_auth(graph)).json() == {"value": []}
    created = http.post(
        url, headers=_auth(graph), json={"displayName": "PSA/Processed", "color": "preset9"}
    )
    assert created.status_code == 201
    assert created.json()["displayName"] == "PSA/Processed"
    assert created.json()["id"]
    duplicate = http.post(url, headers=_auth(graph), json={"displayName": "psa/processed"})
    assert duplicate.status_code == 409
    assert (
        http.post(url, headers=_auth(graph), json={"displayName": "x", "color": "pink"}).status_code
        == 400
    )
    assert [c["displayName"] for c in http.get(url, headers=_auth(graph)).json()["value"]] == [
        "PSA/Processed"
    ]


def test_folders_and_folder_messages_paging(
    graph: FakeGraph, http: requests.Session, clock: Any
) -> None:
    ids = []
    for index in range(5):
        ids.append(graph.deliver(MAILBOX, _sample(subject=f"m{index}")))
        clock.now += timedelta(minutes=1)
    headers = _auth(graph)
    folders = http.get(f"{graph.base_url}/me/mailFolders", headers=headers).json()["value"]
    inbox = next(f for f in folders if f["displayName"] == "Inbox")
    assert inbox["totalItemCount"] == 5
    assert inbox["unreadItemCount"] == 5
    by_name = http.get(f"{graph.base_url}/me/mailFolders('Inbox')", headers=headers).json()
    assert by_name["id"] == inbox["id"]
    assert http.get(f"{graph.base_url}/me/mailFolders/nope", headers=headers).status_code == 404
    page = http.get(
        f"{graph.base_url}/me/mailFolders/inbox/messages?$top=2&$select=subject", headers=headers
    ).json()
    assert [m["subject"] for m in page["value"]] == ["m4", "m3"]  # newest first
    seen = [m["id"] for m in page["value"]]
    while "@odata.nextLink" in page:
        page = http.get(page["@odata.nextLink"], headers=headers).json()
        seen += [m["id"] for m in page["value"]]
    assert sorted(seen) == sorted(ids)


# ---------------------------------------------------------------------- delta


def _delta_round(
    fake: FakeGraph, http: requests.Session, url: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = http.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        pages += 1
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]


def test_delta_pages_changes_and_removals(
    graph: FakeGraph, http: requests.Session, corpus_dir: Path
) -> None:
    real = _corpus(corpus_dir, "msgraphdocs__delta-query-messages__delta_round1_nextlink.json")
    first = [graph.deliver(MAILBOX, _sample(subject=f"s{i}")) for i in range(3)]
    headers = _auth(graph)
    headers["Prefer"] += ", odata.maxpagesize=2"
    url = f"{graph.base_url}/me/mailFolders('inbox')/messages/delta?$select=subject,isRead"
    page = http.get(url, headers=headers).json()
    assert set(real) <= set(page)
    assert set(page["value"][0]) == {"@odata.type", "@odata.etag", "id", "subject", "isRead"}
    items, delta_link, pages = _delta_round(graph, http, url, headers)
    assert pages == 2
    assert sorted(i["id"] for i in items) == sorted(first)
    assert "$deltatoken=" in delta_link
    assert delta_link.startswith(graph.base_url)

    # Nothing changed: an empty round with a fresh deltaLink.
    items, delta_link, _ = _delta_round(graph, http, delta_link, headers)
    assert items == []

    newcomer = graph.deliver(MAILBOX, _sample(subject="new"))
    http.patch(f"{graph.base_url}/me/messages/{first[0]}", headers=headers, json={"isRead": True})
    http.post(
        f"{graph.base_url}/me/messages/{first[1]}/move",
        headers=headers,
        json={"destinationId": "deleteditems"},
    )
    items, delta_link, _ = _delta_round(graph, http, delta_link, headers)
    by_id = {item["id"]: item for item in items}
    assert by_id[newcomer]["subject"] == "new"
    assert by_id[first[0]]["isRead"] is True
    assert by_id[first[1]]["@removed"] == {"reason": "deleted"}
    assert set(by_id) == {newcomer, first[0], first[1]}


def test_expired_delta_token_is_410_and_a_fresh_round_works(
    graph: FakeGraph, http: requests.Session
) -> None:
    graph.deliver(MAILBOX, _sample())
    headers = _auth(graph)
    url = f"{graph.base_url}/me/mailFolders/inbox/messages/delta"
    _, delta_link, _ = _delta_round(graph, http, url, headers)
    graph.expire_delta_tokens()
    gone = http.get(delta_link, headers=headers)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "syncStateNotFound"
    items, _, _ = _delta_round(graph, http, url, headers)
    assert len(items) == 1
    unknown = http.get(f"{url}?$deltatoken=made-up", headers=headers)
    assert unknown.status_code == 410


def test_delta_received_filter(graph: FakeGraph, http: requests.Session, clock: Any) -> None:
    graph.deliver(MAILBOX, _sample(subject="old"))
    clock.now += timedelta(hours=1)
    graph.deliver(MAILBOX, _sample(subject="recent"))
    since = (clock.now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    url = (
        f"{graph.base_url}/me/mailFolders/inbox/messages/delta"
        f"?$filter=receivedDateTime ge {since}&$select=subject"
    )
    items, _, _ = _delta_round(graph, http, url, _auth(graph))
    assert [item["subject"] for item in items] == ["recent"]
    bad = http.get(
        f"{graph.base_url}/me/mailFolders/inbox/messages/delta?$filter=subject eq 'x'",
        headers=_auth(graph),
    )
    assert bad.status_code == 400


# ---------------------------------------------------------------------- auth


def test_token_endpoint_rotates_refresh_tokens(graph: FakeGraph, http: requests.Session) -> None:
    issued = graph.issue_tokens(MAILBOX, client_id="app-1")
    url = f"{graph.login_url}/common/oauth2/v2.0/token"
    form = {
        "grant_type": "refresh_token",
        "client_id": "app-1",
        "refresh_token": issued["refresh_token"],
    }
    first = http.post(url, data=form)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"] != issued["refresh_token"]
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert claims["preferred_username"] == MAILBOX
    assert claims["aud"] == "app-1"
    me = http.get(
        f"{graph.base_url}/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["mail"] == MAILBOX
    assert me.json()["id"] == graph.user(MAILBOX).id
    assert (
        http.get(f"{graph.base_url}/users/{MAILBOX}", headers=_auth(graph)).json()["id"]
        == (me.json()["id"])
    )

    graph.revoke_refresh_token()
    revoked = http.post(url, data={**form, "refresh_token": body["refresh_token"]})
    assert revoked.status_code == 400
    error = revoked.json()
    assert error["error"] == "invalid_grant"
    assert error["error_codes"] == [50173]
    assert error["error_description"].startswith("AADSTS50173")
    unknown = http.post(url, data={**form, "refresh_token": "not-issued"})
    assert unknown.json()["error"] == "invalid_grant"
    assert http.post(url, data={"grant_type": "password", "client_id": "app-1"}).status_code == 400


def test_strict_rotation_and_client_checks(mocked: tuple[FakeGraph, Any], clock: Any) -> None:
    graph, _ = mocked
    graph.strict_rotation = True
    graph.add_client("app-1", "s3cret")
    issued = graph.issue_tokens(MAILBOX, client_id="app-1")
    url = f"{graph.login_url}/tenant-x/oauth2/v2.0/token"
    form = {
        "grant_type": "refresh_token",
        "client_id": "app-1",
        "client_secret": "s3cret",
        "refresh_token": issued["refresh_token"],
    }
    assert _session().post(url, data=form).status_code == 200
    reused = _session().post(url, data=form)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    wrong = _session().post(url, data={**form, "client_secret": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert "s3cret" not in wrong.text
    assert "nope" not in wrong.text
    unknown = _session().post(url, data={**form, "client_id": "other"})
    assert unknown.json()["error"] == "unauthorized_client"


def test_client_credentials_and_app_only_me(graph: FakeGraph, http: requests.Session) -> None:
    graph.add_mailbox(MAILBOX)
    token = http.post(
        f"{graph.login_url}/{graph.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "daemon",
            "client_secret": "x",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()
    assert "refresh_token" not in token
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    me = http.get(f"{graph.base_url}/me", headers=headers)
    assert me.status_code == 400
    assert http.get(f"{graph.base_url}/users/{MAILBOX}/mailFolders/inbox", headers=headers).ok
    missing = http.get(f"{graph.base_url}/users/nobody@contoso.example/messages", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorInvalidUser"


def test_msal_discovery_documents(graph: FakeGraph, http: requests.Session) -> None:
    config = http.get(f"{graph.login_url}/common/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{graph.login_url}/common/oauth2/v2.0/token"
    instance = http.get(f"{graph.login_url}/common/discovery/instance?api-version=1.1").json()
    assert instance["tenant_discovery_endpoint"].endswith("/.well-known/openid-configuration")


def test_expired_missing_and_unknown_tokens_get_401(
    graph: FakeGraph, http: requests.Session, clock: Any
) -> None:
    headers = _auth(graph)
    url = f"{graph.base_url}/me"
    assert http.get(url, headers=headers).status_code == 200
    graph.expire_tokens()
    expired = http.get(url, headers=headers)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in expired.headers
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"Authorization": "Bearer bogus"}).status_code == 401
    fresh = _auth(graph)
    clock.now += timedelta(seconds=3601)
    assert http.get(url, headers=fresh).status_code == 401


# ---------------------------------------------------------------------- faults


def test_fail_next_throttles_then_recovers(graph: FakeGraph, http: requests.Session) -> None:
    headers = _auth(graph)
    graph.fail_next(2, status=429, retry_after=2.5)
    first = http.get(f"{graph.base_url}/me", headers=headers)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2.5"
    assert first.json()["error"]["code"] == "TooManyRequests"
    assert http.get(f"{graph.base_url}/me", headers=headers).status_code == 429
    assert http.get(f"{graph.base_url}/me", headers=headers).status_code == 200
    graph.fail_next(1, status=503, retry_after=None)
    unavailable = http.get(f"{graph.base_url}/me", headers=headers)
    assert unavailable.status_code == 503
    assert "Retry-After" not in unavailable.headers
    # Without a path, faults spare the sign-in.
    graph.fail_next(1, status=503)
    issued = graph.issue_tokens(MAILBOX)
    token = http.post(
        f"{graph.login_url}/common/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "fake-client-id",
            "refresh_token": issued["refresh_token"],
        },
    )
    assert token.status_code == 200
    assert http.get(f"{graph.base_url}/me", headers=headers).status_code == 503
    graph.fail_next(1, status=500, path="/oauth2/")
    assert http.post(f"{graph.login_url}/common/oauth2/v2.0/token", data={}).status_code == 500
    assert graph.count("/me") == 5
    with pytest.raises(ValueError, match="at least 1"):
        graph.fail_next(0)
    with pytest.raises(ValueError, match="error status"):
        graph.fail_next(1, status=200)


# ---------------------------------------------------------------------- subscriptions


def _subscribe(
    fake: FakeGraph, http: requests.Session, clock: Any, **extra: Any
) -> requests.Response:
    body = {
        "changeType": "created",
        "notificationUrl": "https://hooks.example/graph",
        "resource": "me/mailFolders('Inbox')/messages",
        "expirationDateTime": (clock.now + timedelta(minutes=4000)).strftime(
            "%Y-%m-%dT%H:%M:%S.0000000Z"
        ),
        "clientState": "state-secret",
    }
    body.update(extra)
    return http.post(f"{fake.base_url}/subscriptions", headers=_auth(fake), json=body)


def test_subscription_lifecycle(graph: FakeGraph, http: requests.Session, clock: Any) -> None:
    created = _subscribe(graph, http, clock)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["clientState"] == "state-secret"
    assert sub["changeType"] == "created"
    listed = http.get(f"{graph.base_url}/subscriptions", headers=_auth(graph)).json()["value"]
    assert [item["id"] for item in listed] == [sub["id"]]
    assert listed[0]["clientState"] is None  # Graph never lists clientState
    assert _subscribe(graph, http, clock).status_code == 409
    renewed = http.patch(
        f"{graph.base_url}/subscriptions/{sub['id']}",
        headers=_auth(graph),
        json={"expirationDateTime": (clock.now + timedelta(minutes=4230)).isoformat()},
    )
    assert renewed.status_code == 200
    too_far = http.patch(
        f"{graph.base_url}/subscriptions/{sub['id']}",
        headers=_auth(graph),
        json={"expirationDateTime": (clock.now + timedelta(minutes=4231)).isoformat()},
    )
    assert too_far.status_code == 400
    assert too_far.json()["error"]["code"] == "ExtensionError"
    reauth = http.post(
        f"{graph.base_url}/subscriptions/{sub['id']}/reauthorize", headers=_auth(graph)
    )
    assert reauth.status_code == 204
    assert (
        http.delete(f"{graph.base_url}/subscriptions/{sub['id']}", headers=_auth(graph)).status_code
        == 204
    )
    gone = http.patch(
        f"{graph.base_url}/subscriptions/{sub['id']}",
        headers=_auth(graph),
        json={"expirationDateTime": clock.now.isoformat()},
    )
    assert gone.status_code == 404


def test_subscription_validation_rules(
    graph: FakeGraph, http: requests.Session, clock: Any
) -> None:
    assert _subscribe(graph, http, clock, changeType="moved").status_code == 400
    assert _subscribe(graph, http, clock, resource="me/events").status_code == 400
    assert _subscribe(graph, http, clock, clientState="x" * 129).status_code == 400
    assert _subscribe(graph, http, clock, expirationDateTime="yesterday").status_code == 400
    assert (
        _subscribe(graph, http, clock, resource="me/mailFolders('nope')/messages").status_code
        == 404
    )
    missing = http.post(f"{graph.base_url}/subscriptions", headers=_auth(graph), json={})
    assert missing.status_code == 400


def test_unrenewed_subscription_expires(
    graph: FakeGraph, http: requests.Session, clock: Any
) -> None:
    sub = _subscribe(graph, http, clock).json()
    clock.now += timedelta(minutes=4001)
    assert (
        http.get(f"{graph.base_url}/subscriptions/{sub['id']}", headers=_auth(graph)).status_code
        == 404
    )


def test_validation_handshake(mocked: tuple[FakeGraph, responses.RequestsMock], clock: Any) -> None:
    graph, mock = mocked
    seen: list[str] = []

    def webhook(request: Any) -> tuple[int, dict[str, str], str]:
        token = parse_qs(urlsplit(request.url).query)["validationToken"][0]
        seen.append(token)
        return 200, {"Content-Type": "text/plain"}, token

    mock.add_callback(responses.POST, "https://hooks.example/graph", callback=webhook)
    graph.validator = FakeGraph.http_validator()
    created = _subscribe(
        graph, _session(), clock, lifecycleNotificationUrl="https://hooks.example/graph"
    )
    assert created.status_code == 201
    assert len(seen) == 2
    assert seen[0].startswith("Validation: Testing client application")

    graph.validator = lambda url: (200, "wrong")
    refused = _subscribe(graph, _session(), clock, resource="me/messages")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "ValidationError"


# ---------------------------------------------------------------------- notifications


def test_notifications_match_the_documented_shape(
    mocked: tuple[FakeGraph, Any], clock: Any, corpus_dir: Path
) -> None:
    graph, _ = mocked
    real = _corpus(corpus_dir, "msgraphdocs__webhooks__change_notification_message_created.json")
    sub = _subscribe(graph, _session(), clock).json()
    message_id = graph.deliver(MAILBOX, _sample())
    body = graph.notifications_for(message_id)
    (item,) = body["value"]
    assert set(item) == set(real["value"][0])
    assert set(item["resourceData"]) == set(real["value"][0]["resourceData"])
    assert item["subscriptionId"] == sub["id"]
    assert item["clientState"] == "state-secret"
    assert item["changeType"] == "created"
    assert item["tenantId"] == graph.tenant_id
    assert item["resourceData"]["id"] == message_id  # created with the ImmutableId preference
    assert item["resource"] == f"Users/{graph.user(MAILBOX).id}/Messages/{message_id}"
    # A message in another folder does not match an Inbox subscription.
    other = graph.deliver(MAILBOX, _sample(), folder="junkemail")
    assert graph.notifications_for(other) == {"value": []}
    assert len(graph.pending) == 1


def test_push_posts_pending_notifications_and_retries_failures(
    mocked: tuple[FakeGraph, responses.RequestsMock], clock: Any
) -> None:
    graph, mock = mocked
    _subscribe(graph, _session(), clock)
    received: list[dict[str, Any]] = []
    statuses = iter([500, 202, 202])

    def webhook(request: Any) -> tuple[int, dict[str, str], str]:
        received.append(json.loads(request.body))
        return next(statuses), {}, ""

    mock.add_callback(responses.POST, "https://hooks.example/graph", callback=webhook)
    first = graph.deliver(MAILBOX, _sample())
    second = graph.deliver(MAILBOX, _sample(subject="two"))
    failed = graph.push()
    assert [d.status for d in failed] == [500]
    assert len(graph.pending) == 2  # a failed POST is retried later, as Graph does
    delivered = graph.push()
    assert [d.ok for d in delivered] == [True]
    ids = [item["resourceData"]["id"] for item in received[-1]["value"]]
    assert ids == [first, second]
    assert graph.pending == []
    assert graph.push() == []


def test_push_drops_and_duplicates_with_a_seed(
    mocked: tuple[FakeGraph, responses.RequestsMock], clock: Any
) -> None:
    graph, mock = mocked
    _subscribe(graph, _session(), clock)
    mock.add(responses.POST, "https://hooks.example/graph", status=202)
    for index in range(40):
        graph.deliver(MAILBOX, _sample(subject=str(index)))
    deliveries = graph.push(drop_rate=0.25, duplicate_rate=0.25)
    sent = [item for d in deliveries[:1] for item in d.body["value"]]
    repeated = [item for d in deliveries[1:] for item in d.body["value"]]
    assert 0 < len(sent) < 40
    assert repeated
    assert all(item in sent for item in repeated)


def test_lifecycle_notifications(
    mocked: tuple[FakeGraph, responses.RequestsMock], clock: Any, corpus_dir: Path
) -> None:
    graph, mock = mocked
    real = _corpus(corpus_dir, "msgraphdocs__webhooks-lifecycle__lifecycle_missed.json")
    sub = _subscribe(
        graph, _session(), clock, lifecycleNotificationUrl="https://hooks.example/life"
    ).json()
    missed = graph.lifecycle_notification(sub["id"], "missed")
    assert set(missed["value"][0]) == set(real["value"][0])
    removed = graph.remove_subscription(sub["id"])
    assert removed["value"][0]["lifecycleEvent"] == "subscriptionRemoved"
    assert removed["value"][0]["clientState"] == "state-secret"
    mock.add(responses.POST, "https://hooks.example/life", status=202)
    deliveries = graph.push()
    assert [item["lifecycleEvent"] for d in deliveries for item in d.body["value"]] == [
        "missed",
        "subscriptionRemoved",
    ]
    renew = _session().patch(
        f"{graph.base_url}/subscriptions/{sub['id']}",
        headers=_auth(graph),
        json={"expirationDateTime": (clock.now + timedelta(days=1)).isoformat()},
    )
    assert renew.status_code == 404
    with pytest.raises(ValueError, match="unknown lifecycle event"):
        graph.lifecycle_notification(sub["id"], "bogus")
    with pytest.raises(KeyError):
        graph.remove_subscription(sub["id"])


def test_updates_and_moves_notify_matching_subscriptions(
    mocked: tuple[FakeGraph, Any], clock: Any
) -> None:
    graph, _ = mocked
    session = _session()
    _subscribe(graph, session, clock, changeType="created,updated,deleted")
    _subscribe(
        graph, session, clock, resource="users/" + MAILBOX + "/messages", changeType="updated"
    )
    message_id = graph.deliver(MAILBOX, _sample())
    _session().patch(
        f"{graph.base_url}/me/messages/{message_id}", headers=_auth(graph), json={"isRead": True}
    )
    _session().post(
        f"{graph.base_url}/me/messages/{message_id}/move",
        headers=_auth(graph),
        json={"destinationId": "archive"},
    )
    kinds = [item["changeType"] for _, item in graph.pending]
    assert kinds == ["created", "updated", "updated", "deleted", "updated"]


# ---------------------------------------------------------------------- batch


def test_batch_runs_members_with_dependencies_and_member_faults(
    graph: FakeGraph, http: requests.Session
) -> None:
    message_id = graph.deliver(MAILBOX, _sample())
    graph.fail_next(1, status=429, retry_after=3, path="/messages/")
    batch = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/me/messages/{message_id}?$select=subject"},
            {"id": "2", "method": "GET", "url": f"/me/messages/{message_id}?$select=subject"},
            {
                "id": "3",
                "method": "PATCH",
                "url": f"/me/messages/{message_id}",
                "headers": {"Content-Type": "application/json"},
                "body": {"isRead": True},
                "dependsOn": ["1"],
            },
            {"id": "4", "method": "GET", "url": "/me/messages/missing"},
            {
                "id": "5",
                "method": "POST",
                "url": "/me/outlook/masterCategories",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": "PSA/Processed"},
            },
        ]
    }
    response = http.post(f"{graph.base_url}/$batch", headers=_auth(graph), json=batch)
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert by_id["1"]["status"] == 429
    assert by_id["1"]["headers"]["Retry-After"] == "3"
    assert by_id["2"]["status"] == 200
    assert by_id["2"]["body"]["subject"] == "Grüße: invoice ☕"
    assert by_id["3"]["status"] == 424  # its dependency failed
    assert by_id["4"]["status"] == 404
    assert graph.message(message_id).is_read is False
    assert graph.count("$batch") == 1
    assert by_id["5"]["status"] == 201
    assert by_id["5"]["body"]["displayName"] == "PSA/Processed"
    # The member that never ran (424) was not sent to the mailbox.
    assert sum(1 for r in graph.requests if r.in_batch) == 4


def test_batch_limits(graph: FakeGraph, http: requests.Session) -> None:
    url = f"{graph.base_url}/$batch"
    many = {"requests": [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]}
    too_many = http.post(url, headers=_auth(graph), json=many)
    assert too_many.status_code == 400
    twenty = {"requests": [{"id": str(i), "method": "GET", "url": "/me"} for i in range(20)]}
    assert http.post(url, headers=_auth(graph), json=twenty).status_code == 200
    dup = {"requests": [{"id": "1", "method": "GET", "url": "/me"}] * 2}
    assert http.post(url, headers=_auth(graph), json=dup).status_code == 400
    body_without_type = {
        "requests": [
            {"id": "1", "method": "POST", "url": "/me/outlook/masterCategories", "body": {}}
        ]
    }
    assert http.post(url, headers=_auth(graph), json=body_without_type).status_code == 400
    assert http.post(url, headers=_auth(graph), data=b"nope").status_code == 400
    assert http.post(url, json=twenty).status_code == 401


# ---------------------------------------------------------------------- misc


def test_threads_share_a_conversation(graph: FakeGraph, http: requests.Session) -> None:
    first = graph.deliver(MAILBOX, _sample())
    reply = graph.deliver(
        MAILBOX,
        _sample(
            message_id="<second@example.org>",
            in_reply_to="<first@example.org>",
            references=["<first@example.org>"],
        ),
    )
    unrelated = graph.deliver(MAILBOX, _sample(message_id="<third@example.org>"))
    conv = {mid: graph.message(mid).conversation_id for mid in (first, reply, unrelated)}
    assert conv[first] == conv[reply] != conv[unrelated]


def test_requests_are_recorded_and_counted(graph: FakeGraph, http: requests.Session) -> None:
    headers = _auth(graph)
    http.get(f"{graph.base_url}/me", headers=headers)
    http.get(f"{graph.base_url}/me/mailFolders", headers=headers)
    assert graph.count("/mailFolders") == 1
    assert graph.count("", method="GET") == 2
    assert graph.requests[0].headers["Authorization"].startswith("Bearer ")
    graph.clear_requests()
    assert graph.requests == []


def test_deliver_rejects_bad_input(graph: FakeGraph) -> None:
    with pytest.raises(TypeError):
        graph.deliver(MAILBOX, "not bytes")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        graph.deliver(MAILBOX, _sample(), folder="nope")
    with pytest.raises(KeyError):
        graph.message("unknown")
    folder_id = graph.add_folder(MAILBOX, "Tickets", parent="inbox")
    assert graph.deliver(MAILBOX, _sample(), folder=folder_id)


def test_msal_signs_in_against_the_fake(mocked: tuple[FakeGraph, Any]) -> None:
    import msal

    graph, _ = mocked
    issued = graph.issue_tokens(MAILBOX, client_id="app")
    app = msal.ConfidentialClientApplication(
        "app", client_credential="s", authority=f"{graph.login_url}/{graph.tenant_id}"
    )
    result = app.acquire_token_by_refresh_token(issued["refresh_token"], scopes=["Mail.Read"])
    assert "error" not in result
    assert result["id_token_claims"]["preferred_username"] == MAILBOX
    assert "access_token" in app.acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    graph.revoke_refresh_token()
    failed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=["Mail.Read"])
    assert failed["error"] == "invalid_grant"
    assert graph.count("/.well-known/openid-configuration") == 1


def test_folded_headers_and_cid_images_sent_as_attachments(
    graph: FakeGraph, http: requests.Session
) -> None:
    raw = (
        b"From: =?utf-8?q?Ana_Mar=C3=ADa?=\r\n\t<ana@example.com>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: Outlook folds long subjects\r\n\twith a tab\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
        b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p><img src="cid:shot.1@example.com"></p>\r\n'
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <shot.1@example.com>\r\n"
        b'Content-Disposition: attachment; filename="screenshot.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
        b"--rel--\r\n"
    )
    message_id = graph.deliver(MAILBOX, raw)
    body = http.get(
        f"{graph.base_url}/me/messages/{message_id}?$expand=attachments", headers=_auth(graph)
    ).json()
    assert body["subject"] == "Outlook folds long subjects with a tab"
    assert body["from"]["emailAddress"] == {"name": "Ana María", "address": "ana@example.com"}
    assert body["internetMessageId"].endswith("@fake.prod.outlook.com>")  # none was sent
    (image,) = body["attachments"]
    assert image["isInline"] is True  # the HTML shows it through its Content-ID
    assert image["contentId"] == "shot.1@example.com"
    assert body["hasAttachments"] is False  # Graph does not count inline parts
