"""The ``mailparity`` command line.

Every command works on one store (``--store``, default ``$MAILPARITY_STORE`` or
``./mailparity.sqlite3``): a SQLite file path, or a SQLAlchemy URL such as
``postgresql+psycopg://user@host/db`` (the ``sql`` extra), and publishes events as JSON lines to
``--events`` (default ``$MAILPARITY_EVENTS`` or ``./mailparity-events.jsonl``), which
``mailparity events tail`` reads.

User errors (bad arguments, missing configuration, an unreachable provider, revoked consent) print
one clear line and exit non-zero, without a traceback; ``-v`` shows mailparity's INFO log and the
details of errors, ``-vv`` (or ``--verbose``) its DEBUG log.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from .errors import ConfigurationError, MailParityError, install_hint
from .logs import ContextFilter, JsonFormatter

__all__ = ["main"]

log = logging.getLogger("mailparity.cli")

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1



def _version() -> str:
    from . import __version__

    return __version__


class UserError(Exception):
    """An error of the user's making: printed as one line, exit code 2."""


def _fail(message: str) -> NoReturn:
    raise UserError(message)


# ---------------------------------------------------------------------------- shared plumbing


def _store(args: argparse.Namespace) -> Any:
    """The command's store (opened once per command): ``--store`` is a SQLite file path or a
    SQLAlchemy URL."""
    store = getattr(args, "_opened_store", None)
    if store is None:
        store = open_store(args.store)
        args._opened_store = store
    return store


def open_store(location: str) -> Any:
    """The store at ``location``: a SQLAlchemy URL (``postgresql+psycopg://...``,
    ``sqlite:///path``; the ``sql`` extra) when it has a ``scheme://``, else a SQLite file path.

    Raises UserError (one line, the URL's password hidden) for an unusable URL."""
    if "://" not in location:
        from .stores.sqlite import SqliteStore

        return SqliteStore(location)
    try:
        import sqlalchemy as sa

        from .stores.sql import SqlStore
    except ImportError:
        _fail(f"a store URL needs the sql extra: {install_hint('sql')}"
              " (or give a SQLite file path)")
    try:
        url = sa.engine.make_url(location)
    except sa.exc.ArgumentError:
        _fail("--store is neither a SQLite file path nor a valid SQLAlchemy URL")
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        _fail(f"cannot use the store URL {shown}: the SQL store runs on PostgreSQL or SQLite")
    try:
        engine = sa.create_engine(url)
    except ImportError as exc:
        _fail(f"the database driver of {shown} is not installed ({exc.name or exc})")
    except sa.exc.ArgumentError as exc:
        _fail(f"cannot use the store URL {shown}: {type(exc).__name__}")
    try:
        return SqlStore(engine)
    except ValueError as exc:
        _fail(f"cannot use the store URL {shown}: {exc}")


def _publisher(args: argparse.Namespace) -> Any:
    from .publishers import JsonlFilePublisher

    return JsonlFilePublisher(args.events)


def _secrets(args: argparse.Namespace) -> Any:
    """Tenant secrets from ``--secrets FILE`` (JSON ``{tenant: {name: value}}``), if given."""
    if not getattr(args, "secrets", None):
        return None
    from .publishers import DictSecretStore

    try:
        data = json.loads(Path(args.secrets).read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read secrets file {args.secrets}: {exc.strerror or exc}")
    except ValueError as exc:
        # Only the position: the message of a JSON error may quote the file (its secrets).
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        _fail(f"secrets file {args.secrets} is not valid JSON{where}")
    if not isinstance(data, Mapping) or not all(
        isinstance(tenant, str)
        and isinstance(values, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        for tenant, values in data.items()
    ):
        _fail(
            f"secrets file {args.secrets} must be a JSON object"
            ' {"<tenant>": {"<secret name>": "<value>"}}'
        )
    return DictSecretStore(data)


def _provider(store: Any, provider_id: str) -> Any:
    config = store.get_provider(provider_id)
    if config is None:
        _fail(f"no provider {provider_id!r} in this store; see `mailparity providers list`")
    return config


def _adapter(args: argparse.Namespace, store: Any, provider_id: str) -> Any:
    from .providers import create_adapter

    return create_adapter(_provider(store, provider_id), store=store, secrets=_secrets(args))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# ---------------------------------------------------------------------------- connect


def _save_connection(
    args: argparse.Namespace,
    kind: str,
    mailbox: str,
    fields: dict[str, Any],
    tokens: Any,
) -> int:
    """Store a new connection, or reconnect an existing one (``--id``, or the same mailbox of the
    same provider): its subscription, cursors and other settings are kept, ``needs_consent`` is
    cleared. One provider per mailbox, so a mailbox connected twice is not delivered twice."""
    from .providers import get_spec

    store = _store(args)
    existing = (
        store.get_provider(args.id) if args.id else store.find_provider_by_mailbox(kind, mailbox)
    )
    if existing is not None and existing.provider != kind:
        _fail(f"provider {existing.provider_id!r} is a {existing.provider} provider, not {kind}")
    if existing is not None:
        provider_id = existing.provider_id
        # Options left out keep what is stored (a reconnect does not drop the webhook URL).
        changes = {key: value for key, value in fields.items() if value is not None}
        changes.update(mailbox=mailbox, needs_consent=False, auth_error_code=None)
        # Tokens first: once needs_consent is cleared, parked jobs run and must find them.
        if tokens is not None:
            store.save_tokens(provider_id, tokens)
        store.update_provider(provider_id, changes)
        verb = "reconnected"
    else:
        provider_id = args.id or f"{kind}-{uuid.uuid4().hex[:8]}"
        model = get_spec(kind).config_model
        store.save_provider(
            model(provider_id=provider_id, tenant=args.tenant, mailbox=mailbox, **fields)
        )
        if tokens is not None:
            store.save_tokens(provider_id, tokens)
        verb = "connected"
    if tokens is not None and tokens.refresh_token is None:
        print(
            "warning: no refresh token was issued; the connection stops working when the access"
            " token expires",
            file=sys.stderr,
        )
    print(f"{verb} {mailbox} as provider {provider_id}")
    _announce(args, store.get_provider(provider_id), existing)
    return 0


def _announce(args: argparse.Namespace, config: Any, existing: Any) -> None:
    """Publish EMAIL_PROVIDER_CONNECTED / REAUTHORIZED to ``--events``; a failure only warns
    (the connection is stored)."""
    from .mailbox_events import announce_connection

    if config is None:
        return
    try:
        announce_connection(
            _publisher(args), config, reconnected=existing is not None,
            needed_consent=existing is not None and existing.needs_consent,
        )
    except Exception as exc:
        print(f"warning: the connection event was not published ({type(exc).__name__})",
              file=sys.stderr)


class ConnectContext:
    """What a provider's ``cli_connect`` hook gets from the command line (see
    :meth:`~mailparity.providers.base.ProviderSpec.cli_connect_hook`): the hook's
    ``run(args, ctx)`` signs in, then calls :meth:`save`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def store(self) -> Any:
        """The command's store."""
        return _store(self.args)

    def secrets(self) -> Any:
        """The tenant secrets of ``--secrets`` (or None)."""
        return _secrets(self.args)

    def save(
        self, kind: str, mailbox: str, fields: dict[str, Any], tokens: Any = None
    ) -> int:
        """Store the connection (or reconnect the same mailbox; ``tokens`` may be None for a
        provider that signs in with a stored password) and print what was done."""
        return _save_connection(self.args, kind, mailbox, fields, tokens)

    @staticmethod
    def fail(message: str) -> NoReturn:
        """Stop with a user error (one line, exit code 2)."""
        _fail(message)


def _cmd_connect_hook(args: argparse.Namespace) -> int:
    from .providers import get_spec

    hook = get_spec(args.kind).cli_connect_hook()
    return int(hook.run(args, ConnectContext(args)))


# ---------------------------------------------------------------------------- providers


def _cmd_providers_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.list_providers()
    if not rows:
        print("no providers; connect one with `mailparity connect <provider>`")
        return 0
    print(f"{'PROVIDER ID':<28} {'KIND':<10} {'MAILBOX':<36} STATUS")
    for config in rows:
        status = (
            "needs consent" if config.needs_consent else ("active" if config.active else "paused")
        )
        print(f"{config.provider_id:<28} {config.provider:<10} {config.mailbox:<36} {status}")
    return 0


def _cmd_providers_show(args: argparse.Namespace) -> int:
    store = _store(args)
    data = _provider(store, args.provider_id).public_dict()
    tokens = store.load_tokens(args.provider_id)
    # Whether tokens are there and until when; never the tokens themselves.
    data["tokens"] = (
        None
        if tokens is None
        else {
            "access_token_expires_at": tokens.expires_at.isoformat(),
            "has_refresh_token": tokens.refresh_token is not None,
        }
    )
    _print_json(data)
    return 0


def _cmd_providers_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    config = _provider(store, args.provider_id)
    if not args.keep_subscription:
        try:
            _adapter(args, store, args.provider_id).delete_webhook_subscription()
        except MailParityError as exc:
            print(f"warning: subscription not deleted: {exc}", file=sys.stderr)
    store.delete_provider(config.provider_id)
    print(f"removed {config.provider_id}")
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    store = _store(args)
    result = _adapter(args, store, args.provider_id).test_connection()
    if result.success:
        print(f"ok: {result.mailbox}")
        return 0
    detail = f" ({result.code})" if result.code else ""
    print(
        f"mailparity: error: connection test of {args.provider_id} failed: {result.error}{detail}",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _cmd_subscribe(args: argparse.Namespace) -> int:
    store = _store(args)
    sub = _adapter(args, store, args.provider_id).register_webhook_subscription()
    print(
        f"subscribed: id={sub.id} expires_at={sub.expires_at.isoformat()} resource={sub.resource}"
    )
    return 0


def _cmd_renew(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.provider_id:
        sub = _adapter(args, store, args.provider_id).renew_webhook_subscription()
        print(f"renewed: id={sub.id} expires_at={sub.expires_at.isoformat()}")
        return 0
    from .maintenance import Maintenance

    report = Maintenance(store, _publisher(args), secrets=_secrets(args)).renew_subscriptions()
    print(report.summary())
    return 1 if report.failed else 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from .maintenance import Maintenance
    from .processing import Processor

    store = _store(args)
    maintenance = Maintenance(store, _publisher(args), secrets=_secrets(args))
    ids = (
        [args.provider_id] if args.provider_id else [c.provider_id for c in store.list_providers()]
    )
    log.info("sync of %d providers: %s", len(ids), ", ".join(ids) or "none connected")
    for pid in ids:
        _provider(store, pid)
        maintenance.enqueue_sync(pid, "command line")
    from ._cliprogress import SyncProgress

    progress = SyncProgress(sys.stderr)
    processor = Processor(store, _publisher(args), secrets=_secrets(args), progress=progress)
    try:
        while processor.run_pending(limit=10):
            pass
    finally:
        progress.finish()
    unfinished = [
        job
        for pid in ids
        for job in store.list_jobs(status="pending", provider_id=pid)
        if job.last_error
    ] + [job for pid in ids for job in store.list_jobs(status="dead", provider_id=pid)]
    if unfinished:
        for job in unfinished:
            print(
                f"mailparity: error: {job.kind} job of {job.provider_id} not done"
                f" ({job.status}): {job.last_error}",
                file=sys.stderr,
            )
        return EXIT_FAILURE
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import wsgi
    from .webhooks import WebhookHandler

    limits: dict[str, Any] = {
        "threads": args.threads,
        "connection_limit": args.connection_limit,
        "read_timeout": args.read_timeout,
    }
    handler_limits: dict[str, Any] = {
        "max_body_bytes": args.max_body_bytes,
        "max_notification_items": args.max_notification_items,
    }
    handler = WebhookHandler(
        store=_store(args),
        publisher=_publisher(args),
        secrets=_secrets(args),
        google_audience=args.google_audience,
        google_service_accounts=tuple(args.google_service_account or ()),
        **{name: value for name, value in handler_limits.items() if value is not None},
    )
    metrics_path = _serve_metrics(args, handler)
    metrics = {} if metrics_path is None else {"metrics_path": metrics_path}
    if args.dev_server:
        print(f"serving webhooks on http://{args.host}:{args.port} with the built-in development"
              " server (tests and demos only: no read timeout, one thread per connection)",
              file=sys.stderr)
        wsgi.serve(handler, args.host, args.port, **metrics)
        return 0
    server_limits = wsgi.ServerLimits(
        **{name: value for name, value in limits.items() if value is not None}
    )

    def ready(url: str) -> None:
        print(f"serving webhooks on {url} (waitress: {server_limits.threads} threads,"
              f" {server_limits.connection_limit} connections at most, idle connections closed"
              f" after {server_limits.read_timeout} s)", file=sys.stderr)

    wsgi.serve_production(handler, args.host, args.port, limits=server_limits, ready=ready,
                          **metrics)
    return 0


def _serve_metrics(args: argparse.Namespace, handler: Any) -> str | None:
    """With ``--metrics``: Prometheus metrics (gauges read from the handler's store) served at
    ``--metrics-path``; the path, or None without the option."""
    if not args.metrics:
        return None
    from . import telemetry

    try:
        telemetry.enable_prometheus()
    except ImportError as exc:
        _fail(str(exc))
    telemetry.observe_store(handler.store)
    return str(args.metrics_path)


def _cmd_worker(args: argparse.Namespace) -> int:
    from ._cliprogress import WorkerOutput
    from .processing import Processor
    from .worker import Worker

    store, publisher, secrets = _store(args), _publisher(args), _secrets(args)
    output = WorkerOutput(sys.stderr)
    processor = Processor(store, publisher, secrets=secrets, progress=output)
    worker = Worker(
        store, publisher, threads=args.threads, listen=args.listen, processor=processor
    )
    listening = " and the push listeners (IMAP IDLE)" if args.listen else ""
    print(f"worker: processing the jobs of {_shown_store(args.store)} with {args.threads}"
          f" threads{listening}; events go to {args.events}; Ctrl-C stops", file=sys.stderr)
    ran: int | None = 0
    try:
        ran = worker.run()
    finally:
        print(f"worker: stopped after {ran} jobs ({output.summary()})", file=sys.stderr)
    return 0


def _shown_store(location: str) -> str:
    """``location`` for output: a URL's password hidden."""
    if "://" not in location:
        return location
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(location).render_as_string(hide_password=True)
    except Exception:  # not a URL after all: show no part of it that may hold a password
        return location.split("://", 1)[0] + "://..."


def _cmd_listen(args: argparse.Namespace) -> int:
    if args.worker:
        args.listen = True
        return _cmd_worker(args)
    from .listeners import ListenerGroup

    group = ListenerGroup(_store(args), secrets=_secrets(args))
    if not group:
        _fail("no registered provider has a push listener")
    print("listening; run `mailparity worker` to process what arrives", file=sys.stderr)
    group.run()
    return 0


def _cmd_maintain(args: argparse.Namespace) -> int:
    from .maintenance import Maintenance

    maintenance = Maintenance(
        _store(args),
        _publisher(args),
        secrets=_secrets(args),
        silence_after=timedelta(minutes=args.silence_minutes),
    )
    while True:
        report = maintenance.run_once(run_jobs=not args.no_jobs)
        print(report.summary())
        if not args.loop:
            return 1 if report.failed else 0
        time.sleep(args.interval)


def _cmd_events_tail(args: argparse.Namespace) -> int:
    if args.n < 0:
        _fail("-n must be 0 (every event) or more")
    path = Path(args.events)
    if not path.exists() and not args.follow:
        _fail(f"no events file at {path}")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    lines = [line for line in lines if line.strip()]
    for line in lines[-args.n :] if args.n else lines:
        print(_event_line(line))
    if not args.follow:
        return 0
    position = path.stat().st_size if path.exists() else 0
    pending = ""
    try:
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < position:  # truncated or replaced: start over
                position, pending = 0, ""
            if size > position:
                with path.open("r", encoding="utf-8", errors="replace") as fh:
                    fh.seek(position)
                    pending += fh.read()
                    position = fh.tell()
                # A line still being written stays pending until its newline arrives.
                *complete, pending = pending.split("\n")
                for line in complete:
                    if line.strip():
                        print(_event_line(line), flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def _event_line(line: str) -> str:
    """One event as a readable line; what is not an event JSON object is shown as it is."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if not isinstance(event, dict):
        return line

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    data = event.get("emailData")
    data = data if isinstance(data, dict) else {}
    sender = data.get("from")
    sender_email = text(sender.get("email")) if isinstance(sender, dict) else ""
    if event.get("eventType") == "EMAIL_PROVIDER_AUTH_FAILED":
        sender_email = text(event.get("mailbox"))
        detail = text(event.get("errorCode")) or text(event.get("error"))
    else:
        detail = text(data.get("subject"))
        if data.get("complete") is False:
            detail = f"(minimal) {detail}".rstrip()
    return (
        f"{text(event.get('occurredAt'))[:19]}  {text(event.get('eventType')):<28}"
        f" {text(event.get('providerId')):<20} {sender_email:<30} {detail}"
    )


# ---------------------------------------------------------------------------- jobs


def _cmd_jobs_list(args: argparse.Namespace) -> int:
    from .jobs_admin import STUCK_STATUSES

    store = _store(args)
    statuses = STUCK_STATUSES if args.status == "stuck" else (args.status,)
    jobs = [
        job
        for status in statuses
        for job in store.list_jobs(status=status, provider_id=args.provider, limit=args.limit)
    ][: args.limit]
    if not jobs:
        print("no jobs")
        return 0
    print(f"{'JOB ID':<34} {'KIND':<14} {'PROVIDER':<20} {'STATUS':<8} {'TRIES':>5}"
          f" {'DUE':<25} LAST ERROR")
    for job in jobs:
        error = (job.last_error or "").replace("\n", " ")
        if len(error) > 60:
            error = error[:59] + "…"
        print(f"{job.id:<34} {job.kind:<14} {job.provider_id:<20} {job.status:<8}"
              f" {job.attempts:>5} {job.available_at.isoformat(timespec='seconds'):<25} {error}")
    return 0


def _cmd_jobs_show(args: argparse.Namespace) -> int:
    from .jobs_admin import JobAdminError, find_job, job_summary

    try:
        _print_json(job_summary(find_job(_store(args), args.job_id)))
    except JobAdminError as exc:
        _fail(str(exc))
    return 0


def _cmd_jobs_retry(args: argparse.Namespace) -> int:
    from .jobs_admin import JobAdminError, retry

    try:
        outcome = retry(_store(args), args.job_id)
    except JobAdminError as exc:
        _fail(str(exc))
    if outcome.action == "requeued":
        print(f"job {outcome.job_id} requeued as {outcome.new_id} (due now)")
    elif outcome.action == "coalesced":
        print(f"job {outcome.job_id} removed: the same work is already pending")
    else:
        print(f"job {outcome.job_id} is due now")
    return 0


def _cmd_jobs_bury(args: argparse.Namespace) -> int:
    from .jobs_admin import JobAdminError, bury

    try:
        job = bury(_store(args), args.job_id, reason=args.reason)
    except JobAdminError as exc:
        _fail(str(exc))
    print(f"job {job.id} is dead: {job.last_error}")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    try:
        from .stores.sql import upgrade_database
    except ImportError as exc:
        _fail(f"`db upgrade` needs the sql extra ({install_hint('sql')}): {exc}")
    version = upgrade_database(args.url)
    print(f"database at schema version {version}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module(f"{__package__}.demo")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.demo":
            raise
        _fail("the demo is not part of this installation")
    return int(demo.run_demo(output_dir=Path(args.output), verbose=args.verbose))


# ---------------------------------------------------------------------------- parser


def _bounded(kind: Callable[[str], Any], low: float | None = None, high: float | None = None,
             *, above: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` that converts with ``kind`` and checks the bounds, so a bad value is
    a one-line usage error (never an OverflowError from deep inside a server)."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if not math.isfinite(value):  # NaN, infinities
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text} must be more than {above:g}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text} must be {low:g} or more")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be {high:g} or less")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


_PORT = _bounded(int, 1, 65535)
_COUNT = _bounded(int, 1)  # threads, limits, bytes: at least one
_SECONDS = _bounded(float, above=0)


class _Verbosity(argparse.Action):
    """``-v`` (INFO of mailparity, details of errors), ``-vv`` (DEBUG), and the former
    ``--verbose`` (DEBUG, as it always was)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        current = getattr(namespace, "verbosity", 0) or 0
        namespace.verbosity = max(current + 1, 2) if option_string == "--verbose" else current + 1
        namespace.verbose = True


class _Parser(argparse.ArgumentParser):
    """Argument errors of every subcommand end in the same ``mailparity: error:`` line (after the
    usage), like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"mailparity: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mailparity`` command."""
    parser = _Parser(prog="mailparity", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version", action="version", version=f"mailparity {_version()}",
        help="print the version of mailparity and exit",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("MAILPARITY_STORE", "mailparity.sqlite3"),
        help="SQLite file path, or a SQLAlchemy URL such as postgresql+psycopg://user@host/db"
             " (the sql extra); also $MAILPARITY_STORE (default: %(default)s)",
    )
    parser.add_argument(
        "--events",
        default=os.environ.get("MAILPARITY_EVENTS", "mailparity-events.jsonl"),
        help="JSON-lines file the events are published to (default: %(default)s)",
    )
    parser.add_argument("--secrets", help="JSON file of tenant secrets {tenant: {name: value}}")
    parser.set_defaults(verbose=False, verbosity=0)
    parser.add_argument(
        "-v", "--verbose", action=_Verbosity, nargs=0,
        help="-v: mailparity's INFO log and the details (tracebacks) of errors; -vv or"
             " --verbose: its DEBUG log too (never other libraries')",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"),
        default=os.environ.get("MAILPARITY_LOG_FORMAT", "text"),
        help="text (default) or json: one JSON object per line with the provider, message and"
             " job ids as fields; also $MAILPARITY_LOG_FORMAT",
    )
    parser.add_argument(
        "--debug-logger", action="append", default=[], metavar="NAME",
        help="also show the debug log of the logger NAME (e.g. urllib3); may repeat. Other"
             " libraries' debug logs can hold tokens and authorization codes",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    connect = sub.add_parser("connect", help="connect a mailbox and store its tokens")
    csub = connect.add_subparsers(dest="kind", required=True)
    _add_connect_hooks(csub)

    providers = sub.add_parser("providers", help="list, show or remove providers")
    psub = providers.add_subparsers(dest="action", required=True)
    psub.add_parser("list").set_defaults(func=_cmd_providers_list)
    show = psub.add_parser("show")
    show.add_argument("provider_id")
    show.set_defaults(func=_cmd_providers_show)
    remove = psub.add_parser("remove")
    remove.add_argument("provider_id")
    remove.add_argument("--keep-subscription", action="store_true")
    remove.set_defaults(func=_cmd_providers_remove)

    for name, func, helptext in (
        ("test", _cmd_test, "check the connection of a provider"),
        ("subscribe", _cmd_subscribe, "create the Graph subscription / Gmail watch"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("provider_id")
        p.set_defaults(func=func)
    renew = sub.add_parser("renew", help="renew one provider's subscription, or sweep all")
    renew.add_argument("provider_id", nargs="?")
    renew.set_defaults(func=_cmd_renew)
    sync = sub.add_parser("sync", help="catch-up sync (Graph delta, Gmail history)")
    sync.add_argument("provider_id", nargs="?")
    sync.set_defaults(func=_cmd_sync)

    serve = sub.add_parser("serve", help="serve the webhook endpoints")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_PORT, default=8080)
    serve.add_argument("--google-audience")
    serve.add_argument("--google-service-account", action="append")
    serve.add_argument("--threads", type=_COUNT, help="handler threads (default 8)")
    serve.add_argument("--connection-limit", type=_COUNT,
                       help="open connections at most (default 500)")
    serve.add_argument("--read-timeout", type=_COUNT,
                       help="seconds before an idle or half-sent connection is closed (default 30)")
    serve.add_argument("--max-body-bytes", type=_COUNT,
                       help="larger request bodies get 413 (default 1000000)")
    serve.add_argument("--max-notification-items", type=_COUNT,
                       help="Graph notifications with more items get 413 (default 1000)")
    serve.add_argument("--dev-server", action="store_true",
                       help="the built-in server instead of waitress: tests and demos only")
    serve.add_argument("--metrics", action="store_true",
                       help="serve Prometheus metrics (needs the prometheus extra)")
    serve.add_argument("--metrics-path", default="/metrics",
                       help="where --metrics serves them (default /metrics)")
    serve.set_defaults(func=_cmd_serve)
    worker = sub.add_parser("worker", help="process jobs until stopped")
    worker.add_argument("--threads", type=_COUNT, default=4)
    worker.add_argument(
        "--listen", action="store_true", help="also run the push listeners (IMAP IDLE)"
    )
    worker.set_defaults(func=_cmd_worker)
    listen = sub.add_parser(
        "listen", help="run the push listeners (IMAP IDLE) of every mailbox until stopped"
    )
    listen.add_argument("--worker", action="store_true", help="also process the jobs here")
    listen.add_argument("--threads", type=_COUNT, default=4,
                        help="worker threads (with --worker)")
    listen.set_defaults(func=_cmd_listen)
    maintain = sub.add_parser("maintain", help="renewal sweep, silence detection, catch-up")
    maintain.add_argument("--loop", action="store_true", help="repeat every --interval seconds")
    maintain.add_argument("--interval", type=_SECONDS, default=900.0,
                          help="seconds between runs with --loop (default: %(default)s)")
    maintain.add_argument("--silence-minutes", type=_SECONDS, default=360.0)
    maintain.add_argument("--no-jobs", action="store_true", help="do not run the jobs it enqueues")
    maintain.set_defaults(func=_cmd_maintain)

    events = sub.add_parser("events", help="published events")
    esub = events.add_subparsers(dest="action", required=True)
    tail = esub.add_parser("tail")
    tail.add_argument("-n", type=_bounded(int, 0), default=20,
                      help="how many of the last events (0: every one; default: %(default)s)")
    tail.add_argument("-f", "--follow", action="store_true")
    tail.set_defaults(func=_cmd_events_tail)

    jobs = sub.add_parser("jobs", help="see, retry or bury pending and dead jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    jlist = jsub.add_parser("list", help="jobs with their attempts and last error")
    jlist.add_argument(
        "--status", default="stuck", choices=("stuck", "pending", "running", "dead"),
        help="which jobs (default: pending, running and dead)",
    )
    jlist.add_argument("--provider", help="only this provider id")
    jlist.add_argument("--limit", type=_COUNT, default=100)
    jlist.set_defaults(func=_cmd_jobs_list)
    jshow = jsub.add_parser("show", help="one job as JSON (id or a unique start of it)")
    jshow.add_argument("job_id")
    jshow.set_defaults(func=_cmd_jobs_show)
    jretry = jsub.add_parser("retry", help="run a dead or pending job again, now")
    jretry.add_argument("job_id")
    jretry.set_defaults(func=_cmd_jobs_retry)
    jbury = jsub.add_parser("bury", help="give up on a pending job")
    jbury.add_argument("job_id")
    jbury.add_argument("--reason", default="", help="recorded as the job's error")
    jbury.set_defaults(func=_cmd_jobs_bury)

    db = sub.add_parser("db", help="SQL store schema")
    dsub = db.add_subparsers(dest="action", required=True)
    up = dsub.add_parser("upgrade")
    up.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. postgresql+psycopg://...")
    up.set_defaults(func=_cmd_db_upgrade)

    demo = sub.add_parser("demo", help="end-to-end demo against local provider fakes")
    demo.add_argument("--output", default="demo-output")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _add_connect_hooks(csub: Any) -> None:
    """``connect <key>`` for every registered provider whose spec has a CLI connect hook."""
    from .providers import specs

    for spec in specs():
        if spec.key in csub.choices:
            continue
        hook = spec.cli_connect_hook()
        if hook is None:
            continue
        parser = csub.add_parser(spec.key, help=spec.title or spec.key)
        hook.add_arguments(parser)
        parser.set_defaults(func=_cmd_connect_hook)


def _configure_logging(
    verbosity: int, debug_loggers: Sequence[str], log_format: str = "text"
) -> Callable[[], None]:
    """Log WARNING and above of everything to stderr; INFO of ``mailparity`` at ``verbosity``
    1 (``-v``), DEBUG at 2 (``-vv``, ``--verbose``); DEBUG of each named logger. Returns what
    undoes it (``main`` can be called in-process). ``log_format`` ``json``: one JSON object per
    record (:class:`mailparity.logs.JsonFormatter`); either way the records carry the provider,
    message and job ids as fields (:class:`mailparity.logs.ContextFilter`).

    Only named loggers are raised, never the root: at DEBUG, the OAuth libraries log
    authorization codes, access tokens and refresh tokens (requests-oauthlib logs the token
    response), urllib3 logs URLs with their query strings."""
    root = logging.getLogger()
    added: logging.Handler | None = None
    if not root.handlers:
        added = logging.StreamHandler()
        added.setFormatter(
            JsonFormatter() if log_format == "json"
            else logging.Formatter("%(levelname)s %(name)s: %(message)s")
        )
        added.addFilter(ContextFilter())
        root.addHandler(added)
    levels = {name: logging.DEBUG for name in debug_loggers if name}
    if verbosity >= 1:
        levels["mailparity"] = logging.DEBUG if verbosity >= 2 else logging.INFO
    previous = {name: logging.getLogger(name).level for name in levels}
    previous_root = root.level
    root.setLevel(logging.WARNING)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)

    def restore() -> None:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(previous_root)
        if added is not None:
            root.removeHandler(added)

    return restore


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Errors print one line ``mailparity: error: ...`` to stderr, without a traceback unless
    ``--verbose`` is given: 2 for errors of the user's making (bad arguments, missing
    configuration, unknown provider), 1 for failures (a provider, the store), 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    restore_logging = _configure_logging(args.verbosity, args.debug_logger, args.log_format)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, UserError):
            message, code = str(exc), EXIT_USER_ERROR
        elif isinstance(exc, MailParityError):
            # Library errors are secret-free by contract.
            message = f"{type(exc).__name__}: {exc}"
            code = EXIT_USER_ERROR if isinstance(exc, ConfigurationError) else EXIT_FAILURE
        else:
            # Only the type without --verbose: a foreign exception's text may quote a request.
            hint = "" if args.verbose else " (run with -v for details)"
            message, code = f"unexpected {type(exc).__name__}{hint}", EXIT_FAILURE
        if args.verbose:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        print(f"mailparity: error: {_one_line(message)}", file=sys.stderr)
        return code
    finally:
        restore_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def __getattr__(name: str) -> Any:
    # ``_cmd_connect_<key>``: the connect command of a registered provider (its sign-in lives in
    # the provider package; every ``connect <key>`` runs through ``_cmd_connect_hook``).
    prefix = "_cmd_connect_"
    if name.startswith(prefix):
        from .providers import is_registered

        if is_registered(name[len(prefix):]):
            return _cmd_connect_hook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
