"""Graph subscriptions (change notifications) for new messages: resources, bodies, parsing.

The adapter does the HTTP calls; this module holds the Graph-specific shapes so they can be tested
on their own.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .config import GRAPH_MAX_SUBSCRIPTION_MINUTES, MicrosoftProviderConfig
from .messages import format_graph_datetime
from .push import message_ids_from_notification

__all__ = [
    "SAFETY_MARGIN_MINUTES",
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
