"""``mailparity connect google``: browser sign-in on a loopback redirect.

The CLI builds the ``connect <key>`` sub-command of every provider whose spec has a
``cli_connect`` hook; this module is Gmail's. google-auth-oauthlib (the ``cli`` extra) runs the
installed-app flow; the signed-in address is read from ``users.getProfile`` through the
library's HTTP layer, and the tokens and the connection's fields go to ``ctx.save`` (``ctx`` is
the command line's ``ConnectContext``: ``save(kind, mailbox, fields, tokens)`` and ``fail``).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from ...errors import MailParityError, install_hint
from ..base import CliConnect, ConnectContext

__all__ = ["CLI", "GMAIL_API", "GMAIL_SCOPES", "GOOGLE_TOKEN_URI"]

GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]
GMAIL_API = "https://gmail.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret


def _sleep(seconds: float) -> None:
    """``time.sleep`` looked up at call time, so a test can replace it (and never wait)."""
    time.sleep(seconds)


def profile_address(access_token: str, ctx: ConnectContext) -> str:
    """The address of the signed-in Gmail account (``users.getProfile``), read through the
    library's HTTP layer: timeouts, retries and error mapping as for every Gmail call."""
    import requests

    from .webconnect import profile_address as read_profile

    try:
        return read_profile(
            access_token, base_url=GMAIL_API, session=requests.Session(), sleep=_sleep
        )
    except MailParityError as exc:
        ctx.fail(f"could not read the Gmail profile with the new token: {exc}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``connect google``."""
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--mailbox")
    parser.add_argument("--id")
    parser.add_argument("--project-id")
    parser.add_argument("--topic", help="Pub/Sub topic name")
    parser.add_argument("--subscription", help="Pub/Sub push subscription name")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-browser", action="store_true")


def run(args: argparse.Namespace, ctx: ConnectContext) -> int:
    """Sign in through the browser and save the connection."""
    fail = ctx.fail
    try:
        from google_auth_oauthlib.flow import InstalledAppFlow
    except ImportError:
        fail(f"`connect google` needs the cli extra: {install_hint('cli')}")
    from pydantic import SecretStr

    from ...models import OAuthTokens, utcnow

    client_id = args.client_id or os.environ.get("GOOGLE_CLIENT_ID")
    client_secret = args.client_secret or os.environ.get("GOOGLE_CLIENT_SECRET")
    if not client_id or not client_secret:
        fail(
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
        fail(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    except Exception as exc:  # oauthlib errors (access_denied ...): no details, they may quote URLs
        reason = getattr(exc, "error", None)
        fail(f"Google sign-in failed: {reason if isinstance(reason, str) else type(exc).__name__}")
    if not creds.token:
        fail("Google sign-in returned no access token")
    mailbox = profile_address(str(creds.token), ctx)
    if args.mailbox and args.mailbox.strip().casefold() != mailbox.casefold():
        fail(f"signed in as {mailbox}, not {args.mailbox}; sign in with that account")
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
    return int(ctx.save("google", mailbox, fields, tokens))


#: The ``connect google`` sub-command.
CLI = CliConnect(add_arguments=add_arguments, run=run)
