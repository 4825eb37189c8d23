"""Connect mailboxes of the provider fakes to a store, and turn the fakes' pushes into requests.

:func:`connect_microsoft` and :func:`connect_google` do what a host does after a user's consent:
save a provider config (its base URLs pointed at the fake) and the tokens the fake issued, and
optionally register the Graph subscription / Gmail watch through the real adapter.
:func:`graph_notification_request` and :func:`gmail_push_request` build the
:class:`~mailparity.webhooks.WebhookRequest` the provider would send, for tests that hand it to a
:class:`~mailparity.webhooks.WebhookHandler` directly (no HTTP server needed).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import requests

    from ..models import GmailProviderConfig, MicrosoftProviderConfig, OAuthTokens
    from ..protocols import CredentialStore, ProviderStore
    from ..webhooks import WebhookRequest
    from .fake_gmail import FakeGmail
    from .fake_graph import FakeGraph

    class _Store(CredentialStore, ProviderStore, Protocol):
        """A store that is both (the adapters need both)."""


__all__ = [
    "DEFAULT_GOOGLE_CLIENT_ID",
    "DEFAULT_MICROSOFT_CLIENT_ID",
    "PUSH_SERVICE_ACCOUNT",
    "TEST_AUDIENCE",
    "connect_google",
    "connect_microsoft",
    "gmail_push_request",
    "graph_notification_request",
]

#: The ``aud`` the fake's Pub/Sub push tokens carry (give it to ``WebhookHandler``).
TEST_AUDIENCE = "https://mailparity.test/webhooks/google"
#: The service account FakeGmail signs pushes as (``google_service_accounts`` of the handler).
#: Kept equal to ``fake_gmail.DEFAULT_PUSH_ACCOUNT`` (a test checks) without importing it here.
PUSH_SERVICE_ACCOUNT = "gmail-push@mailparity-test.iam.gserviceaccount.com"
#: The Microsoft notification URL used when none is given (the fake never calls it unless it
#: was built with a ``validator``).
DEFAULT_MICROSOFT_WEBHOOK = "https://mailparity.test/webhooks/microsoft"

DEFAULT_MICROSOFT_CLIENT_ID = "fake-client-id"
DEFAULT_GOOGLE_CLIENT_ID = "fake-google-client"
# Not secrets: the fakes' own test credentials, identical in every test run.
_MICROSOFT_TEST_SECRET = "fake-client-secret"  # noqa: S105
_GOOGLE_TEST_SECRET = "fake-google-secret"  # noqa: S105

_UNSAFE_ID = re.compile(r"[^a-z0-9]+")


def _default_id(kind: str, mailbox: str) -> str:
    return f"{kind}-" + _UNSAFE_ID.sub("-", mailbox.lower()).strip("-")


def connect_microsoft(
    store: _Store,
    fake: FakeGraph,
    mailbox: str = "support@contoso.test",
    *,
    provider_id: str | None = None,
    tenant: str = "test-tenant",
    webhook_url: str | None = DEFAULT_MICROSOFT_WEBHOOK,
    subscribe: bool = True,
    client_id: str = DEFAULT_MICROSOFT_CLIENT_ID,
    client_secret: str | None = _MICROSOFT_TEST_SECRET,
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
    from pydantic import SecretStr

    from ..models import MicrosoftProviderConfig

    fake.add_mailbox(mailbox, display_name)
    if client_secret is not None:
        fake.add_client(client_id, client_secret)
    pid = provider_id or _default_id("microsoft", mailbox)
    fields: dict[str, Any] = {
        "provider_id": pid,
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
    saved = _save(store, config, tokens, subscribe=subscribe and bool(webhook_url), session=session)
    assert isinstance(saved, MicrosoftProviderConfig)
    return saved


def connect_google(
    store: _Store,
    fake: FakeGmail,
    mailbox: str = "help@example.test",
    *,
    provider_id: str | None = None,
    tenant: str = "test-tenant",
    subscribe: bool = True,
    project_id: str = "mailparity-test",
    topic: str = "gmail-inbound",
    client_id: str = DEFAULT_GOOGLE_CLIENT_ID,
    client_secret: str | None = _GOOGLE_TEST_SECRET,
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
    from pydantic import SecretStr

    from ..models import GmailProviderConfig

    fake.add_mailbox(mailbox)
    if client_secret is not None:
        fake.add_client(client_id, client_secret)
    pid = provider_id or _default_id("google", mailbox)
    fields: dict[str, Any] = {
        "provider_id": pid,
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
    saved = _save(store, config, tokens, subscribe=subscribe, session=session)
    assert isinstance(saved, GmailProviderConfig)
    return saved



def _save(
    store: _Store,
    config: MicrosoftProviderConfig | GmailProviderConfig,
    tokens: OAuthTokens,
    *,
    subscribe: bool,
    session: requests.Session | None,
) -> MicrosoftProviderConfig | GmailProviderConfig:
    """Save the provider and its tokens, register its subscription / watch through the real
    adapter when asked, and return the config as stored (registration writes to it)."""
    store.save_provider(config)
    store.save_tokens(config.provider_id, tokens)
    if subscribe:
        from ..providers import create_adapter

        create_adapter(config, store=store, session=session).register_webhook_subscription()
    saved = store.get_provider(config.provider_id)
    if saved is None or type(saved) is not type(config):
        raise RuntimeError(f"the store did not keep provider {config.provider_id!r}")
    return saved

def graph_notification_request(
    fake: FakeGraph, message_id: str, change_type: str = "created"
) -> WebhookRequest:
    """The POST Graph would send for ``message_id``, as a request for
    ``WebhookHandler.handle_microsoft`` (one item per matching subscription)."""
    from ..webhooks import WebhookRequest

    body = fake.notifications_for(message_id, change_type)
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=json.dumps(body).encode("utf-8"),
    )


def gmail_push_request(
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
    from ..webhooks import WebhookRequest

    token = fake.signer.push_token(audience, service_account)
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        body=fake.push_body(mailbox, history_id),
    )
