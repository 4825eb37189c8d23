"""The Gmail / Google Workspace mailbox connection: :class:`GmailProviderConfig`.

Kept free of HTTP and google-auth imports: the provider registry loads it whenever a stored config
is read. ``mailparity.models`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import Field, SecretStr, field_serializer

from ...models import ProviderConfigBase

__all__ = [
    "DEFAULT_RENEW_AFTER",
    "WATCH_LIFETIME",
    "GmailProviderConfig",
    "needs_renewal",
    "stale_push",
    "watch_state",
]


class GmailProviderConfig(ProviderConfigBase):
    """A Gmail / Google Workspace mailbox connection. Field names follow the seed's columns."""

    provider: Literal["google"] = "google"
    auth_mode: Literal["user", "service_account"] = "user"
    #: Service-account key JSON (domain-wide delegation, impersonating ``mailbox``).
    service_account_info: SecretStr | None = None
    project_id: str | None = None
    pubsub_topic_name: str | None = None
    pubsub_subscription_name: str | None = None
    label_filters: list[str] = Field(default_factory=lambda: ["INBOX"])
    #: The sync cursor; written only after the work up to it was published.
    history_id: int | None = None
    watch_expiration: datetime | None = None
    gmail_base_url: str = "https://gmail.googleapis.com"
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    #: Google's authorization endpoint (the web connect flow sends the browser there).
    auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    scopes: list[str] = Field(
        default_factory=lambda: ["https://www.googleapis.com/auth/gmail.modify"]
    )
    processed_strategy: Literal["none", "label", "remove_unread"] = "none"
    processed_label: str = "PSA/Processed"
    #: Lower bound of the full sync after a cursor expiry (the newest message already handled).
    last_processed_at: datetime | None = None

    @field_serializer("service_account_info", when_used="json")
    def _mask_sa(self, value: SecretStr | None) -> str | None:
        return None if value is None else "**********"

    @property
    def topic_path(self) -> str | None:
        """``projects/{project_id}/topics/{pubsub_topic_name}`` (or the name if already a path)."""
        if not self.pubsub_topic_name:
            return None
        if self.pubsub_topic_name.startswith("projects/"):
            return self.pubsub_topic_name
        if not self.project_id:
            return None
        return f"projects/{self.project_id}/topics/{self.pubsub_topic_name}"

    @property
    def subscription_path(self) -> str | None:
        """``projects/{project_id}/subscriptions/{pubsub_subscription_name}`` (or the name if
        already a path, or the bare name when no ``project_id`` is known); None when unset."""
        name = (self.pubsub_subscription_name or "").strip()
        if not name:
            return None
        if name.startswith("projects/") or not self.project_id:
            return name
        return f"projects/{self.project_id}/subscriptions/{name}"

    def accepts_push_subscription(self, subscription: str) -> bool:
        """Whether a Pub/Sub push envelope's ``subscription`` is this mailbox's own.

        True when no subscription is configured (nothing to bind to). A full configured path
        must match exactly; a bare name (no ``project_id``) matches the last segment of a
        ``projects/*/subscriptions/NAME`` path."""
        expected = self.subscription_path
        if expected is None:
            return True
        if expected.startswith("projects/"):
            return subscription == expected
        prefix, _, last = subscription.rpartition("/subscriptions/")
        return prefix.startswith("projects/") and "/" not in prefix[9:] and last == expected


# --------------------------------------------------------------------------------------------
# Renewal rule (asked by maintenance through the provider spec)

#: How long a watch lives (users.watch answers with an expiration 7 days ahead).
WATCH_LIFETIME = timedelta(days=7)
#: Renew a watch this long after it was registered (Google recommends daily).
DEFAULT_RENEW_AFTER = timedelta(days=1)


def _aware(value: datetime) -> datetime:
    # A naive datetime (a host's own store, an old row) is UTC: Gmail speaks UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def needs_renewal(
    config: GmailProviderConfig, now: datetime, settings: Mapping[str, timedelta]
) -> bool:
    """True when the watch must be registered (none yet) or renewed: it is older than
    ``settings["gmail_renew_after"]``, i.e. less than ``7 days - gmail_renew_after`` remain.
    Never without a Pub/Sub topic (a push-less connection, served by the catch-up sync)."""
    if not config.topic_path:
        return False
    if config.watch_expiration is None:
        return True
    renew_after = settings.get("gmail_renew_after", DEFAULT_RENEW_AFTER)
    return _aware(config.watch_expiration) - now <= WATCH_LIFETIME - renew_after


def watch_state(config: GmailProviderConfig) -> tuple[str | None, datetime | None]:
    """The current watch: no id (a watch has none) and its expiry."""
    return None, config.watch_expiration


def stale_push(config: GmailProviderConfig, payload: Mapping[str, object]) -> bool:
    """True when a cursor job's pushed ``history_id`` is not beyond the stored cursor:
    everything up to the cursor was published already."""
    pushed = payload.get("history_id")
    try:
        pushed_id = int(str(pushed)) if pushed is not None else None
    except ValueError:
        return False
    cursor = config.history_id
    return pushed_id is not None and cursor is not None and pushed_id <= cursor
