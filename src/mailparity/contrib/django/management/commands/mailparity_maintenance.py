"""``python manage.py mailparity_maintenance``: renew subscriptions and watches, catch up silent
mailboxes, prune old state; once (for cron) or in a loop."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ...conf import get_app


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "One maintenance pass over every mailbox: renew push subscriptions and watches, enqueue"
        " catch-up syncs for silent mailboxes, prune old state (MAILPARITY['RETENTION'])."
        " --loop repeats it every --interval seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop", action="store_true", help="repeat every --interval seconds until stopped"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=3600.0,
            help="seconds between passes with --loop (default 3600)",
        )
        parser.add_argument(
            "--iterations",
            type=int,
            metavar="N",
            help="with --loop: stop after N passes (default: until stopped)",
        )
        parser.add_argument(
            "--no-jobs",
            action="store_true",
            help="only enqueue the catch-up jobs; leave running them to the worker",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if interval <= 0:
            raise CommandError(f"--interval must be a positive number of seconds, not {interval}")
        iterations = options.get("iterations")
        if iterations is not None and iterations < 1:
            raise CommandError(f"--iterations must be at least 1, not {iterations}")
        app = get_app()
        passes = 0
        try:
            while True:
                report = app.maintenance.run_once(run_jobs=not options["no_jobs"])
                passes += 1
                self.stdout.write(f"mailparity maintenance: {report.summary()}")
                for provider_id, error in sorted(report.failed.items()):
                    self.stderr.write(f"  {provider_id}: {error}")
                if not options["loop"]:
                    if report.failed:
                        raise CommandError(f"{len(report.failed)} mailbox(es) failed")
                    return
                if iterations is not None and passes >= iterations:
                    return
                app.sleep(interval)
        finally:
            connections.close_all()
