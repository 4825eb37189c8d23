"""Microsoft Graph change notifications: the validation handshake, constant-time
``clientState``, and the one parser of notification items.

* validation handshake: any GET or POST carrying ``?validationToken=`` is answered ``200
  text/plain`` with the token, before and without reading the body;
* a notification (``{"value": [...]}``) is answered ``202`` once its jobs are stored, ``503`` when
  the store failed (Graph then retries), ``400`` for a body that is not a change-notification
  collection, ``413`` above ``max_body_bytes`` or with more than ``max_notification_items``
  items. Each item is checked on its own: an unknown subscription, a missing or wrong
  ``clientState`` (compared in constant time, the rotated-out token accepted until
  ``previous_token_valid_until``) or a malformed item is skipped, and never stops the valid items
  beside it. One summary line per request says what was queued and what was ignored, and why.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ...errors import ConfigurationError
from ...models import Job
from ...pushing import (
    _TEXT_PLAIN,
    LIFECYCLE_MISSED,
    LIFECYCLE_REAUTHORIZATION_REQUIRED,
    LIFECYCLE_SUBSCRIPTION_REMOVED,
    MAX_ID_LENGTH,
    PushSource,
    WebhookRequest,
    WebhookResponse,
    _empty,
    _has_control_chars,
    _json_loads,
    _method_not_allowed,
    _plain,
    _safe,
    _store_failed,
    _StoreFailedError,
    _too_large,
    _valid_id,
)
from .config import MicrosoftProviderConfig

__all__ = [
    "DEFAULT_MAX_NOTIFICATION_ITEMS",
    "GRAPH_LIFECYCLE_EVENTS",
    "GraphPush",
    "is_created",
    "message_id_from_item",
    "message_ids_from_notification",
]

log = logging.getLogger("mailparity.webhooks")

#: The Graph lifecycle events that become ``lifecycle`` jobs, and the provider-neutral event
#: (:data:`mailparity.pushing.LIFECYCLE_EVENTS`) each job carries. The spec also hands this to
#: the processor, so a job stored under Graph's own name (before the names were neutral) runs.
GRAPH_LIFECYCLE_EVENTS: Mapping[str, str] = MappingProxyType({
    "reauthorizationRequired": LIFECYCLE_REAUTHORIZATION_REQUIRED,
    "subscriptionRemoved": LIFECYCLE_SUBSCRIPTION_REMOVED,
    "missed": LIFECYCLE_MISSED,
})
#: Graph's validation tokens are short opaque strings; anything longer is not Graph.
MAX_VALIDATION_TOKEN_LENGTH = 1024
#: The most items one notification POST may carry (Graph batches a few; see the handler).
DEFAULT_MAX_NOTIFICATION_ITEMS = 1000
#: Distinct examples named per reason in the summary line.
_SUMMARY_EXAMPLES = 3

_COALESCED = "coalesced with a pending job"

#: The id Graph sends where an item is not about one resource.
_NO_ID = "NA"
_GRAPH_RESOURCE_MESSAGE_ID = re.compile(
    r"messages(?:/([^/()']+)|\('([^']+)'\))/?$", re.IGNORECASE
)


# --------------------------------------------------------------------------------------------
# One summary line per notification request


@dataclass(frozen=True)
class _ItemOutcome:
    """What became of one Graph notification item: queued (``reason`` None) or ignored.

    ``example``: a log-safe value worth naming (a provider id, a bounded repr of an id);
    ``level``: how loud an ignored item of this kind is."""

    reason: str | None
    example: str | None = None
    level: int = logging.WARNING


class _ItemTally:
    """Counts the outcomes of one request's items and logs them as ONE line.

    A 1 MB body holds tens of thousands of items: logging each would let one unauthenticated
    request write that many lines. The summary names each reason with its count and at most
    ``_SUMMARY_EXAMPLES`` distinct examples, at the level of its loudest reason."""

    def __init__(self) -> None:
        self.queued = 0
        self._counts: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}
        self._level = logging.DEBUG

    def add(self, outcome: _ItemOutcome) -> None:
        if outcome.reason is None:
            self.queued += 1
            return
        reason = outcome.reason
        self._counts[reason] = self._counts.get(reason, 0) + 1
        examples = self._examples.setdefault(reason, [])
        if (
            outcome.example is not None
            and outcome.example not in examples
            and len(examples) < _SUMMARY_EXAMPLES
        ):
            examples.append(outcome.example)
        self._level = max(self._level, outcome.level)

    def summary(self, total: int) -> str:
        text = f"Graph notification: {total} item(s), {self.queued} job(s) queued"
        if not self._counts:
            return text
        parts = []
        for reason, count in self._counts.items():
            examples = self._examples.get(reason)
            shown = f" ({', '.join(examples)}{', ...' if count > len(examples) else ''})" if (
                examples
            ) else ""
            parts.append(f"{count} {reason}{shown}")
        return f"{text}; ignored: {'; '.join(parts)}"

    def ignored(self) -> dict[str, int]:
        """How many items were ignored, by reason (coalesced ones are not ignored: their work
        is pending already)."""
        return {
            reason: count for reason, count in self._counts.items()
            if reason != _COALESCED
        }

    def log(self, total: int) -> None:
        level = self._level if self._counts else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "%s", self.summary(total))


# --------------------------------------------------------------------------------------------
# The push source


def is_created(change_type: object) -> bool:
    """Whether a ``changeType`` names a creation (``"created"``, or ``"created,updated"`` when
    Graph folds several changes into one item); compared case-insensitively."""
    if not isinstance(change_type, str):
        return False
    return "created" in {part.strip().lower() for part in change_type.split(",")}


def message_id_from_item(item: Mapping[str, Any]) -> str | None:
    """The message id of one notification item: ``resourceData.id``, else the id at the end of
    ``resource``; None when the item is not about a message or carries no valid id. ``"NA"``
    (what Graph puts in items that are not about one resource) is no id."""
    resource_data = item.get("resourceData")
    if resource_data is not None and not isinstance(resource_data, Mapping):
        return None
    if isinstance(resource_data, Mapping):
        odata_type = resource_data.get("@odata.type")
        # Messages and their subtypes (eventMessage) only; compared case-insensitively
        # because the docs' own examples spell it both ways.
        if isinstance(odata_type, str) and not odata_type.lower().endswith("message"):
            return None
        rid = resource_data.get("id")
        if _valid_id(rid) and rid != _NO_ID:
            assert isinstance(rid, str)
            return rid
    resource = item.get("resource")
    if isinstance(resource, str) and len(resource) <= 4 * MAX_ID_LENGTH:
        match = _GRAPH_RESOURCE_MESSAGE_ID.search(resource.strip())
        if match:
            found = match.group(1) or match.group(2)
            if _valid_id(found) and found != _NO_ID:
                return found
    return None


def message_ids_from_notification(item: Mapping[str, Any]) -> list[str]:
    """The message id of one ``created`` change notification item, or [] (the one parser of
    notification items: the push source and ``process_webhook_notification`` both use it).

    Lifecycle items (``lifecycleEvent``), other change types (``updated``, ``deleted``, the Event
    Hubs reachability test whose changeType is a sentence) and non-message resources give [].
    """
    if not isinstance(item, Mapping) or item.get("lifecycleEvent"):
        return []
    if not is_created(item.get("changeType")):
        return []
    found = message_id_from_item(item)
    return [] if found is None else [found]


class GraphPush(PushSource):
    """The Microsoft Graph notification (and lifecycle) URL.

    Args:
        max_notification_items: a notification POST with more items than this is refused whole
            with 413 before any item is looked at (default ``DEFAULT_MAX_NOTIFICATION_ITEMS``,
            far above the few items Graph batches).
        **base: see :class:`~mailparity.pushing.PushSource`.

    Raises:
        ConfigurationError: ``max_notification_items`` below 1.
    """

    def __init__(
        self, *, max_notification_items: int = DEFAULT_MAX_NOTIFICATION_ITEMS, **base: Any
    ) -> None:
        if max_notification_items < 1:
            raise ConfigurationError("max_notification_items must be at least 1")
        super().__init__(**base)
        self.max_notification_items = max_notification_items

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one request to the Microsoft Graph notification (and lifecycle) URL."""
        return self.handle_microsoft(request)

    def handle_microsoft(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one request to the Microsoft Graph notification (and lifecycle) URL."""
        if request.method not in ("GET", "POST"):
            return _method_not_allowed("GET, POST")
        if "validationToken" in request.query:
            return self._graph_validation(request.query["validationToken"])
        if request.method != "POST":
            return _method_not_allowed("GET, POST")
        if len(request.body) > self.max_body_bytes:
            log.warning("Graph notification refused: body of %d bytes is too large",
                        len(request.body))
            return _too_large()
        try:
            payload = _json_loads(request.body)
        except ValueError:
            log.warning("Graph notification refused: the body is not JSON")
            return _plain(400, "body is not a change notification collection")
        if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
            log.warning("Graph notification refused: the body has no 'value' array")
            return _plain(400, "body is not a change notification collection")

        items = payload["value"]
        if len(items) > self.max_notification_items:
            log.warning("Graph notification refused: %d items, more than the %d allowed",
                        len(items), self.max_notification_items)
            return _plain(413, "too many notification items")

        now = self._clock()
        touched: set[str] = set()
        tally = _ItemTally()
        store_failed = False
        for index, item in enumerate(items):
            try:
                tally.add(self._graph_item(index, item, now, touched))
            except _StoreFailedError:
                # Keep going: the other items may still be stored; Graph retries the batch and
                # the jobs' unique keys coalesce the repeats. One log line per request.
                if not store_failed:
                    log.error("storing Graph notification item %d failed; the batch is answered"
                              " 503", index, exc_info=True)
                store_failed = True
        self._record_push(touched, now)
        tally.log(len(items))
        for reason, count in tally.ignored().items():
            self._ignored(reason, count)
        if store_failed:
            return _store_failed()
        return _empty(202)

    def _graph_validation(self, token: str) -> WebhookResponse:
        if not token or len(token) > MAX_VALIDATION_TOKEN_LENGTH or _has_control_chars(token):
            log.warning("Graph validation refused: the validationToken is empty, too long or"
                        " holds control characters")
            return _plain(400, "invalid validation token")
        log.info("answered a Graph validation request")
        return WebhookResponse(
            200,
            {
                "Content-Type": _TEXT_PLAIN,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
            token.encode("utf-8"),
        )

    def _graph_item(
        self, index: int, item: object, now: datetime, touched: set[str]
    ) -> _ItemOutcome:
        """Check one notification item and store its job; say what became of it.

        Nothing is logged per item (a hostile batch would make one line per item): the caller
        logs one summary line for the whole request."""
        if not isinstance(item, dict):
            return _ItemOutcome("not an object")
        subscription_id = item.get("subscriptionId")
        if not _valid_id(subscription_id):
            return _ItemOutcome("no valid subscriptionId")
        assert isinstance(subscription_id, str)
        # A store failure raises _StoreFailedError (the store is guarded): see handle_microsoft.
        config = self.store.find_provider_by_subscription(subscription_id)
        if not isinstance(config, MicrosoftProviderConfig):
            return _ItemOutcome("unknown subscription", _safe(subscription_id))
        pid = config.provider_id
        if not self._client_state_ok(config, item.get("clientState"), now):
            # Never log the presented or stored value: a near-miss would leak the secret.
            return _ItemOutcome("missing or wrong clientState", pid)
        if not config.active:
            return _ItemOutcome("paused provider", pid, level=logging.INFO)
        touched.add(pid)

        lifecycle = item.get("lifecycleEvent")
        if lifecycle is not None:
            event = GRAPH_LIFECYCLE_EVENTS.get(lifecycle) if isinstance(lifecycle, str) else None
            if event is None:
                return _ItemOutcome("unhandled lifecycle event", _safe(lifecycle))
            return self._graph_job(Job(
                kind="lifecycle",
                provider_id=pid,
                payload={"event": event, "subscription_id": subscription_id},
                unique_key=f"lifecycle:{pid}:{event}",
                available_at=now,
                created_at=now,
            ))

        change_type = item.get("changeType")
        if not is_created(change_type):
            # Our own marking (isRead, categories) produces "updated"; deletions need no event.
            return _ItemOutcome("not a created message", _safe(change_type), level=logging.DEBUG)
        message_id = self._graph_message_id(item)
        if message_id is None:
            return _ItemOutcome("no message id", pid)
        return self._graph_job(Job(
            kind="message",
            provider_id=pid,
            payload={"message_id": message_id, "received_hint": now.isoformat()},
            unique_key=f"graph:{pid}:{message_id}",
            available_at=now,
            created_at=now,
        ))

    def _graph_job(self, job: Job) -> _ItemOutcome:
        if self._enqueue(job):
            return _ItemOutcome(None)
        return _ItemOutcome(_COALESCED, job.provider_id, level=logging.DEBUG)

    @staticmethod
    def _graph_message_id(item: Mapping[str, Any]) -> str | None:
        return message_id_from_item(item)

    def _client_state_ok(
        self, config: MicrosoftProviderConfig, presented: object, now: datetime
    ) -> bool:
        if not isinstance(presented, str) or not presented:
            return False
        candidates = []
        if config.webhook_verification_token is not None:
            candidates.append(config.webhook_verification_token.get_secret_value())
        previous = config.previous_webhook_verification_token
        valid_until = config.previous_token_valid_until
        if previous is not None and valid_until is not None and now < valid_until:
            candidates.append(previous.get_secret_value())
        if not candidates:
            log.warning("provider %s has no webhook_verification_token: its notifications"
                        " cannot be trusted", config.provider_id)
        presented_bytes = presented.encode("utf-8", errors="surrogatepass")
        matched = False
        for candidate in candidates:
            if not candidate:
                continue
            # Compare against every candidate (no early exit): timing reveals nothing.
            matched |= hmac.compare_digest(presented_bytes, candidate.encode("utf-8"))
        return matched

