"""Processor: dedupe, publish, retries, minimal fallback, poison messages, auth failures, cursors,
lifecycle events. All against InMemoryStore / SqliteStore and the fake adapter; no network, no
real sleeps.

Every test that uses ``env`` runs twice more than its stores: with the main provider being
Microsoft Graph and being the third, test-only provider of ``third_provider.py`` (the processor
knows neither). Two tests do not: ``test_invalid_processor_settings`` needs no provider, and
``test_a_lifecycle_job_stored_under_graphs_own_name_still_runs`` is about Graph's own lifecycle
names (the Graph spec's aliases), so it runs on a Graph provider only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from fake_adapter import FakeAdapterFactory, FakeMailbox
from mailparity.errors import (
    AuthExpiredError,
    BadRequestError,
    NotFoundError,
    PermanentMessageError,
    ProviderUnavailableError,
    SubscriptionError,
    ThrottledError,
)
from mailparity.models import (
    EmailProviderAuthFailed,
    GmailProviderConfig,
    InboundEmailReceived,
    Job,
    event_id_for,
)
from mailparity.processing import Processor, auth_failure_event_id
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from third_provider import make_config

GRAPH = "prov-graph"
GMAIL = "prov-gmail"


class Env:
    """A store with two providers, fake mailboxes, a publisher, a clock.

    The first provider (``GRAPH``, ``env.graph``), which most tests use, has a push subscription
    with Graph's lifecycle (reauthorization); it is of the ``provider_kind`` the test runs with:
    Microsoft Graph, or the third, test-only provider. The second is a Gmail provider."""

    def __init__(self, clock: Any, store: Any, kind: str = "microsoft") -> None:
        self.clock = clock
        self.store = store
        self.graph_config = make_config(
            kind, GRAPH, mailbox="support@contoso.com", subscription_id="sub-1",
            client_id="cid", client_secret=SecretStr("csecret-value"),
        )
        self.gmail_config = GmailProviderConfig(
            provider_id=GMAIL, tenant="t1", mailbox="help@example.com", history_id=100,
        )
        self.store.save_provider(self.graph_config)
        self.store.save_provider(self.gmail_config)
        self.graph = FakeMailbox(self.graph_config)  # type: ignore[arg-type]
        self.graph.reauthorize = True
        self.gmail = FakeMailbox(self.gmail_config)
        self.factory = FakeAdapterFactory(self.graph, self.gmail)
        self.publisher = InMemoryPublisher()
        self.reports: list[tuple[str, str | None, BaseException]] = []

    def processor(self, **kwargs: Any) -> Processor:
        kwargs.setdefault("adapter_factory", self.factory)
        kwargs.setdefault("on_report", lambda p, m, e: self.reports.append((p, m, e)))
        return Processor(
            self.store, self.publisher, clock=self.clock, sleep=self.clock.sleep, **kwargs
        )

    def enqueue_message(self, message_id: str, provider_id: str = GRAPH, **payload: Any) -> Job:
        job = Job(
            kind="graph_message", provider_id=provider_id,
            payload={"message_id": message_id, **payload},
            unique_key=f"graph:{provider_id}:{message_id}", available_at=self.clock(),
            created_at=self.clock(),
        )
        assert self.store.enqueue_job(job)
        return job

    def enqueue(self, kind: str, provider_id: str, **payload: Any) -> Job:
        job = Job(
            kind=kind, provider_id=provider_id, payload=payload,  # type: ignore[arg-type]
            available_at=self.clock(), created_at=self.clock(),
        )
        assert self.store.enqueue_job(job)
        return job

    def advance(self, seconds: float) -> None:
        self.clock.now += timedelta(seconds=seconds)

    def inbound(self) -> list[InboundEmailReceived]:
        return [e for e in self.publisher.events if isinstance(e, InboundEmailReceived)]

    def jobs(self, status: str | None = None) -> list[Job]:
        jobs: list[Job] = self.store.list_jobs(status=status)
        return jobs


@pytest.fixture(params=["memory", "sqlite"])
def env(
    request: pytest.FixtureRequest, clock: Any, tmp_path: Path, provider_kind: str
) -> Iterator[Env]:
    store: Any = (
        InMemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "state.db")
    )
    yield Env(clock, store, provider_kind)
    if hasattr(store, "close"):
        store.close()


# ---------------------------------------------------------------------------- happy path, dedupe


def test_message_job_publishes_one_complete_event_and_marks_processed(env: Env) -> None:
    env.graph.add("m1")
    env.enqueue_message("m1")
    assert env.processor().run_pending() == 1
    (event,) = env.inbound()
    assert event.event_id == event_id_for(GRAPH, "m1")
    assert event.email_data.complete is True
    assert event.tenant_id == "t1"
    assert event.provider_id == GRAPH
    assert env.graph.marked == ["m1"]
    assert env.store.count_jobs() == 0
    assert env.store.published_state(GRAPH, "id:m1") == "complete"
    assert env.store.published_state(GRAPH, "mid:<m1@example.com>") == "complete"


def test_duplicated_jobs_publish_exactly_once(env: Env) -> None:
    env.graph.add("m1")
    processor = env.processor()
    for _ in range(3):
        env.enqueue_message("m1")  # a redelivered notification after the first one ran
        processor.run_pending()
    # a catch-up sync sees the same message again
    env.graph.changes = ["m1"]
    env.enqueue("sync", GRAPH, reason="test")
    processor.run_pending()
    assert len(env.inbound()) == 1
    assert env.graph.count("get", "m1") == 1  # duplicates are skipped before fetching
    assert env.store.count_jobs() == 0


def test_unique_key_coalesces_pending_duplicates(env: Env) -> None:
    env.graph.add("m1")
    env.enqueue_message("m1")
    duplicate = Job(kind="graph_message", provider_id=GRAPH, payload={"message_id": "m1"},
                    unique_key=f"graph:{GRAPH}:m1")
    assert env.store.enqueue_job(duplicate) is False
    assert env.processor().run_pending() == 1
    assert len(env.inbound()) == 1


def test_two_processors_racing_on_one_message_publish_once(env: Env) -> None:
    env.graph.add("m1")
    processors = [env.processor(worker_id=f"w{i}") for i in range(6)]
    barrier = threading.Barrier(len(processors))
    results: list[str] = []
    lock = threading.Lock()

    def race(processor: Processor) -> None:
        config = env.store.get_provider(GRAPH)
        assert config is not None
        adapter = processor.adapter_for(config)
        barrier.wait(timeout=10)
        result = processor.process_message(adapter, config, "m1")
        with lock:
            results.append(result.status)

    threads = [threading.Thread(target=race, args=(p,)) for p in processors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results.count("published") == 1
    assert set(results) <= {"published", "duplicate", "retry"}
    assert len(env.inbound()) == 1


def test_busy_claim_retries_the_job_soon(env: Env) -> None:
    env.graph.add("m1")
    env.store.claim_keys(GRAPH, ["id:m1"], "other-worker", env.clock() + timedelta(minutes=5),
                         env.clock())
    job = env.enqueue_message("m1")
    env.processor(backoff_base=7).run_pending()
    (pending,) = env.jobs("pending")
    assert pending.id == job.id
    assert pending.last_error == "message is busy"
    assert pending.available_at == env.clock() + timedelta(seconds=7)
    assert env.inbound() == []
    assert env.graph.count("get", "m1") == 0
    env.store.release_keys(GRAPH, ["id:m1"], "other-worker")
    env.advance(7)
    env.processor().run_pending()
    assert len(env.inbound()) == 1


def test_message_id_dedupes_across_provider_ids(env: Env) -> None:
    env.graph.add("m1", rfc_id="<same@example.com>")
    env.graph.add("m2", rfc_id="<same@example.com>")  # re-uploaded copy, new provider id
    env.enqueue_message("m1")
    env.enqueue_message("m2")
    env.processor().run_pending()
    (event,) = env.inbound()
    other = "m2" if event.email_data.id == "m1" else "m1"
    assert env.store.published_state(GRAPH, f"id:{other}") == "complete"
    assert sorted(env.graph.marked) == ["m1", "m2"]
    env.enqueue_message(other)
    env.processor().run_pending()
    assert len(env.inbound()) == 1
    assert env.graph.count("get", other) == 1


def test_message_without_message_id_is_deduped_by_provider_id(env: Env) -> None:
    env.graph.add("m1", rfc_id="")
    env.enqueue_message("m1")
    env.processor().run_pending()
    env.enqueue_message("m1")
    env.processor().run_pending()
    assert len(env.inbound()) == 1


# ---------------------------------------------------------------------------- publisher failures


def test_publisher_failing_then_recovering_loses_nothing_and_never_falls_back(env: Env) -> None:
    env.graph.add("m1")
    env.publisher.fail_next(4)
    env.enqueue_message("m1")
    processor = env.processor(max_attempts=2, backoff_base=5)
    for expected_delay in (5, 10, 20, 40):
        processor.run_pending()
        (job,) = env.jobs("pending")
        assert job.available_at == env.clock() + timedelta(seconds=expected_delay)
        assert "publish failed" in (job.last_error or "")
        assert env.store.published_state(GRAPH, "id:m1") is None  # claims were released
        env.advance(expected_delay)
    processor.run_pending()
    (event,) = env.inbound()
    assert event.email_data.complete is True  # publisher failures never lead to the minimal
    assert env.publisher.attempts == 5
    assert env.store.count_jobs() == 0


# ---------------------------------------------------------------------------- fetch failures


def test_transient_fetch_errors_then_success(env: Env) -> None:
    env.graph.add("m1")
    env.graph.fail("get", "m1", ThrottledError("throttled", status=429, retry_after=42),
                   ProviderUnavailableError("down", status=503))
    env.enqueue_message("m1")
    processor = env.processor(max_attempts=5, backoff_base=5)
    processor.run_pending()
    (job,) = env.jobs("pending")
    assert job.available_at == env.clock() + timedelta(seconds=42)  # Retry-After respected
    env.advance(42)
    processor.run_pending()
    (job,) = env.jobs("pending")
    assert job.available_at == env.clock() + timedelta(seconds=10)  # second failure: 5 * 2
    env.advance(10)
    processor.run_pending()
    (event,) = env.inbound()
    assert event.email_data.complete
    assert env.graph.count("get", "m1") == 3
    assert env.store.get_meta(GRAPH, "msg-failures:m1") is None  # counter cleared on success


def test_minimal_fallback_after_max_attempts_then_complete_event(env: Env) -> None:
    env.graph.add("m1")
    failures = [ProviderUnavailableError("down", status=503) for _ in range(4)]
    env.graph.fail("get", "m1", *failures)
    env.enqueue_message("m1", received_hint="2026-01-01T08:30:00Z")
    processor = env.processor(max_attempts=3, backoff_base=1, backoff_max=100)
    for _ in range(3):
        processor.run_pending()
        env.advance(100)
    # the third failure published the minimal event; the graph job is done, a retry job waits
    (minimal,) = env.inbound()
    assert minimal.email_data.complete is False
    assert minimal.event_id == event_id_for(GRAPH, "m1", complete=False)
    assert minimal.email_data.from_.email == ""
    assert minimal.email_data.body.text == ""
    assert minimal.email_data.received_at.isoformat() == "2026-01-01T08:30:00+00:00"
    assert minimal.email_data.mailbox == "support@contoso.com"
    (retry,) = env.jobs()
    assert retry.kind == "message_retry"
    assert retry.payload["message_id"] == "m1"
    # a duplicate notification meanwhile neither refetches nor republishes
    env.enqueue_message("m1")
    env.advance(1)
    processor.run_pending()
    assert len(env.inbound()) == 1
    # the retry job fails once more (no second minimal), then gets the details
    for _ in range(3):
        env.advance(1000)
        processor.run_pending()
    events = env.inbound()
    assert [e.email_data.complete for e in events] == [False, True]
    assert events[1].event_id == event_id_for(GRAPH, "m1")
    assert events[0].event_id != events[1].event_id
    assert env.store.published_state(GRAPH, "id:m1") == "complete"
    assert env.store.count_jobs() == 0


def test_unknown_error_counts_as_failure_and_keeps_secrets_out_of_the_job(env: Env) -> None:
    env.graph.add("m1")
    env.graph.fail("get", "m1", RuntimeError("Authorization: Bearer secret-token-123"))
    env.enqueue_message("m1")
    env.processor().run_pending()
    (job,) = env.jobs("pending")
    assert job.last_error == "RuntimeError"
    assert env.store.get_meta(GRAPH, "msg-failures:m1") == "1"


def test_deleted_message_is_reported_without_an_event(env: Env) -> None:
    env.enqueue_message("gone")
    env.processor().run_pending()
    assert env.inbound() == []
    assert env.store.count_jobs() == 0
    ((pid, mid, error),) = env.reports
    assert (pid, mid) == (GRAPH, "gone")
    assert isinstance(error, NotFoundError)


def test_permanent_error_buries_and_reports(env: Env) -> None:
    env.graph.add("m1")
    env.graph.fail("get", "m1", PermanentMessageError("cannot parse"))
    env.enqueue_message("m1")
    env.processor().run_pending()
    (dead,) = env.jobs("dead")
    assert "cannot parse" in (dead.last_error or "")
    ((pid, mid, error),) = env.reports
    assert (pid, mid) == (GRAPH, "m1")
    assert isinstance(error, PermanentMessageError)
    # a later notification for the poison message is skipped without fetching
    env.enqueue_message("m1")
    env.processor().run_pending()
    assert env.graph.count("get", "m1") == 1
    assert env.inbound() == []


def test_retry_cap_buries_poison_message_without_blocking_the_mailbox(env: Env) -> None:
    env.graph.add("poison")
    env.graph.add("m2")
    env.graph.fail_always("get", "poison", ProviderUnavailableError("boom", status=500))
    env.enqueue_message("poison")
    processor = env.processor(max_attempts=2, retry_cap=4, backoff_base=1, backoff_max=10)
    processor.run_pending()
    env.enqueue_message("m2")  # arrives while the poison message is being retried
    for _ in range(10):
        env.advance(1000)
        processor.run_pending()
    by_id = {(e.email_data.id, e.email_data.complete) for e in env.inbound()}
    assert by_id == {("poison", False), ("m2", True)}
    assert env.graph.count("get", "poison") == 5  # retry_cap + the one that gave up
    (dead,) = env.jobs("dead")
    assert dead.kind == "message_retry"
    assert "retry cap exceeded" in (dead.last_error or "")
    assert [(p, m) for p, m, _ in env.reports] == [(GRAPH, "poison")]
    assert env.jobs("pending") == []


# ---------------------------------------------------------------------------- mark processed


def test_mark_processed_failure_is_retried_without_republishing(env: Env) -> None:
    env.graph.add("m1")
    env.graph.fail("mark", "m1", ProviderUnavailableError("down", status=503),
                   BadRequestError("nope", status=400))
    env.enqueue_message("m1")
    processor = env.processor(backoff_base=5)
    processor.run_pending()
    (job,) = env.jobs("pending")
    assert job.kind == "message_retry"
    assert job.payload["mark_only"] is True
    assert len(env.inbound()) == 1
    for _ in range(2):
        env.advance(100)
        processor.run_pending()
    assert env.graph.count("mark", "m1") == 3
    assert env.graph.marked == ["m1"]
    assert len(env.inbound()) == 1
    assert env.graph.count("get", "m1") == 1
    assert env.store.count_jobs() == 0


# ---------------------------------------------------------------------------- auth failures


def test_auth_failure_publishes_one_event_and_parks_jobs(env: Env) -> None:
    env.graph.add("m1")
    env.graph.add("m2")
    env.graph.fail("get", "m1", AuthExpiredError("grant revoked", code="invalid_grant"))
    env.enqueue_message("m1")
    processor = env.processor(backoff_max=3600)
    processor.run_pending()
    env.enqueue_message("m2")  # arrives after the failure: it waits too
    processor.run_pending()
    config = env.store.get_provider(GRAPH)
    assert config is not None
    assert config.needs_consent
    assert config.auth_error_code == "invalid_grant"
    (auth,) = [e for e in env.publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert auth.event_id == auth_failure_event_id(GRAPH, 1)
    assert auth.error_code == "invalid_grant"
    assert auth.mailbox == "support@contoso.com"
    assert "csecret-value" not in auth.model_dump_json()
    # both jobs wait an hour; running again and again does not loop or republish
    jobs = env.jobs("pending")
    assert len(jobs) == 2
    assert all(j.available_at >= env.clock() + timedelta(seconds=3600) for j in jobs)
    for _ in range(3):
        env.advance(3600)
        processor.run_pending()
    assert len(env.publisher.events) == 1
    assert env.inbound() == []
    assert env.graph.count("get", "m2") == 0  # nothing fetched while consent is missing
    # reconnected: the parked jobs deliver
    env.store.update_provider(GRAPH, {"needs_consent": False, "auth_error_code": None})
    env.advance(3600)
    processor.run_pending()
    assert sorted(e.email_data.id for e in env.inbound()) == ["m1", "m2"]
    # a new failure after reconnecting is a new occurrence: one more event with a new id
    env.graph.add("m3")
    env.graph.fail("get", "m3", AuthExpiredError("again", code="invalid_grant"))
    env.enqueue_message("m3")
    processor.run_pending()
    auths = [e for e in env.publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert [a.event_id for a in auths] == [
        auth_failure_event_id(GRAPH, 1), auth_failure_event_id(GRAPH, 2)
    ]


def test_auth_event_publish_failure_is_retried_by_parked_jobs(env: Env) -> None:
    env.graph.fail("get", "m1", AuthExpiredError("revoked", code="invalid_grant"))
    env.enqueue_message("m1")
    env.publisher.fail_next(1)
    processor = env.processor(backoff_max=60)
    processor.run_pending()
    assert env.publisher.events == []
    env.advance(60)
    processor.run_pending()
    env.advance(60)
    processor.run_pending()
    auths = [e for e in env.publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert [a.event_id for a in auths] == [auth_failure_event_id(GRAPH, 1)]


def test_needs_consent_set_elsewhere_still_reports_once(env: Env) -> None:
    env.store.update_provider(GMAIL, {"needs_consent": True, "auth_error_code": "invalid_grant"})
    env.enqueue("gmail_history", GMAIL, history_id="150")
    processor = env.processor()
    processor.run_pending()
    env.advance(4000)
    processor.run_pending()
    (auth,) = env.publisher.events
    assert isinstance(auth, EmailProviderAuthFailed)
    assert auth.provider == "google"
    assert env.gmail.count("fetch_changes") == 0
    assert len(env.jobs("pending")) == 1


# ---------------------------------------------------------------------------- paused, bad input


def test_inactive_provider_jobs_wait_and_are_not_dropped(env: Env) -> None:
    env.graph.add("m1")
    env.store.update_provider(GRAPH, {"active": False})
    env.enqueue_message("m1")
    processor = env.processor(paused_retry_seconds=300)
    processor.run_pending()
    (job,) = env.jobs("pending")
    assert job.available_at == env.clock() + timedelta(seconds=300)
    assert env.graph.count("get", "m1") == 0
    env.store.update_provider(GRAPH, {"active": True})
    env.advance(300)
    processor.run_pending()
    assert len(env.inbound()) == 1


def test_bad_jobs(env: Env) -> None:
    env.enqueue("graph_message", GRAPH)  # no message_id
    env.enqueue("graph_message", "no-such-provider", message_id="x")
    env.enqueue("lifecycle", GRAPH, event="somethingNew", subscription_id="sub-1")
    env.graph.add("m1")
    env.enqueue_message("m1", received_hint="not a date")
    assert env.processor().run_pending() == 4
    (dead,) = env.jobs("dead")
    assert dead.last_error == "payload has no message_id"
    assert env.jobs("pending") == []
    assert len(env.inbound()) == 1


def test_adapter_cached_and_rebuilt_when_config_changes(env: Env) -> None:
    env.graph.add("m1")
    env.graph.add("m2")
    processor = env.processor()
    env.enqueue_message("m1")
    processor.run_pending()
    env.enqueue_message("m2")
    processor.run_pending()
    assert env.graph.adapters_built == 1
    env.store.update_provider(GRAPH, {"client_id": "cid-2"})  # any config change
    env.graph.add("m3")
    env.enqueue_message("m3")
    processor.run_pending()
    assert env.graph.adapters_built == 2


def test_invalid_processor_settings() -> None:
    with pytest.raises(Exception, match="must be >= 1"):
        Processor(InMemoryStore(), InMemoryPublisher(), max_attempts=0)


# ---------------------------------------------------------------------------- cursors


def test_gmail_cursor_advances_only_after_everything_is_published(env: Env) -> None:
    env.gmail.add("a")
    env.gmail.add("b")
    env.gmail.changes = ["a", "b"]
    env.gmail.next_cursor = 200
    env.gmail.fail("get", "b", ProviderUnavailableError("down", status=503))
    env.enqueue("gmail_history", GMAIL, history_id="150")
    processor = env.processor(max_attempts=5, backoff_base=5)
    processor.run_pending()
    assert [e.email_data.id for e in env.inbound()] == ["a"]
    assert env.gmail.count("commit") == 0
    assert env.gmail.cursor == 100
    (job,) = env.jobs("pending")
    assert job.kind == "gmail_history"
    assert "not yet delivered" in (job.last_error or "")
    env.advance(5)
    processor.run_pending()
    assert [e.email_data.id for e in env.inbound()] == ["a", "b"]  # a is not republished
    assert env.gmail.cursor == 200
    assert env.gmail.commits == [200]
    assert env.gmail.count("get", "a") == 1
    assert env.store.count_jobs() == 0


def test_gmail_stale_push_is_done_without_reading_history(env: Env) -> None:
    env.enqueue("gmail_history", GMAIL, history_id="90")
    env.processor().run_pending()
    assert env.gmail.count("fetch_changes") == 0
    assert env.store.count_jobs() == 0


def test_cursor_job_waits_for_the_cursor_lock(env: Env) -> None:
    now = env.clock()
    env.store.acquire_lock(f"cursor:{GMAIL}", "other", until=now + timedelta(minutes=5), now=now)
    env.enqueue("gmail_history", GMAIL, history_id="150")
    env.processor(backoff_base=5).run_pending()
    (job,) = env.jobs("pending")
    assert "cursor is busy" in (job.last_error or "")
    assert env.gmail.count("fetch_changes") == 0
    env.store.release_lock(f"cursor:{GMAIL}", "other")
    env.advance(5)
    env.processor().run_pending()
    assert env.gmail.count("fetch_changes") == 1
    assert env.store.count_jobs() == 0


def test_cursor_compare_and_set_lost_completes_the_job(env: Env) -> None:
    env.gmail.add("a")
    env.gmail.changes = ["a"]
    env.gmail.next_cursor = 200

    def someone_else_moves_the_cursor(message_id: str) -> None:
        env.gmail.cursor = 300

    env.gmail.on_get = someone_else_moves_the_cursor
    env.enqueue("gmail_history", GMAIL, history_id="150")
    env.processor().run_pending()
    assert len(env.inbound()) == 1
    assert env.gmail.cursor == 300
    assert env.gmail.commits == []
    assert env.store.count_jobs() == 0


def test_cursor_fetch_failure_retries_with_retry_after(env: Env) -> None:
    env.gmail.fail("fetch_changes", "*", ThrottledError("quota", status=429, retry_after=30))
    env.enqueue("gmail_history", GMAIL, history_id="150")
    env.processor().run_pending()
    (job,) = env.jobs("pending")
    assert job.available_at == env.clock() + timedelta(seconds=30)
    assert env.store.acquire_lock(f"cursor:{GMAIL}", "x", until=env.clock(), now=env.clock())


def test_sync_with_minimal_message_still_commits(env: Env) -> None:
    env.graph.changes = ["bad", "ok"]
    env.graph.add("ok")
    env.graph.add("bad")
    env.graph.next_cursor = 7
    env.graph.fail_always("get", "bad", ProviderUnavailableError("down", status=503))
    env.enqueue("sync", GRAPH, reason="missed")
    processor = env.processor(max_attempts=2, backoff_base=1, backoff_max=10)
    processor.run_pending()
    assert env.graph.commits == []
    env.advance(10)
    processor.run_pending()
    assert env.graph.commits == [7]  # bad got its minimal event; a message_retry job owns it
    assert {(e.email_data.id, e.email_data.complete) for e in env.inbound()} == {
        ("ok", True), ("bad", False)
    }
    (retry,) = env.jobs("pending")
    assert retry.kind == "message_retry"


def test_auth_failure_during_sync_releases_the_cursor_lock(env: Env) -> None:
    env.gmail.fail("fetch_changes", "*", AuthExpiredError("revoked", code="invalid_grant"))
    env.enqueue("sync", GMAIL, reason="periodic")
    env.processor().run_pending()
    assert env.store.acquire_lock(f"cursor:{GMAIL}", "x", until=env.clock(), now=env.clock())
    assert isinstance(env.publisher.events[0], EmailProviderAuthFailed)


# ---------------------------------------------------------------------------- lifecycle


def _sync_jobs(env: Env, provider_id: str) -> list[Job]:
    return [j for j in env.jobs("pending") if j.kind == "sync" and j.provider_id == provider_id]


def test_reauthorization_required_reauthorizes_and_catches_up(env: Env) -> None:
    env.enqueue("lifecycle", GRAPH, event="reauthorization_required", subscription_id="sub-1")
    env.processor().run_pending(limit=1)
    assert env.graph.count("reauthorize") == 1
    assert env.graph.count("renew") == 0
    (sync,) = _sync_jobs(env, GRAPH)
    assert sync.unique_key == f"sync:{GRAPH}"


def test_reauthorization_falls_back_to_renew(env: Env) -> None:
    env.factory.graph_reauthorize = False
    env.enqueue("lifecycle", GRAPH, event="reauthorization_required", subscription_id="sub-1")
    env.processor().run_pending(limit=1)
    assert env.graph.count("renew") == 1


def test_subscription_removed_registers_again_then_syncs(env: Env) -> None:
    env.enqueue("lifecycle", GRAPH, event="subscription_removed", subscription_id="sub-1")
    env.processor().run_pending(limit=1)
    assert env.graph.count("register") == 1
    assert len(_sync_jobs(env, GRAPH)) == 1


@pytest.mark.parametrize(
    ("stored", "call"),
    [("reauthorizationRequired", "reauthorize"), ("subscriptionRemoved", "register")],
)
def test_a_lifecycle_job_stored_under_graphs_own_name_still_runs(
    clock: Any, stored: str, call: str
) -> None:
    # Jobs stored before the names were provider-neutral: the Graph spec maps its names (so
    # this one is about Graph only).
    env = Env(clock, InMemoryStore(), "microsoft")
    env.enqueue("lifecycle", GRAPH, event=stored, subscription_id="sub-1")
    env.processor().run_pending(limit=1)
    assert env.graph.count(call) == 1
    assert len(_sync_jobs(env, GRAPH)) == 1


def test_missed_enqueues_one_sync(env: Env) -> None:
    for _ in range(3):
        env.enqueue("lifecycle", GRAPH, event="missed", subscription_id="sub-old")
    env.processor().run_pending(limit=3)
    assert len(_sync_jobs(env, GRAPH)) == 1  # coalesced by its unique key
    assert env.graph.count("register") == 0


def test_lifecycle_for_an_old_subscription_is_ignored(env: Env) -> None:
    env.enqueue("lifecycle", GRAPH, event="subscription_removed", subscription_id="sub-old")
    env.processor().run_pending()
    assert env.graph.count("register") == 0
    assert env.store.count_jobs() == 0


def test_lifecycle_failure_retries_then_gives_up(env: Env) -> None:
    env.graph.fail_always("register", "*", SubscriptionError("validation failed", status=400))
    env.enqueue("lifecycle", GRAPH, event="subscription_removed", subscription_id="sub-1")
    processor = env.processor(retry_cap=3, backoff_base=1, backoff_max=10)
    for _ in range(5):
        processor.run_pending(limit=1)
        env.advance(10)
    assert env.graph.count("register") == 3
    (dead,) = env.jobs("dead")
    assert dead.kind == "lifecycle"
    assert [(p, m) for p, m, _ in env.reports] == [(GRAPH, None)]
    assert env.graph.count("fetch_changes") == 1  # still caught up what could be caught up


def test_handle_auth_failure_for_maintenance(env: Env) -> None:
    processor = env.processor()
    error = AuthExpiredError("revoked", code="invalid_grant")
    processor.handle_auth_failure(env.gmail_config, error)
    processor.handle_auth_failure(env.gmail_config, error)
    config = env.store.get_provider(GMAIL)
    assert config is not None
    assert config.needs_consent
    (auth,) = env.publisher.events
    assert auth.event_id == auth_failure_event_id(GMAIL, 1)
