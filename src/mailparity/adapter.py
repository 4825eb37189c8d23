"""EmailProviderAdapter: the adapter contract, in one place, and the orchestration every
provider shares.

Subclasses implement the provider calls; this base owns what must behave the same for every
provider: where client ids and secrets come from, where tokens come from (the CredentialStore, then
the legacy tenant secret), single-flight refresh with persistence of rotated refresh tokens, and the
HTTP client every call goes through.

The contract, and who calls what:

* required (abstract; a subclass missing one cannot be constructed, and mypy reports it):
  ``_refresh`` (the token endpoint), the push registration (``register_webhook_subscription``,
  ``renew_webhook_subscription``, ``delete_webhook_subscription``: called by maintenance when the
  provider's spec has a renewal rule, and by lifecycle jobs), ``process_webhook_notification``,
  ``get_message_details``, ``get_attachment_content``, ``mark_message_processed``,
  ``test_connection``, and the catch-up pair ``fetch_changes`` / ``commit_cursor`` (called by the
  Processor for cursor and sync jobs: read from the stored cursor, then, after every message was
  handled, move the cursor with a compare-and-set);
* optional capabilities, declared as protocols and detected with ``isinstance``:
  :class:`BatchFetch` (``get_messages_details``: fetch many messages in one call during a
  catch-up), :class:`Reauthorize` (``reauthorize_subscription``: answer a "reauthorization
  required" lifecycle event without recreating the subscription), :class:`StreamAttachment`
  (``iter_attachment_content``: an attachment's bytes in chunks, never whole in memory).

What is not about talking to the provider (when to renew, where the cursor lives, how a push
becomes jobs, how a mailbox is connected) is declared on the provider's
:class:`~mailparity.providers.base.ProviderSpec`.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import requests

from .errors import (
    ConfigurationError,
    CredentialsMissingError,
    MailParityError,
)
from .http import HttpClient, RetryPolicy
from .models import (
    ConnectionTestResult,
    EmailMessage,
    OAuthTokens,
    ProviderConfigBase,
    WebhookSubscription,
    utcnow,
)
from .protocols import CredentialStore, LockStore, ProviderStore, SecretStore

__all__ = [
    "LEGACY_CREDENTIALS_SECRET",
    "BatchFetch",
    "CatchUp",
    "EmailProviderAdapter",
    "Reauthorize",
    "StreamAttachment",
    "SyncBatch",
]

log = logging.getLogger("mailparity.adapter")

#: Tenant secret holding pre-migration tokens: JSON keyed by provider_id (the seed's rollout).
LEGACY_CREDENTIALS_SECRET = "email_provider_credentials"  # noqa: S105 - a name, not a secret

#: Refresh this long before the access token expires (one buffer, not stacked ones).
REFRESH_MARGIN_SECONDS = 300.0

ConfigT = TypeVar("ConfigT", bound=ProviderConfigBase)


class EmailProviderAdapter(abc.ABC, Generic[ConfigT]):
    """One mailbox connection of one provider.

    Args:
        config: the provider config.
        store: an object that is both a CredentialStore and a ProviderStore (and, ideally, a
            LockStore, which makes token refresh single-flight across threads and processes).
        secrets: the host's tenant secrets (client id/secret, legacy tokens), optional.
        session: a ``requests.Session`` for every HTTP call (token endpoints included).
        sleep: injectable for tests (no real waiting).
        clock: injectable for tests (UTC now).
        retry: the retry policy of the HTTP layer.
    """

    provider: str = ""
    #: Environment variable names of the client id and secret.
    env_client_id: str = ""
    env_client_secret: str = ""
    #: Tenant secret names of the client id and secret.
    secret_client_id: str = ""
    secret_client_secret: str = ""

    def __init__(
        self,
        config: ConfigT,
        *,
        store: Any,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        if not isinstance(store, CredentialStore) or not isinstance(store, ProviderStore):
            raise ConfigurationError("store must implement CredentialStore and ProviderStore")
        self.config: ConfigT = config
        self.store = store
        self.secrets = secrets
        self.session = session or requests.Session()
        self.sleep = sleep
        self.clock = clock
        self.http = HttpClient(
            session=self.session,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            sleep=sleep,
            clock=clock,
            provider=self.provider,
        )
        self._tokens: OAuthTokens | None = None
        self._token_lock = threading.Lock()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider_id={self.config.provider_id!r},"
            f" mailbox={self.config.mailbox!r})"
        )

    # ------------------------------------------------------------------ client credentials

    def client_id(self) -> str | None:
        """The OAuth client id: the config, then the environment, then the tenant secrets."""
        if self.config.client_id:
            return self.config.client_id
        env = os.environ.get(self.env_client_id)
        if env:
            return env
        if self.secrets is not None:
            return self.secrets.get_secret(self.config.tenant, self.secret_client_id)
        return None

    def client_secret(self) -> str | None:
        """The OAuth client secret, resolved like :meth:`client_id`. Never logged."""
        if self.config.client_secret is not None:
            return self.config.client_secret.get_secret_value()
        env = os.environ.get(self.env_client_secret)
        if env:
            return env
        if self.secrets is not None:
            return self.secrets.get_secret(self.config.tenant, self.secret_client_secret)
        return None

    def require_client_id(self) -> str:
        """:meth:`client_id`, or a ConfigurationError naming every place that was looked at."""
        value = self.client_id()
        if not value:
            raise ConfigurationError(
                f"no client id for provider {self.config.provider_id!r}: set it in the config, in"
                f" ${self.env_client_id}, or as tenant secret {self.secret_client_id!r}"
            )
        return value

    # ------------------------------------------------------------------ tokens

    def _legacy_tokens(self) -> OAuthTokens | None:
        if self.secrets is None:
            return None
        raw = self.secrets.get_secret(self.config.tenant, LEGACY_CREDENTIALS_SECRET)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            entry = data.get(self.config.provider_id) if isinstance(data, Mapping) else None
        except ValueError:
            log.warning("tenant secret %s is not JSON; ignored", LEGACY_CREDENTIALS_SECRET)
            return None
        if not isinstance(entry, Mapping) or not entry.get("access_token"):
            return None
        expires = entry.get("token_expires_at") or entry.get("expires_at")
        try:
            expires_at = (
                datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
                if expires
                else self.clock()
            )
        except ValueError:
            expires_at = self.clock()  # unknown expiry: treat as expired, refresh on first use
        return OAuthTokens(
            access_token=entry["access_token"],
            refresh_token=entry.get("refresh_token") or None,
            expires_at=expires_at,
        )

    def load_credentials(self) -> OAuthTokens:
        """The stored tokens: the CredentialStore, then the legacy tenant secret
        ``email_provider_credentials``. Raises :class:`CredentialsMissingError` when neither has
        them (application / service-account modes acquire a token instead)."""
        tokens = self.store.load_tokens(self.config.provider_id)
        if tokens is None:
            tokens = self._legacy_tokens()
            if tokens is not None:
                log.info(
                    "provider %s: using legacy tokens from tenant secrets", self.config.provider_id
                )
        if tokens is None:
            tokens = self._initial_tokens()
        if tokens is None:
            raise CredentialsMissingError(
                f"no tokens for provider {self.config.provider_id!r}: connect the mailbox first",
                provider=self.provider,
            )
        self._tokens = tokens
        return tokens

    def _initial_tokens(self) -> OAuthTokens | None:
        """Tokens obtainable without a user (client credentials, service account); None if not."""
        return None

    @abc.abstractmethod
    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        """Call the provider's token endpoint; return new tokens (keep the old refresh token when
        the provider sent none). Raise AuthExpiredError for terminal failures."""

    def refresh_access_token(self) -> OAuthTokens:
        """Refresh now, persist through ``store.save_tokens`` and return the new tokens.

        Single-flight: with a LockStore, only one thread or process refreshes a provider at a time;
        the others wait and then use what it stored (a newer refresh token is never overwritten
        by an older one)."""
        return self._refresh_single_flight(force=True, stale=self._tokens)

    def _refresh_single_flight(self, *, force: bool, stale: OAuthTokens | None) -> OAuthTokens:
        with self._token_lock:
            lock_name = f"token-refresh:{self.config.provider_id}"
            locks: LockStore | None = self.store if isinstance(self.store, LockStore) else None
            deadline = time.monotonic() + 30.0
            acquired = False
            waited = 0.0
            while locks is not None:
                now = self.clock()
                acquired = locks.acquire_lock(
                    lock_name, self._owner, until=now + timedelta(seconds=60), now=now
                )
                if acquired:
                    break
                if time.monotonic() > deadline or waited > 30.0:
                    break  # a stuck lock holder must not stop us for good; its lease will lapse
                self.sleep(0.05)
                waited += 0.05
            try:
                current = self.store.load_tokens(self.config.provider_id)
                # A forced refresh with nothing loaded yet must not mistake the stored tokens for
                # someone else's fresh ones: it refreshes them.
                # Otherwise, tokens that differ from the stale ones mean someone else refreshed
                # while we waited: use theirs.
                if (
                    current is not None
                    and not (force and stale is None)
                    and _newer(current, stale)
                    and not current.expires_within(REFRESH_MARGIN_SECONDS, now=self.clock())
                ):
                    self._tokens = current
                    return current
                if current is None:
                    current = self._tokens or self._legacy_tokens()
                tokens = self._refresh(current)
                self.store.save_tokens(self.config.provider_id, tokens)
                self._tokens = tokens
                return tokens
            finally:
                if locks is not None and acquired:
                    locks.release_lock(lock_name, self._owner)

    def get_access_token(self) -> str:
        """A valid access token, refreshed first when it expires within five minutes."""
        tokens = self._tokens
        if tokens is None:
            try:
                tokens = self.load_credentials()
            except CredentialsMissingError:
                tokens = None
        if tokens is None or tokens.expires_within(REFRESH_MARGIN_SECONDS, now=self.clock()):
            tokens = self._refresh_single_flight(force=False, stale=tokens)
        return tokens.access_token.get_secret_value()

    def force_refresh(self) -> str:
        """Refresh after a 401 and return the new access token."""
        tokens = self._refresh_single_flight(force=True, stale=self._tokens)
        return tokens.access_token.get_secret_value()

    # ------------------------------------------------------------------ provider API

    @abc.abstractmethod
    def register_webhook_subscription(self) -> WebhookSubscription:
        """Create the Graph subscription / Gmail watch and persist its id and expiry."""

    @abc.abstractmethod
    def renew_webhook_subscription(self) -> WebhookSubscription:
        """Extend the subscription / watch (recreating it when it is gone)."""

    @abc.abstractmethod
    def delete_webhook_subscription(self) -> None:
        """Remove the subscription / stop the watch; a missing one is not an error."""

    @abc.abstractmethod
    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        """The ids of the messages a notification calls for (see API.md section 3)."""

    @abc.abstractmethod
    def get_message_details(self, message_id: str) -> EmailMessage:
        """Fetch and normalize one message."""

    @abc.abstractmethod
    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        """The bytes of one attachment."""

    @abc.abstractmethod
    def mark_message_processed(self, message_id: str) -> None:
        """Apply the configured processed strategy to the message."""

    @abc.abstractmethod
    def test_connection(self) -> ConnectionTestResult:
        """Check the mailbox can be read; errors come back as ``success=False``, never raised.
        Providers apply :meth:`mailbox_mismatch` to the identity the token belongs to, and
        :meth:`connection_failed` to what a check raised."""

    def mailbox_mismatch(self, identities: Sequence[str]) -> ConnectionTestResult | None:
        """The one mailbox rule of ``test_connection``: the token's identities (addresses the
        provider reports for the signed-in account) must include the configured mailbox,
        compared after ``strip()`` and ``casefold()``. None when one does; otherwise a failed
        result, code ``mailbox_mismatch``, naming both and reporting the observed mailbox."""
        wanted = self.config.mailbox.strip().casefold()
        names = [name.strip() for name in identities if name and name.strip()]
        if any(name.casefold() == wanted for name in names):
            return None
        observed = names[0] if names else None
        return ConnectionTestResult(
            success=False,
            code="mailbox_mismatch",
            mailbox=observed,
            error=(
                f"the credentials belong to {observed or 'an unknown account'}, but the provider"
                f" is configured for {self.config.mailbox}"
            ),
        )

    def connection_failed(
        self, error: BaseException, *, mailbox: str | None = None
    ) -> ConnectionTestResult:
        """The failed ``test_connection`` result of ``error``: a library error with its status,
        code and request id; anything else logged and reported by type only (a foreign
        exception's text may quote a request and its token)."""
        if isinstance(error, MailParityError):
            return ConnectionTestResult(
                success=False, error=error.message, code=error.code, status=error.status,
                request_id=error.request_id, mailbox=mailbox,
            )
        log.error(
            "provider %s: connection test failed: %s", self.config.provider_id,
            type(error).__name__, exc_info=error,
        )
        return ConnectionTestResult(
            success=False, error=f"unexpected error: {type(error).__name__}", mailbox=mailbox
        )

    # ------------------------------------------------------------------ catch-up (cursor)

    @abc.abstractmethod
    def fetch_changes(self) -> SyncBatch:
        """Read what changed since the stored cursor (Gmail history, Graph delta, IMAP UIDs).

        Returns a :class:`SyncBatch`: the new inbound message ids, the new cursor and the cursor
        it started from. Establishes a baseline (no ids) when there is no cursor yet. Must not
        move the stored cursor: the Processor commits it with :meth:`commit_cursor` only after
        every message was published, deduplicated or reported. Raises the library's errors
        (auth, throttling, transient) like any other call."""

    @abc.abstractmethod
    def commit_cursor(self, batch: SyncBatch) -> bool:
        """Move the stored cursor to ``batch.cursor`` if it is still ``batch.expected`` (a
        compare-and-set, see ``ProviderRegistry.compare_and_set_cursor``); False, with nothing
        changed, when another worker moved it first."""

    def save_config_changes(self, changes: Mapping[str, Any]) -> None:
        """Persist ``changes`` to this provider's config (atomically when the store supports it)
        and apply them to ``self.config``."""
        update = getattr(self.store, "update_provider", None)
        if callable(update):
            try:
                self.config = update(self.config.provider_id, dict(changes))
                return
            except KeyError:
                pass  # not stored yet: fall through to a whole save
        self.config = self.config.model_copy(update=dict(changes))
        self.store.save_provider(self.config)


def _newer(current: OAuthTokens, stale: OAuthTokens | None) -> bool:
    if stale is None:
        return True
    return current.access_token.get_secret_value() != stale.access_token.get_secret_value()


class SyncBatch:
    """What a catch-up read from the stored cursor found.

    Attributes:
        message_ids: ids of new inbound messages, each once, oldest first where known.
        cursor: the provider's new cursor (Gmail: history id ``int``; Graph:
            ``{folder: deltaLink}``), to be committed with ``commit_cursor`` only after every
            message was handled.
        expected: the cursor value read at the start (for the compare-and-set).
        baseline: True when no cursor existed (or it expired) and this only established one.
        full_sync: True when the cursor had expired and a bounded full listing was done.
    """

    __slots__ = ("baseline", "cursor", "expected", "full_sync", "message_ids")

    def __init__(
        self,
        message_ids: list[str],
        cursor: Any,
        *,
        expected: Any = None,
        baseline: bool = False,
        full_sync: bool = False,
    ) -> None:
        self.message_ids = message_ids
        self.cursor = cursor
        self.expected = expected
        self.baseline = baseline
        self.full_sync = full_sync

    def __repr__(self) -> str:
        return (
            f"SyncBatch(messages={len(self.message_ids)}, baseline={self.baseline},"
            f" full_sync={self.full_sync})"
        )


# --------------------------------------------------------------------------------------------
# Capabilities (optional; detected with isinstance)


@runtime_checkable
class CatchUp(Protocol):
    """The catch-up pair every adapter implements (declared abstract on the base as well)."""

    def fetch_changes(self) -> SyncBatch:
        """See :meth:`EmailProviderAdapter.fetch_changes`."""
        ...

    def commit_cursor(self, batch: SyncBatch) -> bool:
        """See :meth:`EmailProviderAdapter.commit_cursor`."""
        ...


@runtime_checkable
class BatchFetch(Protocol):
    """Fetch several messages in one provider call (Graph ``$batch``, Gmail batch)."""

    def get_messages_details(self, message_ids: Sequence[str]) -> Mapping[str, Any]:
        """``{message_id: EmailMessage or the MailParityError of that id}``; ids the provider
        did not answer may be missing (they are fetched one by one)."""
        ...


@runtime_checkable
class Reauthorize(Protocol):
    """Answer a "reauthorization required" lifecycle event in place (Graph)."""

    def reauthorize_subscription(self) -> Any:
        """Reauthorize the current subscription (recreating it when the provider lost it)."""
        ...


@runtime_checkable
class StreamAttachment(Protocol):
    """An attachment's content in chunks (Graph streams the download; Gmail decodes the base64
    it answered a chunk at a time). Adapters without it give ``get_attachment_content``'s
    bytes, which :func:`mailparity.attachments.stream_attachment` then hands out in slices."""

    def iter_attachment_content(
        self, message_id: str, attachment_id: str, *, chunk_size: int = 65_536
    ) -> Iterator[bytes]:
        """The attachment's bytes as chunks of at most ``chunk_size`` (none empty). Errors of the
        request itself raise on the first ``next()``, like the other calls' errors."""
        ...
