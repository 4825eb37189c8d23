"""Connect mailboxes of the provider fakes to a store, and turn the fakes' pushes into requests.

Each provider's helpers live in its own package (``providers/<name>/testing.py``: the spec's
testing kit, :class:`~mailparity.providers.base.ProviderTestKit`) and are found here through the
registry, under the public names their kits export:

* :func:`connect_microsoft` and :func:`connect_google` do what a host does after a user's
  consent: save a provider config (its base URLs pointed at the fake) and the tokens the fake
  issued, and optionally register the Graph subscription / Gmail watch through the real adapter;
* :func:`graph_notification_request` and :func:`gmail_push_request` build the
  :class:`~mailparity.webhooks.WebhookRequest` the provider would send, for tests that hand it to
  a :class:`~mailparity.webhooks.WebhookHandler` directly (no HTTP server needed).

:func:`connect_mailbox` connects a mailbox of any provider whose kit can, by its key;
:func:`save_connected` is the step every provider's ``connect`` ends with.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import requests

    from ..models import OAuthTokens, ProviderConfigBase
    from ..protocols import CredentialStore, ProviderStore
    from ..providers.gmail.testing import DEFAULT_CLIENT_ID as DEFAULT_GOOGLE_CLIENT_ID
    from ..providers.gmail.testing import PUSH_SERVICE_ACCOUNT, TEST_AUDIENCE
    from ..providers.gmail.testing import connect as connect_google
    from ..providers.gmail.testing import push_request as gmail_push_request
    from ..providers.graph.testing import DEFAULT_CLIENT_ID as DEFAULT_MICROSOFT_CLIENT_ID
    from ..providers.graph.testing import DEFAULT_WEBHOOK as DEFAULT_MICROSOFT_WEBHOOK
    from ..providers.graph.testing import connect as connect_microsoft
    from ..providers.graph.testing import notification_request as graph_notification_request

    class ConnectStore(CredentialStore, ProviderStore, Protocol):
        """A store that is both (the adapters need both)."""


__all__ = [
    "DEFAULT_GOOGLE_CLIENT_ID",
    "DEFAULT_MICROSOFT_CLIENT_ID",
    "DEFAULT_MICROSOFT_WEBHOOK",
    "PUSH_SERVICE_ACCOUNT",
    "TEST_AUDIENCE",
    "connect_google",
    "connect_mailbox",
    "connect_microsoft",
    "default_provider_id",
    "gmail_push_request",
    "graph_notification_request",
    "save_connected",
]

_UNSAFE_ID = re.compile(r"[^a-z0-9]+")


def default_provider_id(key: str, mailbox: str) -> str:
    """``<key>-<mailbox with every run of other characters as one dash>``."""
    return f"{key}-" + _UNSAFE_ID.sub("-", mailbox.lower()).strip("-")


def save_connected(
    store: ConnectStore,
    config: ProviderConfigBase,
    tokens: OAuthTokens,
    *,
    subscribe: bool,
    session: requests.Session | None = None,
) -> ProviderConfigBase:
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


def connect_mailbox(key: str, store: ConnectStore, fake: Any, *args: Any,
                    **options: Any) -> ProviderConfigBase:
    """Connect a mailbox of ``fake`` (the provider ``key``'s fake) to ``store`` with the kit of
    that provider (``args`` / ``options`` as its ``connect`` takes them, e.g. ``mailbox``).

    Raises:
        ConfigurationError: ``key`` names no registered provider.
        LookupError: the provider's kit cannot connect a mailbox to a fake.
    """
    from ..providers import get_spec

    kit = get_spec(key).testing_kit()
    if kit is None or kit.connect is None:
        raise LookupError(f"the provider {key!r} has no testing kit that connects a mailbox")
    config: ProviderConfigBase = kit.connect(store, fake, *args, **options)
    return config


def __getattr__(name: str) -> Any:
    """The helpers the registered providers' testing kits export (imported on first use)."""
    from ..providers import specs

    for spec in specs():
        kit = spec.testing_kit()
        if kit is not None and name in kit.exports:
            value = kit.export(name)
            globals()[name] = value  # later lookups skip __getattr__
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
