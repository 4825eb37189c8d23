"""GmailAdapter: Gmail / Google Workspace through direct REST calls on the shared HTTP client.

Every Gmail call goes through ``self.http`` (requests, tenacity retries, 401 refresh-once) with
the adapter itself as the token provider; googleapiclient is not used on this path (its import
alone costs more than a whole push round trip on a cold start). Flow of a push::

    push {emailAddress, historyId} -> process_webhook_notification -> fetch_changes()
        history.list from the STORED cursor (never the pushed id) -> new message ids
    processor: get_message(s)_details -> publish -> mark_message_processed -> commit_cursor(batch)

The cursor moves only in :meth:`GmailAdapter.commit_cursor`, after the work is done. A history 404
(cursor too old) becomes a bounded full sync: ``getProfile`` first (its historyId is the new
baseline, so changes during the listing are replayed next time), then ``messages.list``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Literal

import requests

from ... import mime
from ...adapter import EmailProviderAdapter, SyncBatch
from ...errors import (
    AuthError,
    BadRequestError,
    ConfigurationError,
    CredentialsMissingError,
    CursorExpiredError,
    MailParityError,
    NotFoundError,
    PermanentMessageError,
    PermissionDeniedError,
    ProviderUnavailableError,
    SubscriptionError,
    WebhookValidationError,
)
from ...http import BatchAnswer, RetryPolicy, run_batch
from ...models import (
    ConnectionTestResult,
    EmailMessage,
    GmailProviderConfig,
    OAuthTokens,
    WebhookSubscription,
    utcnow,
)
from ...protocols import SecretStore
from ...urlpath import path_segment
from . import auth
from .batch import MAX_BATCH, BatchResponseError, build_batch, parse_batch
from .labels import LabelCache
from .messages import (
    PART_PREFIX,
    UnrepresentableError,
    b64url_decode,
    b64url_decode_chunks,
    find_part,
    message_from_full,
    message_from_raw,
    raw_bytes,
)
from .parts import PartCache, inline_size
from .transport import (
    GmailHttpClient,
    fake_response,
    is_gmail_retryable,
    json_or_empty,
    map_gmail_error,
)

__all__ = ["GmailAdapter"]

log = logging.getLogger("mailparity.gmail")

#: Labels of outgoing mail: never an inbound event, whatever the label filters say.
OUTGOING_LABELS = frozenset({"SENT", "DRAFT"})
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,512}$")
_ATTACHMENT_ID_RE = re.compile(r"^[A-Za-z0-9_\-.:=]{1,4096}$")
#: Base64 characters decoded at a time when an attachment is written to a file.
ATTACHMENT_CHUNK_CHARS = 1 << 18


def _history_id(value: Any, what: str) -> int:
    """A Gmail history id (uint64; a JSON string or number) as int; ValueError when it is not."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is not a history id")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value.strip().isdigit():
        result = int(value.strip())
    else:
        raise ValueError(f"{what} is not a history id")
    if result <= 0 or result >= 2**64:
        raise ValueError(f"{what} is out of range")
    return result


def _check_id(value: object, what: str = "message id") -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise BadRequestError(f"invalid Gmail {what}: {str(value)[:80]!r}", provider="google")
    return value


class GmailAdapter(EmailProviderAdapter[GmailProviderConfig]):
    """One Gmail mailbox (API.md section 3), plus the catch-up calls of the pipeline.

    Args:
        config: the mailbox's :class:`GmailProviderConfig`.
        store: a CredentialStore + ProviderStore (``update_provider`` and
            ``compare_and_set_history_id`` are used when the store has them).
        secrets, session, sleep, clock, retry, timeout: see :class:`EmailProviderAdapter`.
        message_format: ``"full"`` (structured walk, raw fallback) or ``"raw"`` (always raw).
        full_sync_window: how far back a full sync lists when ``last_processed_at`` is unknown.
    """

    provider = "google"
    env_client_id = "GOOGLE_CLIENT_ID"
    env_client_secret = "GOOGLE_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
    secret_client_id = "google_client_id"  # noqa: S105
    secret_client_secret = "google_client_secret"  # noqa: S105

    def __init__(
        self,
        config: GmailProviderConfig,
        *,
        store: Any,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        message_format: Literal["full", "raw"] = "full",
        full_sync_window: timedelta = timedelta(days=7),
    ) -> None:
        if not isinstance(config, GmailProviderConfig):
            raise ConfigurationError("GmailAdapter needs a GmailProviderConfig")
        if message_format not in ("full", "raw"):
            raise ConfigurationError(
                f"message_format must be 'full' or 'raw', not {message_format!r}"
            )
        super().__init__(
            config, store=store, secrets=secrets, session=session, sleep=sleep, clock=clock,
            retry=retry, timeout=timeout,
        )
        self.http = GmailHttpClient(
            session=self.session,
            timeout=timeout,
            retry=self.http.retry,
            sleep=sleep,
            clock=clock,
            provider="google",
            map_error=map_gmail_error,
            is_retryable=is_gmail_retryable,
        )
        self.message_format: Literal["full", "raw"] = message_format
        self.full_sync_window = full_sync_window
        self.labels = LabelCache(self._call)
        self._label_ids: list[str] | None = None
        #: What was read of the last messages for their ``part:`` attachments (bounded).
        self.part_cache = PartCache()

    # ------------------------------------------------------------------ plumbing

    @property
    def _users_url(self) -> str:
        return f"{self.config.gmail_base_url.rstrip('/')}/gmail/v1/users/me/"

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        allow_status: frozenset[int] = frozenset(),
    ) -> requests.Response:
        return self.http.request(
            method, self._users_url + path, params=params, json=json, auth=self,
            allow_status=allow_status,
        )

    def _call(
        self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return json_or_empty(self._request(method, path, json=json, params=params))

    def _reload(self) -> GmailProviderConfig:
        """Re-read the config: the worker moves the cursor while maintenance renews the watch."""
        stored = self.store.get_provider(self.config.provider_id)
        if isinstance(stored, GmailProviderConfig):
            self.config = stored
        return self.config

    def _filter_label_ids(self) -> list[str]:
        if self._label_ids is None:
            self._label_ids = self.labels.resolve(self.config.label_filters)
        return self._label_ids

    # ------------------------------------------------------------------ tokens

    def _initial_tokens(self) -> OAuthTokens | None:
        if self.config.auth_mode != "service_account":
            return None
        tokens = self._refresh(None)
        self.store.save_tokens(self.config.provider_id, tokens)
        return tokens

    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        if self.config.auth_mode == "service_account":
            if self.config.service_account_info is None:
                raise ConfigurationError(
                    "auth_mode is service_account but service_account_info is not set",
                    provider="google",
                )
            return auth.refresh_service_account(
                self.session,
                info=self.config.service_account_info.get_secret_value(),
                subject=self.config.mailbox,
                scopes=self.config.scopes,
                token_uri=self.config.token_uri,
                clock=self.clock,
            )
        if tokens is None:
            raise CredentialsMissingError(
                f"no tokens for provider {self.config.provider_id!r}: connect the mailbox first",
                provider="google",
            )
        client_id = self.require_client_id()
        client_secret = self.client_secret()
        if not client_secret:
            raise ConfigurationError(
                f"no client secret for provider {self.config.provider_id!r}: set it in the config,"
                f" in ${self.env_client_secret}, or as tenant secret {self.secret_client_secret!r}",
                provider="google",
            )
        return auth.refresh_user_tokens(
            self.session,
            tokens=tokens,
            token_uri=self.config.token_uri,
            client_id=client_id,
            client_secret=client_secret,
            clock=self.clock,
        )

    # ------------------------------------------------------------------ watch

    def register_webhook_subscription(self) -> WebhookSubscription:
        """``users.watch`` on the configured topic and labels. Saves ``watch_expiration``, and
        ``history_id`` only when there is no cursor yet (an existing cursor marks work not done)."""
        self._reload()
        topic = self.config.topic_path
        if not topic:
            raise ConfigurationError(
                "Gmail watch needs pubsub_topic_name (and project_id unless the name is a full"
                " projects/.../topics/... path)",
                provider="google",
            )
        body: dict[str, Any] = {"topicName": topic}
        label_ids = self._filter_label_ids()
        if label_ids:
            body["labelIds"] = label_ids
            body["labelFilterBehavior"] = "INCLUDE"
        try:
            data = self._call("POST", "watch", body)
        except (BadRequestError, PermissionDeniedError, NotFoundError) as exc:
            raise SubscriptionError(
                f"Gmail watch on {topic} failed: {exc.message} (check that the topic exists and"
                " gmail-api-push@system.gserviceaccount.com may publish to it)",
                status=exc.status, code=exc.code, request_id=exc.request_id, provider="google",
            ) from exc
        try:
            history_id = _history_id(data.get("historyId"), "watch historyId")
            expires_ms = int(str(data.get("expiration")))
        except (TypeError, ValueError):
            raise SubscriptionError(
                "Gmail watch answered without a valid historyId/expiration", provider="google"
            ) from None
        expires_at = datetime.fromtimestamp(expires_ms / 1000, tz=timezone.utc)
        changes: dict[str, Any] = {"watch_expiration": expires_at}
        if self.config.history_id is None:
            cas = getattr(self.store, "compare_and_set_history_id", None)
            if callable(cas):
                cas(self.config.provider_id, None, history_id)
            else:
                changes["history_id"] = history_id
        self.save_config_changes(changes)
        return WebhookSubscription(id=None, expires_at=expires_at, resource=topic)

    def renew_webhook_subscription(self) -> WebhookSubscription:
        """Watch again: Gmail treats a repeated watch as a renewal."""
        return self.register_webhook_subscription()

    def delete_webhook_subscription(self) -> None:
        """``users.stop`` (a 404 means there is nothing to stop); clears ``watch_expiration``."""
        self._request("POST", "stop", allow_status=frozenset({404}))
        self._reload()
        self.save_config_changes({"watch_expiration": None})

    # ------------------------------------------------------------------ notifications and sync

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        """Validate a decoded push ``{"emailAddress", "historyId"}`` and return the new message
        ids from the stored cursor. The pushed id is only a hint; the cursor does not move."""
        if not isinstance(notification, Mapping):
            raise WebhookValidationError("Gmail notification must be a JSON object")
        try:
            _history_id(notification.get("historyId"), "historyId")
        except ValueError as exc:
            raise WebhookValidationError(f"Gmail notification: {exc}") from None
        address = notification.get("emailAddress")
        if address is not None:
            if not isinstance(address, str):
                raise WebhookValidationError("Gmail notification: emailAddress is not a string")
            if address.strip().lower() != self.config.mailbox.strip().lower():
                raise WebhookValidationError(
                    f"Gmail notification for {address!r} reached provider"
                    f" {self.config.provider_id!r} of {self.config.mailbox!r}"
                )
        return self.fetch_changes().message_ids

    def _profile(self) -> dict[str, Any]:
        return self._call("GET", "profile")

    def _profile_history_id(self) -> int:
        try:
            return _history_id(self._profile().get("historyId"), "profile historyId")
        except ValueError:
            raise ProviderUnavailableError(
                "Gmail getProfile answered without a historyId", provider="google"
            ) from None

    def fetch_changes(self) -> SyncBatch:
        """New inbound message ids since the stored cursor (see module docstring).

        Label filters match when a message carries ANY of them; SENT and DRAFT never match.
        """
        cursor = self._reload().history_id
        if cursor is None:
            return SyncBatch([], self._profile_history_id(), expected=None, baseline=True)
        try:
            return self._history_since(cursor)
        except CursorExpiredError:
            log.warning(
                "provider %s: history cursor %s expired; running a full sync",
                self.config.provider_id, cursor,
            )
            return self._full_sync(cursor)

    def _history_since(self, cursor: int) -> SyncBatch:
        label_ids = self._filter_label_ids()
        params: dict[str, Any] = {
            "startHistoryId": str(cursor),
            "historyTypes": "messageAdded",
            "maxResults": 500,
        }
        if len(label_ids) == 1:
            params["labelId"] = label_ids[0]
        found: dict[str, list[str] | None] = {}
        newest = cursor
        page_token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page_params = dict(params)
            if page_token:
                page_params["pageToken"] = page_token
            try:
                data = self._call("GET", "history", params=page_params)
            except NotFoundError as exc:
                raise CursorExpiredError(
                    f"Gmail history cursor {cursor} is too old", status=exc.status,
                    code=exc.code, request_id=exc.request_id, provider="google",
                ) from exc
            with contextlib.suppress(ValueError):  # a page without historyId: keep ours
                newest = max(newest, _history_id(data.get("historyId"), "historyId"))
            for record in data.get("history") or []:  # pages without "history" happen
                if not isinstance(record, Mapping):
                    continue
                for added in record.get("messagesAdded") or []:
                    message = added.get("message") if isinstance(added, Mapping) else None
                    if not isinstance(message, Mapping):
                        continue
                    message_id = message.get("id")
                    if not isinstance(message_id, str) or message_id in found:
                        continue
                    labels = message.get("labelIds")
                    found[message_id] = (
                        [str(x) for x in labels] if isinstance(labels, list) else None
                    )
            token = data.get("nextPageToken")
            if not isinstance(token, str) or not token or token in seen_tokens:
                break
            seen_tokens.add(token)
            page_token = token
        ids = [mid for mid, labels in found.items() if self._wanted(mid, labels, label_ids)]
        return SyncBatch(ids, newest, expected=cursor)

    def _wanted(self, message_id: str, labels: list[str] | None, label_ids: Sequence[str]) -> bool:
        if labels is None:
            # history did not say: ask for the labels (cheap minimal format).
            try:
                data = self._call(
                    "GET", f"messages/{message_id}", params={"format": "minimal"}
                )
            except NotFoundError:
                return False  # deleted since: nothing to deliver
            raw = data.get("labelIds")
            labels = [str(x) for x in raw] if isinstance(raw, list) else []
        if OUTGOING_LABELS.intersection(labels):
            return False
        return not label_ids or bool(set(label_ids).intersection(labels))

    def _full_sync(self, expired: int) -> SyncBatch:
        # Baseline first: anything arriving while we list is replayed from it next time.
        baseline = self._profile_history_id()
        since = self.config.last_processed_at or (self.clock() - self.full_sync_window)
        query = f"after:{int(since.timestamp())} -in:sent -in:drafts"
        ids: list[str] = []
        seen: set[str] = set()
        label_ids = self._filter_label_ids()
        listings: list[str | None] = list(label_ids) or [None]
        for label in listings:
            listed: list[str] = []
            page_token: str | None = None
            tokens: set[str] = set()
            while True:
                params: dict[str, Any] = {"q": query, "maxResults": 500}
                if label:
                    params["labelIds"] = label
                if page_token:
                    params["pageToken"] = page_token
                data = self._call("GET", "messages", params=params)
                for item in data.get("messages") or []:
                    mid = item.get("id") if isinstance(item, Mapping) else None
                    if isinstance(mid, str) and mid not in seen:
                        seen.add(mid)
                        listed.append(mid)
                token = data.get("nextPageToken")
                if not isinstance(token, str) or not token or token in tokens:
                    break
                tokens.add(token)
                page_token = token
            ids.extend(reversed(listed))  # messages.list is newest first
        return SyncBatch(ids, baseline, expected=expired, full_sync=True)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        """Move the cursor to ``batch.cursor`` if it is still ``batch.expected``; records
        ``last_processed_at``. False when another worker moved it first (nothing is changed)."""
        if batch.cursor is None:
            return False
        new = int(batch.cursor)
        expected = None if batch.expected is None else int(batch.expected)
        now = self.clock()
        cas = getattr(self.store, "compare_and_set_history_id", None)
        if callable(cas):
            if expected is not None and new < expected:
                new = expected  # never move backwards
            if not cas(self.config.provider_id, expected, new):
                self._reload()
                return False
            self._reload()
            self.save_config_changes({"last_processed_at": now})
            return True
        current = self._reload().history_id
        if current != expected:
            return False
        changes: dict[str, Any] = {"last_processed_at": now}
        if expected is None or new >= expected:
            changes["history_id"] = new
        self.save_config_changes(changes)
        return True

    # ------------------------------------------------------------------ messages

    def _get_message_json(self, message_id: str, fmt: str) -> dict[str, Any]:
        return self._call("GET", f"messages/{message_id}", params={"format": fmt})

    def _from_raw(self, message_id: str) -> EmailMessage:
        data = self._get_message_json(message_id, "raw")
        try:
            return message_from_raw(data, self.config, now=self.clock())
        except UnrepresentableError as exc:
            raise PermanentMessageError(
                f"Gmail message {message_id} cannot be parsed: {exc}", provider="google"
            ) from None

    def _from_full_json(self, message_id: str, data: Mapping[str, Any]) -> EmailMessage:
        try:
            return message_from_full(data, self.config, now=self.clock())
        except UnrepresentableError as exc:
            log.info("message %s: %s; using format=raw", message_id, exc)
            return self._from_raw(message_id)

    def get_message_details(self, message_id: str) -> EmailMessage:
        """``messages.get`` (``format=full``, raw when the structure cannot be represented)."""
        _check_id(message_id)
        if self.message_format == "raw":
            return self._from_raw(message_id)
        return self._from_full_json(message_id, self._get_message_json(message_id, "full"))

    def get_messages_details(
        self, message_ids: Sequence[str]
    ) -> dict[str, EmailMessage | MailParityError]:
        """Many messages through the batch endpoint (at most 25 calls per request).

        Each id maps to its message or to the error of its own call; throttled items are
        retried with backoff, a 401 item after one refresh. Authentication failures of the whole
        request are raised (nothing can succeed without a token)."""
        results: dict[str, EmailMessage | MailParityError] = {}
        unique: list[str] = []
        for mid in message_ids:
            if mid in results or mid in unique:
                continue
            try:
                unique.append(_check_id(mid))
            except BadRequestError as exc:
                results[str(mid)] = exc
        if self.message_format == "raw":
            for mid in unique:
                try:
                    results[mid] = self._from_raw(mid)
                except AuthError:
                    raise
                except MailParityError as exc:
                    results[mid] = exc
            return results
        for start in range(0, len(unique), MAX_BATCH):
            self._batch_chunk(unique[start : start + MAX_BATCH], results)
        return results

    def _batch_chunk(
        self, ids: list[str], results: dict[str, EmailMessage | MailParityError]
    ) -> None:
        """One batch of ``ids`` through the shared batch loop (:func:`run_batch`). Quota 403s
        are retried like 429s, with Gmail's advice of a backoff of at least a second."""
        run_batch(
            ids,
            results,
            send=self._send_batch,
            read=self._read_member,
            error=self._member_error,
            retryable=self._member_retryable,
            refresh=self.force_refresh,
            sleep=self.sleep,
            policy=self.http.retry,
            provider="google",
            min_backoff=1.0,
        )

    def _read_member(self, message_id: str, answer: BatchAnswer) -> EmailMessage:
        data = json_or_empty(fake_response(answer.status, answer.body, dict(answer.headers)))
        return self._from_full_json(message_id, data)

    def _member_error(self, answer: BatchAnswer) -> MailParityError:
        return map_gmail_error(fake_response(answer.status, answer.body, dict(answer.headers)))

    def _member_retryable(self, answer: BatchAnswer) -> bool:
        return is_gmail_retryable(
            fake_response(answer.status, answer.body, dict(answer.headers))
        )

    def _send_batch(self, ids: Sequence[str]) -> dict[str, BatchAnswer]:
        """POST one multipart batch reading ``ids``; the answers by message id."""
        calls = [
            (f"item-{i}", f"GET /gmail/v1/users/me/messages/{mid}?format=full")
            for i, mid in enumerate(ids)
        ]
        content_type, body = build_batch(calls)
        url = f"{self.config.gmail_base_url.rstrip('/')}/batch/gmail/v1"
        response = self.http.request(
            "POST", url, data=body, headers={"Content-Type": content_type}, auth=self
        )
        try:
            parts = parse_batch(response.headers.get("Content-Type", ""), response.content)
        except BatchResponseError as exc:
            raise ProviderUnavailableError(
                f"unreadable Gmail batch response: {exc}", provider="google"
            ) from None
        by_id: dict[str, BatchAnswer] = {}
        for index, part in enumerate(parts):
            key = part.content_id or ""
            if key.startswith("response-"):
                key = key[len("response-") :]
            if key.startswith("item-") and key[5:].isdigit() and int(key[5:]) < len(ids):
                mid = ids[int(key[5:])]
            elif index < len(ids):
                mid = ids[index]  # no usable Content-ID: the order is the request's
            else:
                continue
            by_id[mid] = BatchAnswer(part.status, part.headers, part.body)
        return by_id

    # ------------------------------------------------------------------ attachments

    def get_attachment_content(
        self, message_id: str, attachment_id: str, *, into: IO[bytes] | None = None
    ) -> bytes:
        """The attachment's bytes; with ``into``, written there in chunks and ``b""`` returned.

        ``part:{partId}`` ids (inline data, raw mode) are resolved from the whole message, read
        once for all its parts (:attr:`part_cache`, a few messages and bytes at most).
        """
        source = self._attachment_source(message_id, attachment_id)
        if into is None:
            if isinstance(source, bytes):
                return source
            return self._decoded(source)
        for chunk in self._chunks(source, ATTACHMENT_CHUNK_CHARS):
            into.write(chunk)
        return b""

    def iter_attachment_content(
        self, message_id: str, attachment_id: str, *, chunk_size: int = 65_536
    ) -> Iterator[bytes]:
        """The attachment's bytes in chunks of at most ``chunk_size``. Gmail answers the whole
        content (base64url in JSON): it is decoded a chunk at a time as the chunks are taken,
        so the decoded content never sits in memory whole. The request is made on the first
        ``next()``."""
        source = self._attachment_source(message_id, attachment_id)
        if isinstance(source, bytes):
            view = memoryview(source)
            for start in range(0, len(view), chunk_size):
                yield bytes(view[start : start + chunk_size])
            return
        # 4 characters of base64 make 3 bytes.
        yield from self._chunks(source, max(4, chunk_size // 3 * 4))

    def _attachment_source(self, message_id: str, attachment_id: str) -> str | bytes:
        """The content as Gmail gave it: base64url text (str) or already decoded bytes."""
        _check_id(message_id)
        if not isinstance(attachment_id, str) or not attachment_id:
            raise BadRequestError("attachment id is empty", provider="google")
        if attachment_id.startswith(PART_PREFIX):
            return self._part_source(message_id, attachment_id[len(PART_PREFIX) :])
        if not _ATTACHMENT_ID_RE.match(attachment_id):
            raise BadRequestError("invalid Gmail attachment id", provider="google")
        return self._attachment_data(message_id, attachment_id)

    def _attachment_data(self, message_id: str, attachment_id: str) -> str:
        quoted = path_segment(attachment_id, "Gmail attachment id", provider="google")
        data = self._call("GET", f"messages/{message_id}/attachments/{quoted}")
        encoded = data.get("data")
        if not isinstance(encoded, str):
            if data.get("size") == 0:
                encoded = ""
            else:
                raise ProviderUnavailableError(
                    "Gmail attachment answer without data", provider="google"
                )
        return encoded

    @staticmethod
    def _decoded(encoded: str) -> bytes:
        try:
            return b64url_decode(encoded)
        except ValueError:
            raise ProviderUnavailableError(
                "Gmail attachment data is not base64url", provider="google"
            ) from None

    @staticmethod
    def _chunks(source: str | bytes, chunk_chars: int) -> Iterator[bytes]:
        if isinstance(source, bytes):
            if source:
                yield source
            return
        try:
            yield from b64url_decode_chunks(source, chunk_chars=chunk_chars)
        except ValueError:
            raise ProviderUnavailableError(
                "Gmail attachment data is not base64url", provider="google"
            ) from None

    def _part_source(self, message_id: str, part_id: str) -> str | bytes:
        """The content of part ``part_id``: from the ``format=full`` structure when it holds it
        (inline data, or an attachment id to download), else from the parsed raw message. What
        was read of a message is kept in :attr:`part_cache`, so its N parts cost one download."""
        if not re.match(r"^[0-9.]*$", part_id):
            raise BadRequestError(f"invalid part id {part_id[:40]!r}", provider="google")
        if self.message_format == "full":
            payload = self._cached_parts("full", message_id, self._full_payload)
            part = find_part(payload, part_id)
            if part is not None:
                raw_body = part.get("body")
                body: Mapping[str, Any] = raw_body if isinstance(raw_body, Mapping) else {}
                if isinstance(body.get("data"), str):
                    return str(body["data"])
                if isinstance(body.get("attachmentId"), str):
                    return self._attachment_data(message_id, body["attachmentId"])
                # A container or an empty part: fall through to the raw bytes.
        parts = self._cached_parts("raw", message_id, self._raw_parts)
        content = parts.get(part_id)
        if isinstance(content, bytes):
            return content
        raise NotFoundError(
            f"message {message_id} has no part {part_id!r}", status=404, provider="google"
        )

    def _cached_parts(
        self, fmt: str, message_id: str,
        read: Callable[[str], tuple[Mapping[str, Any], int]],
    ) -> Mapping[str, Any]:
        # The provider id in the key too: a cache handed to another mailbox's adapter (it should
        # not be) still serves nothing across mailboxes.
        key = (self.config.provider_id, fmt, message_id)
        parts = self.part_cache.get(key)
        if parts is None:
            parts, size = read(message_id)
            self.part_cache.put(key, parts, size)
        return parts

    def _full_payload(self, message_id: str) -> tuple[Mapping[str, Any], int]:
        """The ``format=full`` payload of the message (``{}`` when it has none) and its size."""
        payload = self._get_message_json(message_id, "full").get("payload")
        if not isinstance(payload, Mapping):
            payload = {}
        return payload, inline_size(payload)

    def _raw_parts(self, message_id: str) -> tuple[Mapping[str, Any], int]:
        """``{part id: content}`` of every attachment of the parsed raw message, and its size."""
        raw = self._get_message_json(message_id, "raw")
        try:
            parsed = mime.parse_mime(raw_bytes(raw))
        except UnrepresentableError:
            raise ProviderUnavailableError(
                "Gmail format=raw answer without raw", provider="google"
            ) from None
        parts: dict[str, bytes] = {}
        for attachment in parsed.attachments:
            parts.setdefault(attachment.part_id, attachment.payload)
        return parts, sum(len(content) for content in parts.values())

    # ------------------------------------------------------------------ processed / test

    def mark_message_processed(self, message_id: str) -> None:
        """Apply ``processed_strategy``: none; ``label`` (the processed label, created once when
        missing); ``remove_unread``."""
        _check_id(message_id)
        strategy = self.config.processed_strategy
        if strategy == "none":
            return
        if strategy == "label":
            label_id = self.labels.ensure(self.config.processed_label)
            body: dict[str, Any] = {"addLabelIds": [label_id]}
        elif strategy == "remove_unread":
            body = {"removeLabelIds": ["UNREAD"]}
        else:  # pragma: no cover - the config's Literal forbids it
            raise ConfigurationError(f"unknown processed_strategy {strategy!r}")
        self._call("POST", f"messages/{message_id}/modify", body)

    def test_connection(self) -> ConnectionTestResult:
        """``getProfile``: the token works and belongs to ``config.mailbox``. Never raises."""
        try:
            profile = self._profile()
        except Exception as exc:  # the contract: reported, never raised
            return self.connection_failed(exc)
        address = profile.get("emailAddress")
        if not isinstance(address, str) or not address:
            return ConnectionTestResult(
                success=False, error="Gmail getProfile answered without emailAddress"
            )
        mismatch = self.mailbox_mismatch([address])
        if mismatch is not None:
            return mismatch
        return ConnectionTestResult(success=True, mailbox=address)
