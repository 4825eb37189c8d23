"""A stateful fake of Microsoft Graph mail (and the Entra token endpoint) for tests.

State: mailboxes (users with well-known folders, messages, master categories), subscriptions,
issued tokens (expiring access tokens, rotating refresh tokens) and immutable ids. Messages are
delivered as raw RFC 5322 bytes and rendered into Graph's message JSON from the MIME, the way
Exchange does. Every request needs a valid bearer token; ids follow ``Prefer: IdType="ImmutableId"``
(without it a moved message gets a new id and the old one answers 404, as in Graph).

Endpoints (under ``base_url``; ``/me/...`` and ``/users/{id|mail}/...`` alike)::

    GET   /me, /users/{id}
    GET   messages, messages/{id}  ($select, $expand=attachments, attachments($select=...))
    GET   messages/{id}/$value, messages/{id}/attachments[/{aid}[/$value]]
    PATCH messages/{id}            (isRead, categories, flag, importance, inferenceClassification)
    POST  messages/{id}/move       DELETE messages/{id} (moves to Deleted Items)
    GET   mailFolders (top level), mailFolders/{id|well-known}[/childFolders[/{id}]]
          ($top, $skip, $select), POST mailFolders, POST mailFolders/{f}/childFolders
    GET   mailFolders/{f}/messages ($top, $skip, $select, $filter=receivedDateTime ge|gt)
    GET   mailFolders/{f}/messages/delta and .../delta()  ($select, changeType, $filter as
          above; nextLink / deltaLink pages, @removed, 410 syncStateNotFound)
    GET/POST outlook/masterCategories
    POST/GET /subscriptions, GET/PATCH/DELETE /subscriptions/{id}, POST .../reauthorize
    POST  /$batch                  (at most 20 requests, dependsOn, per-member faults; each
                                    member runs with the batch's token and its own headers)

and under ``login_url``: ``POST /{tenant}/oauth2/v2.0/token`` (``refresh_token`` grant with
rotation, ``client_credentials``, ``authorization_code`` with PKCE), ``GET
/{tenant}/oauth2/v2.0/authorize`` (one-time codes; who signs in: see
:mod:`mailparity.testing._authorize`), ``GET /{tenant}/v2.0/adminconsent``,
``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``GET /common/discovery/instance``
(what MSAL asks before its first token request).

Faults: :meth:`fail_next`, :meth:`expire_tokens`, :meth:`revoke_refresh_token`,
:meth:`remove_subscription` (emits ``subscriptionRemoved``), :meth:`expire_delta_tokens`.
Emission: :meth:`notifications_for`, :meth:`lifecycle_notification`, :meth:`push`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ._authorize import AuthCode, AuthorizationServer, Refusal, chooser, page, redirect
from ._fakebase import (
    Clock,
    Delivery,
    FakeRequest,
    HandlerResult,
    ProviderFake,
    _Fault,
    bytes_response,
    empty_response,
    isoformat_z,
    json_response,
    parse_iso,
    split_path,
)
from ._render import ParsedRaw, parse_raw, preview

if TYPE_CHECKING:
    import requests


__all__ = ["Delivery", "FakeGraph", "GraphMessage", "GraphSubscription", "GraphUser"]

#: Graph's cap on Outlook message subscriptions.
MAX_SUBSCRIPTION_MINUTES = 4230
#: Members of one JSON batch.
MAX_BATCH = 20

WELL_KNOWN_FOLDERS: dict[str, str] = {
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "conversationhistory": "Conversation History",
}

_MESSAGE_PROPERTIES = [
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
]
#: Returned only when asked for with $select.
_SELECT_ONLY = ["internetMessageHeaders", "uniqueBody"]
_SELECTABLE = {name.lower(): name for name in ["id", *_MESSAGE_PROPERTIES, *_SELECT_ONLY]}
_ATTACHMENT_PROPERTIES = [
    "id",
    "lastModifiedDateTime",
    "name",
    "contentType",
    "size",
    "isInline",
    "contentId",
    "contentLocation",
    "contentBytes",
]
_FOLDER_PROPERTIES = [
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
]
_PATCHABLE = {"isRead", "categories", "flag", "importance", "inferenceClassification"}
_COLORS = {"none"} | {f"preset{i}" for i in range(25)}

Validator = Callable[[str], "tuple[int, str]"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass
class GraphAttachment:
    """One attachment of a stored message."""

    id: str
    name: str
    content_type: str
    content_id: str | None
    is_inline: bool
    payload: bytes
    is_item: bool = False


@dataclass
class GraphMessage:
    """A stored message: the raw MIME and the mutable Outlook state."""

    immutable_id: str
    rest_id: str
    user_id: str
    folder_id: str
    raw: bytes
    parsed: ParsedRaw
    received: datetime
    modified: datetime
    conversation_id: str
    attachments: list[GraphAttachment]
    is_read: bool = False
    categories: list[str] = field(default_factory=list)
    flag: dict[str, Any] = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    importance: str = "normal"
    inference: str = "focused"
    version: int = 1
    #: The change sequence number at which the message entered its current folder (delta's
    #: ``changeType=created`` versus ``updated``).
    entered_seq: int = 0

    @property
    def change_key(self) -> str:
        digest = hashlib.sha256(f"{self.immutable_id}:{self.version}".encode()).digest()
        return "CQAAABYAAA" + _b64(digest[:18])

    @property
    def internet_message_id(self) -> str:
        ids = self.parsed.msg_ids("Message-ID")
        return ids[0] if ids else f"<{self.immutable_id[-16:]}@fake.prod.outlook.com>"


@dataclass
class GraphFolder:
    """A mail folder."""

    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    hidden: bool = False


@dataclass
class GraphUser:
    """A mailbox."""

    id: str
    mail: str
    display_name: str
    folders: dict[str, GraphFolder] = field(default_factory=dict)
    categories: list[dict[str, str]] = field(default_factory=list)

    def folder(self, ref: str) -> GraphFolder | None:
        """A folder by id or well-known name (case-insensitive)."""
        if ref in self.folders:
            return self.folders[ref]
        lowered = ref.lower()
        for folder in self.folders.values():
            if folder.well_known == lowered:
                return folder
        return None


@dataclass
class GraphSubscription:
    """A change-notification subscription."""

    id: str
    user_id: str
    folder_id: str | None
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: datetime
    application_id: str
    creator_id: str
    immutable_ids: bool
    tls_version: str = "v1_2"

    def to_json(self, *, with_client_state: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state if with_client_state else None,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": isoformat_z(self.expires_at),
            "creatorId": self.creator_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


@dataclass
class _AccessToken:
    user_id: str | None
    client_id: str
    expires_at: datetime


@dataclass
class _RefreshToken:
    user_id: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class _DeltaCursor:
    user_id: str
    folder_id: str
    seq: int
    select: list[str] | None
    #: The ``changeType`` of the round's first request (None: every kind of change).
    change_type: str | None = None


@dataclass
class _DeltaPage:
    cursor: _DeltaCursor
    items: list[tuple[str, bool]]
    prefix: str
    page_size: int


class _GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FakeGraph(ProviderFake):
    """A stateful Microsoft Graph mail fake; see the module docstring for the surface.

    ``seed`` makes ids and the drop/duplicate choices of :meth:`push` reproducible. Set
    ``validator`` (see :meth:`http_validator`) to have subscription creation perform Graph's
    validation handshake; without it the handshake is skipped. ``strict_rotation`` revokes a
    refresh token once it was used (Entra keeps old ones valid; the strict mode proves that the
    newest one is stored).
    """

    def __init__(
        self,
        base_url: str = "https://graph.microsoft.com/v1.0",
        login_url: str = "https://login.microsoftonline.com",
        *,
        clock: Clock | None = None,
        tenant_id: str | None = None,
        seed: int = 0,
        validator: Validator | None = None,
        strict_rotation: bool = False,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__(clock=clock)
        self.base_url = base_url.rstrip("/")
        self.login_url = login_url.rstrip("/")
        self.random = random.Random(seed)
        self.tenant_id = tenant_id or str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        self.validator = validator
        self.strict_rotation = strict_rotation
        self.token_lifetime = token_lifetime
        self.users: dict[str, GraphUser] = {}
        self.messages: dict[str, GraphMessage] = {}
        self.subscriptions: dict[str, GraphSubscription] = {}
        self.clients: dict[str, str] = {}
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self._rest_index: dict[str, str] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._seq = 0
        self._changes: list[tuple[int, str, str, str]] = []
        self._delta_tokens: dict[str, _DeltaCursor] = {}
        self._skip_tokens: dict[str, _DeltaPage] = {}
        self._removed: dict[str, GraphSubscription] = {}
        #: The sign-in side: redirect URIs, the signed-in account, issued codes.
        self.authorization = AuthorizationServer(
            new_code=lambda: "0.fake-code." + _b64(self.random.randbytes(24)), now=self.now
        )
        #: Client ids an administrator granted application access to (``/adminconsent``).
        self.admin_consents: set[str] = set()
        # Indexes, so that fakes holding thousands of mailboxes and subscriptions (the renewal
        # sweep benchmark) answer without scanning them all on every request:
        # lower-cased mail / id -> user id (rebuilt when ``users`` changed behind our back),
        self._user_keys: dict[str, str] = {}
        self._user_keys_size = 0
        # (app, user, folder, change types) -> ids of the subscriptions created for it,
        self._sub_keys: dict[tuple[str, str, str | None, tuple[str, ...]], set[str]] = {}
        # and no subscription expires before this (None: unknown, scan).
        self._next_expiry: datetime | None = None

    # ================================================================== setup helpers

    def base_urls(self) -> list[str]:
        return [self.base_url, self.login_url]

    def mount(self, root_url: str) -> None:
        """Serve below ``root_url``: API at ``{root}/graph/v1.0``, sign-in at ``{root}/login``."""
        root = root_url.rstrip("/")
        self.base_url = f"{root}/graph/v1.0"
        self.login_url = f"{root}/login"

    def config_overrides(self) -> dict[str, str]:
        """The Graph config fields that point an adapter at this fake."""
        return {"graph_base_url": self.base_url, "login_base_url": self.login_url}

    def _new_id(self, prefix: str, size: int = 24) -> str:
        return prefix + _b64(self.random.randbytes(size))

    def _new_guid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def add_mailbox(self, address: str, display_name: str | None = None) -> GraphUser:
        """Create a mailbox (a user with the well-known folders), or return the existing one."""
        with self._lock:
            existing = self._find_user(address)
            if existing is not None:
                return existing
            user = GraphUser(
                id=self._new_guid(),
                mail=address,
                display_name=display_name or address.split("@", 1)[0],
            )
            root = GraphFolder(
                self._new_id("AAMkAG", 30), WELL_KNOWN_FOLDERS["msgfolderroot"], None
            )
            root.well_known = "msgfolderroot"
            user.folders[root.id] = root
            for name, display in WELL_KNOWN_FOLDERS.items():
                if name == "msgfolderroot":
                    continue
                folder = GraphFolder(self._new_id("AAMkAG", 30), display, root.id, name)
                user.folders[folder.id] = folder
            self.users[user.id] = user
            if self._user_keys_size == len(self.users) - 1:
                self._user_keys.setdefault(user.id.lower(), user.id)
                self._user_keys.setdefault(user.mail.lower(), user.id)
                self._user_keys_size += 1
            return user

    def add_folder(self, mailbox: str, display_name: str, parent: str = "msgfolderroot") -> str:
        """Create a user folder; returns its id."""
        with self._lock:
            user = self._require_user(mailbox)
            parent_folder = user.folder(parent)
            if parent_folder is None:
                raise KeyError(f"no folder {parent!r}")
            folder = GraphFolder(self._new_id("AAMkAG", 30), display_name, parent_folder.id)
            user.folders[folder.id] = folder
            return folder.id

    def add_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None
    ) -> None:
        """Register an app; once any is registered, the token and authorization endpoints check
        the client id (and the token endpoint its secret). ``redirect_uris``: the app's
        registered redirect URIs (None: any is accepted)."""
        with self._lock:
            self.clients[client_id] = client_secret
            if redirect_uris is not None:
                self.authorization.allow_redirects(client_id, redirect_uris)

    def sign_in(self, mailbox: str | None) -> None:
        """The account the authorization endpoint signs in as (created if needed; None: back to
        ``fake_user`` / ``login_hint`` / the account chooser)."""
        with self._lock:
            self.authorization.signed_in = self.add_mailbox(mailbox).mail if mailbox else None

    def decline_next(self, n: int = 1) -> None:
        """The next ``n`` authorization or admin consent requests are declined by the user
        (``error=access_denied``, AADSTS65004)."""
        with self._lock:
            self.authorization.declines.extend(["access_denied"] * n)

    def user(self, mailbox: str) -> GraphUser:
        """The mailbox by address, UPN or id (``KeyError`` when unknown)."""
        with self._lock:
            return self._require_user(mailbox)

    def _find_user(self, ref: str) -> GraphUser | None:
        if ref in self.users:
            return self.users[ref]
        lowered = ref.lower()
        if self._user_keys_size != len(self.users):
            self._index_users()
        user = self.users.get(self._user_keys.get(lowered, ""))
        if user is not None and lowered in (user.mail.lower(), user.id.lower()):
            return user
        if user is not None:  # the index is stale (a user was edited): rebuild, ask again
            self._index_users()
            user = self.users.get(self._user_keys.get(lowered, ""))
        return user

    def _index_users(self) -> None:
        keys: dict[str, str] = {}
        for user in reversed(list(self.users.values())):  # the first match wins, as in a scan
            keys[user.mail.lower()] = user.id
            keys[user.id.lower()] = user.id
        self._user_keys = keys
        self._user_keys_size = len(self.users)

    def _require_user(self, ref: str) -> GraphUser:
        user = self._find_user(ref)
        if user is None:
            raise KeyError(f"no mailbox {ref!r}")
        return user

    # ================================================================== tokens

    def issue_tokens(
        self, mailbox: str, client_id: str = "fake-client-id", scope: str = "Mail.ReadWrite"
    ) -> dict[str, Any]:
        """Delegated tokens for ``mailbox`` (created if needed), as if the user had consented:
        ``{"access_token", "refresh_token", "expires_at", "expires_in", "scope"}``."""
        with self._lock:
            user = self.add_mailbox(mailbox)
            access = self._issue_access(user.id, client_id)
            refresh = self._issue_refresh(user.id, client_id, scope)
            return {
                "access_token": access,
                "refresh_token": refresh,
                "expires_at": self._access[access].expires_at,
                "expires_in": self.token_lifetime,
                "scope": scope,
            }

    def _issue_access(self, user_id: str | None, client_id: str) -> str:
        token = "fake-graph-at." + _b64(self.random.randbytes(24))
        self._access[token] = _AccessToken(
            user_id, client_id, self.now() + timedelta(seconds=self.token_lifetime)
        )
        return token

    def _issue_refresh(self, user_id: str, client_id: str, scope: str) -> str:
        token = "fake-graph-rt." + _b64(self.random.randbytes(32))
        self._refresh[token] = _RefreshToken(user_id, client_id, scope)
        return token

    @property
    def refresh_tokens(self) -> list[str]:
        """Refresh tokens that still work, oldest first."""
        with self._lock:
            return [value for value, grant in self._refresh.items() if not grant.revoked]

    # ================================================================== delivery

    def deliver(
        self,
        mailbox: str,
        raw: bytes,
        folder: str = "inbox",
        *,
        received_at: datetime | None = None,
        is_read: bool = False,
    ) -> str:
        """Store ``raw`` in ``mailbox``'s ``folder`` (id or well-known name); returns the message's
        immutable id. Matching subscriptions get a pending ``created`` notification."""
        parsed = parse_raw(raw)
        with self._lock:
            user = self.add_mailbox(mailbox)
            target = user.folder(folder)
            if target is None:
                raise KeyError(f"no folder {folder!r} in {mailbox}")
            immutable_id = self._new_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", 24)
            received = received_at or self.now()
            message = GraphMessage(
                immutable_id=immutable_id,
                rest_id=self._new_id("AAMkAD", 36),
                user_id=user.id,
                folder_id=target.id,
                raw=bytes(raw),
                parsed=parsed,
                received=received,
                modified=received,
                conversation_id=self._conversation_for(user.id, parsed),
                attachments=[],
                is_read=is_read,
            )
            for index, leaf in enumerate(parsed.attachments):
                digest = hashlib.sha256(f"{immutable_id}/{index}".encode()).digest()
                message.attachments.append(
                    GraphAttachment(
                        id=f"{immutable_id}BEgAQA{_b64(digest[:12])}",
                        name=leaf.name,
                        content_type=leaf.content_type,
                        content_id=leaf.content_id,
                        is_inline=leaf.is_inline,
                        payload=leaf.payload,
                        is_item=leaf.is_message,
                    )
                )
            self.messages[immutable_id] = message
            self._rest_index[message.rest_id] = immutable_id
            self._record_change(message, target.id)
            message.entered_seq = self._seq
            self._emit(message, "created", target.id)
            return immutable_id

    def message(self, message_id: str) -> GraphMessage:
        """A stored message by immutable or current REST id (``KeyError`` when unknown)."""
        with self._lock:
            found = self._find_message(message_id)
            if found is None:
                raise KeyError(message_id)
            return found

    def rest_id(self, message_id: str) -> str:
        """The message's current REST id (what Graph answers without the ImmutableId header)."""
        return self.message(message_id).rest_id

    def _find_message(self, message_id: str) -> GraphMessage | None:
        if message_id in self.messages:
            return self.messages[message_id]
        immutable = self._rest_index.get(message_id)
        return self.messages.get(immutable) if immutable else None

    def _conversation_for(self, user_id: str, parsed: ParsedRaw) -> str:
        related = set(parsed.msg_ids("In-Reply-To")) | set(parsed.msg_ids("References"))
        if related:
            for other in self.messages.values():
                if other.user_id == user_id and other.internet_message_id in related:
                    return other.conversation_id
        return self._new_id("AAQkAD", 30)

    def _record_change(self, message: GraphMessage, folder_id: str) -> None:
        self._seq += 1
        self._changes.append((self._seq, message.user_id, folder_id, message.immutable_id))

    def _touch(self, message: GraphMessage) -> None:
        message.version += 1
        message.modified = self.now()

    # ================================================================== notifications

    def _active_subscriptions(self) -> list[GraphSubscription]:
        self._drop_expired()
        return list(self.subscriptions.values())

    def _drop_expired(self) -> None:
        """Graph deletes subscriptions that were not renewed in time, silently."""
        now = self.now()
        if self._next_expiry is not None and now < self._next_expiry:
            return  # nothing can have expired yet
        for sub_id, sub in list(self.subscriptions.items()):
            if sub.expires_at <= now:
                del self.subscriptions[sub_id]
        self._next_expiry = min(
            (sub.expires_at for sub in self.subscriptions.values()), default=None
        )

    def _expires_at(self, sub: GraphSubscription, expires: datetime) -> None:
        sub.expires_at = expires
        if self._next_expiry is not None:
            self._next_expiry = min(self._next_expiry, expires)

    def _matching(
        self, message: GraphMessage, change_type: str, folder_id: str
    ) -> list[GraphSubscription]:
        return [
            sub
            for sub in self._active_subscriptions()
            if sub.user_id == message.user_id
            and (sub.folder_id is None or sub.folder_id == folder_id)
            and change_type in sub.change_types
        ]

    def _notification(
        self, sub: GraphSubscription, message: GraphMessage, change_type: str
    ) -> dict[str, Any]:
        message_id = message.immutable_id if sub.immutable_ids else message.rest_id
        resource = f"Users/{sub.user_id}/Messages/{message_id}"
        return {
            "id": _b64(self.random.randbytes(9)),
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": isoformat_z(sub.expires_at),
            "changeType": change_type,
            "resource": resource,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": resource,
                "@odata.etag": f'W/"{message.change_key}"',
                "id": message_id,
            },
            "clientState": sub.client_state,
            "tenantId": self.tenant_id,
        }

    def _emit(self, message: GraphMessage, change_type: str, folder_id: str) -> None:
        for sub in self._matching(message, change_type, folder_id):
            self.pending.append(
                (sub.notification_url, self._notification(sub, message, change_type))
            )

    def notifications_for(self, message_id: str, change_type: str = "created") -> dict[str, Any]:
        """The changeNotificationCollection body Graph would POST for ``message_id``: one item per
        matching subscription (``{"value": []}`` when none matches)."""
        with self._lock:
            message = self._find_message(message_id)
            if message is None:
                raise KeyError(message_id)
            return {
                "value": [
                    self._notification(sub, message, change_type)
                    for sub in self._matching(message, change_type, message.folder_id)
                ]
            }

    def lifecycle_notification(self, sub_id: str, event: str) -> dict[str, Any]:
        """The lifecycle body (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``)
        for ``sub_id``; it is also queued for :meth:`push` when the subscription has a
        ``lifecycleNotificationUrl`` (Graph sends lifecycle events only there)."""
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            raise ValueError(f"unknown lifecycle event {event!r}")
        with self._lock:
            sub = self.subscriptions.get(sub_id) or self._removed.get(sub_id)
            if sub is None:
                raise KeyError(sub_id)
            item = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": isoformat_z(sub.expires_at),
                "tenantId": self.tenant_id,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            }
            if sub.lifecycle_url:
                self.pending.append((sub.lifecycle_url, item))
            return {"value": [item]}

    def remove_subscription(self, sub_id: str) -> dict[str, Any]:
        """Graph drops the subscription (as after a password reset) and emits
        ``subscriptionRemoved``; returns that lifecycle body. PATCH/DELETE then answer 404."""
        with self._lock:
            sub = self.subscriptions.pop(sub_id, None)
            if sub is None:
                raise KeyError(sub_id)
            self._removed[sub_id] = sub
            return self.lifecycle_notification(sub_id, "subscriptionRemoved")

    def push(
        self,
        *,
        drop_rate: float = 0.0,
        duplicate_rate: float = 0.0,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> list[Delivery]:
        """POST every pending notification to its URL, one collection per URL (in order).

        ``drop_rate`` loses notifications for good (Graph drops on slow endpoints);
        ``duplicate_rate`` sends some again in a second POST (Graph's retries and replays); both
        draw from the fake's seeded random. A failed POST (non-2xx or connection error) puts its
        notifications back in :attr:`pending`, as Graph retries them later.
        """
        import requests as requests_lib

        with self._lock:
            pending, self.pending = self.pending, []
        batches: dict[str, list[dict[str, Any]]] = {}
        repeats: dict[str, list[dict[str, Any]]] = {}
        for url, item in pending:
            if drop_rate and self.random.random() < drop_rate:
                continue
            batches.setdefault(url, []).append(item)
            if duplicate_rate and self.random.random() < duplicate_rate:
                repeats.setdefault(url, []).append(item)
        sender = session or requests_lib.Session()
        results: list[Delivery] = []
        for group in (batches, repeats):
            for url, items in group.items():
                body = {"value": items}
                try:
                    response = sender.post(
                        url,
                        data=json.dumps(body).encode("utf-8"),
                        headers={"Content-Type": "application/json; charset=utf-8"},
                        timeout=timeout,
                    )
                    delivery = Delivery(url, body, response.status_code)
                except requests_lib.RequestException as exc:
                    delivery = Delivery(url, body, None, type(exc).__name__)
                if not delivery.ok and group is batches:
                    with self._lock:
                        self.pending.extend((url, item) for item in items)
                results.append(delivery)
        return results

    @staticmethod
    def http_validator(session: requests.Session | None = None, timeout: float = 10.0) -> Validator:
        """A ``validator`` that performs Graph's handshake for real: POST the URL (with
        ``validationToken``) with an empty ``text/plain`` body; returns (status, body text)."""
        import requests as requests_lib

        def validate(url: str) -> tuple[int, str]:
            sender = session or requests_lib.Session()
            try:
                response = sender.post(
                    url,
                    data=b"",
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    timeout=timeout,
                )
            except requests_lib.RequestException:
                return 0, ""
            return response.status_code, response.text

        return validate

    # ================================================================== faults

    def expire_delta_tokens(self) -> None:
        """Every delta and skip token is evicted: following one answers 410 syncStateNotFound."""
        with self._lock:
            self._delta_tokens.clear()
            self._skip_tokens.clear()

    def _is_api_request(self, request: FakeRequest) -> bool:
        return request.url.startswith(self.base_url)

    def _fault_response(self, request: FakeRequest, fault: _Fault) -> HandlerResult:
        if not request.url.startswith(self.base_url):
            return self._aad_error(
                fault.status, fault.reason or "temporarily_unavailable", 90033, "Injected fault."
            )
        codes = {
            429: ("TooManyRequests", "Please retry again later."),
            503: ("serviceNotAvailable", "The service is temporarily unavailable."),
            504: ("UnknownError", "Gateway timeout."),
            500: ("generalException", "An unspecified error has occurred."),
            403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
        }
        code, message = codes.get(fault.status, ("UnknownError", "Injected fault."))
        return self._error(fault.status, fault.reason or code, message)

    # ================================================================== routing

    def _dispatch(self, request: FakeRequest) -> HandlerResult:
        try:
            if request.url.startswith(self.login_url):
                return self._login(request)
            return self._api(request)
        except _GraphError as exc:
            return self._error(exc.status, exc.code, exc.message)

    def _headers(self, request: FakeRequest) -> dict[str, str]:
        return {
            "request-id": self._new_guid(),
            "client-request-id": request.headers.get("client-request-id") or self._new_guid(),
        }

    def _error(self, status: int, code: str, message: str) -> HandlerResult:
        request_id = self._new_guid()
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": isoformat_z(self.now()).rstrip("Z"),
                    "request-id": request_id,
                    "client-request-id": request_id,
                },
            }
        }
        headers = {"request-id": request_id}
        if status == 401:
            headers["WWW-Authenticate"] = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
            )
        return json_response(status, body, headers)

    def _ok(self, request: FakeRequest, payload: Any, status: int = 200) -> HandlerResult:
        headers = self._headers(request)
        headers["OData-Version"] = "4.0"
        return json_response(status, payload, headers)

    # ------------------------------------------------------------------ sign-in

    def _aad_error(self, status: int, error: str, code: int, description: str) -> HandlerResult:
        trace = self._new_guid()
        stamp = isoformat_z(self.now())
        body = {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} "
                f"Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": f"{self.login_url}/error?code={code}",
        }
        return json_response(status, body)

    def _login(self, request: FakeRequest) -> HandlerResult:
        segments = split_path(request.url[len(self.login_url) :].split("?", 1)[0])
        if request.method == "GET" and segments[1:] == [
            "v2.0",
            ".well-known",
            "openid-configuration",
        ]:
            return json_response(200, self._openid_configuration(segments[0]))
        if request.method == "GET" and [s.lower() for s in segments] == [
            "common",
            "discovery",
            "instance",
        ]:
            tenant = "common"
            return json_response(
                200,
                {
                    "tenant_discovery_endpoint": (
                        f"{self.login_url}/{tenant}/v2.0/.well-known/openid-configuration"
                    ),
                    "api-version": "1.1",
                    "metadata": [],
                },
            )
        if request.method == "POST" and segments[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(request, segments[0])
        if request.method == "GET" and segments[1:] == ["oauth2", "v2.0", "authorize"]:
            return self._authorize(request)
        if request.method == "GET" and segments[1:] == ["v2.0", "adminconsent"]:
            return self._admin_consent(request, segments[0])
        return self._aad_error(404, "invalid_request", 90002, "Unknown endpoint.")

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        root = f"{self.login_url}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "issuer": f"{self.login_url}/{self.tenant_id}/v2.0",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def _check_client(self, form: Mapping[str, str]) -> HandlerResult | None:
        client_id = form.get("client_id", "")
        if not client_id:
            return self._aad_error(
                400, "invalid_request", 900144, "The request body must contain 'client_id'."
            )
        if not self.clients:
            return None
        if client_id not in self.clients:
            return self._aad_error(
                400, "unauthorized_client", 700016, "Application was not found in the directory."
            )
        secret = form.get("client_secret")
        if secret is not None and secret != self.clients[client_id]:
            return self._aad_error(
                401, "invalid_client", 7000215, "Invalid client secret provided."
            )
        return None

    def _token(self, request: FakeRequest, tenant: str) -> HandlerResult:
        form = request.form()
        grant = form.get("grant_type", "")
        failure = self._check_client(form)
        if failure is not None:
            return failure
        client_id = form["client_id"]
        if grant == "client_credentials":
            if self.clients and "client_secret" not in form and "client_assertion" not in form:
                return self._aad_error(
                    401, "invalid_client", 7000218, "The request body must contain a credential."
                )
            access = self._issue_access(None, client_id)
            return json_response(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "ext_expires_in": self.token_lifetime,
                    "access_token": access,
                },
            )
        if grant == "authorization_code":
            if self.clients and "client_secret" not in form and "client_assertion" not in form:
                return self._aad_error(
                    401, "invalid_client", 7000218, "The request body must contain a credential."
                )
            return self._code_grant(form, client_id)
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            stored = self._refresh.get(presented)
            if stored is None:
                return self._aad_error(
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                )
            if stored.revoked:
                return self._aad_error(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token "
                    "is needed. The user might have changed or reset their password.",
                )
            if stored.client_id != client_id:
                return self._aad_error(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'refresh_token' is not valid for this client.",
                )
            if self.strict_rotation:
                stored.revoked = True
            scope = form.get("scope") or stored.scope
            access = self._issue_access(stored.user_id, client_id)
            refresh = self._issue_refresh(stored.user_id, client_id, stored.scope)
            user = self.users.get(stored.user_id)
            return json_response(
                200,
                {
                    "token_type": "Bearer",
                    "scope": scope,
                    "expires_in": self.token_lifetime,
                    "ext_expires_in": self.token_lifetime,
                    "access_token": access,
                    "refresh_token": refresh,
                    "id_token": self._id_token(stored.user_id, client_id, user),
                    "client_info": _b64(
                        json.dumps({"uid": stored.user_id, "utid": self.tenant_id}).encode()
                    ).rstrip("="),
                },
            )
        return self._aad_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    # ------------------------------------------------------------------ authorization

    #: Entra's numbers for the refusals of the authorization endpoints.
    _AADSTS = {
        "unauthorized_client": 700016,
        "redirect_uri_mismatch": 50011,
        "invalid_request": 900144,
        "unsupported_response_type": 700054,
        "invalid_scope": 70011,
        "access_denied": 65004,
    }
    _DELEGATED_SCOPES = frozenset(
        scope.lower()
        for scope in (
            "openid", "profile", "email", "offline_access", "User.Read", "User.ReadBasic.All",
            "Mail.Read", "Mail.ReadBasic", "Mail.ReadWrite", "Mail.Read.Shared",
            "Mail.ReadWrite.Shared", "Mail.Send", "MailboxSettings.Read",
        )
    )

    def _scope_ok(self, scope: str) -> bool:
        lowered = scope.lower()
        if lowered.endswith("/.default"):
            return True
        if lowered.startswith("https://graph.microsoft.com/"):
            lowered = lowered[len("https://graph.microsoft.com/") :]
        return lowered in self._DELEGATED_SCOPES

    def _described(self, code: int, description: str) -> str:
        trace = self._new_guid()
        return (
            f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} "
            f"Timestamp: {isoformat_z(self.now())}"
        )

    def _refused(
        self, refusal: Refusal, redirect_uri: str | None, state: str | None
    ) -> HandlerResult:
        code = refusal.code or self._AADSTS.get(refusal.error, 90014)
        if refusal.page or redirect_uri is None:
            return page(refusal.status, "Sign in error", f"AADSTS{code}: {refusal.description}")
        return redirect(
            redirect_uri,
            {
                "error": refusal.error,
                "error_description": self._described(code, refusal.description),
                "error_uri": f"{self.login_url}/error?code={code}",
                "state": state,
            },
        )

    def _authorize(self, request: FakeRequest) -> HandlerResult:
        """``GET /{tenant}/oauth2/v2.0/authorize``: a code for the signed-in user."""
        checked = self.authorization.check_client(request, self.clients)
        if isinstance(checked, Refusal):
            return self._refused(checked, None, None)
        client_id, redirect_uri = checked
        state = request.param("state")
        refusal = self.authorization.check_request(request, self._scope_ok)
        if refusal is not None:
            return self._refused(refusal, redirect_uri, state)
        if self.authorization.declined(request):
            return self._refused(
                Refusal("access_denied", "The user declined to consent to access the app."),
                redirect_uri, state,
            )

        def known(address: str) -> str | None:
            user = self._find_user(address)
            return user.id if user is not None else None

        user_id = self.authorization.user_for(request, known)
        if user_id is None:
            return chooser(request, [user.mail for user in self.users.values()])
        code = self.authorization.issue(
            request, user=user_id, client_id=client_id, redirect_uri=redirect_uri,
            scope=request.param("scope") or "",
        )
        return redirect(
            redirect_uri, {"code": code, "state": state, "session_state": self._new_guid()}
        )

    def _admin_consent(self, request: FakeRequest, tenant: str) -> HandlerResult:
        """``GET /{tenant}/v2.0/adminconsent``: an administrator grants the app's application
        permissions in this fake's directory."""
        checked = self.authorization.check_client(request, self.clients)
        if isinstance(checked, Refusal):
            return self._refused(checked, None, None)
        client_id, redirect_uri = checked
        state = request.param("state")
        if tenant.lower() not in ("common", "organizations", self.tenant_id.lower()):
            return page(400, "Sign in error", f"AADSTS90002: Tenant '{tenant}' not found.")
        scope = request.param("scope") or ""
        if not scope.split() or not all(s.endswith("/.default") for s in scope.split()):
            return self._refused(
                Refusal("invalid_request", "Admin consent needs the '/.default' scope.",
                        code=90014),
                redirect_uri, state,
            )
        if self.authorization.declined(request):
            return self._refused(
                Refusal("access_denied", "The administrator declined to consent."),
                redirect_uri, state,
            )
        self.admin_consents.add(client_id)
        return redirect(
            redirect_uri,
            {"admin_consent": "True", "tenant": self.tenant_id, "scope": scope, "state": state},
        )

    def _code_grant(self, form: Mapping[str, str], client_id: str) -> HandlerResult:
        """The ``authorization_code`` grant: PKCE and redirect URI checked, single use."""
        redeemed = self.authorization.redeem(form, client_id)
        if not isinstance(redeemed, AuthCode):
            reason, detail = redeemed
            numbers = {
                "unknown": 9002313, "client": 70000, "reused": 54005, "expired": 70008,
                "redirect_uri": 500112, "verifier_missing": 50148, "verifier_mismatch": 501481,
            }
            texts = {
                "reused": "OAuth2 Authorization code was already redeemed, please retry with a"
                " new valid code or use an existing refresh token.",
                "expired": "The provided authorization code or refresh token has expired due to"
                " inactivity.",
            }
            return self._aad_error(400, "invalid_grant", numbers[reason], texts.get(reason, detail))
        user = self.users.get(redeemed.user)
        scopes = [
            s for s in redeemed.scope.split() if s.lower() not in ("openid", "profile", "email")
        ]
        granted = " ".join(s for s in scopes if s.lower() != "offline_access")
        access = self._issue_access(redeemed.user, client_id)
        payload: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": granted,
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": access,
            "id_token": self._id_token(redeemed.user, client_id, user, nonce=redeemed.nonce),
            "client_info": _b64(
                json.dumps({"uid": redeemed.user, "utid": self.tenant_id}).encode()
            ).rstrip("="),
        }
        if "offline_access" in redeemed.scope.lower().split():
            payload["refresh_token"] = self._issue_refresh(redeemed.user, client_id, granted)
        return json_response(200, payload)

    def _id_token(
        self, user_id: str, client_id: str, user: GraphUser | None, nonce: str | None = None
    ) -> str:
        # MSAL reads the claims without checking the signature (msal >= 1.38).
        header = {"typ": "JWT", "alg": "RS256", "kid": "fake-graph"}
        now = int(self.now().timestamp())
        claims = {
            "aud": client_id,
            "iss": f"{self.login_url}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "oid": user_id,
            "sub": user_id,
            "tid": self.tenant_id,
            "preferred_username": user.mail if user else "",
            "name": user.display_name if user else "",
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        parts = [
            _b64(json.dumps(header).encode()).rstrip("="),
            _b64(json.dumps(claims).encode()).rstrip("="),
            "ZmFrZQ",
        ]
        return ".".join(parts)

    # ------------------------------------------------------------------ API

    def _authenticate(self, request: FakeRequest) -> _AccessToken:
        token = request.bearer()
        if token is None:
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        grant = self._access.get(token)
        if grant is None:
            raise _GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            )
        if grant.expires_at <= self.now():
            raise _GraphError(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        return grant

    def _api(self, request: FakeRequest) -> HandlerResult:
        grant = self._authenticate(request)
        rest = request.url[len(self.base_url) :].split("?", 1)[0].split("#", 1)[0]
        segments = split_path(rest)
        if not segments:
            raise _GraphError(400, "BadRequest", "Invalid request.")
        head = segments[0].lower()
        if head == "$batch":
            if request.method != "POST":
                raise _GraphError(405, "Request_BadRequest", "Batch requests must be POSTed.")
            if request.in_batch:
                raise _GraphError(400, "BadRequest", "Nested batch requests are not supported.")
            return self._batch(request)
        if head == "subscriptions":
            return self._subscriptions(request, grant, segments[1:])
        user, prefix, tail = self._resolve_user(grant, segments)
        return self._user_api(request, grant, user, prefix, tail)

    def _resolve_user(
        self, grant: _AccessToken, segments: list[str]
    ) -> tuple[GraphUser, str, list[str]]:
        head = segments[0]
        if head.lower() == "me":
            if grant.user_id is None:
                raise _GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            return self.users[grant.user_id], "me", segments[1:]
        match = re.fullmatch(r"users(?:\('([^']*)'\))?", head, re.IGNORECASE)
        if match is None:
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")
        if match.group(1) is not None:
            ref, tail = match.group(1), segments[1:]
        elif len(segments) >= 2:
            ref, tail = segments[1], segments[2:]
        else:
            raise _GraphError(405, "Request_BadRequest", "Listing users is not supported here.")
        user = self._find_user(ref)
        if user is None:
            raise _GraphError(404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid.")
        return user, f"users/{quote(ref, safe='@')}", tail

    def _user_api(
        self,
        request: FakeRequest,
        grant: _AccessToken,
        user: GraphUser,
        prefix: str,
        tail: list[str],
    ) -> HandlerResult:
        method = request.method
        if not tail:
            if method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._ok(request, self._user_json(user))
        keyword, arg = _segment(tail[0])
        if keyword == "messages":
            if arg is not None:
                return self._message_api(request, user, [arg, *tail[1:]])
            return self._message_api(request, user, tail[1:])
        if keyword == "mailfolders":
            return self._folder_api(request, user, prefix, arg, tail[1:])
        if keyword == "outlook" and len(tail) == 2 and tail[1].lower() == "mastercategories":
            return self._categories(request, user)
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")

    def _user_json(self, user: GraphUser) -> dict[str, Any]:
        given, _, surname = user.display_name.partition(" ")
        return {
            "@odata.context": f"{self.base_url}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": given or None,
            "jobTitle": None,
            "mail": user.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": user.mail,
            "id": user.id,
        }

    # ------------------------------------------------------------------ folders

    def _folder_api(
        self,
        request: FakeRequest,
        user: GraphUser,
        prefix: str,
        folder_ref: str | None,
        tail: list[str],
    ) -> HandlerResult:
        if folder_ref is None and tail:
            folder_ref, tail = tail[0], tail[1:]
        if folder_ref is None:
            # ``mailFolders`` lists the top-level folders (children of msgfolderroot).
            root = user.folder("msgfolderroot")
            assert root is not None
            return self._folder_children(request, user, prefix, root, "mailFolders")
        folder = user.folder(folder_ref)
        if folder is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        while len(tail) >= 2 and tail[0].lower() == "childfolders":
            # childFolders/{id}: a folder addressed below its parent.
            child = user.folder(tail[1])
            if child is None or child.parent_id != folder.id:
                raise _GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            folder, tail = child, tail[2:]
        if not tail:
            if request.method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._ok(request, self._folder_json(user, folder, self._folder_select(request)))
        if tail[0].lower() == "childfolders" and len(tail) == 1:
            return self._folder_children(
                request, user, prefix, folder, f"mailFolders('{folder.id}')/childFolders"
            )
        if tail[0].lower() != "messages":
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")
        rest = tail[1:]
        if rest and rest[0].lower() in ("delta", "delta()") and len(rest) == 1:
            # ``delta`` is an OData function: ``messages/delta()`` (what the SDKs send) and
            # ``messages/delta`` both call it.
            if request.method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._delta(request, user, prefix, folder)
        if rest:
            return self._message_api(request, user, rest, folder=folder)
        if request.method != "GET":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        return self._list_messages(request, user, prefix, folder)

    def _folder_children(
        self, request: FakeRequest, user: GraphUser, prefix: str, parent: GraphFolder, where: str
    ) -> HandlerResult:
        """GET: one page of ``parent``'s child folders (``$top`` default 10, ``$skip``,
        ``$select``, ``@odata.nextLink``); POST: create one (``displayName``; 409 when a sibling
        has that name)."""
        if request.method == "POST":
            return self._create_folder(request, user, parent)
        if request.method != "GET":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        select = self._folder_select(request)
        top = _int_param(request, "$top", 10, 1, 1000)
        skip = _int_param(request, "$skip", 0, 0, 10**9)
        children = [
            f
            for f in user.folders.values()
            if f.parent_id == parent.id
            and (not f.hidden or request.param("includeHiddenFolders") == "true")
        ]
        page = children[skip : skip + top]
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#users('{user.id}')/{where}",
            "value": [self._folder_json(user, f, select) for f in page],
        }
        if skip + top < len(children):
            query = f"$top={top}&$skip={skip + top}"
            if select is not None:
                query += "&$select=" + ",".join(select)
            payload["@odata.nextLink"] = f"{self.base_url}/{prefix}/{where}?{query}"
        return self._ok(request, payload)

    def _create_folder(
        self, request: FakeRequest, user: GraphUser, parent: GraphFolder
    ) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _GraphError(400, "ErrorInvalidParameter", "displayName is required.")
        if any(
            f.parent_id == parent.id and f.display_name.casefold() == name.casefold()
            for f in user.folders.values()
        ):
            raise _GraphError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            )
        folder = GraphFolder(
            self._new_id("AAMkAG", 30), name, parent.id, hidden=body.get("isHidden") is True
        )
        user.folders[folder.id] = folder
        return self._ok(request, self._folder_json(user, folder, None), 201)

    def _folder_select(self, request: FakeRequest) -> list[str] | None:
        raw = request.param("$select")
        if raw is None:
            return None
        known = {name.lower(): name for name in _FOLDER_PROPERTIES}
        return _property_names(raw, known, "MailFolder")

    def _folder_json(
        self, user: GraphUser, folder: GraphFolder, select: list[str] | None = None
    ) -> dict[str, Any]:
        inside = [
            m for m in self.messages.values() if m.user_id == user.id and m.folder_id == folder.id
        ]
        data: dict[str, Any] = {
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent_id,
            "childFolderCount": sum(1 for f in user.folders.values() if f.parent_id == folder.id),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
            "totalItemCount": len(inside),
            # (sizeInBytes exists only in the beta API; this fake serves v1.0.)
            "isHidden": folder.hidden,
        }
        if select is not None:
            data = {key: value for key, value in data.items() if key == "id" or key in select}
        return data

    def _list_messages(
        self, request: FakeRequest, user: GraphUser, prefix: str, folder: GraphFolder | None
    ) -> HandlerResult:
        select = self._select(request)
        since = _received_filter(request.param("$filter"))
        top = _int_param(request, "$top", 10, 1, 1000)
        skip = _int_param(request, "$skip", 0, 0, 10**9)
        items = [
            m
            for m in self.messages.values()
            if m.user_id == user.id
            and (folder is None or m.folder_id == folder.id)
            and (since is None or _passes(m.received, since))
        ]
        items.sort(key=lambda m: m.received, reverse=_newest_first(request.param("$orderby")))
        page = items[skip : skip + top]
        immutable = _wants_immutable(request)
        body_text = _wants_text(request)
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#users('{user.id}')/messages",
            "value": [self._message_json(m, immutable, select, None, body_text) for m in page],
        }
        if skip + top < len(items):
            where = f"mailFolders('{folder.id}')/messages" if folder else "messages"
            # The next page keeps every option of this one, as Graph's nextLink does.
            options = {"$top": str(top), "$skip": str(skip + top)}
            if select is not None:
                options["$select"] = ",".join(select)
            for name in ("$filter", "$orderby"):
                value = request.param(name)
                if value is not None:
                    options[name] = value
            query = urlencode(options, safe="$,()'", quote_via=quote)
            payload["@odata.nextLink"] = f"{self.base_url}/{prefix}/{where}?{query}"
        return self._ok(request, payload)

    # ------------------------------------------------------------------ messages

    def _select(self, request: FakeRequest) -> list[str] | None:
        raw = request.param("$select")
        return None if raw is None else _property_names(raw, _SELECTABLE, "Message")

    def _expand(self, request: FakeRequest) -> list[str] | bool | None:
        """False: no expansion; None: attachments with every property; list: selected ones."""
        raw = request.param("$expand")
        if raw is None:
            return False
        match = re.fullmatch(r"\s*attachments\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*", raw, re.I)
        if match is None:
            raise _GraphError(
                400, "BadRequest", f"Parsing OData Select and Expand failed: '{raw}'."
            )
        if match.group(1) is None:
            return None
        known = {name.lower(): name for name in _ATTACHMENT_PROPERTIES}
        return _property_names(match.group(1), known, "Attachment")

    def _lookup(self, user: GraphUser, message_id: str, folder: GraphFolder | None) -> GraphMessage:
        message = self._find_message(message_id)
        if (
            message is None
            or message.user_id != user.id
            or (folder is not None and message.folder_id != folder.id)
        ):
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return message

    def _message_api(
        self,
        request: FakeRequest,
        user: GraphUser,
        tail: list[str],
        *,
        folder: GraphFolder | None = None,
    ) -> HandlerResult:
        method = request.method
        if not tail:
            if method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._list_messages(request, user, "me", folder)
        message = self._lookup(user, tail[0], folder)
        rest = [segment.lower() for segment in tail[1:]]
        immutable = _wants_immutable(request)
        if not rest:
            if method == "GET":
                payload = self._message_json(
                    message,
                    immutable,
                    self._select(request),
                    self._expand(request),
                    _wants_text(request),
                )
                context = f"{self.base_url}/$metadata#users('{user.id}')/messages/$entity"
                payload = {"@odata.context": context, **payload}
                result = self._ok(request, payload)
                if _wants_text(request):
                    result.headers["Preference-Applied"] = 'outlook.body-content-type="text"'
                return result
            if method == "PATCH":
                return self._patch(request, message, immutable)
            if method == "DELETE":
                deleted = user.folder("deleteditems")
                assert deleted is not None
                self._move(message, deleted)
                return empty_response(204, self._headers(request))
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        if rest == ["$value"] and method == "GET":
            return bytes_response(200, message.raw, "text/plain", self._headers(request))
        if rest == ["move"] and method == "POST":
            return self._move_request(request, user, message, immutable)
        if rest[0] == "attachments" and method == "GET":
            return self._attachments(request, message, tail[2:])
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")

    def _patch(self, request: FakeRequest, message: GraphMessage, immutable: bool) -> HandlerResult:
        try:
            changes = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        if not isinstance(changes, dict):
            raise _GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
        # OData annotations (msgraph-sdk sends "@odata.type") are not properties.
        changes = {k: v for k, v in changes.items() if not k.startswith("@odata.")}
        for key, value in changes.items():
            if key not in _PATCHABLE:
                raise _GraphError(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    "Update operation is not allowed on a property of a received message.",
                )
            if key == "isRead" and not isinstance(value, bool):
                raise _GraphError(400, "RequestBodyRead", "isRead must be a boolean.")
            if key == "categories" and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                raise _GraphError(400, "RequestBodyRead", "categories must be a list of strings.")
            if key == "importance" and value not in ("low", "normal", "high"):
                raise _GraphError(400, "RequestBodyRead", "importance must be low, normal or high.")
            if key == "flag" and not isinstance(value, dict):
                raise _GraphError(400, "RequestBodyRead", "flag must be an object.")
        if "isRead" in changes:
            message.is_read = changes["isRead"]
        if "categories" in changes:
            message.categories = list(changes["categories"])
        if "flag" in changes:
            message.flag = dict(changes["flag"])
        if "importance" in changes:
            message.importance = changes["importance"]
        if "inferenceClassification" in changes:
            message.inference = str(changes["inferenceClassification"])
        self._touch(message)
        self._record_change(message, message.folder_id)
        self._emit(message, "updated", message.folder_id)
        return self._ok(request, self._message_json(message, immutable, None, False, False))

    def _move(self, message: GraphMessage, target: GraphFolder) -> None:
        source = message.folder_id
        if source == target.id:
            return
        message.folder_id = target.id
        # Without immutable ids a moved item is a new item: the old REST id stops working.
        del self._rest_index[message.rest_id]
        message.rest_id = self._new_id("AAMkAD", 36)
        self._rest_index[message.rest_id] = message.immutable_id
        self._touch(message)
        self._record_change(message, source)
        self._record_change(message, target.id)
        message.entered_seq = self._seq
        for sub in self._active_subscriptions():
            if sub.user_id != message.user_id:
                continue
            if sub.folder_id is None:
                kinds = [("updated", sub)]
            elif sub.folder_id == target.id:
                kinds = [("created", sub)]
            elif sub.folder_id == source:
                kinds = [("deleted", sub)]
            else:
                kinds = []
            for kind, target_sub in kinds:
                if kind in target_sub.change_types:
                    self.pending.append(
                        (target_sub.notification_url, self._notification(target_sub, message, kind))
                    )

    def _move_request(
        self, request: FakeRequest, user: GraphUser, message: GraphMessage, immutable: bool
    ) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        # Action parameters match case-insensitively (msgraph-sdk sends "DestinationId").
        params = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        destination = params.get("destinationid")
        if not isinstance(destination, str) or not destination:
            raise _GraphError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
        target = user.folder(destination)
        if target is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        self._move(message, target)
        return self._ok(request, self._message_json(message, immutable, None, False, False), 201)

    def _attachments(
        self, request: FakeRequest, message: GraphMessage, tail: list[str]
    ) -> HandlerResult:
        if not tail:
            return self._ok(
                request,
                {"value": [self._attachment_json(a, message, None) for a in message.attachments]},
            )
        found = next((a for a in message.attachments if a.id == tail[0]), None)
        if found is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(tail) == 1:
            return self._ok(request, self._attachment_json(found, message, None))
        if [segment.lower() for segment in tail[1:]] == ["$value"]:
            content_type = "message/rfc822" if found.is_item else found.content_type
            return bytes_response(200, found.payload, content_type, self._headers(request))
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")

    def _attachment_json(
        self, attachment: GraphAttachment, message: GraphMessage, select: list[str] | None
    ) -> dict[str, Any]:
        if attachment.is_item:
            data: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.itemAttachment",
                "id": attachment.id,
                "lastModifiedDateTime": isoformat_z(message.received),
                "name": attachment.name,
                "contentType": None,
                "size": len(attachment.payload),
                "isInline": False,
            }
        else:
            data = {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "@odata.mediaContentType": attachment.content_type,
                "id": attachment.id,
                "lastModifiedDateTime": isoformat_z(message.received),
                "name": attachment.name,
                "contentType": attachment.content_type,
                "size": len(attachment.payload),
                "isInline": attachment.is_inline,
                "contentId": attachment.content_id,
                "contentLocation": None,
                "contentBytes": base64.b64encode(attachment.payload).decode("ascii"),
            }
        if select is not None:
            keep = {"@odata.type", "id", *select}
            data = {key: value for key, value in data.items() if key in keep}
        return data

    def _message_json(
        self,
        message: GraphMessage,
        immutable: bool,
        select: list[str] | None,
        expand: list[str] | bool | None,
        body_text: bool,
    ) -> dict[str, Any]:
        full = self._full_message(message, immutable, body_text)
        if select is None:
            data = {key: value for key, value in full.items() if key not in _SELECT_ONLY}
        else:
            data = {"@odata.etag": full["@odata.etag"], "id": full["id"]}
            for name in select:
                data[name] = full[name]
        if expand is not False:
            chosen = None if expand is None or expand is True else list(expand)
            data["attachments@odata.context"] = (
                f"{self.base_url}/$metadata#users('{message.user_id}')/messages('{full['id']}')"
                "/attachments"
            )
            data["attachments"] = [
                self._attachment_json(a, message, chosen) for a in message.attachments
            ]
        return data

    def _full_message(
        self, message: GraphMessage, immutable: bool, body_text: bool
    ) -> dict[str, Any]:
        parsed = message.parsed
        if parsed.html is not None and not body_text:
            body = {"contentType": "html", "content": parsed.html}
        else:
            body = {"contentType": "text", "content": parsed.preview_text}
        from_list = parsed.addresses("From")
        sender_list = parsed.addresses("Sender") or from_list
        message_id = message.immutable_id if immutable else message.rest_id
        sent = parsed.sent_at() or message.received
        return {
            "@odata.etag": f'W/"{message.change_key}"',
            "id": message_id,
            "createdDateTime": isoformat_z(message.received),
            "lastModifiedDateTime": isoformat_z(message.modified),
            "changeKey": message.change_key,
            "categories": list(message.categories),
            "receivedDateTime": isoformat_z(message.received),
            "sentDateTime": isoformat_z(sent),
            "hasAttachments": any(not a.is_inline for a in message.attachments),
            "internetMessageId": message.internet_message_id,
            "subject": parsed.decoded("Subject") or "",
            "bodyPreview": preview(parsed.preview_text, 255),
            "importance": message.importance,
            "parentFolderId": message.folder_id,
            "conversationId": message.conversation_id,
            # Edm.Binary: standard base64 (SDKs decode it; the URL-safe alphabet breaks them).
            "conversationIndex": base64.b64encode(
                hashlib.sha256(message.conversation_id.encode()).digest()[:22]
            ).decode("ascii"),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": parsed.first("Disposition-Notification-To") is not None,
            "isRead": message.is_read,
            "isDraft": False,
            "webLink": (
                "https://outlook.office365.com/owa/?ItemID="
                + quote(message_id, safe="")
                + "&exvsurl=1&viewmodel=ReadMessageItem"
            ),
            "inferenceClassification": message.inference,
            "body": body,
            "sender": _recipient(sender_list[0]) if sender_list else None,
            "from": _recipient(from_list[0]) if from_list else None,
            "toRecipients": [_recipient(item) for item in parsed.addresses("To")],
            "ccRecipients": [_recipient(item) for item in parsed.addresses("Cc")],
            "bccRecipients": [_recipient(item) for item in parsed.addresses("Bcc")],
            "replyTo": [_recipient(item) for item in parsed.addresses("Reply-To")],
            "flag": dict(message.flag),
            "internetMessageHeaders": [
                {"name": name, "value": value} for name, value in parsed.headers
            ],
            "uniqueBody": dict(body),
        }

    # ------------------------------------------------------------------ delta

    def _delta(
        self, request: FakeRequest, user: GraphUser, prefix: str, folder: GraphFolder
    ) -> HandlerResult:
        page_size = _page_size(request)
        skip_token = request.param("$skiptoken") or request.param("$skipToken")
        delta_token = request.param("$deltatoken") or request.param("$deltaToken")
        if skip_token is not None:
            page = self._skip_tokens.pop(skip_token, None)
            if page is None:
                raise _GraphError(
                    410, "syncStateNotFound", "The sync state generation is not found."
                )
            page.page_size = page_size or page.page_size
        elif delta_token:
            cursor = self._delta_tokens.get(delta_token)
            if cursor is None or cursor.folder_id != folder.id:
                raise _GraphError(
                    410,
                    "syncStateNotFound",
                    "The sync state generation is not found. Please restart the sync.",
                )
            changed: list[str] = []
            for seq, user_id, folder_id, message_id in self._changes:
                if seq > cursor.seq and user_id == user.id and folder_id == folder.id:
                    if message_id in changed:
                        changed.remove(message_id)
                    changed.append(message_id)
            items = []
            for message_id in changed:
                message = self.messages[message_id]
                removed = message.folder_id != folder.id
                kind = (
                    "deleted" if removed
                    else "created" if message.entered_seq > cursor.seq
                    else "updated"
                )
                if cursor.change_type is None or kind == cursor.change_type:
                    items.append((message_id, removed))
            page = _DeltaPage(
                _DeltaCursor(user.id, folder.id, self._seq, cursor.select, cursor.change_type),
                items,
                prefix,
                page_size or 10,
            )
        else:
            since = _received_filter(request.param("$filter"))
            members = [
                m
                for m in self.messages.values()
                if m.user_id == user.id
                and m.folder_id == folder.id
                and (since is None or _passes(m.received, since))
            ]
            members.sort(key=lambda m: m.received)
            change_type = request.param("changeType")
            if change_type is not None and change_type not in ("created", "updated", "deleted"):
                raise _GraphError(
                    400, "ErrorInvalidParameter", f"Invalid changeType '{change_type}'."
                )
            # The first round lists the folder's messages whatever the changeType; the type
            # filters the rounds that follow (it is kept in the links' state, as in Graph).
            page = _DeltaPage(
                _DeltaCursor(user.id, folder.id, self._seq, self._select(request), change_type),
                [(m.immutable_id, False) for m in members],
                prefix,
                page_size or 10,
            )
        batch, remaining = page.items[: page.page_size], page.items[page.page_size :]
        immutable = _wants_immutable(request)
        value: list[dict[str, Any]] = []
        for message_id, removed in batch:
            message = self.messages[message_id]
            shown_id = message.immutable_id if immutable else message.rest_id
            if removed or message.folder_id != folder.id:
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": shown_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
                continue
            item = self._message_json(message, immutable, page.cursor.select, False, False)
            value.append({"@odata.type": "#microsoft.graph.message", **item})
        link = f"{self.base_url}/{page.prefix}/mailFolders('{folder.id}')/messages/delta"
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#Collection(message)",
        }
        if remaining:
            token = _b64(self.random.randbytes(18))
            self._skip_tokens[token] = _DeltaPage(
                page.cursor, remaining, page.prefix, page.page_size
            )
            payload["@odata.nextLink"] = f"{link}?$skiptoken={token}"
        else:
            token = _b64(self.random.randbytes(18))
            self._delta_tokens[token] = page.cursor
            payload["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
        payload["value"] = value
        result = self._ok(request, payload)
        # Graph confirms that the resource tracks changes.
        result.headers["Preference-Applied"] = "odata.track-changes"
        return result

    # ------------------------------------------------------------------ categories

    def _categories(self, request: FakeRequest, user: GraphUser) -> HandlerResult:
        if request.method == "GET":
            return self._ok(request, {"value": [dict(item) for item in user.categories]})
        if request.method != "POST":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        name = body.get("displayName") if isinstance(body, dict) else None
        color = body.get("color", "none") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _GraphError(400, "ErrorInvalidParameter", "displayName is required.")
        if color not in _COLORS:
            raise _GraphError(400, "ErrorInvalidParameter", f"Invalid color '{color}'.")
        if any(item["displayName"].lower() == name.lower() for item in user.categories):
            raise _GraphError(
                409, "ErrorDuplicateCategory", f"A category named '{name}' already exists."
            )
        category = {"id": self._new_guid(), "displayName": name, "color": str(color)}
        user.categories.append(category)
        return self._ok(request, dict(category), 201)

    # ------------------------------------------------------------------ subscriptions

    def _subscriptions(
        self, request: FakeRequest, grant: _AccessToken, tail: list[str]
    ) -> HandlerResult:
        self._drop_expired()
        method = request.method
        if not tail:
            if method == "POST":
                return self._create_subscription(request, grant)
            if method == "GET":
                return self._ok(
                    request,
                    {
                        "@odata.context": f"{self.base_url}/$metadata#subscriptions",
                        "value": [
                            sub.to_json(with_client_state=False)
                            for sub in self.subscriptions.values()
                            if sub.application_id == grant.client_id
                        ],
                    },
                )
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        sub = self.subscriptions.get(tail[0])
        if sub is None:
            raise _GraphError(404, "ResourceNotFound", f"The object '{tail[0]}' doesn't exist.")
        if len(tail) == 2 and tail[1].lower() == "reauthorize" and method == "POST":
            return empty_response(204, self._headers(request))
        if len(tail) != 1:
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")
        if method == "GET":
            return self._ok(request, sub.to_json(with_client_state=False))
        if method == "DELETE":
            del self.subscriptions[sub.id]
            return empty_response(204, self._headers(request))
        if method == "PATCH":
            try:
                body = request.json()
            except ValueError:
                raise _GraphError(400, "BadRequest", "Invalid JSON in the request body.") from None
            if not isinstance(body, dict) or "expirationDateTime" not in body:
                raise _GraphError(400, "BadRequest", "expirationDateTime is required.")
            self._expires_at(sub, self._expiry(body["expirationDateTime"]))
            return self._ok(request, sub.to_json(with_client_state=True))
        raise _GraphError(405, "Request_BadRequest", "Method not allowed.")

    def _expiry(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise _GraphError(400, "BadRequest", "expirationDateTime must be a string.")
        try:
            expires = parse_iso(value)
        except ValueError:
            raise _GraphError(400, "BadRequest", f"Invalid expirationDateTime '{value}'.") from None
        now = self.now()
        if expires <= now:
            raise _GraphError(
                400, "ExtensionError", "Subscription expiration can only be in the future."
            )
        if expires > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise _GraphError(
                400,
                "ExtensionError",
                f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the "
                "future.",
            )
        return expires

    def _create_subscription(self, request: FakeRequest, grant: _AccessToken) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "BadRequest", "Invalid JSON in the request body.") from None
        if not isinstance(body, dict):
            raise _GraphError(400, "BadRequest", "The request body must be a JSON object.")
        for required in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not isinstance(body.get(required), str) or not body[required]:
                raise _GraphError(400, "BadRequest", f"'{required}' is required.")
        change_types = [item.strip() for item in body["changeType"].split(",") if item.strip()]
        if not change_types or any(
            item not in ("created", "updated", "deleted") for item in change_types
        ):
            raise _GraphError(400, "BadRequest", f"Invalid changeType '{body['changeType']}'.")
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise _GraphError(
                400, "BadRequest", "clientState must be a string of at most 128 characters."
            )
        if body.get("includeResourceData"):
            raise _GraphError(
                400, "BadRequest", "includeResourceData is not supported by this fake."
            )
        expires = self._expiry(body["expirationDateTime"])
        user_id, folder_id = self._subscription_target(grant, body["resource"])
        # One subscription per app, mailbox (and folder) and change types: the same resource
        # text ("me/mailFolders('inbox')/messages") of another user is another combination.
        sub_key = (grant.client_id, user_id, folder_id, tuple(change_types))
        same = self._sub_keys.setdefault(sub_key, set())
        for existing_id in sorted(same):
            existing = self.subscriptions.get(existing_id)
            if existing is None:
                same.discard(existing_id)  # deleted or expired since
                continue
            raise _GraphError(
                409,
                "ExtensionError",
                f"Subscription Id {existing.id} already exists for the requested combination",
            )
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if self.validator is not None:
            for url in [body["notificationUrl"], *([lifecycle_url] if lifecycle_url else [])]:
                token = (
                    "Validation: Testing client application reachability for subscription "
                    f"Request-Id: {self._new_guid()}"
                )
                separator = "&" if "?" in url else "?"
                status, text = self.validator(f"{url}{separator}validationToken={quote(token)}")
                if status != 200 or text != token:
                    raise _GraphError(
                        400,
                        "ValidationError",
                        "Subscription validation request failed. Notification endpoint must "
                        "respond with 200 OK to validation request.",
                    )
        sub = GraphSubscription(
            id=self._new_guid(),
            user_id=user_id,
            folder_id=folder_id,
            resource=body["resource"],
            change_types=change_types,
            notification_url=body["notificationUrl"],
            lifecycle_url=lifecycle_url if isinstance(lifecycle_url, str) else None,
            client_state=client_state,
            expires_at=expires,
            application_id=grant.client_id,
            creator_id=grant.user_id or self._new_guid(),
            immutable_ids=_wants_immutable(request),
            tls_version=str(body.get("latestSupportedTlsVersion") or "v1_2"),
        )
        self.subscriptions[sub.id] = sub
        same.add(sub.id)
        self._expires_at(sub, sub.expires_at)
        payload = {
            "@odata.context": f"{self.base_url}/$metadata#subscriptions/$entity",
            **sub.to_json(with_client_state=True),
        }
        return self._ok(request, payload, 201)

    def _subscription_target(self, grant: _AccessToken, resource: str) -> tuple[str, str | None]:
        match = re.fullmatch(
            r"/?(?:(me)|users/([^/()]+)|users\('([^']+)'\))"
            r"(?:/mailfolders(?:\('([^']+)'\)|/([^/?]+)))?/messages(?:\?.*)?",
            resource.strip(),
            re.IGNORECASE,
        )
        if match is None:
            raise _GraphError(
                400, "ExtensionError", f"Resource '{resource}' is not a supported message resource."
            )
        if match.group(1):
            if grant.user_id is None:
                raise _GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            user = self.users[grant.user_id]
        else:
            ref = match.group(2) or match.group(3)
            found = self._find_user(ref)
            if found is None:
                raise _GraphError(
                    404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid."
                )
            user = found
        folder_ref = match.group(4) or match.group(5)
        if folder_ref is None:
            return user.id, None
        folder = user.folder(folder_ref)
        if folder is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return user.id, folder.id

    # ------------------------------------------------------------------ $batch

    def _batch(self, request: FakeRequest) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "BadRequest", "Invalid JSON in the batch request.") from None
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _GraphError(400, "BadRequest", "The batch must hold a 'requests' array.")
        if len(items) > MAX_BATCH:
            raise _GraphError(
                400, "BadRequest", f"Too many requests in the batch. Limit is {MAX_BATCH}."
            )
        ids: list[str] = []
        for item in items:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(key), str) for key in ("id", "method", "url")
            ):
                raise _GraphError(400, "BadRequest", "Each batch request needs id, method and url.")
            if item["id"] in ids:
                raise _GraphError(400, "BadRequest", f"Duplicate request id '{item['id']}'.")
            ids.append(item["id"])
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for item in items:
            depends = item.get("dependsOn") or []
            if any(dep not in ids for dep in depends):
                raise _GraphError(400, "BadRequest", "dependsOn names an unknown request id.")
            if any(statuses.get(dep, 0) >= 400 or dep not in statuses for dep in depends):
                statuses[item["id"]] = 424
                responses.append(
                    {
                        "id": item["id"],
                        "status": 424,
                        "headers": {"Content-Type": "application/json"},
                        "body": {
                            "error": {
                                "code": "FailedDependency",
                                "message": "The dependent request failed.",
                            }
                        },
                    }
                )
                continue
            # Members run with the batch's token, but no other outer header reaches them:
            # Graph documents that each member carries its own headers (a ``Prefer:
            # IdType="ImmutableId"`` on the POST does not apply to them).
            inner_headers = {"Authorization": request.headers.get("Authorization", "")}
            inner_headers.update({k: str(v) for k, v in (item.get("headers") or {}).items()})
            inner_body = item.get("body")
            raw_body: bytes | None
            if inner_body is None:
                raw_body = None
            elif isinstance(inner_body, str):
                raw_body = inner_body.encode("utf-8")
            else:
                raw_body = json.dumps(inner_body).encode("utf-8")
                if not any(k.lower() == "content-type" for k in inner_headers):
                    raise _GraphError(
                        400, "BadRequest", "A batch request with a body needs a Content-Type."
                    )
            url = item["url"]
            if url.startswith(self.base_url + "/"):
                # msgraph-sdk's batch sends members' absolute URLs; Graph takes them as well.
                url = url[len(self.base_url) :]
            if not url.startswith("/"):
                url = "/" + url
            inner = FakeRequest.parse(
                item["method"], f"{self.base_url}{url}", inner_headers, raw_body, in_batch=True
            )
            result = self._handle_parsed(inner)
            statuses[item["id"]] = result.status
            entry: dict[str, Any] = {
                "id": item["id"],
                "status": result.status,
                "headers": {
                    k: v
                    for k, v in result.headers.items()
                    if k.lower() in ("content-type", "retry-after", "location")
                },
            }
            if result.body:
                if result.headers.get("Content-Type", "").startswith("application/json"):
                    entry["body"] = json.loads(result.body.decode("utf-8"))
                else:
                    entry["body"] = base64.b64encode(result.body).decode("ascii")
            responses.append(entry)
        return self._ok(request, {"responses": responses})


# ====================================================================== helpers


def _property_names(raw: str, known: Mapping[str, str], type_name: str) -> list[str]:
    """The canonical names of a ``$select`` list (``known``: lower-cased name -> name); an
    unknown property answers 400 as Graph does."""
    chosen: list[str] = []
    for name in (item.strip() for item in raw.split(",")):
        if not name:
            continue
        canonical = known.get(name.lower())
        if canonical is None:
            raise _GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.OutlookServices.{type_name}'.",
            )
        chosen.append(canonical)
    return chosen


def _segment(value: str) -> tuple[str, str | None]:
    """``mailFolders('Inbox')`` -> ("mailfolders", "Inbox"); ``messages`` -> ("messages", None)."""
    match = re.fullmatch(r"([A-Za-z$]+)\('([^']*)'\)", value)
    if match:
        return match.group(1).lower(), match.group(2)
    return value.lower(), None


def _recipient(item: tuple[str, str]) -> dict[str, Any]:
    name, address = item
    # Exchange fills the display name with the address when the header has none.
    return {"emailAddress": {"name": name or address, "address": address}}


def _prefer(request: FakeRequest) -> str:
    return (
        ",".join(value for key, value in request.headers.items() if key.lower() == "prefer")
        .lower()
        .replace(" ", "")
    )


def _wants_immutable(request: FakeRequest) -> bool:
    return 'idtype="immutableid"' in _prefer(request)


def _wants_text(request: FakeRequest) -> bool:
    return 'outlook.body-content-type="text"' in _prefer(request)


def _page_size(request: FakeRequest) -> int | None:
    match = re.search(r"odata\.maxpagesize=(\d+)", _prefer(request))
    if match:
        return max(1, int(match.group(1)))
    top = request.param("$top")
    if top is not None and top.isdigit() and int(top) > 0:
        return int(top)
    return None


def _int_param(request: FakeRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.param(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _GraphError(400, "BadRequest", f"Invalid value '{raw}' for {name}.")
    return int(raw)


def _newest_first(raw: str | None) -> bool:
    """The order of a message list: ``receivedDateTime desc`` (also without ``$orderby``) or
    ``asc``; other expressions answer 400 rather than being ignored."""
    if raw is None:
        return True
    match = re.fullmatch(r"\s*receivedDateTime(?:\s+(asc|desc))?\s*", raw, re.IGNORECASE)
    if match is None:
        raise _GraphError(
            400, "BadRequest", "This fake supports only '$orderby=receivedDateTime [asc|desc]'."
        )
    return (match.group(1) or "asc").lower() == "desc"


def _received_filter(raw: str | None) -> tuple[str, datetime] | None:
    if raw is None:
        return None
    match = re.fullmatch(r"\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*", raw, re.IGNORECASE)
    if match is None:
        raise _GraphError(
            400,
            "BadRequest",
            "This fake supports only '$filter=receivedDateTime ge|gt {timestamp}'.",
        )
    try:
        moment = parse_iso(match.group(2).strip("'"))
    except ValueError:
        raise _GraphError(400, "BadRequest", f"Invalid timestamp '{match.group(2)}'.") from None
    return match.group(1).lower(), moment


def _passes(received: datetime, condition: tuple[str, datetime]) -> bool:
    operator, moment = condition
    return received >= moment if operator == "ge" else received > moment
