"""``mailparity jobs list|show|retry|bury``: stuck work seen, retried and given up on.

Jobs are provider-neutral records: these tests need no provider config, except the last one,
which runs through the Processor over Graph and over the third, test-only provider."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mailparity import cli
from mailparity.cli import build_parser, main
from mailparity.jobs_admin import JobAdminError, find_job, retry
from mailparity.models import Job
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)
DEAD_MARK = "msg-dead:AAMk-1"


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.path = tmp_path / "jobs.sqlite3"
        self.events = tmp_path / "events.jsonl"
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--store", str(self.path), "--events", str(self.events), *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def store(self) -> SqliteStore:
        return SqliteStore(self.path)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


def seed(store: SqliteStore) -> None:
    """A dead message job as the processor leaves it (buried, the message marked given up), a
    pending sync job that keeps failing, and a running one."""
    store.enqueue_job(Job(id="dead0001aaaa", kind="message", provider_id="ms-1",
                          payload={"message_id": "AAMk-1"}, unique_key="message:ms-1:AAMk-1",
                          available_at=T0, created_at=T0))
    store.enqueue_job(Job(id="pend0002bbbb", kind="sync", provider_id="g-1",
                          payload={"reason": "silence"}, unique_key="sync:g-1",
                          available_at=T0 + timedelta(minutes=5), created_at=T0))
    store.enqueue_job(Job(id="runn0003cccc", kind="sync", provider_id="ms-1",
                          payload={"reason": "requested"}, available_at=T0, created_at=T0))
    store.claim_jobs("w1", limit=1, now=T0, lease_until=T0 + timedelta(minutes=1),
                     kinds=["message"])
    store.bury_job("dead0001aaaa", error="PermanentMessageError: 400 ErrorInvalidIdMalformed")
    store.set_meta("ms-1", DEAD_MARK, "400 ErrorInvalidIdMalformed")
    store.claim_jobs("w1", limit=1, now=T0, lease_until=T0 + timedelta(minutes=1),
                     kinds=["sync"], provider_ids=["ms-1"])
    store.claim_jobs("w2", limit=1, now=T0 + timedelta(minutes=6),
                     lease_until=T0 + timedelta(minutes=7), provider_ids=["g-1"])
    store.retry_job("pend0002bbbb", error="ProviderUnavailableError: 503 from Gmail",
                    available_at=T0 + timedelta(minutes=10))


@pytest.mark.parametrize(
    ("argv", "func", "expected"),
    [
        (["jobs", "list"], "_cmd_jobs_list", {"status": "stuck", "provider": None, "limit": 100}),
        (["jobs", "list", "--status", "dead", "--provider", "p", "--limit", "5"],
         "_cmd_jobs_list", {"status": "dead", "provider": "p", "limit": 5}),
        (["jobs", "show", "abc"], "_cmd_jobs_show", {"job_id": "abc"}),
        (["jobs", "retry", "abc"], "_cmd_jobs_retry", {"job_id": "abc"}),
        (["jobs", "bury", "abc", "--reason", "spam"], "_cmd_jobs_bury",
         {"job_id": "abc", "reason": "spam"}),
    ],
)
def test_jobs_subcommands_parse(argv: list[str], func: str, expected: dict[str, object]) -> None:
    args = build_parser().parse_args(argv)
    assert args.func is getattr(cli, func)
    for key, value in expected.items():
        assert getattr(args, key) == value


def test_list_shows_status_attempts_and_error(run: Cli) -> None:
    with run.store() as store:
        seed(store)
    code, out, _ = run("jobs", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["JOB", "ID", "KIND", "PROVIDER", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"dead0001aaaa", "pend0002bbbb", "runn0003cccc"}
    assert rows["dead0001aaaa"].split()[3:5] == ["dead", "1"]
    assert "ErrorInvalidIdMalformed" in rows["dead0001aaaa"]
    assert rows["pend0002bbbb"].split()[3:5] == ["pending", "1"]
    assert "503 from Gmail" in rows["pend0002bbbb"]
    code, out, _ = run("jobs", "list", "--status", "dead")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["dead0001aaaa"]
    code, out, _ = run("jobs", "list", "--provider", "g-1")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["pend0002bbbb"]
    with run.store() as store:
        store.complete_job("dead0001aaaa")
        store.complete_job("pend0002bbbb")
        store.complete_job("runn0003cccc")
    assert run("jobs", "list") == (0, "no jobs\n", "")


def test_show_prints_the_job_by_unique_prefix(run: Cli) -> None:
    with run.store() as store:
        seed(store)
    code, out, _ = run("jobs", "show", "dead0001")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == "dead0001aaaa"
    assert shown["status"] == "dead"
    assert shown["attempts"] == 1
    assert shown["last_error"] == "PermanentMessageError: 400 ErrorInvalidIdMalformed"
    assert shown["payload"] == {"message_id": "AAMk-1"}
    code, _, err = run("jobs", "show", "nope")
    assert code == 2
    assert "no job 'nope'" in err
    with run.store() as store:
        store.enqueue_job(Job(id="dead0001zzzz", kind="sync", provider_id="x",
                              available_at=T0, created_at=T0))
    code, _, err = run("jobs", "show", "dead0001")
    assert code == 2
    assert "start of 2 job ids" in err


def test_retry_requeues_a_dead_job_fresh_and_clears_the_give_up_mark(run: Cli) -> None:
    with run.store() as store:
        seed(store)
    code, out, _ = run("jobs", "retry", "dead0001aaaa")
    assert code == 0
    assert out.startswith("job dead0001aaaa requeued as ")
    new_id = out.split()[-3]
    with run.store() as store:
        assert store.list_jobs(status="dead") == []
        fresh = find_job(store, new_id)
        assert (fresh.status, fresh.attempts, fresh.kind) == ("pending", 0, "message")
        assert fresh.payload == {"message_id": "AAMk-1"}
        assert fresh.unique_key == "message:ms-1:AAMk-1"
        # Without this the processor would skip the message as given up on.
        assert store.get_meta("ms-1", DEAD_MARK) is None


def test_retry_of_a_dead_job_whose_work_is_pending_again_removes_it() -> None:
    store = InMemoryStore()
    store.enqueue_job(Job(id="d", kind="sync", provider_id="p", unique_key="sync:p",
                          available_at=T0, created_at=T0))
    store.claim_jobs("w", limit=1, now=T0, lease_until=T0 + timedelta(minutes=1))
    store.bury_job("d", error="boom")
    store.enqueue_job(Job(id="again", kind="sync", provider_id="p", unique_key="sync:p",
                          available_at=T0, created_at=T0))
    outcome = retry(store, "d", clock=lambda: T0)
    assert (outcome.action, outcome.new_id) == ("coalesced", None)
    assert [j.id for j in store.list_jobs()] == ["again"]


def test_retry_moves_a_pending_job_forward_and_refuses_a_running_one(run: Cli) -> None:
    with run.store() as store:
        seed(store)
    code, out, _ = run("jobs", "retry", "pend0002")
    assert (code, out) == (0, "job pend0002bbbb is due now\n")
    with run.store() as store:
        job = find_job(store, "pend0002bbbb")
        assert job.available_at <= datetime.now(timezone.utc)
        assert job.status == "pending"
    code, _, err = run("jobs", "retry", "runn0003cccc")
    assert code == 2
    assert "is running on w1" in err


def test_bury_gives_up_on_a_pending_job_with_the_reason(run: Cli) -> None:
    with run.store() as store:
        seed(store)
    code, out, _ = run("jobs", "bury", "pend0002bbbb", "--reason", "mailbox deleted")
    assert code == 0
    assert out == "job pend0002bbbb is dead: buried by an operator: mailbox deleted\n"
    with run.store() as store:
        job = find_job(store, "pend0002bbbb")
        assert job.status == "dead"
        # It is never claimed again.
        assert store.claim_jobs("w9", limit=10, now=T0 + timedelta(days=1),
                                lease_until=T0 + timedelta(days=2), provider_ids=["g-1"]) == []
    for job_id, message in (("runn0003cccc", "is running"), ("dead0001aaaa", "is dead")):
        code, _, err = run("jobs", "bury", job_id)
        assert code == 2
        assert message in err


def test_unknown_job_is_a_clear_error() -> None:
    with pytest.raises(JobAdminError, match="no job 'x'"):
        retry(InMemoryStore(), "x")


def test_a_retried_dead_message_is_published_once_its_cause_is_fixed(
    clock: Any, provider_kind: str
) -> None:
    """The whole loop through the real Processor: a permanent error buries the job and marks the
    message given up on; after ``retry`` the message is fetched again and published once. Over
    Graph and over the third, test-only provider (``third_provider.py``)."""
    from pydantic import SecretStr

    from fake_adapter import FakeAdapterFactory, FakeMailbox
    from mailparity.errors import PermanentMessageError
    from mailparity.models import InboundEmailReceived
    from mailparity.processing import Processor
    from mailparity.publishers import InMemoryPublisher
    from third_provider import make_config

    store = InMemoryStore()
    config = make_config(
        provider_kind, "pg", mailbox="support@contoso.com", subscription_id="sub-1",
        client_id="cid", client_secret=SecretStr("cs-value"),
    )
    store.save_provider(config)
    box = FakeMailbox(config)  # type: ignore[arg-type]
    box.add("m1")
    box.fail("get", "m1", PermanentMessageError("cannot parse"))
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher, clock=clock, sleep=clock.sleep,
                          adapter_factory=FakeAdapterFactory(box))
    store.enqueue_job(Job(kind="message", provider_id="pg", payload={"message_id": "m1"},
                          available_at=clock(), created_at=clock()))
    processor.run_pending()
    (dead,) = store.list_jobs(status="dead")
    assert "cannot parse" in (dead.last_error or "")
    assert publisher.events == []

    outcome = retry(store, dead.id[:8], clock=clock)
    assert outcome.action == "requeued"
    processor.run_pending()
    (event,) = [e for e in publisher.events if isinstance(e, InboundEmailReceived)]
    assert event.email_data.complete is True
    assert store.list_jobs() == []
    assert box.count("get", "m1") == 2
