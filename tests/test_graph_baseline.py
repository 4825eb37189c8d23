"""Graph delta baseline taken at registration: mail whose notification is dropped before the
first catch-up sync still comes back from fetch_changes (Gmail's watch does the same with its
history id). Mocked with ``responses``, then end to end against FakeGraph."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from graph_payloads import (
    GRAPH,
    LOGIN,
    add_openid,
    assert_immutable_everywhere,
    config,
    graph_error,
    store_with,
    subscription,
    token_error,
    tokens,
)
from mailparity.errors import AuthExpiredError
from mailparity.http import RetryPolicy
from mailparity.models import MicrosoftProviderConfig
from mailparity.processing import Processor
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.providers.graph.adapter import BASELINE_MARGIN
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import connect_microsoft
from mailparity.testing.fake_graph import FakeGraph

SUBS = f"{GRAPH}/subscriptions"
LIST = f"{GRAPH}/me/mailFolders/inbox/messages"
DELTA = f"{LIST}/delta"
LINK = f"{DELTA}?$deltatoken=base-1"
COMMIT_META = "graph_delta_committed_at:inbox"


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock
        assert_immutable_everywhere(mock)


def _adapter(clock: Any, store: Any = None, **overrides: Any) -> MicrosoftGraphAdapter:
    cfg = config(**overrides)
    store = store or store_with(cfg, tokens(clock()))
    return MicrosoftGraphAdapter(
        cfg, store=store, clock=clock, sleep=clock.sleep,
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
    )


def _query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(call.request.url).query)


def _newest(received: str | None) -> dict[str, Any]:
    return {"value": [] if received is None else [{"id": "m0", "receivedDateTime": received}]}


def _saved(adapter: MicrosoftGraphAdapter) -> MicrosoftProviderConfig:
    saved = adapter.store.get_provider(adapter.config.provider_id)
    assert isinstance(saved, MicrosoftProviderConfig)
    return saved


# ---------------------------------------------------------------------------- with responses


def test_register_takes_a_bounded_baseline_before_subscribing(rsps: Any, clock: Any) -> None:
    rsps.get(LIST, json=_newest("2025-12-31T23:50:00Z"))
    rsps.get(DELTA, json={"value": [{"id": "recent", "receivedDateTime": "2025-12-31T23:50:00Z"}],
                          "@odata.nextLink": f"{DELTA}?$skiptoken=s1"})
    rsps.get(f"{DELTA}?$skiptoken=s1", json={"value": [], "@odata.deltaLink": LINK})
    rsps.post(SUBS, status=201, json=subscription("sub-1"))
    adapter = _adapter(clock)

    adapter.register_webhook_subscription()

    methods = [(c.request.method, urlparse(c.request.url).path) for c in rsps.calls]
    assert methods == [
        ("GET", urlparse(LIST).path), ("GET", urlparse(DELTA).path),
        ("GET", urlparse(DELTA).path), ("POST", urlparse(SUBS).path),
    ]
    probe = _query(rsps.calls[0])
    assert probe["$top"] == ["1"]
    assert probe["$orderby"] == ["receivedDateTime desc"]
    first = _query(rsps.calls[1])
    # Our clock says 00:00, the newest message 23:50: the earlier one, minus the margin.
    assert first["$filter"] == ["receivedDateTime ge 2025-12-31T23:45:00Z"]
    assert first["changeType"] == ["created"]
    assert first["$select"] == ["id,receivedDateTime"]
    assert "$filter" not in rsps.calls[2].request.url  # continuation links are opaque
    saved = _saved(adapter)
    assert saved.delta_links == {"inbox": LINK}
    assert saved.webhook_subscription_id == "sub-1"
    assert adapter.store.get_meta("prov-1", COMMIT_META) == clock().isoformat()

    # Everything that arrives after registration comes out of the next round.
    rsps.get(LINK, json={"value": [
        {"id": "new-2", "receivedDateTime": "2026-01-01T00:07:00Z"},
        {"id": "new-1", "receivedDateTime": "2026-01-01T00:03:00Z"},
    ], "@odata.deltaLink": f"{DELTA}?$deltatoken=base-2"})
    batch = adapter.fetch_changes()
    assert batch.message_ids == ["new-1", "new-2"]
    assert not batch.baseline
    assert batch.expected == LINK


@pytest.mark.parametrize(
    ("newest", "bound"),
    [
        # Graph's clock behind ours (ours runs fast): the newest message's time is the bound.
        ("2025-12-31T20:00:00Z", "2025-12-31T19:55:00Z"),
        # A message stamped after our "now" (ours runs slow): our clock is the bound.
        ("2026-01-01T00:30:00Z", "2025-12-31T23:55:00Z"),
        # Unparsable receivedDateTime: our clock.
        ("not-a-date", "2025-12-31T23:55:00Z"),
    ],
)
def test_bound_is_never_later_than_graphs_clock(
    rsps: Any, clock: Any, newest: str, bound: str
) -> None:
    rsps.get(LIST, json=_newest(newest))
    rsps.get(DELTA, json={"value": [], "@odata.deltaLink": LINK})
    adapter = _adapter(clock)
    assert adapter.establish_delta_baseline() is True
    assert _query(rsps.calls[1])["$filter"] == [f"receivedDateTime ge {bound}"]
    assert timedelta(minutes=5) == BASELINE_MARGIN


def test_empty_folder_gets_an_unfiltered_baseline(rsps: Any, clock: Any) -> None:
    rsps.get(LIST, json=_newest(None))
    rsps.get(DELTA, json={"value": [], "@odata.deltaLink": LINK})
    adapter = _adapter(clock)
    assert adapter.establish_delta_baseline() is True
    assert "$filter" not in _query(rsps.calls[1])
    assert _saved(adapter).delta_links == {"inbox": LINK}


def test_an_existing_delta_link_is_kept(rsps: Any, clock: Any) -> None:
    adapter = _adapter(clock)
    # Saved by another worker after this adapter loaded its config.
    adapter.store.save_provider(adapter.config.model_copy(update={"delta_links": {"inbox": LINK}}))
    rsps.post(SUBS, status=201, json=subscription("sub-2"))
    adapter.register_webhook_subscription()
    assert [c.request.method for c in rsps.calls] == ["POST"]
    assert _saved(adapter).delta_links == {"inbox": LINK}
    assert adapter.store.get_meta("prov-1", COMMIT_META) is None


def test_other_folders_links_do_not_count(rsps: Any, clock: Any) -> None:
    archive = f"{GRAPH}/me/mailFolders/archive/messages"
    rsps.get(archive, json=_newest(None))
    rsps.get(f"{archive}/delta", json={"value": [], "@odata.deltaLink": f"{archive}/delta?d=1"})
    adapter = _adapter(clock, folder="archive", delta_links={"inbox": LINK})
    assert adapter.establish_delta_baseline() is True
    assert _saved(adapter).delta_links == {"inbox": LINK, "archive": f"{archive}/delta?d=1"}


def test_a_link_saved_meanwhile_wins(rsps: Any, clock: Any) -> None:
    adapter = _adapter(clock)
    theirs = f"{DELTA}?$deltatoken=theirs"

    def delta(request: Any) -> tuple[int, dict[str, str], str]:
        # A first catch-up sync of another worker commits while our round runs.
        stored = _saved(adapter)
        adapter.store.save_provider(stored.model_copy(update={"delta_links": {"inbox": theirs}}))
        return 200, {"Content-Type": "application/json"}, (
            '{"value": [], "@odata.deltaLink": "' + LINK + '"}'
        )

    rsps.get(LIST, json=_newest(None))
    rsps.add_callback(responses.GET, DELTA, callback=delta)
    assert adapter.establish_delta_baseline() is False
    assert _saved(adapter).delta_links == {"inbox": theirs}


def test_a_failed_baseline_does_not_block_the_subscription(
    rsps: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.get(LIST, json=_newest("2025-12-31T23:00:00Z"))
    rsps.get(DELTA, status=503, json=graph_error("ServiceUnavailable"))
    rsps.post(SUBS, status=201, json=subscription("sub-3"))
    adapter = _adapter(clock)
    with caplog.at_level(logging.WARNING, logger="mailparity.graph"):
        sub = adapter.register_webhook_subscription()
    assert sub.id == "sub-3"
    saved = _saved(adapter)
    assert saved.delta_links == {}
    assert saved.webhook_subscription_id == "sub-3"
    assert "could not take the delta baseline" in caplog.text
    assert "SECRET" not in caplog.text
    # The first catch-up sync then takes the baseline (the behaviour without this feature).
    rsps.replace(responses.GET, DELTA, json={"value": [], "@odata.deltaLink": LINK})
    batch = adapter.fetch_changes()
    assert batch.baseline
    assert batch.cursor == {"inbox": LINK}


def test_terminal_auth_failure_is_raised_before_subscribing(rsps: Any, clock: Any) -> None:
    rsps.get(LIST, status=401, json=graph_error("InvalidAuthenticationToken"))
    token_endpoint = add_openid(rsps, "common", LOGIN)
    rsps.post(token_endpoint, status=400, json=token_error(
        "invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.",
        [700082]))
    adapter = _adapter(clock)
    with pytest.raises(AuthExpiredError):
        adapter.register_webhook_subscription()
    assert not any(c.request.method == "POST" and c.request.url == SUBS for c in rsps.calls)
    assert _saved(adapter).delta_links == {}


def test_renew_recreating_a_missing_subscription_takes_the_baseline(
    rsps: Any, clock: Any
) -> None:
    rsps.get(LIST, json=_newest(None))
    rsps.get(DELTA, json={"value": [], "@odata.deltaLink": LINK})
    rsps.post(SUBS, status=201, json=subscription("sub-4"))
    adapter = _adapter(clock)  # no subscription id yet: renew creates one
    assert adapter.renew_webhook_subscription().id == "sub-4"
    assert _saved(adapter).delta_links == {"inbox": LINK}


# ---------------------------------------------------------------------------- with FakeGraph


MAILBOX = "desk@contoso.test"


def _raw(subject: str) -> bytes:
    return build_message(from_="client@example.org", to=MAILBOX, subject=subject, text="hello")


@pytest.fixture
def fake(clock: Any) -> Any:
    graph = FakeGraph(clock=clock, seed=11)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        graph.register(mock)
        yield graph


def _registered(
    graph: FakeGraph, clock: Any, store: InMemoryStore | None = None
) -> MicrosoftGraphAdapter:
    store = store or InMemoryStore()
    cfg = connect_microsoft(store, graph, MAILBOX, subscribe=False)
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock, sleep=clock.sleep)
    adapter.register_webhook_subscription()
    return adapter


def _deliver_three_and_drop(graph: FakeGraph, clock: Any) -> list[str]:
    ids = []
    for n in range(3):
        clock.now += timedelta(minutes=1)
        ids.append(graph.deliver(MAILBOX, _raw(f"after registration {n}")))
    assert len(graph.pending) == 3  # the subscription got a notification for each
    delivered = graph.push(drop_rate=1.0)  # ... and Graph lost every one of them
    assert delivered == []
    assert graph.pending == []
    return ids


def test_dropped_notifications_come_back_from_the_first_sync(fake: FakeGraph, clock: Any) -> None:
    old = fake.deliver(MAILBOX, _raw("before registration"))
    clock.now += timedelta(hours=2)
    adapter = _registered(fake, clock)
    assert adapter.config.delta_links  # the baseline is stored at registration
    ids = _deliver_three_and_drop(fake, clock)

    batch = adapter.fetch_changes()

    assert batch.message_ids == ids
    assert old not in batch.message_ids  # the mailbox is not replayed
    assert not batch.baseline
    assert adapter.commit_cursor(batch)
    assert adapter.fetch_changes().message_ids == []


def test_a_fast_clock_of_ours_loses_nothing(fake: FakeGraph, clock: Any) -> None:
    fake.deliver(MAILBOX, _raw("old"))
    store = InMemoryStore()
    # (a short lifetime keeps the expiry our fast clock asks for within Graph's maximum)
    cfg = connect_microsoft(
        store, fake, MAILBOX, subscribe=False, subscription_lifetime_minutes=60
    )

    def fast() -> Any:
        return clock() + timedelta(hours=3)  # three hours ahead of Graph's clock

    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=fast, sleep=clock.sleep)
    adapter.register_webhook_subscription()
    ids = _deliver_three_and_drop(fake, clock)
    assert adapter.fetch_changes().message_ids == ids


def test_expired_token_after_registration_restarts_from_the_registration(
    fake: FakeGraph, clock: Any
) -> None:
    adapter = _registered(fake, clock)
    ids = _deliver_three_and_drop(fake, clock)
    fake.expire_delta_tokens()
    batch = adapter.fetch_changes()
    assert batch.full_sync
    assert batch.message_ids == ids


def test_the_pipeline_publishes_the_dropped_messages(fake: FakeGraph, clock: Any) -> None:
    store = InMemoryStore()
    adapter = _registered(fake, clock, store)
    ids = _deliver_three_and_drop(fake, clock)
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher, clock=clock, sleep=clock.sleep)
    batch = adapter.fetch_changes()
    for message_id in batch.message_ids:
        processor.process_message(adapter, adapter.config, message_id)
    assert adapter.commit_cursor(batch)
    published = [event.email_data.id for event in publisher.events]  # type: ignore[attr-defined]
    assert published == ids
    assert [e.email_data.subject for e in publisher.events] == [  # type: ignore[attr-defined]
        f"after registration {n}" for n in range(3)
    ]


def test_session_is_used_for_the_baseline(fake: FakeGraph, clock: Any) -> None:
    store = InMemoryStore()
    cfg = connect_microsoft(store, fake, MAILBOX, subscribe=False)
    session = requests.Session()
    sent: list[str] = []
    session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))
    MicrosoftGraphAdapter(
        cfg, store=store, session=session, clock=clock, sleep=clock.sleep
    ).register_webhook_subscription()
    assert any("/messages/delta" in url for url in sent)
