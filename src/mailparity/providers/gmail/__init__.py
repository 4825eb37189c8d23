"""Gmail / Google Workspace: google-auth tokens, watch + Pub/Sub push, history, messages, labels.

Gmail quirks stay in this package; outside it, code sees only the models and the registry's
:data:`SPEC`. The adapter module (requests, google-auth) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import ProviderSpec, RenewalRule
from .config import (
    DEFAULT_RENEW_AFTER,
    GmailProviderConfig,
    needs_renewal,
    stale_push,
    watch_state,
)

if TYPE_CHECKING:
    from .adapter import GmailAdapter

__all__ = ["SPEC", "GmailAdapter", "GmailProviderConfig"]

#: The registry entry of Gmail / Google Workspace (key ``"google"``).
SPEC = ProviderSpec(
    key="google",
    testing="mailparity.providers.gmail.testing:KIT",
    title="Gmail / Google Workspace (browser sign-in on a loopback redirect)",
    config_model=GmailProviderConfig,
    adapter="mailparity.providers.gmail.adapter:GmailAdapter",
    push="mailparity.providers.gmail.push:GmailPush",
    push_options=frozenset(
        {
            "google_audience",
            "google_service_accounts",
            "verify_google_tokens",
            "google_certs_url",
            "google_clock_skew_seconds",
        }
    ),
    cli_connect="mailparity.providers.gmail.connect:CLI",
    web_connect="mailparity.providers.gmail.webconnect:WEB",
    renewal=RenewalRule(
        needs_renewal=needs_renewal,
        state=watch_state,
        settings={"gmail_renew_after": DEFAULT_RENEW_AFTER},
    ),
    cursor_field="history_id",
    stale_push=stale_push,
)


def __getattr__(name: str) -> Any:
    if name == "GmailAdapter":
        from .adapter import GmailAdapter

        return GmailAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
