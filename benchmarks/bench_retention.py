"""The store's size over a long run, with retention on and off (side by side).

    python benchmarks/bench_retention.py [--days 120] [--per-day 50]

A simulated clock runs the real pipeline (``Processor`` on a ``SqliteStore`` file, the
``Maintenance`` sweep's retention once a simulated day) over many days: every day ``per_day`` new
messages are pushed (a job each), a share of them pushed twice (a duplicate), a share given up on
(the fetch fails permanently: a dead job and a give-up mark), and a share whose "mark processed"
fails once (a pending mark and its retry job). Once a day the store is sampled: rows per table
and the bytes the database uses (pages in use, without the free list that SQLite reuses). With
the default :class:`~mailparity.maintenance.RetentionPolicy` the size levels off once the oldest
state passes its age (45 days for dedupe keys and per-message metadata, 30 for dead jobs); with
retention off (the baseline) it grows with every message.

The store's own timestamps (``meta.updated_at``) follow the simulated clock too. No network: the
adapter is a stand-in that builds each message in memory. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mailparity.adapter import EmailProviderAdapter, SyncBatch
from mailparity.errors import PermanentMessageError, ProviderUnavailableError
from mailparity.maintenance import Maintenance, RetentionPolicy
from mailparity.models import (
    ConnectionTestResult,
    EmailAddress,
    EmailBody,
    EmailMessage,
    Job,
    MicrosoftProviderConfig,
    WebhookSubscription,
)
from mailparity.processing import Processor
from mailparity.publishers import InMemoryPublisher
from mailparity.stores import _common, sqlite

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DUPLICATE_EVERY = 10  # every 10th message is pushed twice
POISON_EVERY = 50  # every 50th message cannot be fetched (given up on: a dead job)
MARK_FAIL_EVERY = 25  # every 25th message's "mark processed" fails once


class SimClock:
    """Simulated UTC time; sleeping moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class StandInAdapter(EmailProviderAdapter[MicrosoftProviderConfig]):
    """Builds messages in memory; fails where the scenario says so."""

    provider = "microsoft"
    marked_once: set[str] = set()

    def _refresh(self, tokens: Any) -> Any:  # pragma: no cover - never called
        raise NotImplementedError

    def register_webhook_subscription(self) -> WebhookSubscription:
        return WebhookSubscription(id="sub", expires_at=self.clock() + timedelta(days=2))

    def renew_webhook_subscription(self) -> WebhookSubscription:
        return self.register_webhook_subscription()

    def delete_webhook_subscription(self) -> None:
        return None

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        return []

    def get_message_details(self, message_id: str) -> EmailMessage:
        number = int(message_id.rsplit("-", 1)[1])
        if number % POISON_EVERY == 0:
            raise PermanentMessageError("cannot be read")
        return EmailMessage(
            id=message_id, provider="microsoft", provider_id=self.config.provider_id,
            tenant=self.config.tenant, mailbox=self.config.mailbox, received_at=self.clock(),
            subject=f"message {number}", from_=EmailAddress(email="customer@example.com"),
            to=[EmailAddress(email=self.config.mailbox)], body=EmailBody(text="hello"),
            message_id=f"<{message_id}@example.com>",
        )

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        return b""

    def mark_message_processed(self, message_id: str) -> None:
        number = int(message_id.rsplit("-", 1)[1])
        if number % MARK_FAIL_EVERY == 0 and message_id not in self.marked_once:
            self.marked_once.add(message_id)
            raise ProviderUnavailableError("try again")

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(success=True, mailbox=self.config.mailbox)

    def fetch_changes(self) -> SyncBatch:
        return SyncBatch([], None)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        return True


def _factory(config: Any, **kwargs: Any) -> StandInAdapter:
    return StandInAdapter(config, **kwargs)


def _size(path: Path) -> dict[str, int]:
    """Rows per table and the bytes in use (pages minus the free list)."""
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        sizes = {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]  # noqa: S608
                 for table in tables}
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    sizes["bytes_used"] = (pages - free) * page_size
    sizes["bytes_file"] = pages * page_size
    return sizes


def simulate(
    days: int, per_day: int, *, retention: RetentionPolicy | None, folder: Path,
    on_day: Callable[[int, dict[str, int]], None] | None = None,
) -> list[dict[str, int]]:
    """Run ``days`` simulated days; the size sampled after each day's sweep, one dict a day."""
    clock = SimClock(START)
    path = folder / ("retention-on.sqlite3" if retention else "retention-off.sqlite3")
    # The store's own timestamps (meta.updated_at) follow the simulated clock.
    original = sqlite.utc_now_micros
    sqlite.utc_now_micros = lambda: _common.to_micros(clock())  # type: ignore[assignment]
    StandInAdapter.marked_once = set()
    store = sqlite.SqliteStore(path)
    try:
        config = MicrosoftProviderConfig(
            provider_id="bench", tenant="t", mailbox="support@example.com",
            webhook_subscription_id="sub", webhook_expires_at=START + timedelta(days=3650),
        )
        store.save_provider(config)
        publisher = InMemoryPublisher()
        processor = Processor(store, publisher, clock=clock, sleep=clock.sleep,
                              adapter_factory=_factory, backoff_base=60.0, backoff_max=3600.0)
        maintenance = Maintenance(store, publisher, clock=clock, sleep=clock.sleep,
                                  adapter_factory=_factory, processor=processor,
                                  retention=retention)
        samples: list[dict[str, int]] = []
        number = 0
        for day in range(days):
            day_start = START + timedelta(days=day)
            for i in range(per_day):
                number += 1
                clock.now = day_start + timedelta(seconds=i * 86_000 / per_day)
                _push(store, number, clock.now)
                if number % DUPLICATE_EVERY == 0:
                    _push(store, number, clock.now, again=True)
                processor.run_pending()
                publisher.clear()  # the host's bus keeps the events, not this benchmark
            clock.now = day_start + timedelta(hours=23, minutes=59)
            processor.run_pending()  # retries that came due during the day
            maintenance.prune()
            sample = _size(path)
            samples.append(sample)
            if on_day is not None:
                on_day(day, sample)
        return samples
    finally:
        store.close()
        sqlite.utc_now_micros = original  # type: ignore[assignment]


def _push(store: Any, number: int, now: datetime, *, again: bool = False) -> None:
    message_id = f"msg-{number}"
    store.enqueue_job(Job(
        kind="message", provider_id="bench",
        payload={"message_id": message_id, "received_hint": now.isoformat()},
        # A redelivery after the first job ran: no pending job to coalesce with.
        unique_key=None if again else f"bench:{message_id}",
        available_at=now, created_at=now,
    ))


def _row(day: int, on: dict[str, int], off: dict[str, int]) -> str:
    def rows(sample: dict[str, int]) -> int:
        return sum(v for k, v in sample.items() if not k.startswith("bytes_"))

    return (f"| {day} | {rows(on):,} | {on['bytes_used'] / 1024:,.0f} | {rows(off):,} | "
            f"{off['bytes_used'] / 1024:,.0f} | {on.get('dedupe', 0):,} / "
            f"{off.get('dedupe', 0):,} | {on.get('jobs', 0):,} / {off.get('jobs', 0):,} | "
            f"{on.get('meta', 0):,} / {off.get('meta', 0):,} |")


def report(days: int, per_day: int, *, every: int = 10) -> str:
    """Both sides, then the markdown table of the samples (every ``every`` days)."""
    # Sizes do not depend on the disk: on tmpfs, where there is one, the fsync of every commit
    # (synchronous=FULL) costs nothing and the run is I/O-free.
    shm = Path("/dev/shm")  # noqa: S108
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        folder = Path(tmp)
        print(f"retention: {days} simulated days x {per_day} messages, retention on ...",
              flush=True)
        on = simulate(days, per_day, retention=RetentionPolicy(), folder=folder)
        print("retention: the same with retention off ...", flush=True)
        off = simulate(days, per_day, retention=None, folder=folder)
    shown = sorted({*range(every - 1, days, every), days - 1})
    lines = [
        f"Store size over {days} simulated days, {per_day} messages a day (every "
        f"{DUPLICATE_EVERY}th pushed twice, every {POISON_EVERY}th given up on, every "
        f"{MARK_FAIL_EVERY}th with a failed mark), `SqliteStore`, default `RetentionPolicy` "
        "(pruned once a day) against retention off:",
        "",
        "| day | rows: retention on | KB used: on | rows: off | KB used: off | dedupe rows "
        "(on / off) | job rows (on / off) | meta rows (on / off) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(day + 1, on[day], off[day]) for day in shown]
    # Flat: the last fifth of the run against the day the oldest state passed its age.
    settle = min(days - 1, 46)
    grow_on = _rows(on[-1]) / max(_rows(on[settle]), 1) if days > settle + 1 else None
    grow_off = _rows(off[-1]) / max(_rows(off[settle]), 1) if days > settle + 1 else None
    if grow_on is not None and grow_off is not None:
        lines += ["", f"Rows at day {days} over day {settle + 1}: {grow_on:.2f} x with retention"
                      f" on ({'flat' if grow_on <= 1.05 else '**GROWING**'}: goal <= 1.05 x),"
                      f" {grow_off:.2f} x with it off."]
    return "\n".join(lines)


def _rows(sample: dict[str, int]) -> int:
    return sum(v for k, v in sample.items() if not k.startswith("bytes_"))


def section() -> str:
    """The markdown section ``benchmarks/run.py`` appends to ``docs/benchmarks.md``."""
    return "### Store size with retention (simulated clock)\n\n" + report(120, 50)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--per-day", type=int, default=50)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the scenario's give-ups are logged as errors
    print(report(args.days, args.per_day))
    return 0


if __name__ == "__main__":
    sys.exit(main())
