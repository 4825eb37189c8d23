"""End to end with provider latency: pushes in at a steady rate, events out, through workers.

A :mod:`replay` server in its own process answers every Graph message fetch after ``latency``
seconds (50 ms by default), serving as many distinct messages as the run needs from templates
captured from FakeGraph. Graph change notifications for 1, 10 or 100 mailboxes (one app) reach
the ``WebhookHandler`` at a steady rate; each becomes a durable job; workers fetch, normalize,
dedupe and publish. Measured per case:

- throughput against the ideal: with ``concurrency = min(worker threads, 4 x mailboxes)``
  (Graph allows four concurrent requests per mailbox) an ideal system answers ``concurrency /
  latency`` messages per second. Pushes arrive at exactly that rate, so the ideal run ends one
  latency after the last push; the ratio is that ideal duration over the measured one (first
  push to last event);
- push-to-event latency p50 / p99 (push: the handler is called; event: the publisher is called);
- how busy the CPUs were (every process of the run, the server included), to tell where the
  CPUs, not the workers, are the limit.

Drivers: one worker thread, the Worker's thread pool, and several worker processes sharing one
SqliteStore file or one PostgreSQL database (``MAILPARITY_TEST_POSTGRES_URL``; the case is
skipped without it). Workers poll every ``POLL`` seconds when idle.

Run as ``python benchmarks/latency.py worker SPEC.json`` it is one of those worker processes.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POLL = 0.02
POSTGRES_ENV = "MAILPARITY_TEST_POSTGRES_URL"


@dataclass
class Mailboxes:
    """Graph mailboxes (configs pointing at the replay server, tokens) and, per mailbox, a
    notification item whose message id is replaced for each push."""

    configs: list[Any]
    tokens: list[Any]
    items: list[dict[str, Any]]
    item_ids: list[str]


def prepare_mailboxes(count: int, replay_url: str) -> Mailboxes:
    """``count`` Graph mailboxes subscribed in the in-process FakeGraph (real subscription ids
    and notification bodies), then pointed at the replay server."""
    from _env import graph_box, realistic_messages, start_fakes

    from mailparity.stores.memory import InMemoryStore

    served = start_fakes()
    store = InMemoryStore()
    raw = realistic_messages(1, seed=99)[0]
    configs, tokens, items, ids = [], [], [], []
    try:
        for index in range(count):
            box = graph_box(served, store, 1000 + index)
            mid = served.graph.deliver(box.config.mailbox, raw)
            body = served.graph.notifications_for(mid)
            items.append(body["value"][0])
            ids.append(mid)
            base = replay_url + "/" + box.config.graph_base_url.split("/", 3)[3]
            configs.append(box.config.model_copy(update={"graph_base_url": base}))
            tokens.append(store.load_tokens(box.config.provider_id))
    finally:
        served.close()
    return Mailboxes(configs, tokens, items, ids)


def _notification(boxes: Mailboxes, index: int, message_id: str) -> bytes:
    item = json.dumps(boxes.items[index]).replace(boxes.item_ids[index], message_id)
    return ('{"value": [' + item + "]}").encode("utf-8")


class TimedPublisher:
    """Records when each event was published (wall clock, comparable across processes)."""

    def __init__(self, sink: Callable[[str, float], None] | None = None) -> None:
        self.times: dict[str, float] = {}
        self.sink = sink
        self._lock = threading.Lock()

    def publish(self, event: Any) -> None:
        now = time.time()
        message_id = event.email_data.id
        with self._lock:
            self.times[message_id] = now
            if self.sink is not None:
                self.sink(message_id, now)


def _fill(store: Any, boxes: Mailboxes, mailboxes: int) -> None:
    for config, tokens in zip(boxes.configs[:mailboxes], boxes.tokens[:mailboxes], strict=True):
        store.save_provider(config)
        store.save_tokens(config.provider_id, tokens)


def _cpu_self_and_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _push(handler: Any, boxes: Mailboxes, mailboxes: int, count: int, rate: float, *,
          tag: str, threads: int = 16) -> dict[str, float]:
    """``count`` notifications at ``rate`` per second, round robin over the mailboxes, each
    handled on a thread of its own as a threaded web server would (a push does not wait for the
    one before it); the wall-clock time each one arrived."""
    from concurrent.futures import ThreadPoolExecutor

    from mailparity.webhooks import WebhookRequest

    pushed: dict[str, float] = {}
    bodies = [
        (f"e2e-{tag}-{i}", _notification(boxes, i % mailboxes, f"e2e-{tag}-{i}"))
        for i in range(count)
    ]
    headers = {"Content-Type": "application/json"}

    def handle(body: bytes) -> None:
        answer = handler.handle_microsoft(
            WebhookRequest(method="POST", query={}, headers=headers, body=body)
        )
        if answer.status != 202:
            raise RuntimeError(f"notification answered {answer.status}")

    with ThreadPoolExecutor(threads, thread_name_prefix="push") as pool:
        futures = []
        start = time.perf_counter()
        for i, (message_id, body) in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pushed[message_id] = time.time()
            futures.append(pool.submit(handle, body))
        for future in futures:
            future.result()
    return pushed


@dataclass
class Case:
    driver: str  # "single", "pool", "procs-sqlite", "procs-postgres"
    mailboxes: int
    threads: int
    processes: int = 1

    @property
    def concurrency(self) -> int:
        return min(self.threads * self.processes, 4 * self.mailboxes)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU of the machine, every process included."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [float(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def run_case(case: Case, boxes: Mailboxes, replay: Any, latency: float, *,
             load: float = 1.0, seconds: float = 1.5, min_messages: int = 40,
             max_messages: int = 600, tag: str = "") -> dict[str, Any]:
    """Pushes at ``load`` x the ideal rate for about ``seconds``; see the module docstring."""
    ideal_rate = case.concurrency / latency
    rate = ideal_rate * load
    count = int(min(max(rate * seconds, min_messages), max_messages))
    tag = tag or f"{case.driver}-{case.mailboxes}-{time.monotonic_ns()}"
    before_cpu = _cpu_self_and_children()
    before_server = replay.stats()["cpu"]
    before_machine = _machine_busy()
    wall = time.perf_counter()
    if case.driver in ("single", "pool"):
        published, pushed = _in_process(case, boxes, count, rate, tag)
    else:
        published, pushed = _processes(case, boxes, count, rate, tag)
        if published is None:
            return {"skipped": pushed}
    wall = time.perf_counter() - wall
    cpu = _cpu_self_and_children() - before_cpu + replay.stats()["cpu"] - before_server
    after_machine = _machine_busy()
    # An event still missing when the run gave up counts as published then (a lower bound).
    missing = [mid for mid in pushed if mid not in published]
    stopped = time.time()
    published = {**published, **dict.fromkeys(missing, stopped)}
    latencies = [published[mid] - at for mid, at in pushed.items()]
    measured = max(published.values()) - min(pushed.values())
    ideal = (count - 1) / ideal_rate + latency
    total = after_machine[1] - before_machine[1]
    return {
        "messages": count,
        "missing": len(missing),
        "ideal_rate": ideal_rate,
        "offered_rate": rate,
        "pushed_rate": (count - 1) / max(max(pushed.values()) - min(pushed.values()), 1e-9),
        "rate": count / measured,
        "ratio": ideal / measured,
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "cpu_ours": cpu / (wall * (os.cpu_count() or 1)),
        "cpu_machine": (after_machine[0] - before_machine[0]) / total if total else 0.0,
    }


def _in_process(case: Case, boxes: Mailboxes, count: int, rate: float,
                tag: str) -> tuple[dict[str, float], dict[str, float]]:
    import requests

    from mailparity.stores.memory import InMemoryStore
    from mailparity.webhooks import WebhookHandler
    from mailparity.worker import Worker

    store = InMemoryStore()
    _fill(store, boxes, case.mailboxes)
    publisher = TimedPublisher()
    session = requests.Session()
    handler = WebhookHandler(store=store, publisher=publisher, session=session)
    worker = Worker(store, publisher, threads=case.threads, poll_interval=POLL, session=session)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        pushed = _push(handler, boxes, case.mailboxes, count, rate, tag=tag)
        deadline = time.monotonic() + 20 + count / rate
        while len(publisher.times) < count and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        worker.stop()
        thread.join(30)
        session.close()
    return dict(publisher.times), pushed


def _open_store(kind: str, where: str) -> Any:
    if kind == "sqlite":
        from mailparity.stores.sqlite import SqliteStore

        return SqliteStore(where)
    import sqlalchemy as sa

    from mailparity.stores.sql import SqlStore

    url, schema = where.rsplit("|", 1)
    engine = sa.create_engine(url, connect_args={"options": f"-c search_path={schema}"},
                              pool_size=20)
    return SqlStore(engine, auto_upgrade=True)


def _processes(case: Case, boxes: Mailboxes, count: int, rate: float,
               tag: str) -> tuple[dict[str, float] | None, Any]:
    kind = case.driver.split("-", 1)[1]
    with tempfile.TemporaryDirectory() as tmp:
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
        if kind == "sqlite":
            where = str(Path(tmp) / "latency.sqlite3")
        else:
            url = os.environ.get(POSTGRES_ENV)
            if not url:
                return None, f"{POSTGRES_ENV} not set"
            where, cleanup = _postgres_schema(url)
        store = _open_store(kind, where)
        try:
            _fill(store, boxes, case.mailboxes)
            outputs = [str(Path(tmp) / f"events-{n}.txt") for n in range(case.processes)]
            children = []
            for output in outputs:
                spec = {"kind": kind, "where": where, "threads": case.threads, "out": output}
                children.append(subprocess.Popen(
                    [sys.executable, str(HERE / "latency.py"), "worker", json.dumps(spec)],
                ))
            try:
                _wait_ready(outputs)
                from mailparity.webhooks import WebhookHandler

                handler = WebhookHandler(store=store, publisher=TimedPublisher())
                pushed = _push(handler, boxes, case.mailboxes, count, rate, tag=tag)
                deadline = time.monotonic() + 20 + count / rate
                while _lines(outputs) < count + len(outputs) and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                for child in children:
                    child.send_signal(signal.SIGTERM)
                for child in children:
                    child.wait(60)
            published: dict[str, float] = {}
            for output in outputs:
                with open(output, encoding="utf-8") as handle:
                    for line in handle:
                        mid, _, at = line.strip().partition(" ")
                        if mid != "READY":
                            published[mid] = float(at)
            return published, pushed
        finally:
            store.close()
            cleanup()


def _lines(outputs: list[str]) -> int:
    total = 0
    for output in outputs:
        try:
            with open(output, encoding="utf-8") as handle:
                total += sum(1 for _ in handle)
        except FileNotFoundError:
            pass
    return total


def _wait_ready(outputs: list[str]) -> None:
    deadline = time.monotonic() + 60
    while _lines(outputs) < len(outputs):
        if time.monotonic() > deadline:
            raise RuntimeError("worker processes did not start")
        time.sleep(0.02)


def _postgres_schema(url: str) -> tuple[str, Callable[[], None]]:
    import uuid

    import sqlalchemy as sa

    schema = f"mp_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def cleanup() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    return f"{url}|{schema}", cleanup


def worker_main(spec: dict[str, Any]) -> None:
    """One worker process: runs until SIGTERM; one line per published event in ``out``."""
    import logging

    import requests

    from mailparity.worker import Worker

    logging.disable(logging.WARNING)
    store = _open_store(spec["kind"], spec["where"])
    with open(spec["out"], "a", encoding="utf-8", buffering=1) as out:

        def sink(message_id: str, at: float) -> None:
            out.write(f"{message_id} {at!r}\n")

        publisher = TimedPublisher(sink)
        session = requests.Session()
        worker = Worker(store, publisher, threads=int(spec["threads"]), poll_interval=POLL,
                        session=session)
        out.write("READY 0\n")
        worker.run()
    store.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.path.insert(0, str(HERE))
        worker_main(json.loads(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
