"""Structured logs: provider, message and job ids as record fields, the JSON formatter, and
``mailparity --log-format json``; never a secret."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity import logs
from mailparity.errors import ProviderUnavailableError
from mailparity.models import Job, MicrosoftProviderConfig
from mailparity.processing import Processor
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore

PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)
CLIENT_SECRET = "client-secret-never-logged-0123"


def _record(message: str = "hello", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mailparity.test", logging.WARNING, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_bound_fields_reach_the_record_and_are_restored() -> None:
    flt = logs.ContextFilter()
    with logs.bind(provider_id="p1", job_id="j1"):
        with logs.bind(message_id="m1"):
            record = _record()
            flt.filter(record)
            assert (record.provider_id, record.job_id, record.message_id) == ("p1", "j1", "m1")
        assert logs.current() == {"provider_id": "p1", "job_id": "j1"}
    assert logs.current() == {}
    # A field given with extra= wins over the bound one.
    with logs.bind(provider_id="p1"):
        record = _record(provider_id="explicit")
        flt.filter(record)
        assert record.provider_id == "explicit"


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown log fields"), logs.bind(token="x"):  # type: ignore[arg-type]
        pass


def test_the_json_formatter_writes_one_object_per_record() -> None:
    formatter = logs.JsonFormatter()
    with logs.bind(provider_id="p1", message_id="m1", job_id="j1"):
        line = formatter.format(_record("fetching %s failed"))
    data = json.loads(line)
    assert data["level"] == "WARNING"
    assert data["logger"] == "mailparity.test"
    assert data["message"] == "fetching %s failed"
    assert (data["provider_id"], data["message_id"], data["job_id"]) == ("p1", "m1", "j1")
    assert data["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(formatter.format(record))["exception"]
    assert "provider_id" not in json.loads(formatter.format(_record()))


def test_pipeline_records_carry_the_job_provider_and_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryStore()
    config = MicrosoftProviderConfig(provider_id="p1", tenant="t", mailbox="a@contoso.com")
    store.save_provider(config)
    box = FakeMailbox(config)
    box.add("m-1")
    box.fail("get", "m-1", ProviderUnavailableError("Graph is down", status=503))
    store.enqueue_job(Job(kind="message", provider_id="p1", payload={"message_id": "m-1"},
                          available_at=PAST))
    (job,) = store.list_jobs()
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.WARNING, logger="mailparity"):
        Processor(store, InMemoryPublisher(), adapter_factory=FakeAdapterFactory(box),
                  sleep=lambda _s: None).run_pending()
    (failed,) = [r for r in caplog.records if "fetching" in r.getMessage()]
    assert (failed.provider_id, failed.message_id, failed.job_id) == ("p1", "m-1", job.id)
    assert logs.current() == {}  # nothing leaks past the job


def test_the_cli_logs_json_lines_with_the_fields(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    with SqliteStore(db) as store:
        # No tokens: the job meets a terminal credentials failure, logged inside the job.
        store.save_provider(MicrosoftProviderConfig(
            provider_id="ms-1", tenant="t", mailbox="a@contoso.com", client_id="c",
            client_secret=SecretStr(CLIENT_SECRET), webhook_subscription_id="s",
            webhook_expires_at=datetime(2100, 1, 1, tzinfo=timezone.utc),
        ))
        store.enqueue_job(Job(kind="message", provider_id="ms-1",
                              payload={"message_id": "m-1"}, available_at=PAST))
        (job,) = store.list_jobs()
    result = subprocess.run(
        [sys.executable, "-m", "mailparity.cli", "--store", str(db), "--events",
         str(tmp_path / "e.jsonl"), "--log-format", "json", "-v", "maintain"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    in_job = [line for line in lines if line.get("job_id") == job.id]
    assert in_job, lines
    assert all(line["provider_id"] == "ms-1" for line in in_job)
    assert CLIENT_SECRET not in result.stderr + result.stdout


def test_the_cli_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    from mailparity.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["--store", str(tmp_path / "s"), "--log-format", "xml", "providers", "list"])
    assert caught.value.code == 2
