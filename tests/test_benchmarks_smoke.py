"""A tiny run of every benchmark code path (very small sizes). Asserts on counts, never on time."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _env  # noqa: E402
import bench_normalizer as normalizer  # noqa: E402
import system  # noqa: E402
import throughput  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served() -> Iterator[Any]:
    running = _env.start_fakes()
    yield running
    running.close()


@pytest.fixture(scope="module")
def raws() -> list[bytes]:
    return _env.realistic_messages(12)


def test_realistic_messages_are_distinct(raws: list[bytes]) -> None:
    assert len(raws) == 12
    assert len(set(raws)) == 12
    assert all(b"Message-ID:" in raw for raw in raws)


@pytest.mark.parametrize("threads", [None, 2])
def test_graph_pipeline_publishes_one_event_per_message(
    served: Any, raws: list[bytes], threads: int | None
) -> None:
    result = throughput.graph_mailparity(served, raws, threads)
    assert result["events"] == len(raws)
    assert result["requests_per_message"] == 1.0


@pytest.mark.parametrize("threads", [None, 2])
def test_gmail_pipeline_coalesces_bursts(
    served: Any, raws: list[bytes], threads: int | None
) -> None:
    result = throughput.gmail_mailparity(served, raws, threads, mailboxes=2, burst=6)
    assert result["events"] == len(raws)
    # One history.list per burst, the burst's messages in one batch.
    assert result["requests_per_message"] <= 1.1


def test_bare_and_peer_loops_fetch_every_message(served: Any, raws: list[bytes]) -> None:
    assert throughput.graph_bare(served, raws)["rate"] > 0
    assert throughput.gmail_bare(served, raws)["rate"] > 0
    assert throughput.gmail_apiclient(served, raws)["rate"] > 0


def test_catchup_uses_batches(served: Any, raws: list[bytes]) -> None:
    per_message = throughput.catchup_requests(served, 45, raws)
    # Graph: one delta page + three $batch requests; Gmail: history + batches of 20.
    assert per_message["graph"] < 0.2
    assert per_message["gmail"] < 0.2


def test_memory_keeps_attachment_out_of_the_event() -> None:
    result = system.memory(size=2 * 1024 * 1024)
    assert result["content_in_event"] is False
    assert result["attachment_size_reported"] == 2 * 1024 * 1024
    assert result["download_written"] == 2 * 1024 * 1024


def test_renewal_sweep_one_request_per_provider() -> None:
    result = system.renewal_sweep(5)
    # Creating a subscription first takes the folder's delta baseline: the newest-message
    # probe and one delta page, then the POST.
    assert result["create requests/provider"] == 3.0
    assert result["renew requests/provider"] == 1.0
    assert result["no-op requests/provider"] == 0.0


def test_dedupe_scale_runs_with_recorded_keys(served: Any, raws: list[bytes]) -> None:
    rates = system.dedupe_scale(served, raws[:4], [10, 1000], repeat=2)
    assert set(rates) == {10, 1000}
    assert all(rate > 0 for rate in rates.values())


def test_graph_batch_fetch_retries_a_throttled_member(served: Any, raws: list[bytes]) -> None:
    from mailparity.errors import NotFoundError
    from mailparity.models import EmailMessage
    from mailparity.providers.graph import MicrosoftGraphAdapter
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    box = _env.graph_box(served, store, 9_900, subscribe=False)
    ids = [served.graph.deliver(box.config.mailbox, raw) for raw in raws[:3]]
    waits: list[float] = []
    adapter = MicrosoftGraphAdapter(box.config, store=store, sleep=waits.append)
    served.graph.fail_next(1, status=429, retry_after=2, path="/messages/")
    found = adapter.get_messages_details([*ids, "AAkALgAAAAAAmissing", ids[0]])
    assert [isinstance(found[mid], EmailMessage) for mid in ids] == [True, True, True]
    assert isinstance(found["AAkALgAAAAAAmissing"], NotFoundError)
    assert waits == [2.0]


def test_every_graph_mailbox_subscribes_with_one_app(served: Any) -> None:
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    boxes = [_env.graph_box(served, store, index) for index in (9_800, 9_801)]
    assert {box.config.client_id for box in boxes} == {_env.BENCH_CLIENT_ID}
    assert all(box.config.webhook_subscription_id for box in boxes)
    assert boxes[0].config.webhook_subscription_id != boxes[1].config.webhook_subscription_id


def test_normalizer_benchmarks_report_every_goal() -> None:
    rows = normalizer.table_rows(html_mb=0.05, parts=50, message_mb=0.2)
    assert len(rows) == 3
    assert all(row.count("|") == 6 for row in rows)
    related = normalizer.related_parts(parts=50, html_mb=0.01)
    assert related["inline"] == 50  # every image is shown by the HTML
