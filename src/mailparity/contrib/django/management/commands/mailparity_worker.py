"""``python manage.py mailparity_worker``: run mailparity's jobs until stopped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ...conf import get_app, mailparity_settings


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run mailparity's jobs (the pushes' work, catch-up syncs, retries) with the app's store"
        " and publisher, until SIGTERM or Ctrl-C. Options override MAILPARITY['WORKER']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--threads", type=int, help="jobs run at once (default 4)")
        parser.add_argument(
            "--poll-interval", type=float, help="seconds between polls when idle (default 1)"
        )
        parser.add_argument(
            "--listen", action="store_true", help="also run the push listeners (IMAP IDLE)"
        )
        parser.add_argument(
            "--once", action="store_true", help="run the jobs due now once, then exit"
        )
        parser.add_argument(
            "--stop-after",
            type=int,
            metavar="N",
            help="exit after N polls in a row found nothing to do (1: drain the queue and exit)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker_options: dict[str, Any] = dict(mailparity_settings().worker)
        for name in ("threads", "poll_interval"):
            if options.get(name) is not None:
                worker_options[name] = options[name]
        if options.get("listen"):
            worker_options["listen"] = True
        threads = worker_options.pop("threads", 4)
        if threads < 1:
            raise CommandError(f"--threads must be at least 1, not {threads}")
        if worker_options.get("poll_interval", 1.0) <= 0:
            raise CommandError("--poll-interval must be a positive number of seconds")
        stop_after = options.get("stop_after")
        if stop_after is not None and stop_after < 1:
            raise CommandError(f"--stop-after must be at least 1, not {stop_after}")
        worker = get_app().worker(threads=threads, **worker_options)
        self.stdout.write(f"mailparity worker {worker.processor.worker_id}: {threads} thread(s)")
        try:
            ran = worker.run_once() if options.get("once") else worker.run(stop_after=stop_after)
        finally:
            connections.close_all()
        self.stdout.write(f"mailparity worker stopped: {ran} job(s) run")
