"""The request and response samples of the providers' documentation, written down as facts with
their source, run through the adapters and the webhook handler.

Only shapes the documentation shows are used. Left out on purpose (the pages show no sample, and
a guessed shape would prove nothing): Gmail's ``messages.get`` / ``history.list`` /
``messages.list`` responses (the reference pages give the schema only; the conformance suite
checks FakeGmail's answers against that schema from the discovery document instead), Graph's
``$batch`` answers for mail and a throttled member (the JSON batching page samples other
resources), and the text of a real Graph validation token (the page describes it as opaque).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import pytest
import responses
from pydantic import SecretStr

from mailparity.models import GmailProviderConfig, MicrosoftProviderConfig, OAuthTokens
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.oidc import TestOidcSigner
from mailparity.webhooks import GOOGLE_CERTS_URL, WebhookHandler, WebhookRequest

GRAPH = "https://graph.microsoft.com/v1.0"

# --- https://learn.microsoft.com/graph/change-notifications-delivery-webhooks
#     ("Change notification example": a new email)
GRAPH_NOTIFICATION: dict[str, Any] = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "{subscription_guid}",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": "secretClientValue",
            "changeType": "created",
            "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
                "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
                "id": "{long_id_string}",
            },
        }
    ]
}

# --- https://learn.microsoft.com/graph/change-notifications-lifecycle-events
#     ("reauthorizationRequired notification payload example")
GRAPH_LIFECYCLE: dict[str, Any] = {
    "value": [
        {
            "lifecycleEvent": "reauthorizationRequired",
            "subscriptionId": "e3898f08-5cd0-4a6a-80fc-6addbfb73b7b",
            "subscriptionExpirationDateTime": "2019-09-18T00:52:45.9696658+00:00",
            "clientState": "{secret client state}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        }
    ]
}

# --- https://learn.microsoft.com/graph/api/message-get (Example 1, response; the page marks it
#     truncated: it has no internetMessageHeaders, so the adapter reads the headers from MIME)
GRAPH_MESSAGE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('7f180cbb-a5ae-457c-b7e8-6f5b42ba33e7')/messages/$entity",
    "@odata.etag": 'W/"CQAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAnjjuZ"',
    "id": "AAMkADhMGAAA=",
    "createdDateTime": "2018-09-09T03:15:05Z",
    "lastModifiedDateTime": "2018-09-09T03:15:08Z",
    "changeKey": "CQAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAnjjuZ",
    "categories": [],
    "receivedDateTime": "2018-09-09T03:15:08Z",
    "sentDateTime": "2018-09-09T03:15:06Z",
    "hasAttachments": False,
    "internetMessageId": "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>",
    "subject": "9/9/2018: concert",
    "bodyPreview": "The group represents Nevada.",
    "importance": "normal",
    "parentFolderId": "AAMkADcbAAAAAAEJAAA=",
    "conversationId": "AAQkADOUpag6yWs=",
    "isDeliveryReceiptRequested": False,
    "isReadReceiptRequested": False,
    "isRead": True,
    "isDraft": False,
    "webLink": "https://outlook.office365.com/owa/?ItemID=AAMkADMGAAA%3D&exvsurl=1&viewmodel=ReadMessageItem",
    "inferenceClassification": "focused",
    "body": {
        "contentType": "html",
        "content": "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; "
        "charset=utf-8\">\r\n<meta content=\"text/html; charset=us-ascii\">\r\n</head>\r\n"
        "<body>\r\nThe group represents Nevada.\r\n</body>\r\n</html>\r\n",
    },
    "sender": {
        "emailAddress": {"name": "Adele Vance", "address": "adelev@contoso.OnMicrosoft.com"}
    },
    "from": {
        "emailAddress": {"name": "Adele Vance", "address": "adelev@contoso.OnMicrosoft.com"}
    },
    "toRecipients": [
        {"emailAddress": {"name": "Alex Wilber", "address": "AlexW@contoso.OnMicrosoft.com"}}
    ],
    "ccRecipients": [],
    "bccRecipients": [],
    "replyTo": [],
    "flag": {"flagStatus": "notFlagged"},
}

# --- the same page, Example 2: internetMessageHeaders with $select (truncated by the page)
GRAPH_HEADERS: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('7f180cbb-a5ae-457c-b7e8-6f5b42ba33e7')/messages(internetMessageHeaders)/$entity",
    "@odata.etag": 'W/"FwAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAW/0tB"',
    "id": "AAMkADhAAAW-VPeAAA=",
    "internetMessageHeaders": [
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "Content-Type", "value": "multipart/report"},
        {"name": "x-custom-header-group-name", "value": "Washington"},
        {"name": "x-custom-header-group-id", "value": "WA001"},
    ],
}

# --- https://learn.microsoft.com/graph/delta-query-messages (Example 1: a round of three pages
#     of a folder with 5 messages, $select=subject,sender,isRead and maxpagesize 2, then the next
#     round: one message deleted, another marked read)
_DELTA = "https://graph.microsoft.com/v1.0/me/mailfolders('AQMkADNkNAAAgEMAAAA')/messages/delta"
DELTA_PAGES: list[dict[str, Any]] = [
    {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "@odata.nextLink": f"{_DELTA}?$skiptoken=GwcBoTmPuoTQWfcsAbkYM",
        "value": [
            {"@odata.type": "#microsoft.graph.message",
             "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAASsKZz"',
             "subject": "Holiday hours update", "isRead": False,
             "sender": {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.com"}},
             "id": "AAMkADNkNAAASq35xAAA="},
            {"@odata.type": "#microsoft.graph.message",
             "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAAEfYB/"',
             "subject": "Holiday promotion sale", "isRead": True,
             "sender": {"emailAddress": {"name": "Samantha Booth",
                                         "address": "samanthab@contoso.com"}},
             "id": "AQMkADNkNAAAVRMKAAAAA=="},
        ],
    },
    {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "@odata.nextLink": f"{_DELTA}?$skiptoken=GwcBoTmPKILK4jLH7mAd1lLU",
        "value": [
            {"@odata.type": "#microsoft.graph.message",
             "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlqfdAAAEfYB+"',
             "subject": "Microsoft Virtual Academy at Contoso", "isRead": True,
             "sender": {"emailAddress": {"name": "Elliot Hyde",
                                         "address": "elliot-hyde@tailspintoys.com"}},
             "id": "AQMkADNkNAAAgWkAAAA"},
            {"@odata.type": "#microsoft.graph.message",
             "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAAEfYB+"',
             "subject": "New or modified user account information", "isRead": True,
             "sender": {"emailAddress": {"name": "Randi Welch", "address": "randiw@contoso.com"}},
             "id": "AQMkADNkNAAAgWJAAAA"},
        ],
    },
    {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "@odata.deltaLink": f"{_DELTA}?$deltatoken=GwcBoTmPuoGNlgXgF1nyUNMXY",
        "value": [
            {"@odata.type": "#microsoft.graph.message",
             "@odata.etag": 'W/"CQAAABYAAAARn2vdzFPjSbaPPxzjlzOTAAAEfYB+"',
             "subject": "Fabric CDN now available", "isRead": True,
             "sender": {"emailAddress": {"name": "Jodie Sharp",
                                         "address": "Jodie.Sharp@contoso.com"}},
             "id": "AAMkADk0MGFkODE3LWEAAA="},
        ],
    },
]
DELTA_NEXT_ROUND: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
    "@odata.deltaLink": f"{_DELTA}?$deltatoken=GwcBoTmPuoGNlgXgF1nyUNMXY",
    "value": [
        {"@odata.type": "#microsoft.graph.message",
         "id": "AAMkADk0MGFkODE3LWE4MmYtNDRhOS0Dh_6qB-pB2Sa2pUum19a6YAAKnLuxoAAA=",
         "@removed": {"reason": "deleted"}},
        {"@odata.type": "#microsoft.graph.message",
         "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAASsKZz"',
         "subject": "Holiday hours update", "isRead": "true",
         "sender": {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.com"}},
         "id": "AAMkADNkNAAASq35xAAA="},
    ],
}

# --- https://developers.google.com/workspace/gmail/api/guides/push ("Receiving notifications":
#     the decoded data of a Gmail notification) inside the push body of
#     https://cloud.google.com/pubsub/docs/push (a wrapped push: message id and publish time in
#     both spellings, the subscription's name)
GMAIL_DATA: dict[str, Any] = {"emailAddress": "user@example.com", "historyId": "9876543210"}
PUBSUB_PUSH: dict[str, Any] = {
    "message": {
        "data": base64.b64encode(json.dumps(GMAIL_DATA).encode()).decode(),
        "messageId": "2070443601311540",
        "message_id": "2070443601311540",
        "publishTime": "2021-02-26T19:13:55.749Z",
        "publish_time": "2021-02-26T19:13:55.749Z",
    },
    "subscription": "projects/myproject/subscriptions/mysubscription",
}


def _now() -> datetime:
    return datetime(2026, 1, 1, tzinfo=timezone.utc)


def _graph_store(**config: Any) -> tuple[InMemoryStore, MicrosoftProviderConfig]:
    cfg = MicrosoftProviderConfig(
        provider_id="ms-docs", tenant="tenant-1", mailbox="AlexW@contoso.OnMicrosoft.com",
        client_id="client-id", client_secret=SecretStr("client-secret"),
        webhook_notification_url="https://hooks.example.com/graph", **config,
    )
    store = InMemoryStore()
    store.save_provider(cfg)
    store.save_tokens(cfg.provider_id, OAuthTokens(
        access_token=SecretStr("at-docs"), refresh_token=SecretStr("rt-docs"),
        expires_at=datetime(2100, 1, 1, tzinfo=timezone.utc),
    ))
    return store, cfg


def _post(body: dict[str, Any], **headers: str) -> WebhookRequest:
    return WebhookRequest(
        "POST", {}, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()
    )


# ------------------------------------------------------------------------ Microsoft Graph


def test_graph_notification_sample_then_message_get_sample_become_one_event() -> None:
    store, _ = _graph_store(
        webhook_subscription_id="{subscription_guid}",
        webhook_verification_token=SecretStr("secretClientValue"),
    )
    publisher = InMemoryPublisher()
    handler = WebhookHandler(store=store, publisher=publisher, clock=_now,
                             sleep=lambda seconds: None)
    assert handler.handle_microsoft(_post(GRAPH_NOTIFICATION)).status == 202
    [job] = store.list_jobs(status="pending")
    assert job.payload["message_id"] == "{long_id_string}"

    # The page's MIME sample (Example 4) is of another message; only its header lines are used
    # by the adapter here, so the event's headers come from it and everything else from the
    # JSON sample.
    mime = (
        b"From: Adele Vance <adelev@contoso.OnMicrosoft.com>\r\n"
        b"To: Alex Wilber <AlexW@contoso.OnMicrosoft.com>\r\n"
        b"Subject: 9/9/2018: concert\r\n"
        b"Message-ID: <MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"The group represents Nevada.\r\n"
    )
    with responses.RequestsMock() as mock:
        message_url = f"{GRAPH}/me/messages/%7Blong_id_string%7D"
        mock.get(message_url, json=dict(GRAPH_MESSAGE, id="{long_id_string}"))
        mock.get(f"{message_url}/$value", body=mime, content_type="text/plain")
        handler.run_pending()  # (any other call would fail: the mock knows only these)
        assert all(
            c.request.headers.get("Prefer", "").startswith('IdType="ImmutableId"')
            for c in mock.calls
        )

    [event] = publisher.events
    email = event.email_data
    assert email.id == "{long_id_string}"
    assert email.subject == "9/9/2018: concert"
    assert email.from_.email == "adelev@contoso.OnMicrosoft.com"
    assert email.from_.name == "Adele Vance"
    assert [a.email for a in email.to] == ["AlexW@contoso.OnMicrosoft.com"]
    assert email.received_at == datetime(2018, 9, 9, 3, 15, 8, tzinfo=timezone.utc)
    assert email.message_id == "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>"
    assert email.thread_id == "AAQkADOUpag6yWs="
    assert email.body.html is not None
    assert "The group represents Nevada." in email.body.text
    assert email.attachments == []
    assert email.header("Subject") == "9/9/2018: concert"


def test_graph_headers_sample_maps_every_header_in_order() -> None:
    from mailparity.providers.graph.messages import graph_headers

    headers = graph_headers(GRAPH_HEADERS["internetMessageHeaders"])
    assert [(h.name, h.value) for h in headers] == [
        ("MIME-Version", "1.0"),
        ("Content-Type", "multipart/report"),
        ("x-custom-header-group-name", "Washington"),
        ("x-custom-header-group-id", "WA001"),
    ]


def test_graph_lifecycle_sample_schedules_a_reauthorization() -> None:
    store, _ = _graph_store(
        webhook_subscription_id="e3898f08-5cd0-4a6a-80fc-6addbfb73b7b",
        webhook_verification_token=SecretStr("{secret client state}"),
    )
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(), clock=_now)
    assert handler.handle_microsoft(_post(GRAPH_LIFECYCLE)).status == 202
    [job] = store.list_jobs(status="pending")
    assert job.kind == "lifecycle"
    # Graph's reauthorizationRequired, by the provider-neutral name lifecycle jobs carry.
    assert job.payload["event"] == "reauthorization_required"
    assert job.payload["subscription_id"] == "e3898f08-5cd0-4a6a-80fc-6addbfb73b7b"


def test_graph_notification_sample_with_another_client_state_is_not_trusted() -> None:
    store, _ = _graph_store(
        webhook_subscription_id="{subscription_guid}",
        webhook_verification_token=SecretStr("another-client-state"),
    )
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(), clock=_now)
    handler.handle_microsoft(_post(GRAPH_NOTIFICATION))
    assert store.list_jobs(status="pending") == []


def test_graph_delta_samples_through_fetch_changes() -> None:
    start = f"{_DELTA}?$deltatoken=round-0"
    store, cfg = _graph_store(delta_links={"inbox": start})
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=_now, sleep=lambda seconds: None)
    with responses.RequestsMock() as mock:
        mock.get(start, json=DELTA_PAGES[0])
        mock.get(DELTA_PAGES[0]["@odata.nextLink"], json=DELTA_PAGES[1])
        mock.get(DELTA_PAGES[1]["@odata.nextLink"], json=DELTA_PAGES[2])
        first = adapter.fetch_changes()
    assert sorted(first.message_ids) == sorted(
        item["id"] for page in DELTA_PAGES for item in page["value"]
    )
    assert first.cursor == {"inbox": DELTA_PAGES[2]["@odata.deltaLink"]}
    assert adapter.commit_cursor(first)

    adapter = MicrosoftGraphAdapter(
        store.get_provider(cfg.provider_id), store=store, clock=_now, sleep=lambda seconds: None
    )
    with responses.RequestsMock() as mock:
        mock.get(DELTA_PAGES[2]["@odata.deltaLink"], json=DELTA_NEXT_ROUND)
        second = adapter.fetch_changes()
    # The deleted message is not mail to deliver; the one marked read is offered again (the
    # pipeline drops it as already published).
    assert second.message_ids == ["AAMkADNkNAAASq35xAAA="]


# ------------------------------------------------------------------------ Gmail, Pub/Sub


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="docs-kid")


def test_pubsub_push_sample_with_the_gmail_guides_data_schedules_history(
    signer: TestOidcSigner,
) -> None:
    audience = "https://hooks.example.com/webhooks/google"
    account = "pubsub-push@myproject.iam.gserviceaccount.com"
    store = InMemoryStore()
    store.save_provider(GmailProviderConfig(
        provider_id="gm-docs", tenant="tenant-1", mailbox="user@example.com",
        client_id="client-id", project_id="myproject", pubsub_topic_name="gmail",
        history_id=9876543000,
    ))
    handler = WebhookHandler(
        store=store, publisher=InMemoryPublisher(), google_audience=audience,
        google_service_accounts=[account], clock=lambda: datetime.now(timezone.utc),
    )
    token = signer.push_token(audience, account)
    with responses.RequestsMock() as mock:
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json())
        answer = handler.handle_google(_post(PUBSUB_PUSH, Authorization=f"Bearer {token}"))
    assert answer.status in (200, 204)  # an acknowledgement Pub/Sub accepts
    [job] = store.list_jobs(status="pending")
    assert job.kind == "cursor"
    assert int(job.payload["history_id"]) == 9876543210

    # The same push without the OIDC token Pub/Sub adds is refused.
    assert handler.handle_google(_post(PUBSUB_PUSH)).status in (401, 403)
