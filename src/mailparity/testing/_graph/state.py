"""The Graph fake's state and its test-facing side: setup helpers, tokens, delivery,
notifications and faults."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._authorize import AuthorizationServer
from .._fakebase import (
    Clock,
    Delivery,
    FakeRequest,
    HandlerResult,
    ProviderFake,
    _Fault,
    isoformat_z,
    json_response,
)
from .._render import ParsedRaw, parse_raw

if TYPE_CHECKING:
    import requests


from .model import (
    WELL_KNOWN_FOLDERS,
    GraphAttachment,
    GraphFolder,
    GraphMessage,
    GraphSubscription,
    GraphUser,
    Validator,
    _AccessToken,
    _b64,
    _DeltaCursor,
    _DeltaPage,
    _RefreshToken,
)


class GraphState(ProviderFake):
    """The Graph fake's state and its test-facing side: setup helpers, tokens, delivery,"""

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

    # ================================================================== answers

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
