"""The Graph provider's part of the testing kit (the spec's ``testing`` hook).

:func:`connect` (``mailparity.testing.connect_microsoft``) connects a mailbox of a
:class:`~mailparity.testing.FakeGraph` to a store; :func:`notification_request`
(``mailparity.testing.graph_notification_request``) builds the POST Graph would send;
:func:`sample_config` is a config with every kind of field set, for store contract suites.
Imported only by the testing kit and tests, never by the library itself.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..base import ProviderTestKit
from .config import MicrosoftProviderConfig

if TYPE_CHECKING:
    import requests

    from ...testing.connect import ConnectStore
    from ...testing.fake_graph import FakeGraph
    from ...webhooks import WebhookRequest

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_WEBHOOK",
    "KIT",
    "connect",
    "notification_request",
    "sample_config",
]

#: The Microsoft notification URL used when none is given (the fake never calls it unless it
#: was built with a ``validator``).
DEFAULT_WEBHOOK = "https://mailparity.test/webhooks/microsoft"
DEFAULT_CLIENT_ID = "fake-client-id"
# Not a secret: the fake's own test credential, identical in every test run.
_TEST_SECRET = "fake-client-secret"  # noqa: S105


def connect(
    store: ConnectStore,
    fake: FakeGraph,
    mailbox: str = "support@contoso.test",
    *,
    provider_id: str | None = None,
    tenant: str = "test-tenant",
    webhook_url: str | None = DEFAULT_WEBHOOK,
    subscribe: bool = True,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str | None = _TEST_SECRET,
    display_name: str | None = None,
    session: requests.Session | None = None,
    **config_fields: Any,
) -> MicrosoftProviderConfig:
    """Create ``mailbox`` in ``fake``, save its config and delegated tokens in ``store``.

    The config's ``graph_base_url`` / ``login_base_url`` point at the fake (so call this after
    ``serve()`` re-mounted it, when serving over HTTP), its ``authority_tenant`` is the fake's
    tenant id. ``client_id`` / ``client_secret`` are registered with the fake, whose token
    endpoint then checks them on refresh. With ``subscribe`` (and a ``webhook_url``) the Graph
    subscription is created through the real adapter; a fake with a ``validator`` then performs
    the validation handshake against ``webhook_url``. ``config_fields`` override any other
    :class:`~mailparity.models.MicrosoftProviderConfig` field.

    Returns the config as stored (with the subscription id when subscribed).
    """
    from ...testing.connect import default_provider_id, save_connected

    fake.add_mailbox(mailbox, display_name)
    if client_secret is not None:
        fake.add_client(client_id, client_secret)
    fields: dict[str, Any] = {
        "provider_id": provider_id or default_provider_id("microsoft", mailbox),
        "tenant": tenant,
        "mailbox": mailbox,
        "client_id": client_id,
        "client_secret": SecretStr(client_secret) if client_secret is not None else None,
        "authority_tenant": fake.tenant_id,
        "webhook_notification_url": webhook_url,
        **fake.config_overrides(),
    }
    fields.update(config_fields)
    config = MicrosoftProviderConfig(**fields)
    tokens = fake.oauth_tokens(mailbox, client_id)
    saved = save_connected(
        store, config, tokens, subscribe=subscribe and bool(webhook_url), session=session
    )
    assert isinstance(saved, MicrosoftProviderConfig)
    return saved


def notification_request(
    fake: FakeGraph, message_id: str, change_type: str = "created"
) -> WebhookRequest:
    """The POST Graph would send for ``message_id``, as a request for
    ``WebhookHandler.handle_microsoft`` (one item per matching subscription)."""
    from ...webhooks import WebhookRequest

    body = fake.notifications_for(message_id, change_type)
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=json.dumps(body).encode("utf-8"),
    )


def sample_config(**overrides: Any) -> MicrosoftProviderConfig:
    """A config with secrets, a subscription, a mapping cursor and a datetime in another zone
    than UTC (a store must give it back equal, as an aware datetime)."""
    values: dict[str, Any] = {
        "provider_id": "ms-1",
        "tenant": "tenant-a",
        "mailbox": "Support@Contoso.com",
        "client_id": "client-id-ms",
        "client_secret": SecretStr("ms-client-secret"),
        "authority_tenant": "11111111-2222-3333-4444-555555555555",
        "auth_mode": "application",
        "folder": "inbox",
        "webhook_notification_url": "https://example.com/hooks/ms",
        "webhook_verification_token": SecretStr("client-state-value"),
        "previous_webhook_verification_token": SecretStr("old-client-state"),
        "previous_token_valid_until": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
        "webhook_subscription_id": "sub-1",
        "webhook_expires_at": datetime(2026, 1, 4, 10, 0, tzinfo=timezone(timedelta(hours=2))),
        "processed_strategy": "category",
        "delta_links": {"inbox": "https://graph.microsoft.com/v1.0/delta?token=abc"},
        "scopes": ["Mail.Read", "offline_access"],
    }
    values.update(overrides)
    return MicrosoftProviderConfig(**values)


KIT = ProviderTestKit(
    sample_config=sample_config,
    cursor_values=(
        {"inbox": "https://graph.microsoft.com/v1.0/delta?token=def"},
        {"inbox": "https://graph.microsoft.com/v1.0/delta?token=ghi", "archive": "A-1"},
    ),
    subscription_field="webhook_subscription_id",
    connect=connect,
    fake="mailparity.testing.fake_graph:FakeGraph",
    exports={
        "connect_microsoft": f"{__name__}:connect",
        "graph_notification_request": f"{__name__}:notification_request",
        "DEFAULT_MICROSOFT_CLIENT_ID": f"{__name__}:DEFAULT_CLIENT_ID",
        "DEFAULT_MICROSOFT_WEBHOOK": f"{__name__}:DEFAULT_WEBHOOK",
    },
)
