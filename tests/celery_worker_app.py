"""The Celery application that ``test_celery_e2e.py`` runs in a real worker process.

``celery -A celery_worker_app worker`` (from the tests folder) imports it. Everything comes from
the environment the test sets, so the worker shares only files and sockets with the test: the
SQLite store file, the JSONL events file, the Redis broker and the fake Graph on loopback.

* ``MAILPARITY_TEST_REDIS_URL``: the broker.
* ``MAILPARITY_E2E_STORE``: the SqliteStore file; ``MAILPARITY_E2E_EVENTS``: the JSONL file.
* ``MAILPARITY_E2E_QUEUE``: the queue (unique per test run, so runs never share messages).
"""

from __future__ import annotations

import os

from celery import Celery

from mailparity.contrib.celery import configure
from mailparity.publishers import JsonlFilePublisher
from mailparity.stores.sqlite import SqliteStore

app = Celery("mailparity-e2e", broker=os.environ.get("MAILPARITY_TEST_REDIS_URL", "memory://"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

mailparity = configure(
    app,
    store_factory=lambda: SqliteStore(os.environ["MAILPARITY_E2E_STORE"]),
    publisher_factory=lambda: JsonlFilePublisher(os.environ["MAILPARITY_E2E_EVENTS"]),
    queue=os.environ.get("MAILPARITY_E2E_QUEUE", "mailparity"),
    notify_countdown=0.2,
    # The store, not Celery, decides what runs: a short lease lets a retried job come back fast.
    processor_options={"backoff_base": 0.5},
)
