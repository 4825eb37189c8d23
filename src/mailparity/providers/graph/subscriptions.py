"""Graph subscriptions (change notifications) for new messages: resources, bodies, parsing, and
:class:`GraphSubscriptions`, the adapter's "subscriptions" section (create, renew, reauthorize,
delete), which :class:`~mailparity.providers.graph.adapter.MicrosoftGraphAdapter` inherits.
"""

from __future__ import annotations

import abc
import logging
import secrets as _secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from ...errors import (
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderUnavailableError,
    SubscriptionError,
    ThrottledError,
)
from ...models import WebhookSubscription
from .config import GRAPH_MAX_SUBSCRIPTION_MINUTES, MicrosoftProviderConfig
from .delta import DeltaCatchUp
from .messages import format_graph_datetime, parse_graph_datetime
from .paths import segment as _q
from .push import message_ids_from_notification

__all__ = [
    "SAFETY_MARGIN_MINUTES",
    "GraphSubscriptions",
    "message_ids_from_notification",
    "subscription_expiry",
    "subscription_resource",
]

log = logging.getLogger("mailparity.graph.subscriptions")

#: Kept off Graph's 4230-minute cap so clock skew between us and Graph cannot push a request over
#: it (Graph then refuses the whole create/renew with ExtensionError).
SAFETY_MARGIN_MINUTES = 10


def subscription_resource(root: str, folder: str) -> str:
    """The subscription resource: ``me/mailFolders('inbox')/messages`` (or ``users/{m}/...``)."""
    return f"{root.strip('/')}/mailFolders('{folder}')/messages"


def subscription_expiry(config: MicrosoftProviderConfig, now: datetime) -> tuple[datetime, str]:
    """The expiry to ask for (now + lifetime, capped under 4230 minutes) and its wire form."""
    minutes = min(
        config.effective_lifetime_minutes, GRAPH_MAX_SUBSCRIPTION_MINUTES - SAFETY_MARGIN_MINUTES
    )
    when = now + timedelta(minutes=minutes)
    return when, format_graph_datetime(when)


def _sid(subscription_id: str) -> str:
    return _q(subscription_id, "Graph subscription id")


class GraphSubscriptions(DeltaCatchUp):
    """The subscriptions section of the Graph adapter: the ``created`` subscription on the
    folder, its renewal (which also reauthorizes), reauthorization and deletion."""

    #: Whether the configured mailbox is not the signed-in user's own (set by the adapter).
    shared_mailbox: bool

    # ------------------------------------------------------------------ supplied by the adapter

    @property
    @abc.abstractmethod
    def mailbox_root(self) -> str:
        """``/me`` or ``/users/{mailbox}``: what the subscription resource is below."""

    # ------------------------------------------------------------------ subscriptions

    def _client_state(self) -> str:
        token = self.config.webhook_verification_token
        if token is not None and token.get_secret_value():
            return token.get_secret_value()
        value = _secrets.token_urlsafe(32)  # 43 characters: under Graph's 128-character limit
        # Saved before the subscription exists: the first notification may arrive right away.
        self.save_config_changes({"webhook_verification_token": SecretStr(value)})
        return value

    def _subscription_error(self, exc: ProviderError, action: str) -> SubscriptionError:
        hint = ""
        if exc.status == 400:
            hint = " (Graph answers 400 when its validation request to the notification URL failed)"
        return SubscriptionError(
            f"Graph refused to {action} the subscription: {exc.message}{hint}",
            status=exc.status, code=exc.code, request_id=exc.request_id, provider=self.provider,
        )

    def register_webhook_subscription(self) -> WebhookSubscription:
        """Create the ``created`` subscription on the folder and save its id and expiry.

        A previous subscription of this provider is deleted first (two would deliver every mail
        twice). The clientState is the config's verification token, generated when missing."""
        return self._create_subscription(delete_previous=True)

    def _create_subscription(self, *, delete_previous: bool) -> WebhookSubscription:
        config = self.config
        if not config.webhook_notification_url:
            raise ConfigurationError(
                f"provider {config.provider_id!r} has no webhook_notification_url",
                provider=self.provider,
            )
        if config.auth_mode == "delegated" and self.shared_mailbox:
            raise ConfigurationError(
                "delegated permissions cannot subscribe to a shared mailbox (Graph accepts the"
                " subscription and never delivers); use application mode for it",
                provider=self.provider,
            )
        client_state = self._client_state()
        # Before the subscription exists: mail arriving between the two is in the next delta
        # round; taken after, a message notified meanwhile could be swallowed by the baseline.
        self._baseline_at_registration()
        if delete_previous and self.config.webhook_subscription_id:
            self._delete_remote(self.config.webhook_subscription_id, quiet=True)
        expires_at, wire = subscription_expiry(self.config, self.clock())
        resource = subscription_resource(self.mailbox_root, self.config.folder)
        body = {
            "changeType": "created",
            "notificationUrl": config.webhook_notification_url,
            "lifecycleNotificationUrl": config.webhook_lifecycle_url
            or config.webhook_notification_url,
            "resource": resource,
            "expirationDateTime": wire,
            "clientState": client_state,
        }
        try:
            response = self._call("POST", "/subscriptions", json=body, absolute=True)
        except (BadRequestError, PermissionDeniedError) as exc:
            raise self._subscription_error(exc, "create") from None
        data = self._json(response)
        sub_id = data.get("id")
        if not isinstance(sub_id, str) or not sub_id:
            raise SubscriptionError(
                "Graph created a subscription without an id", provider=self.provider
            )
        expires = parse_graph_datetime(data.get("expirationDateTime")) or expires_at
        self.save_config_changes({"webhook_subscription_id": sub_id, "webhook_expires_at": expires})
        log.info("provider %s: subscription %s until %s", config.provider_id, sub_id, expires)
        got_resource = data.get("resource")
        return WebhookSubscription(
            id=sub_id, expires_at=expires,
            resource=got_resource if isinstance(got_resource, str) else resource,
        )

    def renew_webhook_subscription(self) -> WebhookSubscription:
        """Extend the subscription (PATCH expirationDateTime, which also reauthorizes it); a
        missing id creates one, and a subscription Graph no longer knows (404) is recreated."""
        sub_id = self.config.webhook_subscription_id
        if not sub_id:
            return self._create_subscription(delete_previous=False)
        expires_at, wire = subscription_expiry(self.config, self.clock())
        try:
            response = self._call(
                "PATCH", f"/subscriptions/{_sid(sub_id)}", json={"expirationDateTime": wire},
                absolute=True,
            )
        except NotFoundError:
            log.warning(
                "provider %s: subscription %s is gone; creating a new one",
                self.config.provider_id, sub_id,
            )
            return self._create_subscription(delete_previous=False)
        except (BadRequestError, PermissionDeniedError) as exc:
            raise self._subscription_error(exc, "renew") from None
        data = self._json(response) if response.content else {}
        expires = parse_graph_datetime(data.get("expirationDateTime")) or expires_at
        self.save_config_changes({"webhook_expires_at": expires})
        got_resource = data.get("resource")
        return WebhookSubscription(
            id=sub_id, expires_at=expires,
            resource=got_resource if isinstance(got_resource, str) else None,
        )

    def reauthorize_subscription(self) -> WebhookSubscription:
        """Answer a ``reauthorizationRequired`` lifecycle event: POST .../reauthorize.

        When reauthorizing fails for a reason other than throttling or an outage, the
        subscription is renewed instead (which reauthorizes too, and recreates it if gone)."""
        sub_id = self.config.webhook_subscription_id
        if not sub_id:
            return self._create_subscription(delete_previous=False)
        try:
            self._call("POST", f"/subscriptions/{_sid(sub_id)}/reauthorize", absolute=True)
        except (ThrottledError, ProviderUnavailableError):
            raise  # renewing would meet the same throttling or outage
        except ProviderError as exc:
            log.warning(
                "provider %s: reauthorize failed (%s); renewing instead",
                self.config.provider_id, exc.code or exc.status,
            )
            return self.renew_webhook_subscription()
        expires = self.config.webhook_expires_at or self.clock()
        return WebhookSubscription(id=sub_id, expires_at=expires)

    def _delete_remote(self, sub_id: str, *, quiet: bool) -> None:
        try:
            self._call(
                "DELETE", f"/subscriptions/{_sid(sub_id)}", allow_status=frozenset({404}),
                absolute=True,
            )
        except ProviderError as exc:
            if not quiet:
                raise
            log.warning(
                "provider %s: could not delete old subscription %s (%s)",
                self.config.provider_id, sub_id, exc.code or exc.status,
            )

    def delete_webhook_subscription(self) -> None:
        """Delete the subscription (a 404 is fine) and clear the saved id and expiry."""
        sub_id = self.config.webhook_subscription_id
        if not sub_id:
            return
        self._delete_remote(sub_id, quiet=False)
        self.save_config_changes({"webhook_subscription_id": None, "webhook_expires_at": None})

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        """The message id of one item of a notification's ``value`` array (``created`` message
        changes only; lifecycle items and other changes give []). clientState is checked by the
        webhook handler, not here."""
        return message_ids_from_notification(notification)
