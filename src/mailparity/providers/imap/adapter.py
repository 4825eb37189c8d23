"""The IMAP adapter: UID catch-up, ``BODY.PEEK[]`` fetches, processed strategies.

Message ids are ``"<UIDVALIDITY>-<UID>"``: stable while the folder's UIDVALIDITY holds. When it
changes (the folder was recreated or the server renumbered it), the old ids name nothing any
more, a bounded resync reads the newest messages under their new ids, and the Processor's
Message-ID dedupe keeps what was already delivered from being published twice.

One connection per adapter (IMAP connections carry state: the selected folder), used under a
lock, with the folder selected read-write (fetches use ``BODY.PEEK[]``, so reading never
sets \\Seen; the processed strategies need write access). A broken connection is dropped and
the call fails as ProviderUnavailableError (the job is retried), except that a connection found
dead on first use is reopened once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from ...adapter import EmailProviderAdapter, SyncBatch
from ...errors import (
    AuthExpiredError,
    ConfigurationError,
    CredentialsMissingError,
    MailParityError,
    NotFoundError,
    ProviderUnavailableError,
)
from ...mime import message_from_mime, parse_mime
from ...models import ConnectionTestResult, EmailMessage, OAuthTokens, WebhookSubscription
from . import client as imap
from .config import ImapProviderConfig

__all__ = ["ImapAdapter", "format_message_id", "parse_message_id"]

T = TypeVar("T")

#: Flags that cannot be set by a client.
_SEEN = b"\\Seen"


def format_message_id(uidvalidity: int, uid: int) -> str:
    """The message id of ``uid`` under ``uidvalidity``."""
    return f"{uidvalidity}-{uid}"


def parse_message_id(message_id: str) -> tuple[int, int]:
    """``(uidvalidity, uid)`` of a message id; NotFoundError for a malformed one."""
    validity, _, uid = message_id.partition("-")
    if not (validity.isdigit() and uid.isdigit()):
        raise NotFoundError(f"not an IMAP message id: {message_id[:80]!r}", provider="imap")
    return int(validity), int(uid)


class ImapAdapter(EmailProviderAdapter[ImapProviderConfig]):
    """One IMAP folder of one account (see the module docstring).

    Extra keyword arguments (besides the base class's):
        client_factory: ``factory(config) -> IMAPClient-like`` (tests pass a fake; by default an
            ``imapclient.IMAPClient`` with the config's TLS settings).
        limiter: the per-server connection bound (the process-wide one by default).
    """

    provider = "imap"
    env_client_id = "MAILPARITY_IMAP_CLIENT_ID"
    env_client_secret = "MAILPARITY_IMAP_CLIENT_SECRET"  # noqa: S105 - a variable name
    secret_client_id = "imap_client_id"  # noqa: S105 - a secret's name
    secret_client_secret = "imap_client_secret"  # noqa: S105 - a secret's name

    def __init__(
        self,
        config: ImapProviderConfig,
        *,
        client_factory: imap.ClientFactory | None = None,
        limiter: imap.ConnectionLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        if client_factory is None:
            imap.imapclient_module()  # a missing extra fails here, naming it
        self.client_factory = client_factory
        self.limiter = limiter or imap.LIMITER
        self._client: Any = None
        self._selected: tuple[str, bool] | None = None
        self._status: dict[bytes, Any] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ connection

    def _access_token(self) -> str:
        return self.get_access_token()

    def _open(self) -> Any:
        key = self.config.server_key()
        if not self.limiter.acquire(key, timeout=self.config.timeout):
            raise ProviderUnavailableError(
                f"IMAP: all {self.limiter.limit} connections to {key} are in use",
                code="imap_connection_limit", provider="imap",
            )
        try:
            return imap.connect(
                self.config,
                access_token=self._access_token if self.config.auth_method == "xoauth2" else None,
                factory=self.client_factory,
            )
        except BaseException:
            self.limiter.release(key)
            raise

    def close(self) -> None:
        """Log out and give the connection slot back (the next call reconnects)."""
        with self._lock:
            if self._client is not None:
                imap.close(self._client)
                self._client = None
                self._selected = None
                self.limiter.release(self.config.server_key())

    def __del__(self) -> None:
        # A replaced adapter (the Processor rebuilds one when the stored config changed) must
        # give its connection slot back; no LOGOUT round trip from a garbage collection.
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()
            self.limiter.release(self.config.server_key())

    def _with_client(
        self, action: str, call: Callable[[Any], T], *, folder: str | None = None,
        readonly: bool = False,
    ) -> T:
        """Run ``call(client)`` with ``folder`` selected; reconnect once if a reused connection
        turned out dead; map every failure to the library's errors."""
        with self._lock:
            for attempt in (0, 1):
                fresh = self._client is None
                try:
                    if self._client is None:
                        self._client = self._open()
                    self._select(folder or self.config.folder, readonly)
                    return call(self._client)
                except MailParityError as exc:
                    self._drop_if_broken(exc)
                    raise
                except Exception as exc:
                    error = imap.map_error(exc, action, self.config)
                    self._drop_if_broken(error, force=not isinstance(error, NotFoundError))
                    if attempt == 0 and not fresh and isinstance(error, ProviderUnavailableError):
                        continue  # the server closed an idle connection: reopen once
                    raise error from None
            raise AssertionError("unreachable")  # pragma: no cover

    def _drop_if_broken(self, error: MailParityError, *, force: bool = False) -> None:
        broken = force or isinstance(error, (ProviderUnavailableError, AuthExpiredError))
        if broken and self._client is not None:
            imap.close(self._client)
            self._client = None
            self._selected = None
            self.limiter.release(self.config.server_key())

    def _select(self, folder: str, readonly: bool) -> None:
        if self._selected == (folder, readonly):
            return
        self._status = dict(self._client.select_folder(folder, readonly=readonly))
        self._selected = (folder, readonly)

    def _uidvalidity(self, client: Any) -> int:
        # Fresh from the server: a folder recreated while we were connected changes it.
        status = client.folder_status(self.config.folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    # ------------------------------------------------------------------ tokens (XOAUTH2)

    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        """Refresh an XOAUTH2 token with the issuer's own token code (msal for Microsoft,
        google-auth for Google). A password connection has no token to refresh."""
        if self.config.auth_method != "xoauth2":
            raise ConfigurationError("a password connection has no token", provider="imap")
        if tokens is None:
            raise CredentialsMissingError(
                f"no tokens for provider {self.config.provider_id!r}: connect the mailbox first",
                provider="imap",
            )
        if self.config.oauth_issuer == "google":
            from ..gmail import auth as google_auth

            secret = self.client_secret()
            if not secret:
                raise ConfigurationError("XOAUTH2 with Google needs a client secret",
                                         provider="imap")
            return google_auth.refresh_user_tokens(
                self.session, tokens=tokens, token_uri=self.config.token_uri,
                client_id=self.require_client_id(), client_secret=secret, clock=self.clock,
            )
        return self._refresh_microsoft(tokens)

    def _refresh_microsoft(self, tokens: OAuthTokens) -> OAuthTokens:
        from ..graph import auth as ms_auth
        from ..graph.config import MicrosoftProviderConfig

        if tokens.refresh_token is None:
            raise ms_auth.missing_refresh_token(self.config.provider_id)
        graph_config = MicrosoftProviderConfig(
            provider_id=self.config.provider_id, tenant=self.config.tenant,
            mailbox=self.config.mailbox, client_id=self.require_client_id(),
            authority_tenant=self.config.authority_tenant,
            login_base_url=self.config.login_base_url,
        )
        app = ms_auth.build_msal_app(
            graph_config, client_id=self.require_client_id(), client_secret=self.client_secret(),
            session=self.session, timeout=(10.0, 60.0),
        )
        refresh = tokens.refresh_token.get_secret_value()
        scopes = self.config.oauth_scopes or ["https://outlook.office.com/IMAP.AccessAsUser.All"]
        result = ms_auth.run_token_call(
            lambda: app.acquire_token_by_refresh_token(refresh, scopes=scopes),
            self.config.login_base_url,
        )
        return ms_auth.tokens_from_result(result, now=self.clock(), previous=tokens)

    # ------------------------------------------------------------------ no webhooks

    def register_webhook_subscription(self) -> WebhookSubscription:
        """IMAP has no webhook subscription: pushes come from IDLE (``mailparity listen``)."""
        raise ConfigurationError(
            "IMAP has no webhook subscription; run `mailparity listen` for IDLE pushes",
            provider="imap",
        )

    def renew_webhook_subscription(self) -> WebhookSubscription:
        """See :meth:`register_webhook_subscription`."""
        return self.register_webhook_subscription()

    def delete_webhook_subscription(self) -> None:
        """Nothing to delete."""

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        """IMAP pushes carry no ids (IDLE says only "something arrived"): none."""
        return []

    # ------------------------------------------------------------------ messages

    def get_message_details(self, message_id: str) -> EmailMessage:
        """Fetch the message with ``BODY.PEEK[]`` (never sets \\Seen) and normalize it with the
        shared raw-MIME path. Larger than ``max_message_bytes``: the headers only, flagged."""
        validity, uid = parse_message_id(message_id)

        def fetch(client: Any) -> EmailMessage:
            self._check_validity(client, validity, message_id)
            meta = client.fetch([uid], [b"RFC822.SIZE", b"INTERNALDATE"]).get(uid)
            if not meta:
                raise NotFoundError(f"IMAP message {message_id} no longer exists",
                                    provider="imap")
            size = int(meta.get(b"RFC822.SIZE") or 0)
            too_big = size > self.config.max_message_bytes
            part = b"BODY.PEEK[HEADER]" if too_big else b"BODY.PEEK[]"
            data = client.fetch([uid], [part]).get(uid)
            raw = _body_of(data, b"HEADER" if too_big else b"")
            if raw is None:
                raise NotFoundError(f"IMAP message {message_id} no longer exists",
                                    provider="imap")
            message = self._normalize(message_id, raw, meta.get(b"INTERNALDATE"))
            if too_big:
                note = (f"message of {size} bytes is larger than max_message_bytes"
                        f" ({self.config.max_message_bytes}): headers only")
                message = message.model_copy(update={"defects": [*message.defects, note]})
            return message

        return self._with_client("fetch", fetch)

    def _normalize(self, message_id: str, raw: bytes, internal_date: Any) -> EmailMessage:
        received = internal_date if isinstance(internal_date, datetime) else self.clock()
        if received.tzinfo is None:
            received = received.replace(tzinfo=timezone.utc)
        return message_from_mime(
            raw, id=message_id, provider=self.provider, provider_id=self.config.provider_id,
            tenant=self.config.tenant, mailbox=self.config.mailbox, received_at=received,
        )

    def _check_validity(self, client: Any, validity: int, message_id: str) -> None:
        if int(self._status.get(b"UIDVALIDITY", validity)) != validity:
            raise NotFoundError(
                f"IMAP message {message_id}: the folder's UIDVALIDITY changed", provider="imap"
            )

    def get_messages_details(self, message_ids: Sequence[str]) -> dict[str, Any]:
        """Fetch several messages over the one connection (errors per message)."""
        found: dict[str, Any] = {}
        for message_id in message_ids:
            try:
                found[message_id] = self.get_message_details(message_id)
            except (AuthExpiredError, CredentialsMissingError, ConfigurationError):
                raise
            except MailParityError as exc:
                found[message_id] = exc
        return found

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        """The decoded bytes of one attachment (the message is fetched again with PEEK)."""
        validity, uid = parse_message_id(message_id)

        def fetch(client: Any) -> bytes:
            self._check_validity(client, validity, message_id)
            raw = _body_of(client.fetch([uid], [b"BODY.PEEK[]"]).get(uid), b"")
            if raw is None:
                raise NotFoundError(f"IMAP message {message_id} no longer exists",
                                    provider="imap")
            found = parse_mime(raw).attachment(attachment_id)
            if found is None:
                raise NotFoundError(f"no attachment {attachment_id!r} in {message_id}",
                                    provider="imap")
            return found.payload

        return self._with_client("fetch attachment", fetch)

    def mark_message_processed(self, message_id: str) -> None:
        """Apply ``processed_strategy``: \\Seen, a keyword, or a move to ``processed_folder``
        (MOVE, or COPY + \\Deleted + UID EXPUNGE where the server lacks MOVE)."""
        strategy = self.config.processed_strategy
        if strategy == "none":
            return
        validity, uid = parse_message_id(message_id)

        def mark(client: Any) -> None:
            self._check_validity(client, validity, message_id)
            if strategy == "seen":
                client.add_flags([uid], [_SEEN], silent=True)
            elif strategy == "keyword":
                client.add_flags([uid], [self.config.processed_keyword.encode()], silent=True)
            else:
                self._move(client, uid)

        self._with_client("mark processed", mark)

    def _move(self, client: Any, uid: int) -> None:
        target = self.config.processed_folder
        assert target is not None  # the config validator requires it for "move"
        if client.has_capability("MOVE"):
            client.move([uid], target)
            return
        client.copy([uid], target)
        client.add_flags([uid], [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            # Without UIDPLUS only a folder-wide EXPUNGE exists: it also removes messages
            # someone else flagged \Deleted, which is what they asked for.
            client.expunge()

    # ------------------------------------------------------------------ connection test

    def test_connection(self) -> ConnectionTestResult:
        """Sign in, select the folder, and check the login names the configured mailbox."""
        login = self.config.login_name
        mailbox = self.config.mailbox
        try:
            self._with_client("connection test", lambda client: None)
        except MailParityError as exc:
            return ConnectionTestResult(success=False, error=exc.message, code=exc.code)
        finally:
            self.close()
        if "@" in login and login.casefold() != mailbox.casefold():
            return ConnectionTestResult(
                success=False, mailbox=login, code="mailbox_mismatch",
                error=f"signed in as {login}, but the connection is configured for {mailbox}",
            )
        return ConnectionTestResult(success=True, mailbox=mailbox)

    # ------------------------------------------------------------------ catch-up

    def fetch_changes(self) -> SyncBatch:
        """New messages since the cursor, found with ``UID SEARCH UID n+1:*``.

        No cursor: a baseline at the folder's current end (nothing delivered). A UIDVALIDITY
        change: the newest ``resync_limit`` messages under their new ids (``full_sync``). With
        CONDSTORE, an unchanged HIGHESTMODSEQ and UIDNEXT skip the search."""
        expected = dict(self.config.imap_cursor) if self.config.imap_cursor else None

        def read(client: Any) -> SyncBatch:
            # The session's view of its selected folder is refreshed by a command: without it
            # STATUS and SEARCH would answer for the folder as it was at the last one.
            client.noop()
            items = [b"UIDVALIDITY", b"UIDNEXT"]
            condstore = client.has_capability("CONDSTORE")
            if condstore:
                items.append(b"HIGHESTMODSEQ")
            status = client.folder_status(self.config.folder, items)
            validity = int(status[b"UIDVALIDITY"])
            uidnext = int(status[b"UIDNEXT"])
            modseq = status.get(b"HIGHESTMODSEQ")
            if self._status.get(b"UIDVALIDITY") not in (None, validity):
                self._selected = None  # the selected folder is stale: select it again
                self._select(self.config.folder, False)

            def cursor(last: int) -> dict[str, int]:
                value = {"uidvalidity": validity, "uid": last}
                if modseq is not None:
                    value["modseq"] = int(modseq)
                return value

            if expected is None:
                return SyncBatch([], cursor(uidnext - 1), expected=None, baseline=True)
            if expected.get("uidvalidity") != validity:
                uids = sorted(client.search(["ALL"]))[-self.config.resync_limit:] \
                    if self.config.resync_limit else []
                last = max(uids) if uids else uidnext - 1
                ids = [format_message_id(validity, uid) for uid in uids]
                return SyncBatch(ids, cursor(last), expected=expected, full_sync=True)
            last_uid = int(expected.get("uid", 0))
            if (modseq is not None and expected.get("modseq") == int(modseq)
                    and uidnext - 1 <= last_uid):
                return SyncBatch([], cursor(last_uid), expected=expected)
            # "n:*" always matches the highest UID, even below n: keep only the new ones.
            uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"])
                          if uid > last_uid)
            ids = [format_message_id(validity, uid) for uid in uids]
            return SyncBatch(ids, cursor(max(uids, default=last_uid)), expected=expected)

        return self._with_client("catch-up", read)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        """Compare-and-set the stored ``imap_cursor`` from ``batch.expected`` to
        ``batch.cursor``; on success this adapter's config follows."""
        cas = getattr(self.store, "compare_and_set_cursor", None)
        if not callable(cas):  # a host store without it: a plain update (one worker per mailbox)
            self.save_config_changes({"imap_cursor": dict(batch.cursor)})
            return True
        if not cas(self.config.provider_id, batch.expected, batch.cursor):
            return False
        self.config = self.config.model_copy(update={"imap_cursor": dict(batch.cursor)})
        return True


def _body_of(data: Mapping[bytes, Any] | None, section: bytes) -> bytes | None:
    """The bytes of ``BODY[<section>]`` in a FETCH answer (servers may echo the key as
    ``BODY[]`` or ``BODY[HEADER]``)."""
    if not data:
        return None
    for key, value in data.items():
        if key.startswith(b"BODY[") and key[5:-1] == section and isinstance(value, bytes):
            return value
    return None


