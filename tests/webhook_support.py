"""Helpers shared by the webhook tests: providers, a store that fails on demand, secrets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from mailparity.models import GmailProviderConfig, Job, MicrosoftProviderConfig
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.webhooks import WebhookHandler, WebhookRequest

CLIENT_STATE = "s3cret-client-state-value-0123456789"
OLD_CLIENT_STATE = "old-client-state-value-abcdefghij"
SUBSCRIPTION_ID = "e3898f08-5cd0-4a6a-80fc-6addbfb73b7b"
MS_PROVIDER = "ms-1"
GMAIL_PROVIDER = "gm-1"
GMAIL_MAILBOX = "user@example.com"
AUDIENCE = "https://hooks.example.com/webhooks/google"
PUSH_SA = "pubsub-push@my-project.iam.gserviceaccount.com"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

#: Every secret a test uses; none may appear in a log line or a response.
SECRETS = (CLIENT_STATE, OLD_CLIENT_STATE)


class FlakyStore(InMemoryStore):
    """An InMemoryStore whose enqueue / lookup / meta calls can be made to raise."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_enqueue: set[str] = set()  # job kinds (or "*") whose enqueue raises
        self.fail_lookup = False
        self.fail_meta = False

    def enqueue_job(self, job: Job) -> bool:
        if "*" in self.fail_enqueue or job.kind in self.fail_enqueue:
            raise RuntimeError("database is down")
        return super().enqueue_job(job)

    def find_provider_by_subscription(self, subscription_id: str) -> Any:
        if self.fail_lookup:
            raise RuntimeError("database is down")
        return super().find_provider_by_subscription(subscription_id)

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> Any:
        if self.fail_lookup:
            raise RuntimeError("database is down")
        return super().find_provider_by_mailbox(provider, mailbox)

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        if self.fail_meta:
            raise RuntimeError("database is down")
        super().set_meta(provider_id, key, value)


def microsoft_config(**changes: Any) -> MicrosoftProviderConfig:
    data: dict[str, Any] = {
        "provider_id": MS_PROVIDER,
        "tenant": "tenant-1",
        "mailbox": "support@contoso.com",
        "client_id": "client-id",
        "webhook_verification_token": CLIENT_STATE,
        "webhook_subscription_id": SUBSCRIPTION_ID,
        "webhook_notification_url": "https://hooks.example.com/webhooks/microsoft",
    }
    data.update(changes)
    return MicrosoftProviderConfig(**data)


def gmail_config(**changes: Any) -> GmailProviderConfig:
    data: dict[str, Any] = {
        "provider_id": GMAIL_PROVIDER,
        "tenant": "tenant-1",
        "mailbox": GMAIL_MAILBOX,
        "client_id": "client-id",
        "project_id": "my-project",
        "pubsub_topic_name": "gmail",
        "history_id": 1000,
    }
    data.update(changes)
    return GmailProviderConfig(**data)


def make_store() -> FlakyStore:
    store = FlakyStore()
    store.save_provider(microsoft_config())
    store.save_provider(gmail_config())
    return store


def make_handler(store: InMemoryStore, **kwargs: Any) -> WebhookHandler:
    options: dict[str, Any] = {
        "store": store,
        "publisher": InMemoryPublisher(),
        "google_audience": AUDIENCE,
        "google_service_accounts": [PUSH_SA],
        "clock": lambda: T0,
    }
    options.update(kwargs)
    return WebhookHandler(**options)


def graph_item(
    message_id: str = "AAMkAGI2THVSAAA=", *, client_state: str | None = CLIENT_STATE,
    subscription_id: str = SUBSCRIPTION_ID, change_type: str = "created",
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": "2026-01-03T00:00:00Z",
        "changeType": change_type,
        "resource": f"Users/abc/Messages/{message_id}",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": f"Users/abc/Messages/{message_id}",
            "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
            "id": message_id,
        },
    }
    if client_state is not None:
        item["clientState"] = client_state
    return item


def graph_post(*items: Any, body: bytes | None = None) -> WebhookRequest:
    raw = json.dumps({"value": list(items)}).encode() if body is None else body
    return WebhookRequest("POST", {}, {"Content-Type": "application/json"}, raw)


def jobs_of(store: InMemoryStore, kind: str | None = None) -> list[Job]:
    jobs = store.list_jobs(limit=1000)
    return [job for job in jobs if kind is None or job.kind == kind]


def assert_no_secrets(text: str, *extra: str) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in text, "a secret leaked"


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
