"""``mailparity connect imap``: store an IMAP connection after a successful connection test.

The password is never an argument (arguments are visible to every user of the machine): it is
read from the environment variable ``--password-env`` names, or asked for on the terminal.
XOAUTH2 connections store a refresh token (read the same way) and refresh an access token on
first use with the issuer's token code.
"""

from __future__ import annotations

import argparse
import getpass
import os
from datetime import datetime, timezone
from typing import Any

from pydantic import SecretStr, ValidationError

from ...models import OAuthTokens

__all__ = ["CLI_CONNECT", "ImapConnect"]


def _secret(args: argparse.Namespace, env_name: str | None, prompt: str, ctx: Any) -> str:
    if env_name:
        found = os.environ.get(env_name)
        if not found:
            ctx.fail(f"environment variable {env_name} is not set")
        return str(found)
    value = getpass.getpass(prompt)
    if not value:
        ctx.fail("no secret given")
    return value


class ImapConnect:
    """The CLI connect hook of the IMAP provider."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The options of ``mailparity connect imap``."""
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", type=int)
        parser.add_argument("--security", choices=("ssl", "starttls", "none"), default="ssl")
        parser.add_argument("--ca-file", help="PEM file of extra trust anchors")
        parser.add_argument("--insecure-skip-verify", action="store_true",
                            help="do not verify the server certificate (testing only)")
        parser.add_argument("--mailbox", required=True, help="the mailbox's address")
        parser.add_argument("--username", help="login name (default: the mailbox)")
        parser.add_argument("--password-env", help="environment variable holding the password")
        parser.add_argument("--xoauth2", choices=("microsoft", "google"),
                            help="sign in with XOAUTH2 tokens of this issuer instead")
        parser.add_argument("--refresh-token-env",
                            help="environment variable holding the XOAUTH2 refresh token")
        parser.add_argument("--client-id")
        parser.add_argument("--folder", default="INBOX")
        parser.add_argument("--processed-strategy", choices=("none", "seen", "keyword", "move"),
                            default="none")
        parser.add_argument("--processed-keyword")
        parser.add_argument("--processed-folder")
        parser.add_argument("--tenant", default="default")
        parser.add_argument("--id", help="provider id (generated when absent)")
        parser.add_argument("--no-test", action="store_true",
                            help="save without testing the connection first")

    @staticmethod
    def run(args: argparse.Namespace, ctx: Any) -> int:
        """Build the config, test it, save it."""
        from .config import ImapProviderConfig

        fields: dict[str, Any] = {
            "host": args.host, "port": args.port, "security": args.security,
            "ca_file": args.ca_file, "verify_certificate": not args.insecure_skip_verify,
            "username": args.username, "folder": args.folder,
            "processed_strategy": args.processed_strategy,
            "processed_folder": args.processed_folder, "client_id": args.client_id,
        }
        if args.processed_keyword:
            fields["processed_keyword"] = args.processed_keyword
        tokens = None
        if args.xoauth2:
            fields.update(auth_method="xoauth2", oauth_issuer=args.xoauth2)
            refresh = _secret(args, args.refresh_token_env, "XOAUTH2 refresh token: ", ctx)
            # An expired access token: the first use refreshes it with the issuer's token code.
            tokens = OAuthTokens(
                access_token=SecretStr(""), refresh_token=SecretStr(refresh),
                expires_at=datetime(1970, 1, 1, tzinfo=timezone.utc),
            )
        else:
            fields["password"] = SecretStr(
                _secret(args, args.password_env, f"IMAP password of {args.mailbox}: ", ctx)
            )
        try:
            config = ImapProviderConfig(
                provider_id=args.id or "imap-test", tenant=args.tenant, mailbox=args.mailbox,
                **fields,
            )
        except ValidationError as exc:
            ctx.fail(f"invalid IMAP settings: {exc.errors()[0]['msg']}")
        if not args.no_test and tokens is None:
            from .adapter import ImapAdapter

            result = ImapAdapter(config, store=ctx.store()).test_connection()
            if not result.success:
                ctx.fail(f"IMAP connection test failed: {result.error}"
                         + (f" ({result.code})" if result.code else ""))
        return int(ctx.save("imap", args.mailbox, fields, tokens))


#: The hook the provider spec names.
CLI_CONNECT = ImapConnect()
