"""A third provider, registered by tests only: ``"fake"``, the test adapter of
``fake_adapter.py`` behind its own config, push source, renewal rule and testing kit.

The core modules never heard of it. ``test_provider_seam.py`` drives it through each part, and
the processing, maintenance, webhook and CLI suites run their provider-generic tests over it as
well as over a built-in provider (the ``provider_kind`` fixture of ``conftest.py``), with no
edit to a core module. What differs per provider in those suites is asked of :func:`make_config`
here (and of the registry), never spelled out in a test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import SecretStr

import mailparity.providers as registry
from fake_adapter import FakeAdapter, FakeMailbox
from mailparity.adapter import SyncBatch
from mailparity.models import Job, ProviderConfigBase, WebhookSubscription
from mailparity.providers import ProviderSpec, RenewalRule
from mailparity.providers.base import ProviderTestKit
from mailparity.pushing import (
    PushSource,
    WebhookRequest,
    WebhookResponse,
    _empty,
    _plain,
)

KEY = "fake"
#: The provider kinds the generic suites run over: a built-in one and the third one.
SUBSCRIBING_KINDS = ("microsoft", KEY)


class FakeProviderConfig(ProviderConfigBase):
    provider: Literal["fake"] = "fake"
    push_secret: str = "s3cret"
    cursor: int | None = None
    subscription: str | None = None
    subscription_expires_at: datetime | None = None


#: The mailboxes behind every adapter the registry builds, by provider id.
BOXES: dict[str, FakeMailbox] = {}


class FakeProviderAdapter(FakeAdapter):
    """The test adapter as a registered provider: its state is looked up by provider id, and its
    cursor lives in the config (moved through the store's generic compare-and-set)."""

    def __init__(self, config: FakeProviderConfig, **kwargs: Any) -> None:
        box = BOXES.get(config.provider_id)
        if box is None:
            box = BOXES[config.provider_id] = FakeMailbox(config)  # type: ignore[arg-type]
        super().__init__(config, mailbox=box, **kwargs)  # type: ignore[arg-type]

    def register_webhook_subscription(self) -> WebhookSubscription:
        sub = super().register_webhook_subscription()
        self.save_config_changes(
            {"subscription": sub.id, "subscription_expires_at": sub.expires_at}
        )
        return sub

    def renew_webhook_subscription(self) -> WebhookSubscription:
        renewed = super().renew_webhook_subscription()
        # A renewal keeps the subscription (a new id would mean it was recreated).
        sub = WebhookSubscription(id=self.config.subscription, expires_at=renewed.expires_at)
        self.save_config_changes({"subscription_expires_at": sub.expires_at})
        return sub

    def fetch_changes(self) -> SyncBatch:
        self.box.hit("fetch_changes")
        stored = self.store.get_provider(self.config.provider_id)
        return SyncBatch(list(self.box.changes), self.box.next_cursor, expected=stored.cursor)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        self.box.hit("commit")
        moved = bool(
            self.store.compare_and_set_cursor(self.config.provider_id, batch.expected, batch.cursor)
        )
        if moved:
            self.box.commits.append(batch.cursor)
        return moved


class FakePush(PushSource):
    """``POST {"mailbox", "message_id"}`` with ``X-Fake-Secret``: one message job."""

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        if request.method != "POST":
            return _plain(405, "method not allowed", Allow="POST")
        data = json.loads(request.body)
        config = self.store.find_provider_by_mailbox(KEY, data["mailbox"])
        if not isinstance(config, FakeProviderConfig):
            return _empty(204)
        if request.headers.get("X-Fake-Secret") != config.push_secret:
            return _plain(403, "bad secret")
        if not config.active:
            return _empty(202)  # a paused mailbox: acknowledged, nothing queued
        now = self._clock()
        pid, message_id = config.provider_id, data["message_id"]
        # No unique key and no store-failure handling: the core coalesces a redelivered push and
        # answers 503 when the store fails (a lookup above or this enqueue).
        self._enqueue(Job(kind="message", provider_id=pid, payload={"message_id": message_id},
                          available_at=now, created_at=now))
        self._record_push({pid}, now)
        return _empty(202)


def push_request(mailbox: str, message_id: str, secret: str = "s3cret") -> WebhookRequest:
    """The third provider's push of ``message_id`` to ``mailbox``."""
    body = json.dumps({"mailbox": mailbox, "message_id": message_id}).encode()
    return WebhookRequest("POST", {}, {"X-Fake-Secret": secret}, body)


def _needs_renewal(config: FakeProviderConfig, now: datetime, settings: Any) -> bool:
    if config.subscription_expires_at is None:
        return True
    expires = config.subscription_expires_at
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    return expires - now <= settings["fake_renew_before"]


def _sample_config(**overrides: Any) -> FakeProviderConfig:
    values: dict[str, Any] = {
        "provider_id": "fake-1",
        "tenant": "tenant-f",
        "mailbox": "Box@Fake.example",
        "client_secret": SecretStr("fake-secret"),
        "cursor": 3,
        "subscription": "fake-sub-1",
        "subscription_expires_at": datetime(
            2026, 1, 3, 9, 30, tzinfo=timezone(timedelta(hours=-5))
        ),
    }
    values.update(overrides)
    return FakeProviderConfig(**values)


KIT = ProviderTestKit(
    sample_config=_sample_config,
    cursor_values=(5, 9),
    subscription_field="subscription",
    coercions={"cursor": ("12", 12)},
    invalid_values={"cursor": "twelve"},
)

SPEC = ProviderSpec(
    key=KEY,
    title="Test provider",
    config_model=FakeProviderConfig,
    adapter=FakeProviderAdapter,
    push=FakePush,
    renewal=RenewalRule(
        needs_renewal=_needs_renewal,
        state=lambda c: (c.subscription, c.subscription_expires_at),
        settings={"fake_renew_before": timedelta(hours=1)},
    ),
    cursor_field="cursor",
    subscription_id=lambda c: c.subscription,
    testing=KIT,
)


@contextmanager
def registered() -> Iterator[None]:
    """The third provider registered (and its mailboxes reset) for the duration."""
    registry.register(SPEC)
    BOXES.clear()
    try:
        yield
    finally:
        registry.unregister(KEY)
        BOXES.clear()


def make_config(
    kind: str,
    provider_id: str,
    *,
    tenant: str = "t1",
    mailbox: str | None = None,
    subscription_id: str | None = None,
    expires_at: datetime | None = None,
    **fields: Any,
) -> ProviderConfigBase:
    """A config of the provider ``kind`` (``"microsoft"`` or the third one) with its push
    subscription (id, expiry) in that provider's own fields; ``fields`` are base fields
    (``client_secret``, ``active``, ...) or the provider's own."""
    from mailparity.models import MicrosoftProviderConfig

    mailbox = mailbox or f"{provider_id}@contoso.com"
    if kind == KEY:
        return FakeProviderConfig(
            provider_id=provider_id, tenant=tenant, mailbox=mailbox,
            subscription=subscription_id, subscription_expires_at=expires_at, **fields,
        )
    if kind == "microsoft":
        return MicrosoftProviderConfig(
            provider_id=provider_id, tenant=tenant, mailbox=mailbox,
            webhook_subscription_id=subscription_id, webhook_expires_at=expires_at, **fields,
        )
    raise ValueError(f"no test config for provider kind {kind!r}")
