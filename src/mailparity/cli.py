"""The ``mailparity`` command line.

Every command works on one store (``--store``, default ``$MAILPARITY_STORE`` or
``./mailparity.sqlite3``) and publishes events as JSON lines to ``--events`` (default
``$MAILPARITY_EVENTS`` or ``./mailparity-events.jsonl``), which ``mailparity events tail`` reads.

User errors (bad arguments, missing configuration, an unreachable provider, revoked consent) print
one clear line and exit non-zero, without a traceback; ``--verbose`` shows the details.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

from .errors import ConfigurationError, MailParityError

__all__ = ["main"]

log = logging.getLogger("mailparity.cli")

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1

GRAPH_DELEGATED_SCOPES = ["Mail.ReadWrite", "User.Read"]
GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]
GMAIL_API = "https://gmail.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret


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


def _expires_at(expires_in: Any, issued_at: datetime) -> datetime:
    """The access token's expiry from an ``expires_in`` (seconds; some endpoints send a string),
    counted from when the token was requested; an unusable value means Entra's usual hour."""
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError):
        seconds = 3600
    return issued_at + timedelta(seconds=max(seconds, 0))


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
    return 0


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


def _cmd_connect_microsoft(args: argparse.Namespace) -> int:
    import msal
    import requests
    from pydantic import SecretStr

    from .models import OAuthTokens, utcnow
    from .providers.graph.auth import MsalHttpClient

    client_id = args.client_id or os.environ.get("MICROSOFT_CLIENT_ID")
    if not client_id:
        _fail(
            "a client id is needed: --client-id or $MICROSOFT_CLIENT_ID (an Entra app registration)"
        )
    authority = f"{args.login_base_url.rstrip('/')}/{args.authority_tenant}"
    try:
        app = msal.PublicClientApplication(
            client_id,
            authority=authority,
            # Through requests with a timeout, like every other call of the library.
            http_client=MsalHttpClient(requests.Session(), (10.0, 60.0)),
            instance_discovery=False,
        )
        flow = app.initiate_device_flow(scopes=GRAPH_DELEGATED_SCOPES)
    except ValueError:
        _fail(f"authority {authority} is not usable (unknown tenant or login host?)")
    except requests.RequestException as exc:
        _fail(f"cannot reach {authority}: {type(exc).__name__}")
    if "user_code" not in flow:
        reason = flow.get("error_description") or flow.get("error")
        _fail(f"device-code flow could not start: {str(reason).splitlines()[0]}")
    print(flow["message"], file=sys.stderr)
    issued_at = utcnow()
    try:
        result = app.acquire_token_by_device_flow(flow)
    except requests.RequestException as exc:
        _fail(f"sign-in failed: {authority} unreachable ({type(exc).__name__})")
    if "access_token" not in result:
        first_line = (result.get("error_description") or "").split("\n")[0]
        _fail(f"sign-in failed: {result.get('error')}: {first_line}")
    claims = result.get("id_token_claims") or {}
    mailbox = args.mailbox or claims.get("preferred_username") or claims.get("email")
    if not mailbox:
        _fail("could not tell the mailbox address; pass --mailbox")
    refresh = result.get("refresh_token")
    tokens = OAuthTokens(
        access_token=SecretStr(str(result["access_token"])),
        refresh_token=SecretStr(str(refresh)) if refresh else None,
        expires_at=_expires_at(result.get("expires_in"), issued_at),
    )
    fields: dict[str, Any] = {
        "client_id": client_id,
        "authority_tenant": args.authority_tenant,
        "auth_mode": "delegated",
        "login_base_url": args.login_base_url,
        "scopes": list(GRAPH_DELEGATED_SCOPES),
        "webhook_notification_url": args.webhook_url,
    }
    return _save_connection(args, "microsoft", mailbox, fields, tokens)


def _sleep(seconds: float) -> None:
    """``time.sleep`` looked up at call time, so a test can replace it (and never wait)."""
    time.sleep(seconds)


def _gmail_profile_address(access_token: str) -> str:
    """The address of the signed-in Gmail account (``users.getProfile``), read through the
    library's HTTP layer: timeouts, retries and error mapping as for every Gmail call."""
    from .http import RetryPolicy
    from .providers.gmail.transport import (
        GmailHttpClient,
        is_gmail_retryable,
        map_gmail_error,
    )

    client = GmailHttpClient(
        sleep=_sleep,
        provider="google",
        map_error=map_gmail_error,
        is_retryable=is_gmail_retryable,
        retry=RetryPolicy(max_attempts=3, max_total=30.0),
    )
    try:
        response = client.request(
            "GET",
            f"{GMAIL_API}/gmail/v1/users/me/profile",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        data = response.json()
    except MailParityError as exc:
        _fail(f"could not read the Gmail profile with the new token: {exc}")
    except ValueError:
        _fail("could not read the Gmail profile: the answer is not JSON")
    address = data.get("emailAddress") if isinstance(data, dict) else None
    if not isinstance(address, str) or not address:
        _fail("the Gmail profile has no emailAddress")
    return address


def _cmd_connect_google(args: argparse.Namespace) -> int:
    try:
        from google_auth_oauthlib.flow import InstalledAppFlow
    except ImportError:
        _fail("`connect google` needs the cli extra: pip install 'mailparity[cli]'")
    from pydantic import SecretStr

    from .models import OAuthTokens, utcnow

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
                "token_uri": GOOGLE_TOKEN_URI,
                "redirect_uris": ["http://127.0.0.1"],
            }
        },
        scopes=GMAIL_SCOPES,
    )
    issued_at = utcnow()
    try:
        creds = flow.run_local_server(
            host="127.0.0.1",
            port=args.port,
            open_browser=not args.no_browser,
            # Google issues a refresh token on the first consent only; asking for consent again
            # makes a reconnect get a new one.
            access_type="offline",
            prompt="consent",
        )
    except OSError as exc:
        _fail(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    except Exception as exc:  # oauthlib errors (access_denied ...): no details, they may quote URLs
        reason = getattr(exc, "error", None)
        _fail(f"Google sign-in failed: {reason if isinstance(reason, str) else type(exc).__name__}")
    if not creds.token:
        _fail("Google sign-in returned no access token")
    mailbox = _gmail_profile_address(str(creds.token))
    if args.mailbox and args.mailbox.strip().casefold() != mailbox.casefold():
        _fail(f"signed in as {mailbox}, not {args.mailbox}; sign in with that account")
    # google-auth keeps the expiry as naive UTC.
    expiry = creds.expiry
    if isinstance(expiry, datetime):
        expires_at = expiry.replace(tzinfo=timezone.utc) if expiry.tzinfo is None else expiry
    else:
        expires_at = issued_at + timedelta(minutes=55)
    tokens = OAuthTokens(
        access_token=SecretStr(str(creds.token)),
        refresh_token=SecretStr(str(creds.refresh_token)) if creds.refresh_token else None,
        expires_at=expires_at,
        scope=" ".join(GMAIL_SCOPES),
    )
    fields: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": SecretStr(client_secret),
        "auth_mode": "user",
        "project_id": args.project_id,
        "pubsub_topic_name": args.topic,
        "pubsub_subscription_name": args.subscription,
    }
    return _save_connection(args, "google", mailbox, fields, tokens)


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

    worker = Worker(
        _store(args), _publisher(args), threads=args.threads, secrets=_secrets(args),
        listen=args.listen,
    )
    worker.run()
    return 0


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


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    try:
        from .stores.sql import upgrade_database
    except ImportError as exc:
        _fail(f"`db upgrade` needs the sql extra (pip install 'mailparity[sql]'): {exc}")
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
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--google-audience")
    serve.add_argument("--google-service-account", action="append")
    serve.set_defaults(func=_cmd_serve)
    worker = sub.add_parser("worker", help="process jobs until stopped")
    worker.add_argument("--threads", type=int, default=4)
    worker.add_argument(
        "--listen", action="store_true", help="also run the push listeners (IMAP IDLE)"
    )
    worker.set_defaults(func=_cmd_worker)
    listen = sub.add_parser(
        "listen", help="run the push listeners (IMAP IDLE) of every mailbox until stopped"
    )
    listen.add_argument("--worker", action="store_true", help="also process the jobs here")
    listen.add_argument("--threads", type=int, default=4, help="worker threads (with --worker)")
    listen.set_defaults(func=_cmd_listen)
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Errors print one line ``mailparity: error: ...`` to stderr, without a traceback unless
    ``--verbose`` is given: 2 for errors of the user's making (bad arguments, missing
    configuration, unknown provider), 1 for failures (a provider, the store), 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
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
            hint = "" if args.verbose else " (run with --verbose for details)"
            message, code = f"unexpected {type(exc).__name__}{hint}", EXIT_FAILURE
        if args.verbose:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        print(f"mailparity: error: {_one_line(message)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
