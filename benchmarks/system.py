"""3, 4 and 5. Cold start and memory (each in fresh subprocesses), and scale on one machine."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _env import Served, graph_box, median, realistic_messages, start_fakes

HERE = Path(__file__).resolve().parent

# ====================================================================== 3. cold start

IMPORTS = {
    "python (nothing)": "pass",
    "requests + pydantic": "import requests, pydantic",
    "mailparity": "import mailparity",
    "msgraph (msgraph-sdk)": "import msgraph",
    "googleapiclient.discovery": "import googleapiclient.discovery",
}


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def cold_start(served: Served, runs: int = 5) -> dict[str, Any]:
    """Median wall time of fresh interpreters importing each package; then the first webhook
    handled in a fresh process (import, handler, notification, fetch, event)."""
    out: dict[str, Any] = {}
    for label, code in IMPORTS.items():
        try:
            out[label] = median([_wall(code) for _ in range(runs)])
        except subprocess.CalledProcessError:
            out[label] = None  # not installed
    check = (
        "import sys, mailparity, mailparity.webhooks;"
        "print(sorted(m for m in ('msal','googleapiclient','google.auth','google.oauth2',"
        "'msgraph','httplib2','sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], check=True, capture_output=True,
                            text=True)
    out["provider libraries loaded by import"] = result.stdout.strip()
    out["first webhook"] = median([_first_webhook(served) for _ in range(3)])
    return out


def _first_webhook(served: Served) -> float:
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    box = graph_box(served, store, int(time.time() * 1000) % 10_000_000 + 50_000_000)
    raw = realistic_messages(1, seed=3)[0]
    mid = served.graph.deliver(box.config.mailbox, raw)
    served.graph.pending.clear()
    tokens = store.load_tokens(box.config.provider_id)
    assert tokens is not None
    assert tokens.refresh_token is not None
    spec = {
        "config": box.config.model_dump(mode="json"),
        "secrets": {
            "client_secret": "fake-client-secret",
            "webhook_verification_token": box.config.webhook_verification_token.get_secret_value()
            if box.config.webhook_verification_token else None,
            "access_token": tokens.access_token.get_secret_value(),
            "refresh_token": tokens.refresh_token.get_secret_value(),
            "expires_at": tokens.expires_at.isoformat(),
        },
        "body": served.graph.notifications_for(mid),
    }
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(HERE / "_child.py"), "first-webhook"],
        input=json.dumps(spec), check=True, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if json.loads(result.stdout).get("events") != 1:
        raise RuntimeError(f"first webhook published no event: {result.stdout}")
    return elapsed


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
