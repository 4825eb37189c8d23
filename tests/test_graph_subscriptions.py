"""Graph subscriptions: create, validation failure, renew (404 -> recreate), reauthorize, delete,
and the notification items they deliver (corpus payloads)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import responses

from graph_payloads import (
    GRAPH,
    MAILBOX,
    TENANT_DIR,
    add_openid,
    assert_immutable_everywhere,
    config,
    graph_error,
    load,
    store_with,
    subscription,
    token_ok,
    tokens,
)
from mailparity.errors import (
    ConfigurationError,
    PermissionDeniedError,
    ProviderUnavailableError,
    SubscriptionError,
    ThrottledError,
)
from mailparity.models import MicrosoftProviderConfig
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.providers.graph.messages import parse_graph_datetime

SUBS = f"{GRAPH}/subscriptions"
BASELINE_LINK = f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=t0"


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock
        assert_immutable_everywhere(mock)


def _adapter(clock: Any, **overrides: Any) -> tuple[MicrosoftGraphAdapter, Any]:
    # The folder already has its delta baseline (else registering takes one first; see
    # test_graph_baseline.py), so these tests see the subscription requests only.
    overrides.setdefault("delta_links", {"inbox": BASELINE_LINK})
    cfg = config(**overrides)
    store = store_with(cfg, tokens(clock()))
    return MicrosoftGraphAdapter(cfg, store=store, clock=clock, sleep=clock.sleep), store


def test_register_creates_and_persists(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_verification_token="state-SECRET-0001",
                              webhook_lifecycle_url="https://hooks.example.com/lifecycle")
    rsps.post(SUBS, status=201, json=subscription("sub-9", "2026-01-03T22:20:00.1234567Z"))
    sub = adapter.register_webhook_subscription()
    body = json.loads(rsps.calls[0].request.body)
    assert body["changeType"] == "created"
    assert body["resource"] == "me/mailFolders('inbox')/messages"
    assert body["notificationUrl"] == "https://hooks.example.com/graph"
    assert body["lifecycleNotificationUrl"] == "https://hooks.example.com/lifecycle"
    assert body["clientState"] == "state-SECRET-0001"
    asked = parse_graph_datetime(body["expirationDateTime"])
    assert asked is not None
    assert clock() + timedelta(minutes=4200) <= asked < clock() + timedelta(minutes=4230)
    assert sub.id == "sub-9"
    assert sub.expires_at == parse_graph_datetime("2026-01-03T22:20:00.123456Z")
    found = store.find_provider_by_subscription("sub-9")
    assert isinstance(found, MicrosoftProviderConfig)
    assert found.webhook_expires_at == sub.expires_at
    assert rsps.calls[0].request.headers["Prefer"] == 'IdType="ImmutableId"'


def test_register_generates_and_saves_a_missing_client_state(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_lifecycle_url=None)
    rsps.post(SUBS, status=201, json=subscription())
    adapter.register_webhook_subscription()
    body = json.loads(rsps.calls[0].request.body)
    saved = store.get_provider("prov-1")
    assert isinstance(saved, MicrosoftProviderConfig)
    assert saved.webhook_verification_token is not None
    state = saved.webhook_verification_token.get_secret_value()
    assert body["clientState"] == state
    assert 32 <= len(state) <= 128
    assert body["lifecycleNotificationUrl"] == body["notificationUrl"]


def test_short_lifetime_and_application_resource(rsps: Any, clock: Any) -> None:
    cfg = config(auth_mode="application", authority_tenant=TENANT_DIR, folder="archive",
                 subscription_lifetime_minutes=60, delta_links={"archive": BASELINE_LINK})
    store = store_with(cfg, tokens(clock()))
    rsps.post(SUBS, status=201, json=subscription())
    MicrosoftGraphAdapter(cfg, store=store, clock=clock).register_webhook_subscription()
    body = json.loads(rsps.calls[0].request.body)
    assert body["resource"] == f"users/{MAILBOX}/mailFolders('archive')/messages"
    assert parse_graph_datetime(body["expirationDateTime"]) == clock() + timedelta(minutes=60)


def test_validation_failure_400_is_subscription_error(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock)
    rsps.post(SUBS, status=400, json=graph_error(
        "InvalidRequest",
        "Subscription validation request failed. Notification endpoint must respond with 200 OK"
        " to validation request.", "rid-400"))
    with pytest.raises(SubscriptionError) as info:
        adapter.register_webhook_subscription()
    assert (info.value.status, info.value.code, info.value.request_id) == (
        400, "InvalidRequest", "rid-400")
    assert "validation" in str(info.value)
    saved = store.get_provider("prov-1")
    assert saved is not None
    assert saved.webhook_subscription_id is None  # nothing saved for a failed create


def test_register_deletes_the_previous_subscription(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_subscription_id="old-sub")
    rsps.delete(f"{SUBS}/old-sub", status=404, json=graph_error("ResourceNotFound"))
    rsps.post(SUBS, status=201, json=subscription("new-sub"))
    assert adapter.register_webhook_subscription().id == "new-sub"
    assert [c.request.method for c in rsps.calls] == ["DELETE", "POST"]
    assert store.find_provider_by_subscription("old-sub") is None


def test_register_needs_a_notification_url(clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_notification_url=None)
    with pytest.raises(ConfigurationError):
        adapter.register_webhook_subscription()


def test_delegated_shared_mailbox_subscription_is_refused(clock: Any) -> None:
    cfg = config()
    adapter = MicrosoftGraphAdapter(cfg, store=store_with(cfg, tokens(clock())), clock=clock,
                                    shared_mailbox=True)
    assert adapter.mailbox_root == f"/users/{MAILBOX}"
    with pytest.raises(ConfigurationError, match="shared mailbox"):
        adapter.register_webhook_subscription()


def test_renew_patches_expiry(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_subscription_id="sub-1")
    rsps.patch(f"{SUBS}/sub-1", json=subscription("sub-1", "2026-01-03T22:00:00Z"))
    sub = adapter.renew_webhook_subscription()
    assert list(json.loads(rsps.calls[0].request.body)) == ["expirationDateTime"]
    assert sub.id == "sub-1"
    saved = store.get_provider("prov-1")
    assert saved is not None
    assert saved.webhook_expires_at == parse_graph_datetime("2026-01-03T22:00:00Z")


def test_renew_404_recreates(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_subscription_id="gone")
    rsps.patch(f"{SUBS}/gone", status=404, json=graph_error("ResourceNotFound"))
    rsps.post(SUBS, status=201, json=subscription("fresh"))
    assert adapter.renew_webhook_subscription().id == "fresh"
    assert [c.request.method for c in rsps.calls] == ["PATCH", "POST"]
    assert store.find_provider_by_subscription("fresh") is not None


def test_renew_without_id_creates(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock)
    rsps.post(SUBS, status=201, json=subscription("first"))
    assert adapter.renew_webhook_subscription().id == "first"


def test_renew_with_extension_error_is_subscription_error(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1")
    rsps.patch(f"{SUBS}/sub-1", status=400, json=graph_error(
        "ExtensionError", "Subscription expiration can only be 4230 minutes in the future."))
    with pytest.raises(SubscriptionError) as info:
        adapter.renew_webhook_subscription()
    assert info.value.code == "ExtensionError"


def test_renew_503_then_success(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1")
    rsps.patch(f"{SUBS}/sub-1", status=503)
    rsps.patch(f"{SUBS}/sub-1", json=subscription("sub-1"))
    assert adapter.renew_webhook_subscription().id == "sub-1"
    assert len(clock.sleeps) == 1


def test_reauthorize(rsps: Any, clock: Any) -> None:
    expires = clock() + timedelta(days=1)
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1", webhook_expires_at=expires)
    rsps.post(f"{SUBS}/sub-1/reauthorize", status=204)
    sub = adapter.reauthorize_subscription()
    assert (sub.id, sub.expires_at) == ("sub-1", expires)


def test_reauthorize_failure_renews_instead(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1")
    rsps.post(f"{SUBS}/sub-1/reauthorize", status=400, json=graph_error("InvalidRequest"))
    rsps.patch(f"{SUBS}/sub-1", json=subscription("sub-1"))
    assert adapter.reauthorize_subscription().id == "sub-1"
    assert [c.request.method for c in rsps.calls] == ["POST", "PATCH"]


def test_reauthorize_outage_is_raised(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1")
    adapter.http.retry = type(adapter.http.retry)(max_attempts=1)
    rsps.post(f"{SUBS}/sub-1/reauthorize", status=503)
    with pytest.raises(ProviderUnavailableError):
        adapter.reauthorize_subscription()


def test_delete_clears_saved_id_and_tolerates_404(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_subscription_id="sub-1",
                              webhook_expires_at=clock() + timedelta(days=1))
    rsps.delete(f"{SUBS}/sub-1", status=404, json=graph_error("ResourceNotFound"))
    adapter.delete_webhook_subscription()
    saved = store.get_provider("prov-1")
    assert saved is not None
    assert saved.webhook_subscription_id is None
    assert saved.webhook_expires_at is None
    adapter.delete_webhook_subscription()  # nothing left: no request
    assert len(rsps.calls) == 1


def test_delete_failure_keeps_the_id(rsps: Any, clock: Any) -> None:
    adapter, store = _adapter(clock, webhook_subscription_id="sub-1")
    rsps.delete(f"{SUBS}/sub-1", status=403, json=graph_error("Forbidden"))
    with pytest.raises(PermissionDeniedError) as info:
        adapter.delete_webhook_subscription()
    assert info.value.code == "Forbidden"
    saved = store.get_provider("prov-1")
    assert saved is not None
    assert saved.webhook_subscription_id == "sub-1"


def test_subscription_calls_refresh_an_expired_token_first(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-1))
    rsps.post(add_openid(rsps), json=token_ok("at-NEW"))
    rsps.post(SUBS, status=201, json=subscription())
    MicrosoftGraphAdapter(cfg, store=store, clock=clock).register_webhook_subscription()
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer at-NEW"


# ------------------------------------------------------------------ notifications


def test_created_notification_from_corpus(corpus_dir: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock)
    body = load(corpus_dir, "msgraphdocs__webhooks__change_notification_message_created.json")
    assert adapter.process_webhook_notification(body["value"][0]) == ["{long_id_string}"]


@pytest.mark.parametrize(
    "name",
    [
        "msgraphdocs__webhooks-lifecycle__lifecycle_missed.json",
        "msgraphdocs__webhooks-lifecycle__lifecycle_reauthorization_required.json",
        "msgraphdocs__change-notifications-delivery__validation_style_notification.json",
    ],
)
def test_lifecycle_and_validation_items_give_nothing(
    corpus_dir: Any, clock: Any, name: str
) -> None:
    adapter, _ = _adapter(clock)
    for item in load(corpus_dir, name)["value"]:
        assert adapter.process_webhook_notification(item) == []


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"changeType": "updated", "resourceData": {"id": "X"}}, []),
        ({"changeType": "deleted", "resourceData": {"id": "X"}}, []),
        ({"changeType": "created", "resource": "Users/u-1/Messages/AAMk-1="}, ["AAMk-1="]),
        ({"changeType": "created", "resource": "Users('u-1')/messages('AAMk-2=')"}, ["AAMk-2="]),
        ({"changeType": "Created", "resourceData": {"@odata.type": "#microsoft.graph.message",
                                                    "id": "lower"}}, ["lower"]),
        ({"changeType": "created", "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                                    "id": "E1"}}, []),
        ({"changeType": "created", "resourceData": {"@odata.type":
                                                    "#Microsoft.Graph.EventMessage",
                                                    "id": "meeting"}}, ["meeting"]),
        ({"changeType": "created"}, []),
        ({"changeType": 5, "resourceData": {"id": "X"}}, []),
        ({"lifecycleEvent": "subscriptionRemoved", "changeType": "created"}, []),
    ],
)
def test_notification_items(clock: Any, item: dict[str, Any], expected: list[str]) -> None:
    adapter, _ = _adapter(clock)
    assert adapter.process_webhook_notification(item) == expected


def test_non_mapping_notification(clock: Any) -> None:
    adapter, _ = _adapter(clock)
    assert adapter.process_webhook_notification("nope") == []  # type: ignore[arg-type]


def test_reauthorize_throttled_is_raised(rsps: Any, clock: Any) -> None:
    adapter, _ = _adapter(clock, webhook_subscription_id="sub-1")
    adapter.http.retry = type(adapter.http.retry)(max_attempts=1)
    rsps.post(f"{SUBS}/sub-1/reauthorize", status=429, headers={"Retry-After": "9"})
    with pytest.raises(ThrottledError):
        adapter.reauthorize_subscription()


def test_client_state_never_logged_or_in_errors(rsps: Any, clock: Any, caplog: Any) -> None:
    import logging

    adapter, _ = _adapter(clock, webhook_verification_token="state-SECRET-0001")
    rsps.post(SUBS, status=400, json=graph_error("InvalidRequest", "validation failed"))
    with caplog.at_level(logging.DEBUG), pytest.raises(SubscriptionError) as info:
        adapter.register_webhook_subscription()
    text = caplog.text + str(info.value) + repr(info.value) + repr(adapter.config)
    assert "state-SECRET-0001" not in text
    assert "at-SECRET-0001" not in text
