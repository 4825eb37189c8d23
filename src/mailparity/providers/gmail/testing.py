"""The Gmail provider's part of the testing kit (the spec's ``testing`` hook).

:func:`connect` (``mailparity.testing.connect_google``) connects a mailbox of a
:class:`~mailparity.testing.FakeGmail` to a store; :func:`push_request`
(``mailparity.testing.gmail_push_request``) builds the signed Pub/Sub push Gmail would send;
:func:`sample_config` is a config with every kind of field set, for store contract suites.
Imported only by the testing kit and tests, never by the library itself.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..base import ProviderTestKit
from .config import GmailProviderConfig

if TYPE_CHECKING:
    import requests

    from ...testing.connect import ConnectStore
    from ...testing.fake_gmail import FakeGmail
    from ...webhooks import WebhookRequest

__all__ = [
    "DEFAULT_CLIENT_ID",
    "KIT",
    "PUSH_SERVICE_ACCOUNT",
    "TEST_AUDIENCE",
    "connect",
    "handler_options",
    "push_request",
    "sample_config",
]

#: The ``aud`` the fake's Pub/Sub push tokens carry (give it to ``WebhookHandler``).
TEST_AUDIENCE = "https://mailparity.test/webhooks/google"
#: The service account FakeGmail signs pushes as (``google_service_accounts`` of the handler).
#: Kept equal to ``fake_gmail.DEFAULT_PUSH_ACCOUNT`` (a test checks) without importing it here.
PUSH_SERVICE_ACCOUNT = "gmail-push@mailparity-test.iam.gserviceaccount.com"
DEFAULT_CLIENT_ID = "fake-google-client"
# Not a secret: the fake's own test credential, identical in every test run.
_TEST_SECRET = "fake-google-secret"  # noqa: S105


def connect(
    store: ConnectStore,
    fake: FakeGmail,
    mailbox: str = "help@example.test",
    *,
    provider_id: str | None = None,
    tenant: str = "test-tenant",
    subscribe: bool = True,
    project_id: str = "mailparity-test",
    topic: str = "gmail-inbound",
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str | None = _TEST_SECRET,
    session: requests.Session | None = None,
    **config_fields: Any,
) -> GmailProviderConfig:
    """Create ``mailbox`` in ``fake``, save its config and tokens in ``store``.

    ``gmail_base_url`` / ``token_uri`` point at the fake. With ``subscribe`` the watch on
    ``projects/{project_id}/topics/{topic}`` is registered through the real adapter, which also
    stores the starting ``history_id`` (without a watch, FakeGmail refuses to push, as Gmail
    would not). ``config_fields`` override any other
    :class:`~mailparity.models.GmailProviderConfig` field.

    Returns the config as stored.
    """
    from ...testing.connect import default_provider_id, save_connected

    fake.add_mailbox(mailbox)
    if client_secret is not None:
        fake.add_client(client_id, client_secret)
    fields: dict[str, Any] = {
        "provider_id": provider_id or default_provider_id("google", mailbox),
        "tenant": tenant,
        "mailbox": mailbox,
        "client_id": client_id,
        "client_secret": SecretStr(client_secret) if client_secret is not None else None,
        "project_id": project_id,
        "pubsub_topic_name": topic,
        **fake.config_overrides(),
    }
    fields.update(config_fields)
    config = GmailProviderConfig(**fields)
    tokens = fake.oauth_tokens(mailbox, client_id)
    saved = save_connected(store, config, tokens, subscribe=subscribe, session=session)
    assert isinstance(saved, GmailProviderConfig)
    return saved


def push_request(
    fake: FakeGmail,
    mailbox: str,
    *,
    audience: str = TEST_AUDIENCE,
    service_account: str = PUSH_SERVICE_ACCOUNT,
    history_id: int | None = None,
) -> WebhookRequest:
    """The Pub/Sub push carrying Gmail's notification for ``mailbox`` (its current historyId
    unless given), signed by the fake's signer, as a request for
    ``WebhookHandler.handle_google``."""
    from ...webhooks import WebhookRequest

    token = fake.signer.push_token(audience, service_account)
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        body=fake.push_body(mailbox, history_id),
    )


def handler_options(fake: FakeGmail) -> dict[str, Any]:
    """The ``WebhookHandler`` options that make it accept ``fake``'s signed pushes."""
    return {
        "google_audience": TEST_AUDIENCE,
        "google_service_accounts": [PUSH_SERVICE_ACCOUNT],
        "google_certs_url": fake.certs_url,
    }


def sample_config(**overrides: Any) -> GmailProviderConfig:
    """A config with secrets (a service-account key among them), label filters, datetimes and
    no cursor yet (``history_id`` None: the compare-and-set starts from nothing)."""
    values: dict[str, Any] = {
        "provider_id": "g-1",
        "tenant": "tenant-b",
        "mailbox": "Help@Example.org",
        "client_id": "client-id-g",
        "client_secret": SecretStr("g-client-secret"),
        "auth_mode": "service_account",
        "service_account_info": SecretStr('{"private_key": "-----BEGIN PRIVATE KEY-----"}'),
        "project_id": "proj",
        "pubsub_topic_name": "gmail-push",
        "pubsub_subscription_name": "gmail-push-sub",
        "label_filters": ["INBOX", "Label_7"],
        "history_id": None,
        "watch_expiration": datetime(2026, 1, 8, tzinfo=timezone.utc),
        "last_processed_at": datetime(2025, 12, 31, 23, 59, 59, 1, tzinfo=timezone.utc),
    }
    values.update(overrides)
    return GmailProviderConfig(**values)


KIT = ProviderTestKit(
    sample_config=sample_config,
    cursor_values=(100, 150),
    # What the store must validate on update: a numeric string is a history id, a naive
    # datetime is UTC; a word is no history id.
    coercions={
        "history_id": ("1234", 1234),
        "watch_expiration": (datetime(2026, 2, 1), datetime(2026, 2, 1, tzinfo=timezone.utc)),
    },
    invalid_values={"history_id": "not-a-number"},
    connect=connect,
    fake="mailparity.testing.fake_gmail:FakeGmail",
    handler_options=handler_options,
    exports={
        "connect_google": f"{__name__}:connect",
        "gmail_push_request": f"{__name__}:push_request",
        "DEFAULT_GOOGLE_CLIENT_ID": f"{__name__}:DEFAULT_CLIENT_ID",
        "PUSH_SERVICE_ACCOUNT": f"{__name__}:PUSH_SERVICE_ACCOUNT",
        "TEST_AUDIENCE": f"{__name__}:TEST_AUDIENCE",
    },
)
