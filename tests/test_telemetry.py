"""Metrics and traces: push counters, store gauges, the Prometheus endpoint, the no-op mode."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses

from mailparity import telemetry
from mailparity.http import HttpClient
from mailparity.models import Job
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.oidc import pubsub_push_body
from mailparity.webhooks import WebhookRequest
from mailparity.wsgi import make_wsgi_app
from telemetry_support import Telemetry
from webhook_support import (
    CLIENT_STATE,
    T0,
    graph_item,
    graph_post,
    make_handler,
    make_store,
    microsoft_config,
)

REPO = Path(__file__).resolve().parents[1]


def _wsgi_get(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status
        captured["headers"] = dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": path}, start_response))
    return captured["status"], captured["headers"], body


# ------------------------------------------------------------------------------ pushes


def test_pushes_received_and_rejected_by_reason(otel: Telemetry) -> None:
    store = make_store()
    handler = make_handler(store)
    good = graph_item("m-1")
    wrong_secret = graph_item("m-2", client_state="not-the-secret")
    unknown = graph_item("m-3", subscription_id="0000-unknown")
    assert handler.handle_microsoft(graph_post(good, wrong_secret, unknown)).status == 202
    assert handler.handle_microsoft(graph_post(body=b"{not json")).status == 400
    assert handler.handle_microsoft(WebhookRequest("PUT")).status == 405

    assert otel.value("mailparity.pushes.received", provider="microsoft") == 3
    rejected = "mailparity.pushes.rejected"
    assert otel.value(rejected, provider="microsoft", reason="missing_or_wrong_clientstate") == 1
    assert otel.value(rejected, provider="microsoft", reason="unknown_subscription") == 1
    assert otel.value(rejected, provider="microsoft", reason="bad_request") == 1
    assert otel.value(rejected, provider="microsoft", reason="method_not_allowed") == 1
    # The same numbers in the Prometheus registry.
    assert otel.prometheus("mailparity_pushes_received_total", provider="microsoft") == 3
    assert otel.prometheus(
        "mailparity_pushes_rejected_total", provider="microsoft", reason="unknown_subscription"
    ) == 1
    # One span per request, with the status; nothing in it carries the shared secret.
    spans = otel.spans("mailparity.push")
    assert [s.attributes["http.response.status_code"] for s in spans] == [202, 400, 405]
    for span in spans:
        assert CLIENT_STATE not in json.dumps(dict(span.attributes or {}))


def test_a_coalesced_item_is_not_a_rejection(otel: Telemetry) -> None:
    handler = make_handler(make_store())
    handler.handle_microsoft(graph_post(graph_item("m-1"), graph_item("m-1")))
    points = otel.points()
    assert not [key for key in points if key[0] == "mailparity.pushes.rejected"]


def test_gmail_pushes_ignored_are_counted(otel: Telemetry) -> None:
    store = make_store()
    handler = make_handler(store, verify_google_tokens=False)
    request = WebhookRequest("POST", {}, {"Content-Type": "application/json"},
                             pubsub_push_body("nobody@example.com", 2000))
    response = handler.handle_google(request)
    assert response.status == 204
    assert otel.value("mailparity.pushes.received", provider="google") == 1
    assert otel.value(
        "mailparity.pushes.rejected", provider="google", reason="unknown_mailbox"
    ) == 1


def test_a_push_job_carries_the_push_trace(otel: Telemetry) -> None:
    store = make_store()
    handler = make_handler(store)
    handler.handle_microsoft(graph_post(graph_item("m-1")))
    (job,) = store.list_jobs()
    (span,) = otel.spans("mailparity.push")
    trace_id = f"{span.context.trace_id:032x}"
    span_id = f"{span.context.span_id:016x}"
    version, stored_trace, stored_parent, flags = job.payload["traceparent"].split("-")
    assert (version, stored_trace, stored_parent) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled


def test_without_a_recording_span_no_trace_field_is_stored() -> None:
    store = make_store()
    handler = make_handler(store)
    handler.handle_microsoft(graph_post(graph_item("m-1")))
    (job,) = store.list_jobs()
    assert "traceparent" not in job.payload


def test_inject_keeps_an_existing_trace(otel: Telemetry) -> None:
    payload = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    with telemetry.push("microsoft"):
        telemetry.inject(payload)
    assert payload["traceparent"].startswith("00-" + "a" * 32)


def test_a_malformed_stored_traceparent_starts_a_new_trace(otel: Telemetry) -> None:
    job = Job(kind="sync", provider_id="p", payload={"traceparent": "garbage"})
    with telemetry.job_span(job):
        pass
    (span,) = otel.spans("mailparity.job")
    assert span.parent is None


# ------------------------------------------------------------------------------ HTTP


@responses.activate
def test_a_throttled_request_counts_a_wait(otel: Telemetry, clock: Any) -> None:
    url = "https://graph.example.test/v1.0/me"
    responses.get(url, status=429, headers={"Retry-After": "2"}, json={})
    responses.get(url, status=503, json={})
    responses.get(url, json={"ok": True})
    client = HttpClient(sleep=clock.sleep, clock=clock, provider="microsoft")
    assert client.request("GET", url).json() == {"ok": True}
    # The 429 asked to wait; the plain 503 is a transient retry, not throttling.
    assert otel.value("mailparity.throttle.waits", provider="microsoft", scope="request") == 1


# ------------------------------------------------------------------------------ gauges


def test_gauges_are_read_from_the_store(otel: Telemetry) -> None:
    store = InMemoryStore()
    now = T0 + timedelta(days=1)
    # Expires in 2 h: counted; the other in 3 days: not.
    store.save_provider(microsoft_config(webhook_expires_at=now + timedelta(hours=2)))
    store.save_provider(microsoft_config(
        provider_id="ms-2", webhook_subscription_id="sub-2",
        webhook_expires_at=now + timedelta(days=3),
    ))
    store.set_meta("ms-2", "last_push_at", (now - timedelta(minutes=5)).isoformat())
    store.enqueue_job(Job(kind="sync", provider_id="ms-1", created_at=now - timedelta(hours=2),
                          available_at=now))
    store.enqueue_job(Job(kind="sync", provider_id="ms-2", created_at=now - timedelta(minutes=1),
                          available_at=now))
    store.enqueue_job(Job(kind="message", provider_id="ms-2", payload={"message_id": "x"}))
    (dead,) = [j for j in store.list_jobs() if j.kind == "message"]
    store.bury_job(dead.id, error="given up")

    telemetry.observe_store(store, clock=lambda: now)
    assert otel.value("mailparity.jobs.pending") == 2
    assert otel.value("mailparity.jobs.dead") == 1
    assert otel.value("mailparity.jobs.oldest_pending_age") == 7200
    assert otel.value("mailparity.subscriptions.expiring", provider="microsoft") == 1
    # ms-1 never had a push or a sync: silent; ms-2 had a push 5 minutes ago.
    assert otel.value("mailparity.mailboxes.silent", provider="microsoft") == 1
    assert otel.prometheus("mailparity_jobs_oldest_pending_age_seconds") == 7200
    assert otel.prometheus("mailparity_subscriptions_expiring", provider="microsoft") == 1


def test_a_store_failure_leaves_the_gauges_out(otel: Telemetry) -> None:
    class Broken(InMemoryStore):
        def jobs_summary(self) -> dict[str, int]:
            raise RuntimeError("database is down")

    telemetry.observe_store(Broken())
    assert otel.prometheus("mailparity_jobs_pending") is None
    assert not [key for key in otel.points() if key[0] == "mailparity.jobs.pending"]


# ------------------------------------------------------------------------------ Prometheus


def test_the_wsgi_app_serves_metrics(otel: Telemetry) -> None:
    store = make_store()
    handler = make_handler(store)
    telemetry.observe_store(store, clock=lambda: T0)
    app = make_wsgi_app(handler, metrics_path="/metrics")
    handler.handle_microsoft(graph_post(graph_item("m-1")))
    status, headers, body = _wsgi_get(app, "/metrics")
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/plain; version=")
    text = body.decode()
    assert 'mailparity_pushes_received_total{provider="microsoft"} 1.0' in text
    assert "mailparity_jobs_pending 1.0" in text
    # Without metrics_path there is no such route.
    status, _, _ = _wsgi_get(make_wsgi_app(handler), "/metrics")
    assert status.startswith("404")


def test_every_metric_is_documented() -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for spec in telemetry.METRICS:
        assert f"`{spec.name}`" in doc, spec.name
        assert spec.prometheus_name in doc, spec.prometheus_name


def test_prometheus_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"mailparity\[prometheus\]"):
        telemetry.enable_prometheus()


# ------------------------------------------------------------------------------ no-op


def test_without_opentelemetry_everything_still_works(tmp_path: Path) -> None:
    """In a fresh interpreter where ``import opentelemetry`` fails: pushes, jobs and publishing
    run as usual, nothing is recorded and nothing is added to job payloads."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # makes every opentelemetry import fail
        sys.modules["prometheus_client"] = None
        sys.path.insert(0, sys.argv[1])
        from mailparity import telemetry
        assert not telemetry.otel_available()
        from webhook_support import graph_item, graph_post, make_handler, make_store
        store = make_store()
        handler = make_handler(store)
        assert handler.handle_microsoft(graph_post(graph_item("m-1"))).status == 202
        (job,) = store.list_jobs()
        assert "traceparent" not in job.payload
        with telemetry.job_span(job):
            telemetry.duplicate("microsoft")
        try:
            telemetry.configure(meter_provider=object())
        except ImportError as exc:
            assert "mailparity[otel]" in str(exc)
        else:
            raise AssertionError("configure accepted a provider without OpenTelemetry")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(REPO / "tests")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ------------------------------------------------------------------------------ mailparity serve


def test_serve_metrics_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity import cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "mailparity.wsgi.serve_production",
        lambda handler, host, port, **kwargs: calls.append({"handler": handler, **kwargs}),
    )
    store = str(tmp_path / "s.sqlite3")
    events = str(tmp_path / "events.jsonl")
    try:
        assert cli.main(["--store", store, "--events", events, "serve", "--metrics"]) == 0
        (call,) = calls
        assert call["metrics_path"] == "/metrics"
        # The gauges read the server's store.
        body, _ = telemetry.prometheus_exposition()
        assert b"mailparity_jobs_pending 0.0" in body
    finally:
        telemetry.reset()
    calls.clear()
    assert cli.main(["--store", store, "--events", events, "serve"]) == 0
    assert "metrics_path" not in calls[0]


def test_serve_metrics_without_prometheus_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailparity import cli

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr("mailparity.wsgi.serve_production", lambda *a, **k: None)
    code = cli.main(["--store", str(tmp_path / "s.sqlite3"), "--events",
                     str(tmp_path / "e.jsonl"), "serve", "--metrics"])
    assert code == 2
    assert "mailparity[prometheus]" in capsys.readouterr().err
