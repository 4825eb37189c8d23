"""The Microsoft 365 (Graph) mailbox connection: :class:`MicrosoftProviderConfig`.

Kept free of HTTP and msal imports: the provider registry loads it whenever a stored config is read.
``mailparity.models`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import Field, SecretStr, field_serializer

from ...models import ProviderConfigBase

__all__ = [
    "DEFAULT_RENEW_BEFORE",
    "GRAPH_MAX_SUBSCRIPTION_MINUTES",
    "MicrosoftProviderConfig",
    "needs_renewal",
    "subscription_id",
    "subscription_state",
]

#: Graph's cap on the lifetime of a subscription to messages (minutes).
GRAPH_MAX_SUBSCRIPTION_MINUTES = 4230


class MicrosoftProviderConfig(ProviderConfigBase):
    """A Microsoft 365 mailbox connection (Graph). Field names follow the seed's columns."""

    provider: Literal["microsoft"] = "microsoft"
    authority_tenant: str = "common"
    auth_mode: Literal["delegated", "application"] = "delegated"
    folder: str = "inbox"
    #: Delegated mode only: ``mailbox`` is not the signed-in user's own (a shared or delegated
    #: mailbox read through ``/users/{mailbox}``). Graph does not deliver change notifications
    #: for such mailboxes with delegated tokens, so they are served by the catch-up sync.
    shared_mailbox: bool = False
    webhook_notification_url: str | None = None
    #: Where Graph sends lifecycle notifications; defaults to the notification URL.
    webhook_lifecycle_url: str | None = None
    webhook_verification_token: SecretStr | None = None
    #: The token replaced by the last rotation, accepted until ``previous_token_valid_until``.
    previous_webhook_verification_token: SecretStr | None = None
    previous_token_valid_until: datetime | None = None
    webhook_subscription_id: str | None = None
    webhook_expires_at: datetime | None = None
    #: Subscription lifetime asked for; never more than Graph's 4230-minute cap.
    subscription_lifetime_minutes: int = Field(default=4230, ge=45)
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    login_base_url: str = "https://login.microsoftonline.com"
    scopes: list[str] = Field(default_factory=lambda: ["https://graph.microsoft.com/.default"])
    #: What ``mark_message_processed`` does.
    processed_strategy: Literal["none", "mark_read", "category", "move"] = "none"
    processed_category: str = "PSA/Processed"
    processed_folder: str | None = None
    #: Per-folder delta links of the catch-up sync.
    delta_links: dict[str, str] = Field(default_factory=dict)

    @field_serializer(
        "webhook_verification_token", "previous_webhook_verification_token", when_used="json"
    )
    def _mask_tokens(self, value: SecretStr | None) -> str | None:
        return None if value is None else "**********"

    @property
    def effective_lifetime_minutes(self) -> int:
        """The lifetime to ask Graph for: the configured one, capped at 4230 minutes."""
        return min(self.subscription_lifetime_minutes, GRAPH_MAX_SUBSCRIPTION_MINUTES)


# --------------------------------------------------------------------------------------------
# Renewal rule (asked by maintenance through the provider spec)

#: Renew a subscription that expires within this window (about half of Graph's cap).
DEFAULT_RENEW_BEFORE = timedelta(hours=36)


def _aware(value: datetime) -> datetime:
    # A naive datetime (a host's own store, an old row) is UTC: Graph speaks UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def needs_renewal(
    config: MicrosoftProviderConfig, now: datetime, settings: Mapping[str, timedelta]
) -> bool:
    """True when the subscription must be created (none, or no expiry known) or renewed (it
    expires within ``settings["graph_renew_before"]``).

    Never for a push-less connection: no notification URL, or a shared mailbox read with
    delegated tokens (Graph does not notify for those; the catch-up sync serves them)."""
    if config.shared_mailbox and config.auth_mode == "delegated":
        return False
    if not config.webhook_notification_url:
        return False
    if not config.webhook_subscription_id or config.webhook_expires_at is None:
        return True
    window = settings.get("graph_renew_before", DEFAULT_RENEW_BEFORE)
    return _aware(config.webhook_expires_at) - now <= window


def subscription_state(config: MicrosoftProviderConfig) -> tuple[str | None, datetime | None]:
    """The current subscription: its id and expiry (each None when unknown)."""
    return config.webhook_subscription_id, config.webhook_expires_at


def subscription_id(config: MicrosoftProviderConfig) -> str | None:
    """The id Graph's notifications carry (``subscriptionId``)."""
    return config.webhook_subscription_id
