"""Catch-up through Graph ``$batch`` and push publish the same immutable id, hence the same
``event_id``, for the same message.

Graph applies a request header only to the request it is on: the ``Prefer:
IdType="ImmutableId"`` of the ``$batch`` POST does not reach its members, each member carries its
own headers (https://learn.microsoft.com/graph/json-batching). FakeGraph answers a member that has
no such header of its own with the message's changing REST id, as Graph does, so a batch without
per-member headers would publish other ids on catch-up than push publishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import responses

from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import connect_microsoft, graph_notification_request
from mailparity.testing.fake_graph import FakeGraph
from mailparity.webhooks import WebhookHandler, WebhookRequest

MAILBOX = "desk@contoso.test"
PROVIDER = "microsoft-desk"


def _no_sleep(seconds: float) -> None:
    """Retries never wait in these tests."""


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(seed=12)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.register(mock)
        yield fake


def _world(graph: FakeGraph, client_id: str) -> tuple[WebhookHandler, InMemoryPublisher, str]:
    """One host: its own store and publisher, the same provider id and mailbox; its own app
    registration (so its subscription is its own)."""
    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = connect_microsoft(
        store, graph, MAILBOX, provider_id=PROVIDER, client_id=client_id,
        webhook_url=f"https://{client_id}.test/hooks/microsoft",
    )
    assert config.webhook_subscription_id is not None
    handler = WebhookHandler(store=store, publisher=publisher, sleep=_no_sleep)
    return handler, publisher, config.webhook_subscription_id


def _deliver(graph: FakeGraph, count: int) -> list[str]:
    return [
        graph.deliver(
            MAILBOX,
            build_message(
                from_="client@example.org", to=MAILBOX, subject=f"ticket {n}", text=f"body {n}",
                message_id=f"<ticket-{n}@example.org>",
            ),
        )
        for n in range(count)
    ]


def test_catch_up_by_batch_and_push_publish_the_same_immutable_ids(graph: FakeGraph) -> None:
    push_handler, push_events, _ = _world(graph, "push-app")
    sync_handler, sync_events, sync_sub = _world(graph, "sync-app")
    ids = _deliver(graph, 6)  # at least the Processor's batch_min: catch-up batches them
    graph.pending.clear()

    # Host 1: every message arrives by push and is fetched with a single GET.
    for message_id in ids:
        push_handler.handle_microsoft(graph_notification_request(graph, message_id))
    push_handler.run_pending()

    # Host 2: its notifications were lost; a "missed" lifecycle event makes it catch up through
    # delta and fetch the messages in $batch.
    before = len(graph.requests)
    missed = graph.lifecycle_notification(sync_sub, "missed")
    answer = sync_handler.handle_microsoft(
        WebhookRequest("POST", {}, {"Content-Type": "application/json"},
                       json.dumps(missed).encode())
    )
    assert answer.status == 202
    sync_handler.run_pending()
    catch_up = graph.requests[before:]
    assert any(r.url.endswith("/$batch") for r in catch_up)
    members = [r for r in catch_up if r.in_batch]
    assert len(members) == len(ids)
    assert all('IdType="ImmutableId"' in r.headers.get("Prefer", "") for r in members)

    pushed = {e.email_data.id: e.event_id for e in push_events.events}
    caught = {e.email_data.id: e.event_id for e in sync_events.events}
    assert set(pushed) == set(ids)  # the immutable ids FakeGraph assigned
    assert caught == pushed


def test_a_batch_member_without_its_own_prefer_gets_the_rest_id(graph: FakeGraph) -> None:
    """The fake does not copy the batch's outer Prefer header into members (Graph does not)."""
    [message_id] = _deliver(graph, 1)
    token = graph.issue_tokens(MAILBOX)["access_token"]
    session = requests.Session()
    body = {
        "requests": [
            {"id": "bare", "method": "GET", "url": f"/me/messages/{message_id}?$select=subject"},
            {
                "id": "own", "method": "GET", "url": f"/me/messages/{message_id}?$select=subject",
                "headers": {"Prefer": 'IdType="ImmutableId"'},
            },
        ]
    }
    response = session.post(
        f"{graph.base_url}/$batch", json=body,
        headers={"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'},
    )
    assert response.status_code == 200
    by_id = {item["id"]: item["body"]["id"] for item in response.json()["responses"]}
    assert by_id == {"bare": graph.rest_id(message_id), "own": message_id}
    assert graph.rest_id(message_id) != message_id
