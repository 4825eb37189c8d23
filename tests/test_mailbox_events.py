"""EMAIL_PROVIDER_CONNECTED / REAUTHORIZED / SUBSCRIPTION_LOST: the models on the wire, the typed
publisher hooks, the connect flows that publish them, and the lifecycle job that loses a
subscription. (The maintenance sweep's losses are tested in test_maintenance.py.)"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import jsonschema
import pytest

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity import (
    CallbackPublisher,
    EmailProviderConnected,
    EmailProviderReauthorized,
    EmailProviderSubscriptionLost,
    InMemoryPublisher,
    parse_event,
)
from mailparity.events import load_event_schema
from mailparity.mailbox_events import (
    announce_connection,
    subscription_lost,
    subscription_restored,
)
from mailparity.models import Job, MicrosoftProviderConfig
from mailparity.processing import Processor
from mailparity.publishers import event_to_json
from mailparity.pushing import LIFECYCLE_SUBSCRIPTION_REMOVED
from mailparity.stores.memory import InMemoryStore
from webconnect_support import G_BOX, MS_BOX, authorize, environment

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = MicrosoftProviderConfig(provider_id="ms-1", tenant="t1", mailbox="support@contoso.test")


def _all_three() -> list[Any]:
    return [
        announce_connection(InMemoryPublisher(), CONFIG, reconnected=False, occurred_at=T0),
        announce_connection(InMemoryPublisher(), CONFIG, reconnected=True, needed_consent=True,
                            occurred_at=T0),
        EmailProviderSubscriptionLost(
            event_id="e-1", tenant_id="t1", provider_id="ms-1", provider="microsoft",
            mailbox="support@contoso.test", subscription_id="sub-1", expired_at=T0, occurred_at=T0,
            error_code="ExtensionError", error="SubscriptionError: validation failed",
        ),
    ]


def test_the_events_validate_and_parse_back() -> None:
    validator = jsonschema.Draft202012Validator(load_event_schema())
    for event in _all_three():
        data = event_to_json(event)
        validator.validate(data)
        assert parse_event(json.dumps(data)) == event
    connected, reauthorized, lost = (event_to_json(e) for e in _all_three())
    assert connected["eventType"] == "EMAIL_PROVIDER_CONNECTED"
    assert (reauthorized["eventType"], reauthorized["neededConsent"]) == (
        "EMAIL_PROVIDER_REAUTHORIZED", True)
    assert (lost["eventType"], lost["subscriptionId"], lost["errorCode"]) == (
        "EMAIL_PROVIDER_SUBSCRIPTION_LOST", "sub-1", "ExtensionError")


def test_connection_events_have_every_common_field() -> None:
    connected, reauthorized, _ = _all_three()
    assert isinstance(connected, EmailProviderConnected)
    assert isinstance(reauthorized, EmailProviderReauthorized)
    for event in (connected, reauthorized):
        assert (event.tenant_id, event.provider_id, event.provider, event.mailbox) == (
            "t1", "ms-1", "microsoft", "support@contoso.test")
        assert event.occurred_at == T0
    assert connected.event_id != reauthorized.event_id


def test_typed_hooks_and_accessors() -> None:
    got: list[tuple[str, Any]] = []
    publisher = CallbackPublisher(
        on_connected=lambda e: got.append(("connected", e.mailbox)),
        on_reauthorized=lambda e: got.append(("reauthorized", e.needed_consent)),
        on_subscription_lost=lambda e: got.append(("lost", e.subscription_id)),
    )
    memory = InMemoryPublisher()
    for event in _all_three():
        publisher.publish(event)
        memory.publish(event)
    assert got == [("connected", "support@contoso.test"), ("reauthorized", True),
                   ("lost", "sub-1")]
    assert "on_subscription_lost=" in repr(publisher)
    connected, reauthorized, lost = _all_three()
    assert [e.event_type for e in memory.connected] == [connected.event_type]
    assert [e.event_type for e in memory.reauthorized] == [reauthorized.event_type]
    assert memory.subscriptions_lost == [lost]
    assert memory.emails == []


def test_a_failing_hook_becomes_a_publish_error() -> None:
    from mailparity.errors import PublishError

    def broken(event: EmailProviderConnected) -> None:
        raise KeyError("hunter2")

    with pytest.raises(PublishError, match="KeyError") as caught:
        CallbackPublisher(on_connected=broken).publish(_all_three()[0])
    assert "hunter2" not in str(caught.value)


def test_subscription_lost_is_published_once_per_occurrence() -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    error = RuntimeError("https://graph.example/?token=secret")
    assert subscription_lost(store, publisher, CONFIG, error, clock=lambda: T0)
    assert not subscription_lost(store, publisher, CONFIG, error, clock=lambda: T0)
    subscription_restored(store, "ms-1")
    assert subscription_lost(store, publisher, CONFIG, error, clock=lambda: T0)
    first, second = publisher.subscriptions_lost
    assert first.event_id != second.event_id
    assert first.error == "RuntimeError"
    assert "secret" not in first.model_dump_json()


# ------------------------------------------------------------------------------ lifecycle


def test_a_removed_subscription_that_cannot_be_recreated_is_lost() -> None:
    store = InMemoryStore()
    config = CONFIG.model_copy(update={"webhook_subscription_id": "sub-1"})
    store.save_provider(config)
    box = FakeMailbox(config)
    box.fail("register", "*", RuntimeError("no"))
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher, adapter_factory=FakeAdapterFactory(box),
                          retry_cap=1, sleep=lambda _s: None)
    store.enqueue_job(Job(
        kind="lifecycle", provider_id="ms-1",
        payload={"event": LIFECYCLE_SUBSCRIPTION_REMOVED, "subscription_id": "sub-1"},
        available_at=T0,
    ))
    processor.run_pending()
    (lost,) = publisher.subscriptions_lost
    assert (lost.provider_id, lost.subscription_id, lost.error) == ("ms-1", "sub-1",
                                                                   "RuntimeError")


# ------------------------------------------------------------------------------ web connect


@pytest.mark.parametrize(("provider", "mailbox"), [("microsoft", MS_BOX), ("google", G_BOX)])
def test_the_web_flow_announces_connected_then_reauthorized(provider: str, mailbox: str) -> None:
    publisher = InMemoryPublisher()
    with environment(publisher=publisher) as env:
        for _ in range(2):
            started = env.connect.start(provider, owner="user-1")
            status, query, _ = authorize(started.url, fake_user=mailbox)
            assert status == 302
            env.connect.callback(query, owner="user-1")
    (connected,) = publisher.connected
    (reauthorized,) = publisher.reauthorized
    assert (connected.provider, connected.mailbox) == (provider, mailbox)
    assert reauthorized.provider_id == connected.provider_id
    assert reauthorized.needed_consent is False


def test_the_web_flow_keeps_the_connection_when_the_announcement_fails() -> None:
    publisher = InMemoryPublisher()
    publisher.fail_next(1)
    with environment(publisher=publisher) as env:
        started = env.connect.start("google", owner="user-1")
        _, query, _ = authorize(started.url, fake_user=G_BOX)
        result = env.connect.callback(query, owner="user-1")
        assert env.store.get_provider(result.provider_id) is not None
    assert publisher.connected == []
