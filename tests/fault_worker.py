"""The worker process that ``test_fault_injection.py`` kills with SIGKILL mid-job.

Run as a script, it is one real pipeline worker: a :class:`~mailparity.processing.Processor` on the
scenario's SqliteStore file, with the real adapters (the provider fakes are served over HTTP on
127.0.0.1, their URLs are in the stored configs), and a publisher that appends each event to the
scenario's JSONL file and then, at the first INBOUND_EMAIL_RECEIVED, prints ``published
<event id>`` on stdout and blocks: the parent kills the process right there, after the publish
and before any bookkeeping (``mark_published``, ``commit_cursor``, ``complete_job``).

Its clock is a fake one starting at the parent's fake time (given on the command line), so leases
and token expiries agree with the parent's.

    python fault_worker.py STATE_DB EVENTS_JSONL NOW_ISO WORKER_ID
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: make the test helpers importable
    sys.path.insert(0, str(HERE))

from mailparity.models import InboundEmailReceived, MailParityEvent  # noqa: E402
from mailparity.processing import Processor  # noqa: E402
from mailparity.publishers import JsonlFilePublisher  # noqa: E402
from mailparity.stores.sqlite import SqliteStore  # noqa: E402

#: The job lease of this worker (the parent waits it out on its fake clock).
LEASE_SECONDS = 120.0


class _Clock:
    """A fake UTC clock (sleep advances it), so HTTP retries never wait for real."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class PublishThenHang:
    """Append the event durably, announce it, then hang until the parent's SIGKILL."""

    def __init__(self, path: str) -> None:
        self.inner = JsonlFilePublisher(path)

    def publish(self, event: MailParityEvent) -> None:
        self.inner.publish(event)
        if isinstance(event, InboundEmailReceived):
            sys.stdout.write(f"published {event.event_id}\n")
            sys.stdout.flush()
            threading.Event().wait()  # never set: only SIGKILL ends this process


def main(argv: list[str]) -> int:
    db_path, events_path, now_iso, worker_id = argv
    clock = _Clock(datetime.fromisoformat(now_iso))
    store = SqliteStore(db_path)
    processor = Processor(
        store,
        PublishThenHang(events_path),
        clock=clock,
        sleep=clock.sleep,
        worker_id=worker_id,
        lease_seconds=LEASE_SECONDS,
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    ran = processor.run_pending()
    # Reaching this line means no message was published: the parent fails the test on it.
    sys.stdout.write(f"finished {ran}\n")
    sys.stdout.flush()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
