"""Graph subscriptions (change notifications) for new messages: resources, bodies, parsing.

The adapter does the HTTP calls; this module holds the Graph-specific shapes so they can be tested
on their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .config import GRAPH_MAX_SUBSCRIPTION_MINUTES, MicrosoftProviderConfig
from .messages import format_graph_datetime

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

# "Users/{id}/Messages/{id}", "users/{u}@{t}/messages/{id}", "Users('{u}')/messages('{id}')".
_RESOURCE_ID_RE = re.compile(r"messages(?:/|\(')([^/'()]+)'?\)?/?$", re.IGNORECASE)


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


def message_ids_from_notification(item: Mapping[str, Any]) -> list[str]:
    """The message id of one ``created`` change notification item, or [].

    Lifecycle items (``lifecycleEvent``), other change types (``updated``, ``deleted``, the Event
    Hubs reachability test whose changeType is a sentence) and non-message resources give [].
    The id comes from ``resourceData.id``; when that is absent, from the ``resource`` path.
    """
    if not isinstance(item, Mapping):
        return []
    if item.get("lifecycleEvent"):
        return []
    change = item.get("changeType")
    if not isinstance(change, str):
        return []
    if "created" not in {part.strip().lower() for part in change.split(",")}:
        return []
    data = item.get("resourceData")
    if isinstance(data, Mapping):
        odata_type = data.get("@odata.type")
        # "#Microsoft.Graph.Message", "#microsoft.graph.message", eventMessage (meeting mail).
        if isinstance(odata_type, str) and odata_type and not odata_type.lower().endswith(
            "message"
        ):
            log.debug("notification for a %s ignored", odata_type)
            return []
        message_id = data.get("id")
        if isinstance(message_id, str) and message_id.strip() and message_id != "NA":
            return [message_id.strip()]
    resource = item.get("resource")
    if isinstance(resource, str):
        match = _RESOURCE_ID_RE.search(resource.strip())
        if match and match.group(1) not in ("", "NA"):
            return [match.group(1)]
    return []
