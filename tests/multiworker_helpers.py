"""Worker processes for ``test_multiworker_postgres.py``.

Run as a script, this module is ONE worker process: a real :class:`mailparity.worker.Worker` on a
:class:`mailparity.stores.sql.SqlStore` (its own engine, created in this process), publishing to a
shared :class:`~mailparity.publishers.JsonlFilePublisher` file, until SIGTERM. Its adapters are
:class:`CountingAdapter`: process-safe (every message is derived from its id, no shared memory)
and every fetch asks the real :meth:`EmailProviderAdapter.get_access_token`, so token refresh goes
through the real single-flight path with the store's LockStore. Each call of ``_refresh`` (what
would be one request to the token endpoint) is recorded as a row of ``REFRESH_TABLE`` in the same
database, so the test counts refreshes across processes.

    python multiworker_helpers.py URL EVENTS_FILE WORKER_NAME THREADS
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: make fake_adapter importable
    sys.path.insert(0, str(HERE))

from fake_adapter import make_message  # noqa: E402
from mailparity.adapter import EmailProviderAdapter, SyncBatch  # noqa: E402
from mailparity.models import (  # noqa: E402
    ConnectionTestResult,
    EmailMessage,
    OAuthTokens,
    WebhookSubscription,
)

REFRESH_TABLE = "mp_test_token_refreshes"
#: How long a refreshed token lives; the test lasts far less, so one refresh per mailbox is right.
TOKEN_LIFETIME = timedelta(hours=1)
#: The token endpoint's latency: a wide window in which a second refresh would slip in.
REFRESH_LATENCY = 0.05

_metadata = sa.MetaData()
refreshes = sa.Table(
    REFRESH_TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.String(255), nullable=False),
    sa.Column("worker", sa.String(255), nullable=False),
    sa.Column("stale_access_token", sa.String(255), nullable=True),
)


def create_refresh_table(engine: sa.Engine) -> None:
    _metadata.create_all(engine)


def refresh_counts(engine: sa.Engine) -> dict[str, int]:
    stmt = sa.select(refreshes.c.provider_id, sa.func.count()).group_by(refreshes.c.provider_id)
    with engine.connect() as conn:
        return {pid: int(n) for pid, n in conn.execute(stmt)}


class CountingAdapter(EmailProviderAdapter[Any]):
    """A fake adapter whose messages come from their ids and whose refreshes land in the DB."""

    def __init__(self, config: Any, *, engine: sa.Engine, worker: str, **kwargs: Any) -> None:
        self.provider = config.provider
        super().__init__(config, **kwargs)
        self._engine = engine
        self._worker = worker

    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        stale = tokens.access_token.get_secret_value() if tokens is not None else None
        with self._engine.begin() as conn:
            conn.execute(
                refreshes.insert().values(
                    provider_id=self.config.provider_id, worker=self._worker,
                    stale_access_token=stale,
                )
            )
        time.sleep(REFRESH_LATENCY)
        return OAuthTokens(
            access_token=SecretStr(f"at-{self.config.provider_id}-{os.getpid()}-{time.time()}"),
            refresh_token=tokens.refresh_token if tokens is not None else None,
            expires_at=datetime.now(timezone.utc) + TOKEN_LIFETIME,
        )

    def get_message_details(self, message_id: str) -> EmailMessage:
        self.get_access_token()  # what a real fetch does first: refresh when expired
        return make_message(self.config, message_id, subject=f"Subject of {message_id}")

    def register_webhook_subscription(self) -> WebhookSubscription:
        raise NotImplementedError("not used by the multi-worker test")

    def renew_webhook_subscription(self) -> WebhookSubscription:
        raise NotImplementedError("not used by the multi-worker test")

    def delete_webhook_subscription(self) -> None:
        raise NotImplementedError("not used by the multi-worker test")

    def fetch_changes(self) -> SyncBatch:
        raise NotImplementedError("not used by the multi-worker test")

    def commit_cursor(self, batch: SyncBatch) -> bool:
        raise NotImplementedError("not used by the multi-worker test")

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        return [str(notification["id"])]

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        return b""

    def mark_message_processed(self, message_id: str) -> None:
        return None

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(success=True, mailbox=self.config.mailbox)


def make_engine(url: str, threads: int) -> sa.Engine:
    # One connection per worker thread plus the refresh recorder and a spare; lock_timeout makes
    # a wait on a row lock fail loudly instead of hanging the test.
    return sa.create_engine(
        url,
        pool_size=threads + 2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"options": "-c lock_timeout=10000 -c statement_timeout=30000"},
    )


def main(argv: list[str]) -> int:
    url, events, name, threads_text = argv
    threads = int(threads_text)
    logging.basicConfig(level=logging.WARNING, format=f"{name} %(levelname)s %(name)s %(message)s")
    from mailparity.publishers import JsonlFilePublisher
    from mailparity.stores.sql import SqlStore
    from mailparity.worker import Worker

    engine = make_engine(url, threads)  # created here, in the worker process
    store = SqlStore(engine)

    def factory(config: Any, **kwargs: Any) -> CountingAdapter:
        return CountingAdapter(config, engine=engine, worker=name, **kwargs)

    worker = Worker(
        store,
        JsonlFilePublisher(events, fsync=False),
        threads=threads,
        poll_interval=0.05,
        adapter_factory=factory,
        worker_id=name,
        backoff_base=0.1,
        lease_seconds=60,
    )
    print(f"ready {name}", flush=True)
    ran = worker.run()  # until SIGTERM
    print(f"ran {name} {ran}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
