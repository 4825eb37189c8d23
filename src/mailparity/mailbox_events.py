"""Events about a mailbox connection's state: connected, reauthorized, subscription lost.

A host shows its users which mailboxes work. Besides ``EMAIL_PROVIDER_AUTH_FAILED`` (published by
the pipeline when a mailbox needs consent again), three events say what changed:

* ``EMAIL_PROVIDER_CONNECTED``: a new mailbox connection was stored (a connect flow finished);
* ``EMAIL_PROVIDER_REAUTHORIZED``: an existing connection signed in again (new consent, new
  tokens); when the mailbox needed consent, this ends that auth failure;
* ``EMAIL_PROVIDER_SUBSCRIPTION_LOST``: the mailbox has no working subscription or watch any more
  (none was ever made, or the last one expired or was removed) and it could not be created again.
  Pushes stop; the maintenance sweep's catch-up syncs still deliver its mail, later. Published
  once per occurrence; the occurrence ends when a subscription is created or renewed again.

Connect flows (the ``mailparity connect`` commands, the web connect flow) call
:func:`announce_connection` once the connection is stored; the maintenance sweep and the
lifecycle jobs call :func:`subscription_lost` / :func:`subscription_restored`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from . import telemetry
from .errors import MailParityError
from .models import (
    EVENT_NAMESPACE,
    EmailProviderConnected,
    EmailProviderReauthorized,
    EmailProviderSubscriptionLost,
    utcnow,
)
from .protocols import AnyProviderConfig, EventPublisher, MetaStore

__all__ = [
    "announce_connection",
    "connection_event",
    "subscription_lost",
    "subscription_restored",
]

log = logging.getLogger("mailparity.mailbox_events")

_LOST_SEQ = "subscription-lost:seq"  # how many times this mailbox lost its subscription
_LOST_OPEN = "subscription-lost:open"  # the occurrence whose event went out (until restored)


def connection_event(
    config: AnyProviderConfig,
    *,
    reconnected: bool,
    needed_consent: bool = False,
    occurred_at: datetime | None = None,
) -> EmailProviderConnected | EmailProviderReauthorized:
    """The event of a finished connect flow for ``config`` (as stored): REAUTHORIZED when the
    connection existed before (``reconnected``), else CONNECTED. ``needed_consent``: the
    connection had ``needs_consent`` set before this sign-in."""
    when = occurred_at or utcnow()
    kind = "reauthorized" if reconnected else "connected"
    event_id = str(uuid.uuid5(
        EVENT_NAMESPACE, f"{config.provider_id}\x00{kind}\x00{when.isoformat()}"
    ))
    if reconnected:
        return EmailProviderReauthorized(
            event_id=event_id, occurred_at=when, tenant_id=config.tenant,
            provider_id=config.provider_id, provider=config.provider, mailbox=config.mailbox,
            needed_consent=needed_consent,
        )
    return EmailProviderConnected(
        event_id=event_id, occurred_at=when, tenant_id=config.tenant,
        provider_id=config.provider_id, provider=config.provider, mailbox=config.mailbox,
    )


def announce_connection(
    publisher: EventPublisher,
    config: AnyProviderConfig,
    *,
    reconnected: bool,
    needed_consent: bool = False,
    occurred_at: datetime | None = None,
) -> EmailProviderConnected | EmailProviderReauthorized:
    """Publish the event of a finished connect flow (see :func:`connection_event`) and return it.

    Call it after the connection (config and tokens) is stored. The connection does not depend
    on the event: when ``publisher`` raises, the error propagates and the caller decides (the CLI
    warns; a web flow may retry or tell the user)."""
    event = connection_event(config, reconnected=reconnected, needed_consent=needed_consent,
                             occurred_at=occurred_at)
    telemetry.publish(publisher, event, config.provider)
    return event


def subscription_lost(
    store: MetaStore,
    publisher: EventPublisher,
    config: AnyProviderConfig,
    error: BaseException,
    *,
    subscription_id: str | None = None,
    expired_at: datetime | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Publish ``EMAIL_PROVIDER_SUBSCRIPTION_LOST`` for ``config`` unless this occurrence's event
    went out already; True when it was published now.

    The event id is the same for every attempt of one occurrence (a second process publishing it
    too sends the same id). A publisher failure is logged and retried at the next call (the
    next sweep), never raised: the sweep goes on with the other mailboxes."""
    pid = config.provider_id
    if store.get_meta(pid, _LOST_OPEN) is not None:
        return False
    raw = store.get_meta(pid, _LOST_SEQ)
    occurrence = (int(raw) if raw and raw.isdigit() else 0) + 1
    code = error.code if isinstance(error, MailParityError) else None
    text = (f"{type(error).__name__}: {error}" if isinstance(error, MailParityError)
            else type(error).__name__)[:500]  # a foreign exception's text may quote a token
    event = EmailProviderSubscriptionLost(
        event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"{pid}\x00subscription-lost\x00{occurrence}")),
        occurred_at=clock(),
        tenant_id=config.tenant,
        provider_id=pid,
        provider=config.provider,
        mailbox=config.mailbox,
        subscription_id=subscription_id,
        expired_at=expired_at,
        error_code=code,
        error=text,
    )
    try:
        telemetry.publish(publisher, event, config.provider)
    except Exception as exc:
        log.warning("provider %s: publishing the lost subscription failed: %s", pid,
                    type(exc).__name__)
        return False
    store.set_meta(pid, _LOST_SEQ, str(occurrence))
    store.set_meta(pid, _LOST_OPEN, str(occurrence))
    telemetry.subscription_lost(config.provider)
    log.error("provider %s: subscription lost and not recreated (%s)", pid, text)
    return True


def subscription_restored(store: MetaStore, provider_id: str) -> None:
    """A subscription or watch works again: a later loss is a new occurrence (a new event)."""
    if store.get_meta(provider_id, _LOST_OPEN) is not None:
        store.set_meta(provider_id, _LOST_OPEN, None)
