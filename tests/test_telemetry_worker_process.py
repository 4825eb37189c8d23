"""One complete trace across a worker process, with the metrics of both processes.

The push is handled in this process (OpenTelemetry SDK in-memory exporters, a Prometheus
registry); the job it stores in a shared SqliteStore file is run by a separate worker process
(``telemetry_worker.py``) with its own SDK, which writes its spans and metrics to files. Joined,
they must form one trace: push (here) -> job -> fetch and publish (there), with parent links, and
the counters and histograms of each side must hold the expected values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FakeClock
from mailparity.stores.sqlite import SqliteStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import (
    PUSH_SERVICE_ACCOUNT,
    TEST_AUDIENCE,
    connect_google,
    gmail_push_request,
)
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.server import serve
from mailparity.webhooks import WebhookHandler
from telemetry_support import Telemetry

HERE = Path(__file__).resolve().parent
MAILBOX = "help@example.test"


def _prometheus_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_trace_from_the_push_through_a_worker_process(otel: Telemetry, tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    gmail = FakeGmail(clock=clock)
    server = serve(gmail)
    session = requests.Session()
    session.trust_env = False
    store = SqliteStore(tmp_path / "state.db")
    try:
        config = connect_google(store, gmail, MAILBOX, session=session)
        handler = WebhookHandler(
            store=store, publisher=_Unused(), session=session, clock=clock,
            google_audience=TEST_AUDIENCE, google_service_accounts=[PUSH_SERVICE_ACCOUNT],
            google_certs_url=gmail.certs_url,
        )
        raw = build_message(from_="zoe@customer.example", to=MAILBOX, subject="Printer",
                            text="Blank pages since this morning.")
        message_id = gmail.deliver(MAILBOX, raw)
        assert handler.handle_google(gmail_push_request(gmail, MAILBOX)).status == 204
        (job,) = store.list_jobs()
        assert job.payload["traceparent"]

        worker = subprocess.run(
            [sys.executable, str(HERE / "telemetry_worker.py"), str(tmp_path / "state.db"),
             str(tmp_path), clock.now.isoformat()],
            capture_output=True, text=True, timeout=240, check=False,
        )
        assert worker.returncode == 0, worker.stderr
        assert worker.stdout.strip() == "ran 1"
    finally:
        store.close()
        server.close()
        session.close()

    # The event went out, from the worker.
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["emailData"]["id"] for e in events] == [message_id]
    assert events[0]["providerId"] == config.provider_id

    # Counters of this process (the push), in OpenTelemetry and in Prometheus.
    assert otel.value("mailparity.pushes.received", provider="google") == 1
    assert otel.prometheus("mailparity_pushes_received_total", provider="google") == 1
    assert otel.prometheus("mailparity_pushes_rejected_total", provider="google",
                           reason="unknown_mailbox") is None

    # Counters and histograms of the worker process.
    points = json.loads((tmp_path / "metrics.json").read_text())

    def point(name: str, **labels: str) -> dict[str, Any]:
        (found,) = [p for p in points if p["name"] == name and p["labels"] == labels]
        return found

    published = point("mailparity.events.published", provider="google",
                      event_type="INBOUND_EMAIL_RECEIVED")
    assert published["value"] == 1
    assert point("mailparity.fetch.duration", provider="google", outcome="ok")["count"] == 1
    assert point("mailparity.push_to_event.duration", provider="google")["count"] == 1
    samples = _prometheus_samples((tmp_path / "prometheus.txt").read_text())
    assert samples[("mailparity_events_published_total", frozenset(
        {"provider": "google", "event_type": "INBOUND_EMAIL_RECEIVED"}.items()))] == 1
    assert samples[("mailparity_push_to_event_duration_seconds_count",
                    frozenset({"provider": "google"}.items()))] == 1

    # One complete trace: the push span here, the job, fetch and publish spans in the worker.
    (push,) = otel.spans("mailparity.push")
    trace_id = f"{push.context.trace_id:032x}"
    push_id = f"{push.context.span_id:016x}"
    remote = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in remote:
        by_name.setdefault(span["name"], []).append(span)
    (job_span,) = by_name["mailparity.job"]
    (fetch,) = by_name["mailparity.fetch"]
    (publish,) = by_name["mailparity.publish"]
    assert {s["trace_id"] for s in remote} == {trace_id}
    assert job_span["parent_id"] == push_id
    assert job_span["attributes"]["mailparity.job.kind"] == "cursor"
    assert fetch["parent_id"] == job_span["span_id"]
    assert publish["parent_id"] == job_span["span_id"]
    assert fetch["attributes"]["mailparity.message_id"] == message_id
    assert publish["attributes"]["mailparity.event_id"] == events[0]["eventId"]


class _Unused:
    """The push side publishes nothing (the worker does)."""

    def publish(self, event: Any) -> None:
        raise AssertionError("the push side must not publish")
