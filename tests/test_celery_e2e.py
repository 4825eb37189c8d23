"""End to end through a REAL Redis broker and a REAL Celery worker process.

Graph notification -> WebhookHandler.handle_microsoft (this process) -> job in a SqliteStore file
-> notify_after -> Redis -> ``celery worker`` (another process) -> mailparity.process_jobs -> the
real MicrosoftGraphAdapter fetching from the fake Graph served on 127.0.0.1 -> JsonlFilePublisher
file, read here with a bounded poll.

Needs ``MAILPARITY_TEST_REDIS_URL`` (``scripts/services.sh run ...``): skipped without it, failed
without it under CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mailparity.models import MicrosoftProviderConfig
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.sqlite import SqliteStore
from mailparity.testing.fake_graph import FakeGraph
from mailparity.webhooks import WebhookHandler
from webhook_support import CLIENT_STATE, SUBSCRIPTION_ID, graph_item, graph_post

pytestmark = pytest.mark.redis

REDIS_URL_ENV = "MAILPARITY_TEST_REDIS_URL"
TESTS_DIR = Path(__file__).resolve().parent
MAILBOX = "support@contoso.com"
PROVIDER_ID = "ms-e2e"
RAW = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: support@contoso.com\r\n"
    b"Subject: Printer on fire\r\n"
    b"Message-ID: <printer-1@example.org>\r\n"
    b"Date: Thu, 01 Jan 2026 09:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"It is really on fire.\r\n"
)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        return url
    reason = (
        f"{REDIS_URL_ENV} is not set (run the tests through scripts/services.sh run ... to start"
        " a throwaway Redis)"
    )
    if _ci():
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


# ------------------------------------------------------------------------------ loopback Graph


def serve_fake(fake: FakeGraph) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``fake.handle`` on 127.0.0.1; each response goes out in one write (delayed ACKs)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host, port = self.server.server_address[:2]
            url = f"http://{host!s}:{port}{self.path}"
            result = fake.handle(self.command, url, dict(self.headers.items()), body)
            lines = [f"HTTP/1.1 {result.status} {self.responses.get(result.status, ('',))[0]}"]
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines.append(f"Content-Length: {len(result.body)}")
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + result.body)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request records of the fake say what happened

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ------------------------------------------------------------------------------ the worker


class CeleryWorker:
    """A ``celery worker`` subprocess; always stopped (then killed) in teardown."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "celery_worker_app", "worker",
                "--pool=solo", "--loglevel=INFO", "-Q", env["MAILPARITY_E2E_QUEUE"],
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"e2e-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=TESTS_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._log.close()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, worker: CeleryWorker
) -> None:
    """Poll ``condition`` every 50 ms for at most ``timeout`` seconds (a real process works)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.process.poll() is not None:
            pytest.fail(f"the celery worker exited ({worker.process.returncode}):\n{worker.log()}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{worker.log()[-4000:]}")


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class E2E:
    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.fake = FakeGraph()
        self.server, root = serve_fake(self.fake)
        self.fake.mount(root)
        self.fake.add_mailbox(MAILBOX)
        self.store_path = tmp_path / "store.sqlite3"
        self.events_path = tmp_path / "events.jsonl"
        self.store = SqliteStore(self.store_path)
        self.store.save_provider(
            MicrosoftProviderConfig(
                provider_id=PROVIDER_ID, tenant="tenant-1", mailbox=MAILBOX,
                client_id="fake-client-id", webhook_verification_token=CLIENT_STATE,
                webhook_subscription_id=SUBSCRIPTION_ID,
                webhook_notification_url="https://hooks.example.com/microsoft",
                **self.fake.config_overrides(),
            )
        )
        self.store.save_tokens(PROVIDER_ID, self.fake.oauth_tokens(MAILBOX))
        queue = f"mailparity-e2e-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ)
        env.update(
            MAILPARITY_TEST_REDIS_URL=redis_url,
            MAILPARITY_E2E_STORE=str(self.store_path),
            MAILPARITY_E2E_EVENTS=str(self.events_path),
            MAILPARITY_E2E_QUEUE=queue,
            PYTHONPATH=os.pathsep.join(
                [str(TESTS_DIR), str(TESTS_DIR.parent / "src"), env.get("PYTHONPATH", "")]
            ),
        )
        # The web side: the same app module (it opens no store at import), pointed at the queue.
        os.environ.update(MAILPARITY_TEST_REDIS_URL=redis_url, MAILPARITY_E2E_QUEUE=queue)
        self.worker = CeleryWorker(env, tmp_path / "worker.log")
        import celery_worker_app

        self.app_module = celery_worker_app
        self.integration = celery_worker_app.mailparity
        self.integration.queue = queue
        celery_worker_app.app.conf.broker_url = redis_url
        self.handler = WebhookHandler(store=self.store, publisher=InMemoryPublisher())

    def close(self) -> None:
        try:
            self.worker.stop()
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.store.close()


@pytest.fixture
def e2e(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[E2E]:
    monkeypatch.setenv(REDIS_URL_ENV, redis_url)  # restored afterwards
    monkeypatch.setenv("MAILPARITY_E2E_QUEUE", "unset")
    env = E2E(tmp_path, redis_url)
    try:
        yield env
    finally:
        env.close()


def test_webhook_to_event_through_redis_and_a_celery_worker(e2e: E2E) -> None:
    message_id = e2e.fake.deliver(MAILBOX, RAW)
    notification = graph_post(graph_item(message_id))

    response = e2e.handler.handle_microsoft(notification)
    assert response.status == 202
    assert e2e.store.count_jobs(status="pending") == 1
    assert e2e.integration.notify_after(response) is True

    wait_for(lambda: len(read_events(e2e.events_path)) >= 1, 60, "the event", e2e.worker)
    events = read_events(e2e.events_path)
    assert len(events) == 1
    event = events[0]
    assert event["eventType"] == "INBOUND_EMAIL_RECEIVED"
    assert event["providerId"] == PROVIDER_ID
    assert event["tenantId"] == "tenant-1"
    data = event["emailData"]
    assert data["id"] == message_id
    assert data["subject"] == "Printer on fire"
    assert data["from"] == {"email": "alice@example.org", "name": "Alice Example"}
    assert data["messageId"] == "<printer-1@example.org>"
    assert data["body"]["text"].strip() == "It is really on fire."
    assert data["complete"] is True
    # The worker fetched the message from the fake over loopback, with the stored token.
    assert e2e.fake.count(message_id, method="GET") >= 1

    # Graph redelivers the same notification: processed again, published never again.
    response = e2e.handler.handle_microsoft(notification)
    assert response.status == 202
    e2e.integration.notify_new_jobs(force=True)
    wait_for(lambda: e2e.store.count_jobs() == 0, 60, "the duplicate's job", e2e.worker)
    assert [e["eventId"] for e in read_events(e2e.events_path)] == [event["eventId"]]
    log = e2e.worker.log()
    assert "mailparity.process_jobs" in log
    token = e2e.store.load_tokens(PROVIDER_ID)
    assert token is not None
    assert token.access_token.get_secret_value() not in log
    assert CLIENT_STATE not in log


def test_the_worker_drains_jobs_stored_while_it_was_not_told(e2e: E2E) -> None:
    """A lost trigger loses nothing: the next process_jobs (beat, here sent by hand) runs all."""
    ids = [e2e.fake.deliver(MAILBOX, RAW.replace(b"printer-1", f"p-{i}".encode()))
           for i in range(3)]
    for message_id in ids:
        assert e2e.handler.handle_microsoft(graph_post(graph_item(message_id))).status == 202
    e2e.app_module.app.send_task(
        "mailparity.process_jobs", queue=e2e.integration.queue, kwargs={"max_jobs": 1}
    )
    # max_jobs=1: the run does one job, then sends itself again until the queue is empty.
    wait_for(lambda: len(read_events(e2e.events_path)) >= 3, 60, "three events", e2e.worker)
    wait_for(lambda: e2e.store.count_jobs() == 0, 30, "an empty queue", e2e.worker)
    events = read_events(e2e.events_path)
    assert sorted(e["emailData"]["id"] for e in events) == sorted(ids)
    assert len({e["eventId"] for e in events}) == 3
