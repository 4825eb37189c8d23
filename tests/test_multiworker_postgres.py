"""Four worker PROCESSES on one PostgreSQL database: 2,000 jobs, 50 mailboxes, exactly once.

Each process runs the real Worker/Processor on its own SqlStore engine (``FOR UPDATE SKIP
LOCKED`` claims) and appends to one shared JSONL events file. Every mailbox starts with an
expired access token and receives duplicate notifications, so the processes race both on the
same messages (dedupe keys) and on the same token refresh (the adapter's single-flight lock).

Needs ``MAILPARITY_TEST_POSTGRES_URL`` (``scripts/services.sh run ...``): skipped without it,
failed without it under CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from mailparity.models import (
    GmailProviderConfig,
    Job,
    MicrosoftProviderConfig,
    OAuthTokens,
    event_id_for,
)
from mailparity.stores.sql import SqlStore, upgrade_database
from multiworker_helpers import create_refresh_table, make_engine, refresh_counts
from store_factories import create_postgres_database, drop_postgres_database, postgres_admin_url

pytestmark = pytest.mark.postgres

HERE = Path(__file__).resolve().parent
WORKERS = 4
THREADS = 4
MAILBOXES = 50
JOBS_PER_MAILBOX = 40
DUPLICATES_PER_MAILBOX = 4  # notifications repeated for a message already in the list
TIMEOUT = 90.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_postgres_database(postgres_admin_url())
    try:
        yield url
    finally:
        drop_postgres_database(url)


class Workers:
    """The worker processes; always terminated, then killed, in teardown."""

    def __init__(self, url: str, events: Path, logs: Path) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), str(HERE.parent / "src"), env.get("PYTHONPATH", "")]
        )
        for index in range(WORKERS):
            log = logs / f"worker-{index}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, str(HERE / "multiworker_helpers.py"), url, str(events),
                         f"w{index}", str(THREADS)],
                        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in self.logs)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                pytest.fail(f"a worker exited early ({process.returncode}):\n{self.output()}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all("ready" in p.read_text(errors="replace") for p in self.logs):
                return
            time.sleep(0.05)
        pytest.fail(f"workers did not start:\n{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # graceful: running jobs finish
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)

    def jobs_ran(self) -> list[int]:
        counts = []
        for log in self.logs:
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if ln.startswith("ran ")]
            counts.append(int(lines[-1].split()[-1]) if lines else -1)
        return counts


def _seed(store: SqlStore) -> tuple[dict[str, list[str]], int]:
    """50 mailboxes with expired tokens and 40 jobs each; returns the distinct ids per mailbox."""
    expired = datetime.now(timezone.utc) - timedelta(minutes=5)
    expected: dict[str, list[str]] = {}
    jobs: list[Job] = []
    distinct = JOBS_PER_MAILBOX - DUPLICATES_PER_MAILBOX
    for m in range(MAILBOXES):
        pid = f"mbx-{m:02d}"
        if m % 2:
            config: MicrosoftProviderConfig | GmailProviderConfig = MicrosoftProviderConfig(
                provider_id=pid, tenant="t", mailbox=f"user{m}@contoso.com")
        else:
            config = GmailProviderConfig(provider_id=pid, tenant="t", mailbox=f"user{m}@gmail.com")
        store.save_provider(config)
        store.save_tokens(pid, OAuthTokens(access_token=SecretStr(f"expired-{pid}"),
                                           refresh_token=SecretStr(f"rt-{pid}"),
                                           expires_at=expired))
        ids = [f"{pid}-msg-{i:03d}" for i in range(distinct)]
        expected[pid] = ids
        # The repeats sit next to their originals, so two workers likely take both at once.
        order = [*ids[:DUPLICATES_PER_MAILBOX], *ids[:DUPLICATES_PER_MAILBOX],
                 *ids[DUPLICATES_PER_MAILBOX:]]
        jobs += [Job(kind="graph_message", provider_id=pid, payload={"message_id": mid})
                 for mid in order]
    # Interleave the mailboxes, as pushes arrive.
    jobs.sort(key=lambda job: (str(job.payload["message_id"])[-3:], job.provider_id))
    assert len(jobs) == MAILBOXES * JOBS_PER_MAILBOX
    return expected, sum(store.enqueue_job(job) for job in jobs)


def test_four_processes_publish_every_message_once_and_refresh_once(
    pg_url: str, tmp_path: Path
) -> None:
    assert upgrade_database(pg_url) >= 1
    engine = make_engine(pg_url, 2)
    create_refresh_table(engine)
    store = SqlStore(engine)
    events_path = tmp_path / "events.jsonl"
    workers = Workers(pg_url, events_path, tmp_path)
    try:
        workers.wait_ready(30)
        expected, stored = _seed(store)
        assert stored == MAILBOXES * JOBS_PER_MAILBOX
        deadline = time.monotonic() + TIMEOUT
        while store.count_jobs() > 0:
            workers.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"jobs left: {store.jobs_summary()}\n{workers.output()}")
            time.sleep(0.1)
    finally:
        workers.stop()

    lines = events_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    by_event_id = Counter(event["eventId"] for event in events)
    repeated = {eid: n for eid, n in by_event_id.items() if n > 1}
    assert repeated == {}, f"published more than once: {list(repeated.items())[:5]}"
    want = {
        event_id_for(pid, mid, complete=True): (pid, mid)
        for pid, ids in expected.items() for mid in ids
    }
    assert set(by_event_id) == set(want)
    assert len(events) == MAILBOXES * (JOBS_PER_MAILBOX - DUPLICATES_PER_MAILBOX)
    for event in events:
        assert (event["providerId"], event["emailData"]["id"]) == want[event["eventId"]]
        assert event["emailData"]["complete"] is True

    # Every expired token was refreshed exactly once, whatever process got there first; the
    # others waited on the lock and used the stored result.
    counts = refresh_counts(engine)
    assert counts == dict.fromkeys(expected, 1), {p: n for p, n in counts.items() if n != 1}
    for pid in expected:
        tokens = store.load_tokens(pid)
        assert tokens is not None
        assert tokens.access_token.get_secret_value().startswith(f"at-{pid}-")
        assert tokens.refresh_token is not None

    # The work was really shared: every process ran jobs, and nothing was buried.
    ran = workers.jobs_ran()
    assert all(n > 0 for n in ran), (ran, workers.output())
    assert sum(ran) >= MAILBOXES * JOBS_PER_MAILBOX
    assert store.count_jobs(status="dead") == 0
    with engine.connect() as conn:
        workers_that_refreshed = conn.execute(
            sa.text("SELECT count(DISTINCT worker) FROM mp_test_token_refreshes")
        ).scalar_one()
    assert workers_that_refreshed >= 1
    store.close()
