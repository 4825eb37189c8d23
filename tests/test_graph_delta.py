"""Graph catch-up sync: per-folder delta, baseline, new ids, 410 restart, cursor commit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from graph_payloads import (
    GRAPH,
    assert_immutable_everywhere,
    config,
    graph_error,
    load,
    store_with,
    tokens,
)
from mailparity.errors import ProviderError, ProviderUnavailableError
from mailparity.models import MicrosoftProviderConfig
from mailparity.providers.graph import MicrosoftGraphAdapter

DELTA = f"{GRAPH}/me/mailFolders/inbox/messages/delta"
LINK_1 = f"{DELTA}?$deltatoken=tok-1"
LINK_2 = f"{DELTA}?$deltatoken=tok-2"


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock
        assert_immutable_everywhere(mock)
        for call in mock.calls:
            if "/delta" in call.request.url:
                assert "odata.maxpagesize=" in call.request.headers["Prefer"]


def _adapter(clock: Any, store: Any = None, **overrides: Any) -> MicrosoftGraphAdapter:
    cfg = config(**overrides)
    store = store or store_with(cfg, tokens(clock()))
    if store.get_provider(cfg.provider_id) is None:
        store.save_provider(cfg)
        store.save_tokens(cfg.provider_id, tokens(clock()))
    return MicrosoftGraphAdapter(cfg, store=store, clock=clock, sleep=clock.sleep)


def _item(mid: str, received: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.message", "id": mid, "receivedDateTime": received}


def test_first_run_is_a_baseline(rsps: Any, clock: Any) -> None:
    rsps.get(DELTA, json={"value": [_item("old-1", "2025-01-01T00:00:00Z")],
                          "@odata.nextLink": f"{DELTA}?$skiptoken=s1"})
    rsps.get(f"{DELTA}?$skiptoken=s1", json={"value": [_item("old-2", "2025-01-02T00:00:00Z")],
                                              "@odata.deltaLink": LINK_1})
    adapter = _adapter(clock)
    batch = adapter.fetch_changes()
    assert batch.baseline
    assert batch.message_ids == []
    assert batch.cursor == {"inbox": LINK_1}
    assert batch.expected is None
    first = parse_qs(urlparse(rsps.calls[0].request.url).query)
    assert first["$select"] == ["id,receivedDateTime"]
    assert first["changeType"] == ["created"]
    # continuation links are followed verbatim: no query options re-added
    assert "changeType" not in rsps.calls[1].request.url
    assert adapter.commit_cursor(batch)
    saved = adapter.store.get_provider("prov-1")
    assert isinstance(saved, MicrosoftProviderConfig)
    assert saved.delta_links == {"inbox": LINK_1}


def test_later_round_returns_new_ids_oldest_first(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, json={"value": [
        _item("b", "2026-01-01T10:05:00Z"),
        {"id": "gone", "@removed": {"reason": "deleted"}},
        _item("a", "2026-01-01T10:00:00Z"),
        _item("b", "2026-01-01T10:05:00Z"),
    ], "@odata.deltaLink": LINK_2})
    adapter = _adapter(clock, delta_links={"inbox": LINK_1})
    batch = adapter.fetch_changes()
    assert batch.message_ids == ["a", "b"]
    assert not batch.baseline
    assert (batch.cursor, batch.expected) == ({"inbox": LINK_2}, LINK_1)
    assert adapter.commit_cursor(batch)
    assert adapter.config.delta_links == {"inbox": LINK_2}


def test_corpus_delta_pages(rsps: Any, clock: Any, corpus_dir: Any) -> None:
    page1 = load(corpus_dir, "msgraphdocs__delta-query-messages__delta_round1_nextlink.json")
    page2 = load(
        corpus_dir, "msgraphdocs__delta-query-messages__delta_final_deltalink_removed.json"
    )
    rsps.get(LINK_1, json=page1)
    rsps.get(page1["@odata.nextLink"], json=page2)
    batch = _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes()
    removed = next(i["id"] for i in page2["value"] if "@removed" in i)
    live = [i["id"] for i in page1["value"] + page2["value"] if "@removed" not in i]
    assert removed not in batch.message_ids
    assert set(batch.message_ids) == set(live)
    assert len(batch.message_ids) == len(set(live))
    assert batch.cursor == {"inbox": page2["@odata.deltaLink"]}


def test_commit_refuses_when_the_cursor_moved(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, json={"value": [], "@odata.deltaLink": LINK_2})
    adapter = _adapter(clock, delta_links={"inbox": LINK_1})
    batch = adapter.fetch_changes()
    adapter.store.update_provider("prov-1", {"delta_links": {"inbox": "other-worker"}})
    assert not adapter.commit_cursor(batch)
    saved = adapter.store.get_provider("prov-1")
    assert saved is not None
    assert saved.delta_links == {"inbox": "other-worker"}


class _RacingStore:
    """Wraps a store; before each of the first ``races`` compare-and-sets, another worker moves
    the link of ``folder`` (as if it committed between our read and our write)."""

    def __init__(self, inner: Any, folder: str, races: int) -> None:
        self.inner = inner
        self.folder = folder
        self.races = races
        self.cas_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        self.cas_calls += 1
        if self.races:
            self.races -= 1
            links = dict(self.inner.get_provider(provider_id).delta_links)
            links[self.folder] = f"moved-{self.cas_calls}"
            self.inner.update_provider(provider_id, {"delta_links": links})
        return bool(self.inner.compare_and_set_cursor(provider_id, expected, new))


def _racing_adapter(
    clock: Any, folder: str, races: int
) -> tuple[MicrosoftGraphAdapter, _RacingStore]:
    """An adapter whose store is swapped for the racing wrapper once fetch_changes ran (the
    wrapper is not a runtime-checkable store, so the adapter is built on the inner one)."""
    cfg = config(delta_links={"inbox": LINK_1, "archive": "A-1"})
    inner = store_with(cfg, tokens(clock()))
    adapter = MicrosoftGraphAdapter(cfg, store=inner, clock=clock, sleep=clock.sleep)
    return adapter, _RacingStore(inner, folder, races)


def test_commit_is_a_compare_and_set_that_keeps_another_folders_move(
    rsps: Any, clock: Any
) -> None:
    rsps.get(LINK_1, json={"value": [], "@odata.deltaLink": LINK_2})
    adapter, racing = _racing_adapter(clock, "archive", races=1)
    batch = adapter.fetch_changes()
    adapter.store = racing
    assert adapter.commit_cursor(batch)
    # The first CAS lost to the other folder's commit; the second one kept both moves.
    assert racing.cas_calls == 2
    saved = racing.inner.get_provider("prov-1")
    assert saved.delta_links == {"inbox": LINK_2, "archive": "moved-1"}
    assert adapter.config.delta_links == saved.delta_links


def test_commit_loses_to_a_move_of_its_own_folder_between_read_and_write(
    rsps: Any, clock: Any
) -> None:
    rsps.get(LINK_1, json={"value": [], "@odata.deltaLink": LINK_2})
    adapter, racing = _racing_adapter(clock, "inbox", races=1)
    batch = adapter.fetch_changes()
    adapter.store = racing
    assert not adapter.commit_cursor(batch)
    assert racing.inner.get_provider("prov-1").delta_links["inbox"] == "moved-1"


def test_commit_gives_up_when_the_links_never_settle(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, json={"value": [], "@odata.deltaLink": LINK_2})
    adapter, racing = _racing_adapter(clock, "archive", races=100)
    batch = adapter.fetch_changes()
    adapter.store = racing
    assert not adapter.commit_cursor(batch)
    assert racing.cas_calls == 5
    assert racing.inner.get_provider("prov-1").delta_links["inbox"] == LINK_1


def test_commit_rejects_bad_cursor(clock: Any) -> None:
    from mailparity.adapter import SyncBatch

    with pytest.raises(ValueError, match="cursor"):
        _adapter(clock).commit_cursor(SyncBatch([], None))


def test_expired_token_restarts_bounded_by_last_commit(rsps: Any, clock: Any) -> None:
    adapter = _adapter(clock, delta_links={"inbox": LINK_1})
    rsps.get(LINK_1, json={"value": [], "@odata.deltaLink": LINK_2})
    adapter.commit_cursor(adapter.fetch_changes())  # records the commit time
    clock.now += timedelta(days=2)
    adapter.store.save_tokens("prov-1", tokens(clock.now, access="at-later"))
    rsps.get(LINK_2, status=410, json=graph_error("syncStateNotFound", "The sync state "
                                                  "generation is not found."))
    rsps.get(DELTA, json={"value": [_item("missed", "2026-01-02T00:00:00Z")],
                          "@odata.deltaLink": f"{DELTA}?$deltatoken=fresh"})
    batch = adapter.fetch_changes()
    assert batch.full_sync
    assert not batch.baseline
    assert batch.message_ids == ["missed"]
    assert batch.expected == LINK_2
    query = parse_qs(urlparse(rsps.calls[-1].request.url).query)
    assert query["$filter"] == ["receivedDateTime ge 2025-12-31T23:00:00Z"]
    assert query["changeType"] == ["created"]
    assert adapter.commit_cursor(batch)
    assert adapter.config.delta_links["inbox"].endswith("fresh")


def test_expired_token_without_commit_record_is_a_baseline(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, status=410, json=graph_error("resyncRequired"))
    rsps.get(DELTA, json={"value": [_item("x", "2026-01-01T00:00:00Z")],
                          "@odata.deltaLink": LINK_2})
    batch = _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes()
    assert batch.baseline
    assert batch.message_ids == []
    assert batch.cursor == {"inbox": LINK_2}
    assert "$filter" not in rsps.calls[-1].request.url


def test_other_folder_and_application_paths(rsps: Any, clock: Any) -> None:
    url = f"{GRAPH}/users/support@contoso.com/mailFolders/archive/messages/delta"
    rsps.get(url, json={"value": [], "@odata.deltaLink": f"{url}?$deltatoken=t"})
    adapter = _adapter(clock, auth_mode="application",
                       authority_tenant="11111111-2222-3333-4444-555555555555", folder="archive")
    assert adapter.fetch_changes().cursor == {"archive": f"{url}?$deltatoken=t"}


def test_link_to_another_host_is_refused(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, json={"value": [], "@odata.nextLink": "https://evil.example.com/steal"})
    with pytest.raises(ProviderError, match="another host"):
        _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes()
    assert len(rsps.calls) == 1


def test_page_without_links_is_an_error(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, json={"value": []})
    with pytest.raises(ProviderUnavailableError):
        _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes()


def test_looping_next_link_is_an_error(rsps: Any, clock: Any) -> None:
    loop = f"{DELTA}?$skiptoken=same"
    rsps.get(LINK_1, json={"value": [], "@odata.nextLink": loop})
    rsps.get(loop, json={"value": [], "@odata.nextLink": loop})
    with pytest.raises(ProviderUnavailableError):
        _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes()


def test_delta_503_then_success(rsps: Any, clock: Any) -> None:
    rsps.get(LINK_1, status=503)
    rsps.get(LINK_1, json={"value": [_item("n", "2026-01-01T00:00:00Z")],
                           "@odata.deltaLink": LINK_2})
    assert _adapter(clock, delta_links={"inbox": LINK_1}).fetch_changes().message_ids == ["n"]
    assert len(clock.sleeps) == 1
