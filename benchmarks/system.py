"""Memory (in a fresh subprocess) and scale on one machine (cold start: ``coldstart.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _env import Served, graph_box, median, start_fakes

HERE = Path(__file__).resolve().parent

# ====================================================================== 4. memory


def memory(size: int = 25 * 1024 * 1024) -> dict[str, Any]:
    """A message with a ``size``-byte attachment: processed into an event, then the attachment
    streamed into a file, in a child process that samples its own RSS."""
    import random

    from mailparity.stores.memory import InMemoryStore
    from mailparity.testing.builder import build_message
    from mailparity.testing.fake_gmail import FakeGmail
    from mailparity.testing.fake_graph import FakeGraph
    from mailparity.testing.server import serve

    payload = random.Random(5).randbytes(size)
    raw = build_message(
        from_="sender@customer.example", to="support@contoso.example", subject="big file",
        text="see attached", attachments=[("big.bin", payload, "application/octet-stream")],
    )
    del payload
    graph = FakeGraph(token_lifetime=86400, seed=9)
    gmail = FakeGmail(token_lifetime=86400, seed=9, body_attachment_threshold=64 * 1024)
    server = serve(graph, gmail)
    served = Served(graph, gmail, server, clock=None)  # type: ignore[arg-type]
    try:
        store = InMemoryStore()
        box = graph_box(served, store, 1)
        mid = graph.deliver(box.config.mailbox, raw)
        graph.pending.clear()
        tokens = store.load_tokens(box.config.provider_id)
        assert tokens is not None
        assert tokens.refresh_token is not None
        spec = {
            "config": box.config.model_dump(mode="json"),
            "secrets": {
                "client_secret": "fake-client-secret",
                "webhook_verification_token": "bench-client-state-value",
                "access_token": tokens.access_token.get_secret_value(),
                "refresh_token": tokens.refresh_token.get_secret_value(),
                "expires_at": tokens.expires_at.isoformat(),
            },
            "body": graph.notifications_for(mid),
            "size": size,
        }
        result = subprocess.run(
            [sys.executable, str(HERE / "_child.py"), "memory"],
            input=json.dumps(spec), check=True, capture_output=True, text=True,
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]
    finally:
        server.close()


# ====================================================================== 5. scale


def renewal_sweep(providers: int) -> dict[str, float]:
    """The renewal sweep over ``providers`` Graph providers in a SqliteStore: the sweep that
    creates every subscription, then (two days later) the one that renews them."""
    from mailparity.maintenance import Maintenance
    from mailparity.publishers import InMemoryPublisher
    from mailparity.stores.sqlite import SqliteStore

    served = start_fakes()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(str(Path(tmp) / "bench.sqlite3"))
            for index in range(providers):
                graph_box(served, store, index, subscribe=False)
            import requests

            session = requests.Session()
            sweep = Maintenance(store, InMemoryPublisher(), session=session, clock=served.clock)
            out: dict[str, float] = {}
            for phase in ("create", "renew"):
                if phase == "renew":
                    served.clock.offset += timedelta(days=2)
                before = served.graph_api_requests()
                start = time.perf_counter()
                report = sweep.renew_subscriptions()
                elapsed = time.perf_counter() - start
                done = len(report.created) + len(report.renewed)
                if done != providers or report.failed:
                    raise RuntimeError(
                        f"{phase}: {done} of {providers}; {len(report.failed)} failed"
                    )
                out[f"{phase} s/provider"] = elapsed / providers
                out[f"{phase} requests/provider"] = (
                    served.graph_api_requests() - before
                ) / providers
            before = served.graph_api_requests()
            start = time.perf_counter()
            report = sweep.renew_subscriptions()
            out["no-op s/provider"] = (time.perf_counter() - start) / providers
            out["no-op requests/provider"] = (served.graph_api_requests() - before) / providers
            session.close()
            if hasattr(store, "close"):
                store.close()
            return out
    finally:
        served.close()


def dedupe_scale(
    served: Served, raws: list[bytes], recorded: list[int], repeat: int = 1
) -> dict[int, float]:
    """Single-worker Graph throughput with a SqliteStore already holding ``recorded`` keys: the
    median of ``repeat`` interleaved runs per size, each on a fresh store file (one run per size
    swings by about 10 %: every message commits several fsynced transactions)."""
    from throughput import graph_mailparity

    from mailparity.stores.sqlite import SqliteStore

    rates: dict[int, list[float]] = {count: [] for count in recorded}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(repeat):
            for count in recorded:
                store = SqliteStore(str(Path(tmp) / f"dedupe-{count}-{run}.sqlite3"))
                rates[count].append(
                    graph_mailparity(served, raws, None, store=store, recorded=count)["rate"]
                )
                if hasattr(store, "close"):
                    store.close()
    return {count: median(values) for count, values in rates.items()}
