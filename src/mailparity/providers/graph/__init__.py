"""Microsoft Graph: msal tokens, subscriptions, notifications, messages, delta.

Graph quirks stay in this package; outside it, code sees only the models and the registry's
:data:`SPEC`. The adapter module (requests, msal) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import ProviderSpec, RenewalRule
from .config import (
    DEFAULT_RENEW_BEFORE,
    MicrosoftProviderConfig,
    needs_renewal,
    subscription_id,
    subscription_state,
)

if TYPE_CHECKING:
    from .adapter import MicrosoftGraphAdapter

__all__ = ["SPEC", "MicrosoftGraphAdapter", "MicrosoftProviderConfig"]

#: The registry entry of Microsoft 365 (key ``"microsoft"``).
SPEC = ProviderSpec(
    key="microsoft",
    testing="mailparity.providers.graph.testing:KIT",
    title="Microsoft 365 (device-code sign-in)",
    config_model=MicrosoftProviderConfig,
    adapter="mailparity.providers.graph.adapter:MicrosoftGraphAdapter",
    push="mailparity.providers.graph.push:GraphPush",
    push_options=frozenset({"max_notification_items"}),
    cli_connect="mailparity.providers.graph.connect:CLI",
    web_connect="mailparity.providers.graph.webconnect:WEB",
    renewal=RenewalRule(
        needs_renewal=needs_renewal,
        state=subscription_state,
        settings={"graph_renew_before": DEFAULT_RENEW_BEFORE},
    ),
    cursor_field="delta_links",
    lifecycle_aliases="mailparity.providers.graph.push:GRAPH_LIFECYCLE_EVENTS",
    subscription_id=subscription_id,
)


def __getattr__(name: str) -> Any:
    if name == "MicrosoftGraphAdapter":
        from .adapter import MicrosoftGraphAdapter

        return MicrosoftGraphAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
