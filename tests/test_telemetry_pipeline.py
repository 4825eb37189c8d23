"""Metrics and traces of the pipeline in one process: events, duplicates, retries, auth failures,
fetch and push-to-event latency, and the push -> job -> fetch -> publish trace (Celery too)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from celery import Celery

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.contrib.celery import configure
from mailparity.errors import AuthExpiredError
from mailparity.models import GmailProviderConfig, Job, MicrosoftProviderConfig
from mailparity.processing import Processor
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    build_message,
    gmail_push_request,
    graph_notification_request,
)
from mailparity.webhooks import WebhookHandler
from telemetry_support import Telemetry

PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)
RAW = build_message(from_="zoe@customer.example", to="support@contoso.test", subject="Printer",
                    text="Blank pages since this morning.")


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def test_a_pushed_message_is_counted_timed_and_traced(
    otel: Telemetry,
    fake_graph: FakeGraph,
    microsoft_mailbox: MicrosoftProviderConfig,
    mailparity_handler: WebhookHandler,
    mailparity_publisher: InMemoryPublisher,
) -> None:
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    request = graph_notification_request(fake_graph, message_id)
    assert mailparity_handler.handle_microsoft(request).status == 202
    assert mailparity_handler.run_pending() == 1
    # Graph notifies again (at least once): a new job, and a duplicate, not a second event.
    assert mailparity_handler.handle_microsoft(request).status == 202
    assert mailparity_handler.run_pending() == 1
    assert len(mailparity_publisher.emails) == 1

    labels = {"provider": "microsoft"}
    assert otel.value("mailparity.pushes.received", **labels) == 2
    assert otel.value("mailparity.events.published", event_type="INBOUND_EMAIL_RECEIVED",
                      **labels) == 1
    assert otel.value("mailparity.messages.duplicates", **labels) == 1
    assert otel.count("mailparity.fetch.duration", outcome="ok", **labels) == 1
    assert otel.count("mailparity.push_to_event.duration", **labels) == 1
    assert otel.prometheus("mailparity_events_published_total",
                           event_type="INBOUND_EMAIL_RECEIVED", **labels) == 1
    assert otel.prometheus("mailparity_fetch_duration_seconds_count", outcome="ok", **labels) == 1

    # The first push's trace: push -> job -> fetch and publish, one trace id, parent links.
    push = otel.spans("mailparity.push")[0]
    job = otel.spans("mailparity.job")[0]
    (fetch,) = otel.spans("mailparity.fetch")
    (publish,) = otel.spans("mailparity.publish")
    assert {s.context.trace_id for s in (push, job, fetch, publish)} == {push.context.trace_id}
    assert job.parent is not None
    assert job.parent.span_id == push.context.span_id
    assert fetch.parent is not None
    assert fetch.parent.span_id == job.context.span_id
    assert publish.parent is not None
    assert publish.parent.span_id == job.context.span_id
    assert publish.attributes["mailparity.event_id"] == mailparity_publisher.emails[0].event_id
    assert fetch.attributes["mailparity.message_id"] == message_id
    # The second push is a trace of its own.
    second_job = otel.spans("mailparity.job")[1]
    assert second_job.context.trace_id == otel.spans("mailparity.push")[1].context.trace_id
    assert second_job.context.trace_id != push.context.trace_id


def test_gmail_publishes_are_labelled_google(
    otel: Telemetry,
    fake_gmail: FakeGmail,
    google_mailbox: GmailProviderConfig,
    mailparity_handler: WebhookHandler,
) -> None:
    fake_gmail.deliver(google_mailbox.mailbox, RAW)
    mailparity_handler.handle_google(gmail_push_request(fake_gmail, google_mailbox.mailbox))
    mailparity_handler.run_pending()
    assert otel.value("mailparity.events.published", provider="google",
                      event_type="INBOUND_EMAIL_RECEIVED") == 1
    assert otel.count("mailparity.fetch.duration", provider="google", outcome="ok") == 1


def _fake_pipeline() -> tuple[InMemoryStore, FakeMailbox, InMemoryPublisher, Processor]:
    store = InMemoryStore()
    config = MicrosoftProviderConfig(provider_id="p1", tenant="t", mailbox="a@contoso.com")
    store.save_provider(config)
    box = FakeMailbox(config)
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher, adapter_factory=FakeAdapterFactory(box),
                          sleep=lambda _s: None)
    return store, box, publisher, processor


def test_retries_and_publish_failures_are_counted(otel: Telemetry) -> None:
    store, box, publisher, processor = _fake_pipeline()
    box.add("m-1")
    store.enqueue_job(Job(kind="message", provider_id="p1", payload={"message_id": "m-1"},
                          available_at=PAST))
    publisher.fail_next(1)
    processor.run_pending()
    assert otel.value("mailparity.jobs.retried", kind="message") == 1
    assert otel.value("mailparity.events.published", provider="microsoft",
                      event_type="INBOUND_EMAIL_RECEIVED") == 0
    (publish,) = otel.spans("mailparity.publish")
    assert publish.status.status_code.name == "ERROR"
    assert publish.attributes["error.type"] == "PublishError"


def test_auth_failures_are_counted(otel: Telemetry) -> None:
    store, box, _publisher, processor = _fake_pipeline()
    box.add("m-1")
    box.fail("get", "m-1", AuthExpiredError("consent revoked", code="invalid_grant"))
    store.enqueue_job(Job(kind="message", provider_id="p1", payload={"message_id": "m-1"},
                          available_at=PAST))
    processor.run_pending()
    assert otel.value("mailparity.auth.failures", provider="microsoft") == 1
    assert otel.value("mailparity.events.published", provider="microsoft",
                      event_type="EMAIL_PROVIDER_AUTH_FAILED") == 1
    assert otel.count("mailparity.fetch.duration", provider="microsoft", outcome="error") == 1


def test_celery_tasks_continue_the_stored_trace(otel: Telemetry) -> None:
    """The Celery integration runs jobs from the store: the trace stored with the job crosses."""
    store, box, publisher, _ = _fake_pipeline()
    box.add("m-1")
    payload: dict[str, Any] = {"message_id": "m-1"}
    from mailparity import telemetry

    with telemetry.push("microsoft"):
        telemetry.inject(payload)
    store.enqueue_job(Job(kind="message", provider_id="p1", payload=payload, available_at=PAST))
    app = Celery("mailparity-telemetry", broker="memory://", set_as_current=False)
    integration = configure(app, store_factory=lambda: store, publisher_factory=lambda: publisher,
                            processor_options={"adapter_factory": FakeAdapterFactory(box)})
    assert integration.process_task.apply().get() == 1
    (push,) = otel.spans("mailparity.push")
    (job,) = otel.spans("mailparity.job")
    assert job.context.trace_id == push.context.trace_id
    assert job.parent is not None
    assert job.parent.span_id == push.context.span_id
    assert otel.count("mailparity.push_to_event.duration", provider="microsoft") == 1



def test_a_batched_catch_up_fetch_is_one_span(
    otel: Telemetry,
    fake_gmail: FakeGmail,
    google_mailbox: GmailProviderConfig,
    mailparity_handler: WebhookHandler,
) -> None:
    for i in range(6):  # at least batch_min (5): one batched fetch
        fake_gmail.deliver(google_mailbox.mailbox, build_message(
            from_="zoe@customer.example", to=google_mailbox.mailbox, subject=f"n{i}", text="x"))
    mailparity_handler.handle_google(gmail_push_request(fake_gmail, google_mailbox.mailbox))
    mailparity_handler.run_pending()
    assert otel.value("mailparity.events.published", provider="google",
                      event_type="INBOUND_EMAIL_RECEIVED") == 6
    (batch,) = [s for s in otel.spans("mailparity.fetch")
                if "mailparity.batch_size" in (s.attributes or {})]
    assert batch.attributes["mailparity.batch_size"] == 6
    assert batch.attributes["mailparity.provider"] == "google"
    (job,) = otel.spans("mailparity.job")
    assert batch.parent is not None
    assert batch.parent.span_id == job.context.span_id
