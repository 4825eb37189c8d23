"""A 429 whose ``Retry-After`` is longer than the in-request limit is never retried early: the
job is given back due exactly at that time (visible in its ``available_at``), nothing is sent
before, and the work completes once the time has come. Shorter waits are waited within the
request, exactly as asked. Clock and sleep are injected: nothing waits for real."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses

from conftest import FakeClock
from mailparity.models import Job, utcnow
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import (
    PUSH_SERVICE_ACCOUNT,
    TEST_AUDIENCE,
    connect_google,
    connect_microsoft,
    gmail_push_request,
    graph_notification_request,
)
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.webhooks import WebhookHandler, WebhookRequest

GRAPH_BOX = "desk@contoso.test"
GMAIL_BOX = "help@example.test"


@pytest.fixture
def clock() -> FakeClock:
    """Starts at the real time: connect_* creates the subscription with the real clock."""
    return FakeClock(start=utcnow().isoformat())


@pytest.fixture
def world(clock: Any) -> Iterator[tuple[FakeGraph, FakeGmail, InMemoryStore, InMemoryPublisher,
                                        WebhookHandler]]:
    graph, gmail = FakeGraph(clock=clock, seed=1), FakeGmail(clock=clock, seed=1)
    store, publisher = InMemoryStore(), InMemoryPublisher()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        graph.register(mock)
        gmail.register(mock)
        handler = WebhookHandler(
            store=store, publisher=publisher, clock=clock, sleep=clock.sleep,
            google_audience=TEST_AUDIENCE, google_service_accounts=[PUSH_SERVICE_ACCOUNT],
            google_certs_url=gmail.certs_url,
        )
        yield graph, gmail, store, publisher, handler


def _raw(n: int, to: str) -> bytes:
    return build_message(from_="client@example.org", to=to, subject=f"n{n}", text=f"body {n}",
                         message_id=f"<n{n}@example.org>")


def _pending(store: InMemoryStore) -> list[Job]:
    return store.list_jobs(status="pending")


def _api_calls(fake: Any, needle: str) -> int:
    return sum(1 for r in fake.requests if needle in r.path)


def test_graph_push_job_is_due_after_retry_after(world: Any, clock: Any) -> None:
    graph, _, store, publisher, handler = world
    connect_microsoft(store, graph, GRAPH_BOX)
    message_id = graph.deliver(GRAPH_BOX, _raw(1, GRAPH_BOX))
    graph.fail_next(1, status=429, retry_after=120, path="/messages/AAkAL")
    handler.handle_microsoft(graph_notification_request(graph, message_id))
    start = clock()

    assert handler.run_pending() == 1
    assert publisher.events == []
    [job] = _pending(store)
    assert job.available_at == start + timedelta(seconds=120)
    assert "ThrottledError" in (job.last_error or "")
    assert clock.sleeps == []  # the request did not wait 60 s and send again
    fetches = _api_calls(graph, "/messages/AAkAL")
    assert fetches == 1

    clock.sleep(119.9)
    assert handler.run_pending() == 0  # not due: nothing is sent before the 120 s are over
    assert _api_calls(graph, "/messages/AAkAL") == fetches
    clock.sleep(0.1)
    assert handler.run_pending() == 1
    [event] = publisher.events
    assert event.email_data.id == message_id
    assert _pending(store) == []


def test_graph_503_with_a_long_retry_after_is_due_then_too(world: Any, clock: Any) -> None:
    graph, _, store, publisher, handler = world
    connect_microsoft(store, graph, GRAPH_BOX)
    message_id = graph.deliver(GRAPH_BOX, _raw(1, GRAPH_BOX))
    graph.fail_next(1, status=503, retry_after=240, path="/messages/AAkAL")
    handler.handle_microsoft(graph_notification_request(graph, message_id))
    start = clock()
    handler.run_pending()
    [job] = _pending(store)
    assert job.available_at == start + timedelta(seconds=240)
    assert "ProviderUnavailableError" in (job.last_error or "")
    assert clock.sleeps == []
    clock.sleep(240)
    handler.run_pending()
    assert [e.email_data.id for e in publisher.events] == [message_id]


def test_graph_short_retry_after_is_waited_in_the_request(world: Any, clock: Any) -> None:
    graph, _, store, publisher, handler = world
    connect_microsoft(store, graph, GRAPH_BOX)
    message_id = graph.deliver(GRAPH_BOX, _raw(1, GRAPH_BOX))
    graph.fail_next(1, status=429, retry_after=7, path="/messages/AAkAL")
    handler.handle_microsoft(graph_notification_request(graph, message_id))
    assert handler.run_pending() == 1
    assert clock.sleeps == [7.0]
    assert [e.email_data.id for e in publisher.events] == [message_id]


def test_graph_catch_up_batch_members_throttled_long_reschedule_the_sync(
    world: Any, clock: Any
) -> None:
    graph, _, store, publisher, handler = world
    config = connect_microsoft(store, graph, GRAPH_BOX)
    ids = [graph.deliver(GRAPH_BOX, _raw(n, GRAPH_BOX)) for n in range(6)]
    graph.pending.clear()
    # Every member of the catch-up's $batch is throttled for 300 s.
    graph.fail_next(6, status=429, retry_after=300, path="/messages/AAkAL")
    missed = graph.lifecycle_notification(config.webhook_subscription_id, "missed")
    handler.handle_microsoft(
        WebhookRequest(
            "POST", {}, {"Content-Type": "application/json"}, json.dumps(missed).encode()
        )
    )
    start = clock()
    handler.run_pending()
    assert publisher.events == []
    assert clock.sleeps == []
    [job] = _pending(store)
    assert job.kind == "sync"
    assert job.available_at == start + timedelta(seconds=300)
    batches = _api_calls(graph, "$batch")
    assert batches == 1

    clock.sleep(299)
    assert handler.run_pending() == 0
    assert _api_calls(graph, "$batch") == batches
    clock.sleep(1)
    handler.run_pending()
    assert sorted(e.email_data.id for e in publisher.events) == sorted(ids)


def test_gmail_history_job_is_due_after_retry_after(world: Any, clock: Any) -> None:
    _, gmail, store, publisher, handler = world
    connect_google(store, gmail, GMAIL_BOX)
    gmail.deliver(GMAIL_BOX, _raw(1, GMAIL_BOX))
    gmail.fail_next(1, status=429, retry_after=90, path="/messages/")
    handler.handle_google(gmail_push_request(gmail, GMAIL_BOX))
    start = clock()
    handler.run_pending()
    assert publisher.events == []
    assert clock.sleeps == []
    [job] = _pending(store)
    assert job.available_at == start + timedelta(seconds=90)
    clock.sleep(89)
    assert handler.run_pending() == 0
    clock.sleep(1)
    handler.run_pending()
    assert len(publisher.events) == 1

