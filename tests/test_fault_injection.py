"""The "never lose, never duplicate" scenario, end to end under faults.

1,200 inbound messages over 28 mailboxes (12 Microsoft Graph, 12 Gmail, 4 IMAP), served by the
stateful provider fakes (Gmail over real HTTP on 127.0.0.1, Graph through a ``responses`` mock
because MSAL insists on an https authority) and by a real Dovecot (IMAP, ``scripts/services.sh``;
without it the IMAP mailboxes are left out, except under ``CI=true`` where that fails), and read by
the REAL adapters; pushes go through the real WebhookHandler (Graph notification POSTs, Pub/Sub
pushes with OIDC tokens) and, for IMAP, the listener's job for an IDLE ``EXISTS``; jobs run on the
real Processor; Maintenance sweeps and catches up; state lives in one SqliteStore file; events
go to one JSONL file. Faults, all drawn from one seed (``MAILPARITY_FAULT_SEED``, default 1234):

* notifications dropped, duplicated and reordered (Graph items, Pub/Sub pushes and IMAP IDLE
  pushes alike);
* IMAP connections cut in the middle of a message body (a proxy between adapter and server);
* 429 bursts with Retry-After and 5xx errors from both APIs;
* every access token expiring mid-run (401, then refresh);
* a Graph subscription removed (lifecycle ``subscriptionRemoved``; mail arrives unnotified);
* a Gmail history cursor expiring (``history.list`` 404, full sync);
* the host's publisher refusing events for a while;
* a REAL worker process (``fault_worker.py``) SIGKILLed after publishing an event and before the
  bookkeeping and the cursor commit.

Then: every delivered message has exactly one complete event id in the JSONL file (a redelivery
of the same id counts once); nothing lost, nothing duplicated. In-process time is a fake clock:
Retry-After waits, backoffs and leases advance it; nothing sleeps for real.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from conftest import FakeClock
from fault_support import next_wake
from imap_support import APPENDUID, CuttingProxy, Dovecot, dovecot_or_none
from mailparity.maintenance import Maintenance
from mailparity.models import (
    GmailProviderConfig,
    MailParityEvent,
    MicrosoftProviderConfig,
    event_id_for,
)
from mailparity.processing import Processor
from mailparity.providers.imap.adapter import format_message_id
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.providers.imap.listener import ImapListener
from mailparity.publishers import JsonlFilePublisher
from mailparity.stores.sqlite import SqliteStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import (
    PUSH_SERVICE_ACCOUNT,
    TEST_AUDIENCE,
    connect_google,
    connect_microsoft,
    gmail_push_request,
)
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.oidc import TestOidcSigner
from mailparity.testing.server import FakeServer, serve
from mailparity.webhooks import WebhookHandler, WebhookRequest

HERE = Path(__file__).resolve().parent
MESSAGES = 1200
GRAPH_MAILBOXES = 12
GMAIL_MAILBOXES = 12
IMAP_MAILBOXES = 4
IMAP_CUTS = 6
ROUNDS = 12
DROP_RATE = 0.08
DUPLICATE_RATE = 0.12
LEASE_SECONDS = 120.0
SUMMARY = re.compile(
    r"^fault-injection: messages=(\d+) events=(\d+) duplicates=(\d+) lost=(\d+)"
    r" retries=(\d+) seed=(\d+)$"
)


def fault_seed() -> int:
    raw = os.environ.get("MAILPARITY_FAULT_SEED", "1234").strip()
    return int(raw) if raw else 1234


class LongLivedSigner:
    """The fake Pub/Sub signer, with tokens that outlive the scenario's fake hours (the handler
    checks ``exp`` against its injected clock as well as google-auth's wall clock)."""

    def __init__(self) -> None:
        self.inner = TestOidcSigner()

    def certs_json(self) -> dict[str, str]:
        return self.inner.certs_json()

    def push_token(self, audience: str, email: str) -> str:
        return self.inner.push_token(audience, email, lifetime=30 * 86400)


class CountingStore(SqliteStore):
    """The SqliteStore, counting job retries (one figure of the summary line)."""

    job_retries = 0

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        type(self).job_retries += 1
        super().retry_job(job_id, error=error, available_at=available_at)


class OutagePublisher:
    """The host's bus: a JSONL file that refuses events while an outage lasts."""

    def __init__(self, path: Path) -> None:
        self.inner = JsonlFilePublisher(path, fsync=False)
        self.outage = 0
        self.refused = 0

    def publish(self, event: MailParityEvent) -> None:
        if self.outage > 0:
            self.outage -= 1
            self.refused += 1
            raise ConnectionError("the event bus is unavailable")
        self.inner.publish(event)


@dataclass
class Scenario:
    """Everything of one run; ``expected`` maps (provider id, message id) to its mailbox."""

    seed: int
    tmp: Path
    rng: random.Random
    clock: FakeClock
    graph: FakeGraph
    gmail: FakeGmail
    server: FakeServer
    store: CountingStore
    publisher: OutagePublisher
    session: requests.Session
    processor: Processor
    handler: WebhookHandler
    maintenance: Maintenance
    graph_pids: dict[str, str] = field(default_factory=dict)  # mailbox -> provider id
    gmail_pids: dict[str, str] = field(default_factory=dict)
    imap_pids: dict[str, str] = field(default_factory=dict)
    imap_configs: dict[str, ImapProviderConfig] = field(default_factory=dict)
    imap_clients: dict[str, Any] = field(default_factory=dict)  # mailbox -> delivering client
    imap_pending: list[str] = field(default_factory=list)  # provider ids with an IDLE EXISTS
    imap_listener: ImapListener | None = None
    imap_proxy: CuttingProxy | None = None
    expected: dict[tuple[str, str], str] = field(default_factory=dict)
    graph_pending: list[dict[str, Any]] = field(default_factory=list)
    gmail_pending: list[tuple[str, int]] = field(default_factory=list)
    handler_rejections: int = 0
    sequence: int = 0

    @property
    def events_path(self) -> Path:
        return self.tmp / "events.jsonl"

    # ------------------------------------------------------------------ mail and pushes

    def deliver(self, mailbox: str) -> None:
        self.sequence += 1
        n = self.sequence
        raw = build_message(
            from_=(f"Customer {n}", f"customer{n}@example.net"),
            to=mailbox,
            subject=f"Ticket {n}: printer on floor {n % 7} is jammed",
            text=f"Hello,\n\nrequest number {n}.\n",
            message_id=f"<fault-{self.seed}-{n}@example.net>",
            date=self.clock(),
        )
        if mailbox in self.imap_pids:
            answer = self.imap_clients[mailbox].append("INBOX", raw)
            match = APPENDUID.search(answer)
            assert match is not None, answer
            message_id = format_message_id(int(match.group(1)), int(match.group(2)))
            self.expected[(self.imap_pids[mailbox], message_id)] = mailbox
            # What the listener's IDLE connection reports for it: a catch-up job.
            self.imap_pending.append(self.imap_pids[mailbox])
        elif mailbox in self.graph_pids:
            message_id = self.graph.deliver(mailbox, raw, received_at=self.clock())
            self.expected[(self.graph_pids[mailbox], message_id)] = mailbox
            # What Graph would POST for it (nothing when the subscription is gone).
            self.graph_pending.extend(self.graph.notifications_for(message_id)["value"])
        else:
            message_id = self.gmail.deliver(mailbox, raw, internal_date=self.clock())
            self.expected[(self.gmail_pids[mailbox], message_id)] = mailbox
            self.gmail_pending.append((mailbox, self.gmail.mailbox(mailbox).history_id))

    def _answer_ok(self, status: int) -> None:
        if status >= 300:
            self.handler_rejections += 1
        assert status in (200, 202, 204), status

    def push_graph(self, items: list[dict[str, Any]]) -> None:
        body = json.dumps({"value": items}).encode("utf-8")
        request = WebhookRequest("POST", {}, {"Content-Type": "application/json"}, body)
        self._answer_ok(self.handler.handle_microsoft(request).status)

    def flush_pushes(self) -> None:
        """Send the round's notifications: some dropped, some twice, all shuffled; Graph items
        in collections of one to four, Pub/Sub pushes one by one."""
        rng = self.rng
        graph_items = [item for item in self.graph_pending if rng.random() >= DROP_RATE]
        graph_items += [item for item in graph_items if rng.random() < DUPLICATE_RATE]
        rng.shuffle(graph_items)
        self.graph_pending = []
        while graph_items:
            size = rng.randint(1, 4)
            chunk, graph_items = graph_items[:size], graph_items[size:]
            self.push_graph(chunk)
        pushes = [push for push in self.gmail_pending if rng.random() >= DROP_RATE]
        pushes += [push for push in pushes if rng.random() < DUPLICATE_RATE]
        rng.shuffle(pushes)
        self.gmail_pending = []
        for mailbox, history_id in pushes:
            request = gmail_push_request(self.gmail, mailbox, history_id=history_id)
            self._answer_ok(self.handler.handle_google(request).status)
        idle = [pid for pid in self.imap_pending if rng.random() >= DROP_RATE]
        idle += [pid for pid in idle if rng.random() < DUPLICATE_RATE]
        rng.shuffle(idle)
        self.imap_pending = []
        for pid in idle:
            assert self.imap_listener is not None
            self.imap_listener.enqueue_sync(pid, "imap idle")

    # ------------------------------------------------------------------ running the queue

    def drain(self, max_rounds: int = 20_000) -> None:
        """Run due jobs until none is left, moving the fake clock to the next due time."""
        for _ in range(max_rounds):
            if self.handler.run_pending():
                continue
            now = self.clock()
            wake = next_wake(self.store, now)
            if wake is None:
                return
            self.clock.now = wake if wake > now else now + timedelta(seconds=1)
        raise AssertionError("the job queue did not drain")

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    seed = fault_seed()
    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    graph = FakeGraph(clock=clock, seed=seed)
    gmail = FakeGmail(clock=clock, seed=seed, signer=LongLivedSigner())
    # Gmail is served over real HTTP on loopback (the killed worker process reaches it there).
    # Graph answers through a `responses` mock in this process: MSAL accepts only an https
    # authority, and the loopback server speaks plain HTTP, so the Graph token refresh cannot go
    # over it. The subprocess only ever runs a Gmail job.
    server = serve(gmail)
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    graph.register(mock)
    mock.add_passthru(server.url)
    store = CountingStore(tmp_path / "state.db")
    CountingStore.job_retries = 0
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    publisher = OutagePublisher(tmp_path / "events.jsonl")
    processor = Processor(
        store, publisher, session=session, clock=clock, sleep=clock.sleep,
        worker_id="parent", lease_seconds=LEASE_SECONDS, backoff_base=2.0, backoff_max=300.0,
    )
    handler = WebhookHandler(
        store=store, publisher=publisher, session=session,
        google_audience=TEST_AUDIENCE, google_service_accounts=[PUSH_SERVICE_ACCOUNT],
        google_certs_url=gmail.certs_url, clock=clock, sleep=clock.sleep, processor=processor,
    )
    maintenance = Maintenance(
        store, publisher, session=session, clock=clock, sleep=clock.sleep, processor=processor,
    )
    run = Scenario(
        seed=seed, tmp=tmp_path, rng=random.Random(seed), clock=clock, graph=graph, gmail=gmail,
        server=server, store=store, publisher=publisher, session=session, processor=processor,
        handler=handler, maintenance=maintenance,
    )
    try:
        for i in range(GRAPH_MAILBOXES):
            mailbox = f"support{i:02d}@contoso.test"
            # One app registration per mailbox: FakeGraph keys the "subscription already
            # exists" check on (app, resource) without the user, and /me/... repeats.
            config = connect_microsoft(
                store, graph, mailbox, session=session, client_id=f"fake-client-{i:02d}"
            )
            run.graph_pids[mailbox] = config.provider_id
        for i in range(GMAIL_MAILBOXES):
            mailbox = f"help{i:02d}@example.test"
            gconfig = connect_google(store, gmail, mailbox, session=session)
            run.gmail_pids[mailbox] = gconfig.provider_id
        dovecot = dovecot_or_none()
        if dovecot is not None:
            connect_imap(run, dovecot)
        yield run
    finally:
        for client in run.imap_clients.values():
            client.logout()
        if run.imap_proxy is not None:
            run.imap_proxy.close()
        mock.stop()
        mock.reset()
        server.close()
        store.close()
        session.close()


def connect_imap(run: Scenario, dovecot: Dovecot) -> None:
    """The IMAP mailboxes: each a fresh Dovecot user, read by the adapters through a proxy that
    cuts ``IMAP_CUTS`` connections in the middle of a message body."""
    run.imap_proxy = CuttingProxy(dovecot.host, dovecot.port, cuts=IMAP_CUTS)
    run.imap_listener = ImapListener(run.store, stop_event=threading.Event(), clock=run.clock)
    for i in range(IMAP_MAILBOXES):
        config = dovecot.config(provider_id=f"imap-{i:02d}", port=run.imap_proxy.port)
        run.store.save_provider(config)
        run.imap_pids[config.mailbox] = config.provider_id
        run.imap_configs[config.mailbox] = config
        run.imap_clients[config.mailbox] = dovecot.client(config)


def kill_a_worker_mid_job(run: Scenario) -> str:
    """Start ``fault_worker.py`` on the same store and event file, let it publish one event,
    SIGKILL it before its bookkeeping; return the event id it published."""
    command = [
        sys.executable, str(HERE / "fault_worker.py"), str(run.store.path),
        str(run.events_path), run.clock().isoformat(), "doomed-worker",
    ]
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(name, None)
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        line = child.stdout.readline().strip()  # blocks until the publish (or the exit)
        if not line.startswith("published "):
            child.wait(timeout=30)
            stderr = child.stderr.read() if child.stderr else ""
            pytest.fail(f"the worker did not publish: {line!r} {stderr[-2000:]}")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    return line.split(" ", 1)[1]


def tally_events(
    events: list[dict[str, Any]], expected: dict[tuple[str, str], str]
) -> tuple[int, int, int, int, dict[str, int]]:
    """(distinct complete event ids of expected messages, messages with more than one such id,
    messages without one, complete events for unknown messages, publications per event id)."""
    ids_by_message: dict[tuple[str, str], set[str]] = {}
    publications: dict[str, int] = {}
    unknown = 0
    for event in events:
        if event.get("eventType") != "INBOUND_EMAIL_RECEIVED":
            continue
        data = event["emailData"]
        if not data.get("complete", True):
            continue
        key = (event["providerId"], data["id"])
        publications[event["eventId"]] = publications.get(event["eventId"], 0) + 1
        if key not in expected:
            unknown += 1
            continue
        ids_by_message.setdefault(key, set()).add(event["eventId"])
    distinct = len({eid for ids in ids_by_message.values() for eid in ids})
    duplicates = sum(1 for ids in ids_by_message.values() if len(ids) > 1)
    lost = sum(1 for key in expected if key not in ids_by_message)
    return distinct, duplicates, lost, unknown, publications


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_never_lose_never_duplicate_under_faults(scenario: Scenario) -> None:
    run = scenario
    rng = run.rng
    graph_boxes = sorted(run.graph_pids)
    gmail_boxes = sorted(run.gmail_pids)
    imap_boxes = sorted(run.imap_pids)
    mailboxes = graph_boxes + gmail_boxes + imap_boxes
    per_round = MESSAGES // ROUNDS

    # The host's first maintenance pass: every mailbox gets its catch-up baseline (Graph's delta
    # cursor exists only after a first sync).
    run.maintenance.sync_all()
    run.drain()

    removed_box = graph_boxes[3]
    expired_box = gmail_boxes[5]
    crash_box = gmail_boxes[7]
    killed_event: str | None = None
    refreshes_before = (run.graph.count("/oauth2/v2.0/token"), run.gmail.count("/token"))

    for round_no in range(ROUNDS):
        if round_no == 2:  # 429 bursts with Retry-After, from both APIs
            run.graph.fail_next(25, status=429, retry_after=3)
            run.gmail.fail_next(25, status=429, retry_after=2)
        if round_no == 3:  # 5xx errors
            run.graph.fail_next(12, status=503, retry_after=None)
            run.gmail.fail_next(12, status=500, retry_after=None)
        if round_no == 4:  # every access token expires mid-run: 401, refresh, retry
            run.graph.expire_tokens()
            run.gmail.expire_tokens()
        if round_no == 5:  # the host's bus refuses events for a while
            run.publisher.outage = 60
        lifecycle: dict[str, Any] | None = None
        if round_no == 6:  # Graph removes a subscription; mail keeps arriving unnotified
            config = run.store.get_provider(run.graph_pids[removed_box])
            assert isinstance(config, MicrosoftProviderConfig)
            assert config.webhook_subscription_id
            lifecycle = run.graph.remove_subscription(config.webhook_subscription_id)
        if round_no == 7:  # a Gmail cursor falls out of the retained history
            run.gmail.expire_history(expired_box)

        # Round 6 sends five of its messages to the mailbox whose subscription is gone (no
        # notification at all); round 8 keeps three for the killed worker's mailbox.
        reserved = {6: 5, 8: 3}.get(round_no, 0)
        for _ in range(per_round - reserved):
            run.deliver(rng.choice(mailboxes))
        if round_no == 6:
            for _ in range(reserved):
                run.deliver(removed_box)
        run.flush_pushes()
        if lifecycle is not None:
            run.push_graph(lifecycle["value"])
            run.push_graph(lifecycle["value"])  # lifecycle events are redelivered too

        if round_no == 8:
            # A real worker process, SIGKILLed between publish and bookkeeping / cursor commit:
            # only this mailbox's history job is due when it starts.
            run.drain()
            for _ in range(3):
                run.deliver(crash_box)
            mailbox, history_id = run.gmail_pending.pop()
            run.gmail_pending.clear()
            request = gmail_push_request(run.gmail, mailbox, history_id=history_id)
            run._answer_ok(run.handler.handle_google(request).status)
            killed_event = kill_a_worker_mid_job(run)
            # The dead worker's leases lapse on the fake clock; the survivors take over.
            run.clock.now += timedelta(seconds=LEASE_SECONDS * 2)
        run.drain()

    # Maintenance, then the catch-up sync of every mailbox (the source of truth).
    run.clock.now += timedelta(hours=1)
    run.maintenance.run_once()
    run.maintenance.sync_all()
    run.drain()

    events = run.events()
    expected_ids = {event_id_for(pid, mid) for pid, mid in run.expected}
    distinct, duplicates, lost, unknown, publications = tally_events(events, run.expected)
    job_retries = CountingStore.job_retries
    http_retries = len(run.clock.sleeps)
    retries = job_retries + http_retries
    line = (
        f"fault-injection: messages={len(run.expected)} events={distinct}"
        f" duplicates={duplicates} lost={lost} retries={retries} seed={run.seed}"
    )
    print(line)

    match = SUMMARY.match(line)
    assert match is not None
    messages, events_n, dups_n, lost_n, retries_n, seed_n = (int(g) for g in match.groups())
    assert messages == MESSAGES == len(run.expected)
    assert events_n == messages
    assert dups_n == 0
    assert lost_n == 0
    assert seed_n == run.seed
    assert unknown == 0
    # Every complete event carries the deterministic id of its message; ids repeat only as the
    # killed worker's redelivery.
    published_ids = {eid for eid in publications if eid in expected_ids}
    assert published_ids == expected_ids
    assert killed_event is not None
    assert killed_event in expected_ids
    assert publications[killed_event] == 2  # published by the dead worker, then once more
    assert all(n == 1 for eid, n in publications.items() if eid != killed_event)

    # The faults really happened (otherwise the proof proves nothing).
    assert retries_n > 0
    assert job_retries > 0
    assert http_retries > 0
    assert run.publisher.refused == 60
    assert run.graph.count("/oauth2/v2.0/token") > refreshes_before[0]  # 401 -> refresh
    assert run.gmail.count("/token") > refreshes_before[1]
    removed = run.store.get_provider(run.graph_pids[removed_box])
    assert isinstance(removed, MicrosoftProviderConfig)
    assert removed.webhook_subscription_id in run.graph.subscriptions  # registered anew
    expired = run.store.get_provider(run.gmail_pids[expired_box])
    assert isinstance(expired, GmailProviderConfig)
    assert expired.history_id is not None
    assert expired.history_id >= run.gmail.mailbox(expired_box).history_id - 7
    assert run.handler_rejections == 0
    if run.imap_proxy is not None:  # the IMAP mailboxes took part, and their faults happened
        assert run.imap_proxy.cut_done == IMAP_CUTS
        assert sum(1 for pid, _ in run.expected if pid in run.imap_pids.values()) > 0
    # Nothing left behind: no pending, running or buried job.
    assert run.store.count_jobs(status="pending") == 0
    assert run.store.count_jobs(status="running") == 0
    assert run.store.count_jobs(status="dead") == 0
