"""The ``mailparity`` command line.

Every command works on one store (``--store``, default ``$MAILPARITY_STORE`` or
``./mailparity.sqlite3``) and publishes events as JSON lines to ``--events`` (default
``$MAILPARITY_EVENTS`` or ``./mailparity-events.jsonl``), which ``mailparity events tail`` reads.

User errors (bad arguments, missing configuration, an unreachable provider, revoked consent) print
one clear line and exit non-zero, without a traceback; ``--verbose`` shows the details.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from .errors import ConfigurationError, MailParityError

__all__ = ["main"]

log = logging.getLogger("mailparity.cli")

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1

GRAPH_DELEGATED_SCOPES = ["Mail.ReadWrite", "User.Read"]
GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]


class UserError(Exception):
    """An error of the user's making: printed as one line, exit code 2."""


def _fail(message: str) -> NoReturn:
    raise UserError(message)


# ---------------------------------------------------------------------------- shared plumbing


def _store(args: argparse.Namespace) -> Any:
    from .stores.sqlite import SqliteStore

    return SqliteStore(args.store)


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
    except (OSError, ValueError) as exc:
        _fail(f"cannot read secrets file {args.secrets}: {exc}")
    return DictSecretStore(data)


def _provider(store: Any, provider_id: str) -> Any:
    config = store.get_provider(provider_id)
    if config is None:
        _fail(f"no provider {provider_id!r} in {store!r}; see `mailparity providers list`")
    return config


def _adapter(args: argparse.Namespace, store: Any, provider_id: str) -> Any:
    from .providers import create_adapter

    return create_adapter(_provider(store, provider_id), store=store, secrets=_secrets(args))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# ---------------------------------------------------------------------------- connect


def _cmd_connect_microsoft(args: argparse.Namespace) -> int:
    import msal

    from .models import MicrosoftProviderConfig, OAuthTokens, utcnow

    client_id = args.client_id or os.environ.get("MICROSOFT_CLIENT_ID")
    if not client_id:
        _fail(
            "a client id is needed: --client-id or $MICROSOFT_CLIENT_ID (an Entra app registration)"
        )
    authority = f"{args.login_base_url.rstrip('/')}/{args.authority_tenant}"
    app = msal.PublicClientApplication(client_id, authority=authority)
    flow = app.initiate_device_flow(scopes=GRAPH_DELEGATED_SCOPES)
    if "user_code" not in flow:
        reason = flow.get("error_description") or flow.get("error")
        _fail(f"device-code flow could not start: {reason}")
    print(flow["message"], file=sys.stderr)
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        first_line = (result.get("error_description") or "").split("\n")[0]
        _fail(f"sign-in failed: {result.get('error')}: {first_line}")
    claims = result.get("id_token_claims") or {}
    mailbox = args.mailbox or claims.get("preferred_username") or claims.get("email")
    if not mailbox:
        _fail("could not tell the mailbox address; pass --mailbox")
    store = _store(args)
    provider_id = args.id or f"microsoft-{uuid.uuid4().hex[:8]}"
    config = MicrosoftProviderConfig(
        provider_id=provider_id,
        tenant=args.tenant,
        mailbox=mailbox,
        client_id=client_id,
        authority_tenant=args.authority_tenant,
        webhook_notification_url=args.webhook_url,
        login_base_url=args.login_base_url,
        scopes=GRAPH_DELEGATED_SCOPES,
    )
    store.save_provider(config)
    store.save_tokens(
        provider_id,
        OAuthTokens(
            access_token=result["access_token"],
            refresh_token=result.get("refresh_token"),
            expires_at=utcnow() + timedelta(seconds=int(result.get("expires_in", 3600))),
        ),
    )
    print(f"connected {mailbox} as provider {provider_id}")
    return 0


def _cmd_connect_google(args: argparse.Namespace) -> int:
    try:
        from google_auth_oauthlib.flow import InstalledAppFlow
    except ImportError:
        _fail("`connect google` needs the cli extra: pip install 'mailparity[cli]'")
    from pydantic import SecretStr

    from .models import GmailProviderConfig, OAuthTokens, utcnow

    client_id = args.client_id or os.environ.get("GOOGLE_CLIENT_ID")
    client_secret = args.client_secret or os.environ.get("GOOGLE_CLIENT_SECRET")
    if not client_id or not client_secret:
        _fail(
            "an OAuth client is needed: --client-id/--client-secret or"
            " $GOOGLE_CLIENT_ID/$GOOGLE_CLIENT_SECRET"
        )
    flow = InstalledAppFlow.from_client_config(
        {
            "installed": {
                "client_id": client_id,
                "client_secret": client_secret,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
                "redirect_uris": ["http://127.0.0.1"],
            }
        },
        scopes=GMAIL_SCOPES,
    )
    creds = flow.run_local_server(
        host="127.0.0.1", port=args.port, open_browser=not args.no_browser
    )
    import requests

    profile = requests.get(
        "https://gmail.googleapis.com/gmail/v1/users/me/profile",
        headers={"Authorization": f"Bearer {creds.token}"},
        timeout=30,
    )
    mailbox = args.mailbox or (profile.json().get("emailAddress") if profile.ok else None)
    if not mailbox:
        _fail("could not read the Gmail profile; pass --mailbox")
    store = _store(args)
    provider_id = args.id or f"google-{uuid.uuid4().hex[:8]}"
    store.save_provider(
        GmailProviderConfig(
            provider_id=provider_id,
            tenant=args.tenant,
            mailbox=mailbox,
            client_id=client_id,
            client_secret=SecretStr(client_secret),
            project_id=args.project_id,
            pubsub_topic_name=args.topic,
            pubsub_subscription_name=args.subscription,
        )
    )
    expiry = creds.expiry  # naive UTC, as google-auth keeps it; the model reads it as UTC
    store.save_tokens(
        provider_id,
        OAuthTokens(
            access_token=creds.token,
            refresh_token=creds.refresh_token,
            expires_at=expiry or (utcnow() + timedelta(minutes=55)),
        ),
    )
    print(f"connected {mailbox} as provider {provider_id}")
    return 0


# ---------------------------------------------------------------------------- providers


def _cmd_providers_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.list_providers()
    if not rows:
        print("no providers; connect one with `mailparity connect microsoft|google`")
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
    _print_json(_provider(store, args.provider_id).public_dict())
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
    print(f"failed: {result.error}", file=sys.stderr)
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
    for pid in ids:
        _provider(store, pid)
        maintenance.enqueue_sync(pid, "command line")
    processor = Processor(store, _publisher(args), secrets=_secrets(args))
    total = 0
    while True:
        ran = processor.run_pending(limit=10)
        total += ran
        pending = store.count_jobs(status="pending")
        print(f"\rsync: {total} jobs run, {pending} pending", end="", file=sys.stderr, flush=True)
        if ran == 0:
            break
    print(file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .webhooks import WebhookHandler
    from .wsgi import serve

    handler = WebhookHandler(
        store=_store(args),
        publisher=_publisher(args),
        secrets=_secrets(args),
        google_audience=args.google_audience,
        google_service_accounts=tuple(args.google_service_account or ()),
    )
    print(f"serving webhooks on http://{args.host}:{args.port}", file=sys.stderr)
    serve(handler, args.host, args.port)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from .worker import Worker

    worker = Worker(_store(args), _publisher(args), threads=args.threads, secrets=_secrets(args))
    worker.run()
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
    path = Path(args.events)
    if not path.exists() and not args.follow:
        _fail(f"no events file at {path}")
    lines: list[str] = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines[-args.n :] if args.n else lines:
        print(_event_line(line))
    if not args.follow:
        return 0
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            if path.exists() and path.stat().st_size > position:
                with path.open("r", encoding="utf-8") as fh:
                    fh.seek(position)
                    for line in fh:
                        print(_event_line(line.rstrip("\n")), flush=True)
                    position = fh.tell()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def _event_line(line: str) -> str:
    try:
        event = json.loads(line)
    except ValueError:
        return line
    data = event.get("emailData") or {}
    sender = (data.get("from") or {}).get("email", "")
    return (
        f"{event.get('occurredAt', '')[:19]}  {event.get('eventType', ''):<28}"
        f" {event.get('providerId', ''):<20} {sender:<30} {data.get('subject', '')}"
    )


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    try:
        from .stores.sql import upgrade_database
    except ImportError as exc:
        _fail(f"`db upgrade` needs the sql extra (pip install 'mailparity[sql]'): {exc}")
    version = upgrade_database(args.url)
    print(f"database at schema version {version}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(output_dir=Path(args.output), verbose=args.verbose)


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mailparity`` command."""
    parser = argparse.ArgumentParser(prog="mailparity", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        default=os.environ.get("MAILPARITY_STORE", "mailparity.sqlite3"),
        help="SQLite store file (default: %(default)s)",
    )
    parser.add_argument(
        "--events",
        default=os.environ.get("MAILPARITY_EVENTS", "mailparity-events.jsonl"),
        help="JSON-lines file the events are published to (default: %(default)s)",
    )
    parser.add_argument("--secrets", help="JSON file of tenant secrets {tenant: {name: value}}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show details and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    connect = sub.add_parser("connect", help="connect a mailbox and store its tokens")
    csub = connect.add_subparsers(dest="kind", required=True)
    ms = csub.add_parser("microsoft", help="Microsoft 365 (device-code sign-in)")
    ms.add_argument("--client-id")
    ms.add_argument("--authority-tenant", default="common")
    ms.add_argument("--login-base-url", default="https://login.microsoftonline.com")
    ms.add_argument("--tenant", default="default", help="the host's tenant of this mailbox")
    ms.add_argument("--mailbox")
    ms.add_argument("--id", help="provider id (generated when absent)")
    ms.add_argument("--webhook-url", help="public URL of the Microsoft webhook endpoint")
    ms.set_defaults(func=_cmd_connect_microsoft)
    gg = csub.add_parser(
        "google", help="Gmail / Google Workspace (browser sign-in on a loopback redirect)"
    )
    gg.add_argument("--client-id")
    gg.add_argument("--client-secret")
    gg.add_argument("--tenant", default="default")
    gg.add_argument("--mailbox")
    gg.add_argument("--id")
    gg.add_argument("--project-id")
    gg.add_argument("--topic", help="Pub/Sub topic name")
    gg.add_argument("--subscription", help="Pub/Sub push subscription name")
    gg.add_argument("--port", type=int, default=0)
    gg.add_argument("--no-browser", action="store_true")
    gg.set_defaults(func=_cmd_connect_google)

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
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--google-audience")
    serve.add_argument("--google-service-account", action="append")
    serve.set_defaults(func=_cmd_serve)
    worker = sub.add_parser("worker", help="process jobs until stopped")
    worker.add_argument("--threads", type=int, default=4)
    worker.set_defaults(func=_cmd_worker)
    maintain = sub.add_parser("maintain", help="renewal sweep, silence detection, catch-up")
    maintain.add_argument("--loop", action="store_true", help="repeat every --interval seconds")
    maintain.add_argument("--interval", type=float, default=900.0)
    maintain.add_argument("--silence-minutes", type=float, default=360.0)
    maintain.add_argument("--no-jobs", action="store_true", help="do not run the jobs it enqueues")
    maintain.set_defaults(func=_cmd_maintain)

    events = sub.add_parser("events", help="published events")
    esub = events.add_subparsers(dest="action", required=True)
    tail = esub.add_parser("tail")
    tail.add_argument("-n", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true")
    tail.set_defaults(func=_cmd_events_tail)

    db = sub.add_parser("db", help="SQL store schema")
    dsub = db.add_subparsers(dest="action", required=True)
    up = dsub.add_parser("upgrade")
    up.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. postgresql+psycopg://...")
    up.set_defaults(func=_cmd_db_upgrade)

    demo = sub.add_parser("demo", help="end-to-end demo against local provider fakes")
    demo.add_argument("--output", default="demo-output")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"mailparity: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ConfigurationError, MailParityError) as exc:
        if args.verbose:
            raise
        print(f"mailparity: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR if isinstance(exc, ConfigurationError) else EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
