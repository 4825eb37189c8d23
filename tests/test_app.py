"""mailparity.App: one composition root, so the handler, maintenance and workers share one
Processor and its settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import SecretStr

import mailparity
from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.models import Job, MicrosoftProviderConfig
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def _app(**options: Any) -> tuple[mailparity.App, FakeMailbox, InMemoryPublisher]:
    store = InMemoryStore()
    config = MicrosoftProviderConfig(
        provider_id="ms", tenant="t", mailbox="box@contoso.com",
        webhook_notification_url="https://hooks.example.com/graph",
        webhook_verification_token=SecretStr("state"),
    )
    store.save_provider(config)
    box = FakeMailbox(config)
    publisher = InMemoryPublisher()
    app = mailparity.App(store, publisher, clock=lambda: NOW, sleep=lambda _s: None,
                         adapter_factory=FakeAdapterFactory(box), **options)
    return app, box, publisher


def test_every_part_runs_on_the_one_processor() -> None:
    app, _, _ = _app(retry_cap=3)
    processor = app.processor
    assert processor.retry_cap == 3
    assert app.webhooks.processor is processor
    assert app.maintenance.processor is processor
    assert app.maintenance.adapter_factory is processor.adapter_factory
    worker = app.worker(threads=2)
    assert worker.processor is processor
    assert worker.threads == 2
    assert app.webhooks is app.webhooks


def test_push_and_renewal_options_reach_their_parts() -> None:
    app, _, _ = _app(push={"google_audience": "https://hooks.example.com/google",
                           "google_service_accounts": ["push@proj.iam.gserviceaccount.com"],
                           "max_body_bytes": 500},
                     renewal={"graph_renew_before": timedelta(hours=2)})
    assert app.webhooks.google_audience == "https://hooks.example.com/google"
    assert app.webhooks.max_body_bytes == 500
    assert app.maintenance.graph_renew_before == timedelta(hours=2)


def test_a_pushed_message_is_published_with_the_apps_settings() -> None:
    app, box, publisher = _app()
    box.add("m-1")
    app.store.enqueue_job(Job(kind="graph_message", provider_id="ms",
                              payload={"message_id": "m-1"}, available_at=NOW, created_at=NOW))
    assert app.webhooks.run_pending() == 1
    assert [e.email_data.id for e in publisher.events] == ["m-1"]


def test_a_worker_refuses_processor_options_beside_a_processor() -> None:
    app, _, _ = _app()
    with pytest.raises(TypeError, match="processor"):
        app.worker(retry_cap=2)
