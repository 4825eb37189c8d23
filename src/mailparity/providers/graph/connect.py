"""``mailparity connect microsoft``: device-code sign-in through msal.

The CLI builds the ``connect <key>`` sub-command of every provider whose spec has a
``cli_connect`` hook; this module is Microsoft's. The sign-in prints msal's device-code message,
waits for the user, and hands the tokens and the connection's fields to ``ctx.save`` (``ctx`` is
the command line's ``ConnectContext``: ``save(kind, mailbox, fields, tokens)`` and ``fail``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta
from typing import Any

from ..base import CliConnect, ConnectContext

__all__ = ["CLI", "GRAPH_DELEGATED_SCOPES"]

#: What a delegated sign-in asks for: read and mark mail, and who the user is.
GRAPH_DELEGATED_SCOPES = ["Mail.ReadWrite", "User.Read"]


def expires_at(expires_in: Any, issued_at: datetime) -> datetime:
    """The access token's expiry from an ``expires_in`` (seconds; some endpoints send a string),
    counted from when the token was requested; an unusable value means Entra's usual hour."""
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError):
        seconds = 3600
    return issued_at + timedelta(seconds=max(seconds, 0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``connect microsoft``."""
    parser.add_argument("--client-id")
    parser.add_argument("--authority-tenant", default="common")
    parser.add_argument("--login-base-url", default="https://login.microsoftonline.com")
    parser.add_argument("--tenant", default="default", help="the host's tenant of this mailbox")
    parser.add_argument("--mailbox")
    parser.add_argument("--id", help="provider id (generated when absent)")
    parser.add_argument("--webhook-url", help="public URL of the Microsoft webhook endpoint")


def run(args: argparse.Namespace, ctx: ConnectContext) -> int:
    """Sign in with the device-code flow and save the connection."""
    import msal
    import requests
    from pydantic import SecretStr

    from ...models import OAuthTokens, utcnow
    from .auth import MsalHttpClient

    fail = ctx.fail
    client_id = args.client_id or os.environ.get("MICROSOFT_CLIENT_ID")
    if not client_id:
        fail(
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
        fail(f"authority {authority} is not usable (unknown tenant or login host?)")
    except requests.RequestException as exc:
        fail(f"cannot reach {authority}: {type(exc).__name__}")
    if "user_code" not in flow:
        reason = flow.get("error_description") or flow.get("error")
        fail(f"device-code flow could not start: {str(reason).splitlines()[0]}")
    print(flow["message"], file=sys.stderr)
    issued_at = utcnow()
    try:
        result = app.acquire_token_by_device_flow(flow)
    except requests.RequestException as exc:
        fail(f"sign-in failed: {authority} unreachable ({type(exc).__name__})")
    if "access_token" not in result:
        first_line = (result.get("error_description") or "").split("\n")[0]
        fail(f"sign-in failed: {result.get('error')}: {first_line}")
    claims = result.get("id_token_claims") or {}
    mailbox = args.mailbox or claims.get("preferred_username") or claims.get("email")
    if not mailbox:
        fail("could not tell the mailbox address; pass --mailbox")
    refresh = result.get("refresh_token")
    tokens = OAuthTokens(
        access_token=SecretStr(str(result["access_token"])),
        refresh_token=SecretStr(str(refresh)) if refresh else None,
        expires_at=expires_at(result.get("expires_in"), issued_at),
    )
    fields: dict[str, Any] = {
        "client_id": client_id,
        "authority_tenant": args.authority_tenant,
        "auth_mode": "delegated",
        "login_base_url": args.login_base_url,
        "scopes": list(GRAPH_DELEGATED_SCOPES),
        "webhook_notification_url": args.webhook_url,
    }
    return int(ctx.save("microsoft", mailbox, fields, tokens))


#: The ``connect microsoft`` sub-command.
CLI = CliConnect(add_arguments=add_arguments, run=run)
