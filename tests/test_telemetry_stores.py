"""The trace context stored with a job survives every shipped store (memory, SQLite, SqlStore on
SQLite and PostgreSQL): the worker's job span continues the push's trace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mailparity import telemetry
from mailparity.models import Job
from store_factories import STORE_FACTORIES
from telemetry_support import Telemetry

PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=STORE_FACTORIES, ids=[name for name, _ in STORE_FACTORIES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    _, factory = request.param
    made = factory(tmp_path)
    yield made
    close = getattr(made, "close", None)
    if callable(close):
        close()


def test_the_stored_trace_context_crosses_the_store(otel: Telemetry, store: Any) -> None:
    payload: dict[str, Any] = {"message_id": "m-1"}
    with telemetry.push("microsoft"):
        telemetry.inject(payload)
    assert store.enqueue_job(Job(kind="message", provider_id="p1", payload=payload,
                                 available_at=PAST))
    (claimed,) = store.claim_jobs("w1", limit=1, now=PAST + timedelta(seconds=1),
                                  lease_until=PAST + timedelta(minutes=5))
    assert claimed.payload["traceparent"] == payload["traceparent"]
    with telemetry.job_span(claimed):
        pass
    (push,) = otel.spans("mailparity.push")
    (job,) = otel.spans("mailparity.job")
    assert job.context.trace_id == push.context.trace_id
    assert job.parent is not None
    assert job.parent.span_id == push.context.span_id
