"""A stateful fake of the Gmail API (with Google's token endpoint and Pub/Sub pushes) for tests.

State per mailbox: messages (id, threadId, labelIds, historyId, internalDate, raw), labels
(system and user), history records (``messageAdded``, ``labelAdded``, ``labelRemoved``) under a
monotonically increasing historyId with random gaps (as Gmail's), and the watch (topic, labelIds,
expiration). Messages are delivered as raw RFC 5322 bytes and rendered like Gmail: the
``format=full`` payload tree (``partId``, ``mimeType``, ``filename``, ``headers``, ``body`` with
base64url ``data`` or an ``attachmentId``, ``parts``), ``raw``, ``metadata`` and ``minimal``.

Endpoints under ``{base_url}/gmail/v1/users/{me|address}/``: ``profile``, ``messages`` (labelIds,
q with ``after:``/``before:``/``newer_than:``/``older_than:``/``is:``/``in:``/``label:``/
``category:``/``has:attachment``/``from:``/``to:``/``subject:``, each negatable with ``-``,
quoted values; includeSpamTrash, pageToken, maxResults), ``messages/{id}`` (format,
metadataHeaders), ``messages/{id}/modify``, ``messages/{id}/attachments/{aid}``, ``labels``
(list, create), ``labels/{id}``, ``history`` (startHistoryId, historyTypes, labelId, pageToken,
maxResults; 404 when the start is older than the
retained history), ``watch``, ``stop``. Batches: ``POST {base_url}/batch/gmail/v1`` (and
``/batch``, the path google-api-python-client uses), multipart/mixed, at most 100 parts. Token
endpoint at ``token_uri`` (``refresh_token`` and service-account ``jwt-bearer`` grants); the push
signer's certificates at ``certs_url``. Authorization endpoint at ``auth_uri`` (Google's
``/o/oauth2/v2/auth``: one-time codes with PKCE; who signs in: see
:mod:`mailparity.testing._authorize`), redeemed by the token endpoint's ``authorization_code``
grant.

Faults: :meth:`fail_next` (429 ``rateLimitExceeded`` with Retry-After, 403
``userRateLimitExceeded``, 5xx ``backendError``), :meth:`expire_tokens`,
:meth:`revoke_refresh_token`, :meth:`expire_history`. Emission: :meth:`push_body`, :meth:`push`.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import html as html_lib
import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

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
    json_response,
    split_path,
)
from ._render import (
    ParsedRaw,
    content_type,
    header_text,
    is_container,
    leaf_payload,
    parse_raw,
    part_filename,
    preview,
)

if TYPE_CHECKING:
    import requests


__all__ = ["FakeGmail", "GmailMailbox", "GmailMessage", "PushSigner"]

#: Parts in one batch request (Gmail rejects more).
MAX_BATCH = 100
#: Gmail asks for a new watch at least every 7 days.
WATCH_LIFETIME = timedelta(days=7)
#: The service account Pub/Sub signs pushes as, unless told otherwise.
DEFAULT_PUSH_ACCOUNT = "gmail-push@mailparity-test.iam.gserviceaccount.com"
DEFAULT_SUBSCRIPTION = "projects/mailparity-test/subscriptions/gmail-push"

SYSTEM_LABELS = [
    "INBOX",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "SENT",
    "DRAFT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
]
#: System labels a client may add or remove with messages.modify.
_MUTABLE_SYSTEM = {"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT"} | {
    name for name in SYSTEM_LABELS if name.startswith("CATEGORY_")
}
_HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_ATTACHMENT_PREFIX = "ANGjdJ"


class PushSigner(Protocol):
    """What :meth:`FakeGmail.push` needs from a signer (``testing.oidc.TestOidcSigner`` fits)."""

    def certs_json(self) -> dict[str, str]: ...

    def push_token(self, audience: str, email: str) -> str: ...


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass
class GmailMessage:
    """A stored message."""

    id: str
    thread_id: str
    label_ids: list[str]
    history_id: int
    internal_date: int
    raw: bytes
    parsed: ParsedRaw

    @property
    def message_id_header(self) -> str | None:
        ids = self.parsed.msg_ids("Message-ID")
        return ids[0] if ids else None


@dataclass
class _History:
    id: int
    kind: str
    message_id: str
    thread_id: str
    labels: list[str]
    changed: list[str] = field(default_factory=list)


@dataclass
class GmailMailbox:
    """One mailbox: messages, labels, history and the watch."""

    email: str
    messages: dict[str, GmailMessage] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[_History] = field(default_factory=list)
    history_id: int = 0
    history_floor: int = 0
    watch: dict[str, Any] | None = None


@dataclass
class _Token:
    email: str | None
    expires_at: datetime


@dataclass
class _Refresh:
    email: str
    client_id: str
    scope: str
    revoked: bool = False


class _GmailError(Exception):
    def __init__(self, status: int, message: str, reason: str, domain: str = "global") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.domain = domain


class FakeGmail(ProviderFake):
    """A stateful Gmail fake; see the module docstring for the surface.

    ``signer`` signs push tokens and provides the certificates served at ``certs_url``; by default
    a :class:`~mailparity.testing.oidc.TestOidcSigner` is created on first use. ``seed`` makes
    ids and history gaps reproducible. ``body_attachment_threshold``: body parts larger than this
    many bytes come back with an ``attachmentId`` instead of ``data``, as Gmail does for big parts.
    """

    def __init__(
        self,
        base_url: str = "https://gmail.googleapis.com",
        token_uri: str = "https://oauth2.googleapis.com/token",  # noqa: S107 - a URL
        *,
        clock: Clock | None = None,
        signer: PushSigner | None = None,
        certs_url: str = "https://www.googleapis.com/oauth2/v1/certs",
        auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth",
        seed: int = 0,
        subscription: str = DEFAULT_SUBSCRIPTION,
        token_lifetime: int = 3599,
        body_attachment_threshold: int | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self.base_url = base_url.rstrip("/")
        self.token_uri = token_uri
        self.certs_url = certs_url
        self.auth_uri = auth_uri
        self._signer = signer
        self.random = random.Random(seed)
        self.subscription = subscription
        self.token_lifetime = token_lifetime
        self.body_attachment_threshold = body_attachment_threshold
        self.mailboxes: dict[str, GmailMailbox] = {}
        self.clients: dict[str, str] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._counter = 0
        #: The sign-in side: redirect URIs, the signed-in account, issued codes.
        self.authorization = AuthorizationServer(
            new_code=lambda: "4/0Afake-" + _b64url(self.random.randbytes(24)), now=self.now
        )
        #: (client id, address) pairs that consented once: Google issues a refresh token on
        #: the first consent, and later only when asked again with ``prompt=consent``.
        self._consented: set[tuple[str, str]] = set()

    # ================================================================== setup helpers

    @property
    def signer(self) -> PushSigner:
        """The push signer (created on first use)."""
        if self._signer is None:
            from .oidc import TestOidcSigner

            self._signer = TestOidcSigner()
        return self._signer

    def base_urls(self) -> list[str]:
        return [self.base_url, self.token_uri, self.certs_url, self.auth_uri]

    def mount(self, root_url: str) -> None:
        """Serve below ``root_url``: API at ``{root}/gmail``, token endpoint at
        ``{root}/google/token``, push certificates at ``{root}/google/certs``, authorization
        endpoint at ``{root}/google/auth``."""
        root = root_url.rstrip("/")
        self.base_url = f"{root}/gmail"
        self.token_uri = f"{root}/google/token"
        self.certs_url = f"{root}/google/certs"
        self.auth_uri = f"{root}/google/auth"

    def config_overrides(self) -> dict[str, str]:
        """The Gmail config fields that point an adapter (and the web connect flow) at this
        fake."""
        return {
            "gmail_base_url": self.base_url, "token_uri": self.token_uri, "auth_uri": self.auth_uri
        }

    def add_mailbox(self, address: str) -> GmailMailbox:
        """Create a mailbox with the system labels, or return the existing one."""
        with self._lock:
            key = address.lower()
            if key not in self.mailboxes:
                mailbox = GmailMailbox(email=address)
                for name in SYSTEM_LABELS:
                    mailbox.labels[name] = {
                        "id": name,
                        "name": name,
                        "messageListVisibility": "hide",
                        "labelListVisibility": "labelShow",
                        "type": "system",
                    }
                mailbox.history_id = 1000 + self.random.randint(0, 999)
                mailbox.history_floor = mailbox.history_id
                self.mailboxes[key] = mailbox
            return self.mailboxes[key]

    def mailbox(self, address: str) -> GmailMailbox:
        """A mailbox by address (``KeyError`` when unknown)."""
        with self._lock:
            return self.mailboxes[address.lower()]

    def add_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None
    ) -> None:
        """Register an OAuth client; once any is registered, the token and authorization
        endpoints check them. ``redirect_uris``: the client's authorized redirect URIs (None:
        any is accepted)."""
        with self._lock:
            self.clients[client_id] = client_secret
            if redirect_uris is not None:
                self.authorization.allow_redirects(client_id, redirect_uris)

    def sign_in(self, mailbox: str | None) -> None:
        """The account the authorization endpoint signs in as (created if needed; None: back to
        ``fake_user`` / ``login_hint`` / the account chooser)."""
        with self._lock:
            self.authorization.signed_in = self.add_mailbox(mailbox).email if mailbox else None

    def decline_next(self, n: int = 1) -> None:
        """The next ``n`` authorization requests are declined (``error=access_denied``)."""
        with self._lock:
            self.authorization.declines.extend(["access_denied"] * n)

    def add_label(self, mailbox: str, name: str) -> str:
        """Create a user label directly; returns its id."""
        with self._lock:
            box = self.add_mailbox(mailbox)
            return self._create_label(box, name)["id"]  # type: ignore[no-any-return]

    # ================================================================== tokens

    def issue_tokens(
        self,
        mailbox: str,
        client_id: str = "fake-google-client",
        scope: str = "https://www.googleapis.com/auth/gmail.modify",
    ) -> dict[str, Any]:
        """Tokens for ``mailbox`` (created if needed), as after the user's consent."""
        with self._lock:
            box = self.add_mailbox(mailbox)
            access = self._issue_access(box.email)
            refresh = "1//fake-google-rt-" + _b64url(self.random.randbytes(24))
            self._refresh[refresh] = _Refresh(box.email, client_id, scope)
            return {
                "access_token": access,
                "refresh_token": refresh,
                "expires_at": self._access[access].expires_at,
                "expires_in": self.token_lifetime,
                "scope": scope,
            }

    def _issue_access(self, address: str | None) -> str:
        token = "ya29.fake-" + _b64url(self.random.randbytes(24))
        self._access[token] = _Token(address, self.now() + timedelta(seconds=self.token_lifetime))
        return token

    # ================================================================== delivery and state

    def _next_history(self, box: GmailMailbox) -> int:
        # Gmail's ids increase but are not contiguous: code must never assume +1.
        box.history_id += self.random.randint(1, 7)
        return box.history_id

    def _new_message_id(self, internal_ms: int) -> str:
        self._counter += 1
        return f"{(internal_ms << 20) + (self._counter & 0xFFFFF):016x}"

    def deliver(
        self,
        mailbox: str,
        raw: bytes,
        label_ids: tuple[str, ...] | list[str] = ("INBOX", "UNREAD"),
        *,
        internal_date: datetime | None = None,
    ) -> str:
        """Store ``raw`` in ``mailbox`` with ``label_ids``; returns the new message id.

        Adds a ``messageAdded`` history record under a new historyId. ``internal_date`` (the
        time Gmail accepted the mail) defaults to now.
        """
        parsed = parse_raw(raw)
        with self._lock:
            box = self.add_mailbox(mailbox)
            for label in label_ids:
                if label not in box.labels:
                    raise KeyError(f"unknown label {label!r}")
            moment = internal_date or self.now()
            internal_ms = int(moment.timestamp() * 1000)
            message_id = self._new_message_id(internal_ms)
            thread_id = self._thread_for(box, parsed) or message_id
            history_id = self._next_history(box)
            message = GmailMessage(
                id=message_id,
                thread_id=thread_id,
                label_ids=list(label_ids),
                history_id=history_id,
                internal_date=internal_ms,
                raw=bytes(raw),
                parsed=parsed,
            )
            box.messages[message_id] = message
            box.history.append(
                _History(history_id, "messageAdded", message_id, thread_id, list(label_ids))
            )
            return message_id

    def _thread_for(self, box: GmailMailbox, parsed: ParsedRaw) -> str | None:
        related = set(parsed.msg_ids("In-Reply-To")) | set(parsed.msg_ids("References"))
        for other in box.messages.values():
            if other.message_id_header in related:
                return other.thread_id
        return None

    def expire_history(self, mailbox: str) -> None:
        """Drop the retained history: history.list from any earlier start id answers 404."""
        with self._lock:
            box = self.mailbox(mailbox)
            box.history_floor = box.history_id
            box.history.clear()

    # ================================================================== pushes

    def push_body(self, mailbox: str, history_id: int | None = None) -> bytes:
        """The Pub/Sub push body Gmail's notification arrives in, for the current historyId."""
        from .oidc import pubsub_push_body

        with self._lock:
            box = self.mailbox(mailbox)
            current = box.history_id if history_id is None else history_id
            return pubsub_push_body(
                box.email, current, subscription=self.subscription, publish_time=self.now()
            )

    def push(
        self,
        url: str,
        mailbox: str,
        *,
        audience: str | None = None,
        service_account: str = DEFAULT_PUSH_ACCOUNT,
        history_id: int | None = None,
        session: requests.Session | None = None,
        require_watch: bool = True,
        timeout: float = 10.0,
    ) -> Delivery:
        """POST :meth:`push_body` to ``url`` with a Pub/Sub OIDC bearer token signed by the signer
        (``audience`` defaults to ``url``). Gmail pushes only for a watched mailbox: without an
        active watch this raises ``RuntimeError`` unless ``require_watch=False``."""
        import requests as requests_lib

        with self._lock:
            box = self.mailbox(mailbox)
            watch = box.watch
            if require_watch and (watch is None or watch["expires_at"] <= self.now()):
                raise RuntimeError(f"{mailbox} has no active watch: Gmail would not push")
        body = self.push_body(mailbox, history_id)
        token = self.signer.push_token(audience or url, service_account)
        sender = session or requests_lib.Session()
        payload = json.loads(body)
        try:
            response = sender.post(
                url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}",
                    "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
                },
                timeout=timeout,
            )
        except requests_lib.RequestException as exc:
            return Delivery(url, payload, None, type(exc).__name__)
        return Delivery(url, payload, response.status_code)

    # ================================================================== faults

    def _is_api_request(self, request: FakeRequest) -> bool:
        return request.url.startswith(self.base_url)

    def _fault_response(self, request: FakeRequest, fault: _Fault) -> HandlerResult:
        if request.url.startswith(self.token_uri):
            return json_response(
                fault.status,
                {"error": fault.reason or "temporarily_unavailable", "error_description": "Fault"},
            )
        if fault.status == 429:
            return self._error_response(
                _GmailError(
                    429,
                    "Too many concurrent requests for user.",
                    fault.reason or "rateLimitExceeded",
                )
            )
        if fault.status == 403:
            return self._error_response(
                _GmailError(
                    403,
                    "User Rate Limit Exceeded",
                    fault.reason or "userRateLimitExceeded",
                    "usageLimits",
                )
            )
        if fault.status >= 500:
            return self._error_response(
                _GmailError(fault.status, "Backend Error", fault.reason or "backendError")
            )
        return self._error_response(
            _GmailError(fault.status, "Injected fault.", fault.reason or "failedPrecondition")
        )

    # ================================================================== routing

    def _error_response(self, error: _GmailError) -> HandlerResult:
        body = {
            "error": {
                "code": error.status,
                "message": error.message,
                "errors": [
                    {"message": error.message, "domain": error.domain, "reason": error.reason}
                ],
                "status": _STATUS_TEXT.get(error.status, "UNKNOWN"),
            }
        }
        headers: dict[str, str] = {}
        if error.status == 401:
            headers["WWW-Authenticate"] = (
                'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            )
        return json_response(error.status, body, headers)

    def _dispatch(self, request: FakeRequest) -> HandlerResult:
        try:
            if request.url.startswith(self.auth_uri):
                if request.method != "GET":
                    return page(405, "Error 405", "Method not allowed.")
                return self._authorize(request)
            if request.url.startswith(self.token_uri):
                return self._token(request)
            if request.url.startswith(self.certs_url):
                if request.method != "GET":
                    raise _GmailError(405, "Method not allowed.", "badRequest")
                return json_response(200, dict(self.signer.certs_json()))
            return self._api(request)
        except _GmailError as exc:
            return self._error_response(exc)

    # ------------------------------------------------------------------ token endpoint

    def _token(self, request: FakeRequest) -> HandlerResult:
        if request.method != "POST":
            return json_response(405, {"error": "invalid_request"})
        form = request.form()
        grant = form.get("grant_type", "")
        if grant == "authorization_code":
            return self._code_grant(form)
        if grant == "refresh_token":
            client_id = form.get("client_id", "")
            if self.clients and self.clients.get(client_id) != form.get("client_secret"):
                return json_response(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "The OAuth client was not found.",
                    },
                )
            stored = self._refresh.get(form.get("refresh_token", ""))
            if stored is None or stored.revoked:
                return json_response(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                )
            if stored.client_id != client_id:
                return json_response(
                    400, {"error": "unauthorized_client", "error_description": "Unauthorized"}
                )
            return json_response(
                200,
                {
                    "access_token": self._issue_access(stored.email),
                    "expires_in": self.token_lifetime,
                    "scope": stored.scope,
                    "token_type": "Bearer",
                },
            )
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            if claims is None:
                return json_response(
                    400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
                )
            subject = claims.get("sub")
            address = str(subject) if subject else None
            if address is not None:
                self.add_mailbox(address)
            return json_response(
                200,
                {
                    "access_token": self._issue_access(address),
                    "expires_in": self.token_lifetime,
                    "token_type": "Bearer",
                },
            )
        return json_response(
            400,
            {
                "error": "unsupported_grant_type",
                "error_description": f"Invalid grant_type: {grant}",
            },
        )

    # ------------------------------------------------------------------ authorization

    _SCOPES = frozenset(
        {
            "openid", "email", "profile", "https://mail.google.com/",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
        }
        | {
            f"https://www.googleapis.com/auth/gmail.{name}"
            for name in ("readonly", "modify", "metadata", "labels", "send", "compose")
        }
    )

    def _authorize(self, request: FakeRequest) -> HandlerResult:
        """``GET {auth_uri}``: Google's error pages, or a code for the signed-in account."""
        checked = self.authorization.check_client(request, self.clients)
        if isinstance(checked, Refusal):
            status = 401 if checked.error == "unauthorized_client" else checked.status
            error = "invalid_client" if checked.error == "unauthorized_client" else checked.error
            return page(status, f"Error {status}: {error}", checked.description)
        client_id, redirect_uri = checked
        state = request.param("state")
        refusal = self.authorization.check_request(request, self._SCOPES.__contains__)
        if refusal is not None:
            # Google shows these on its own error page too, rather than redirecting.
            return page(400, f"Error 400: {refusal.error}", refusal.description)
        if self.authorization.declined(request):
            return redirect(redirect_uri, {"error": "access_denied", "state": state})

        def known(address: str) -> str | None:
            box = self.mailboxes.get(address.lower())
            return box.email if box is not None else None

        address = self.authorization.user_for(request, known)
        if address is None:
            return chooser(request, [box.email for box in self.mailboxes.values()])
        asked = (request.param("scope") or "").split()
        # Granular consent: the user may untick permissions (``fake_scopes`` lists the kept).
        kept = request.param("fake_scopes")
        granted = [s for s in asked if kept is None or s in kept.split()]
        if request.param("include_granted_scopes") == "true":
            granted += [s for s in self._granted_before(client_id, address) if s not in granted]
        offline = request.param("access_type") == "offline"
        fresh_consent = (
            request.param("prompt") == "consent" or (client_id, address) not in self._consented
        )
        code = self.authorization.issue(
            request, user=address, client_id=client_id, redirect_uri=redirect_uri,
            scope=" ".join(granted), refresh=offline and fresh_consent,
        )
        self._consented.add((client_id, address))
        return redirect(
            redirect_uri,
            {"state": state, "code": code, "scope": " ".join(granted), "authuser": "0",
             "prompt": "consent" if fresh_consent else "none"},
        )

    def _granted_before(self, client_id: str, address: str) -> list[str]:
        scopes: list[str] = []
        for grant in self._refresh.values():
            if grant.client_id == client_id and grant.email == address and not grant.revoked:
                scopes += [s for s in grant.scope.split() if s not in scopes]
        return scopes

    def _code_grant(self, form: dict[str, str]) -> HandlerResult:
        """The ``authorization_code`` grant, answered like Google's token endpoint."""
        client_id = form.get("client_id", "")
        if self.clients and self.clients.get(client_id) != form.get("client_secret"):
            return json_response(
                401, {"error": "invalid_client", "error_description": "Unauthorized"}
            )
        redeemed = self.authorization.redeem(form, client_id)
        if not isinstance(redeemed, AuthCode):
            reason, _detail = redeemed
            answers = {
                "unknown": ("invalid_grant", "Malformed auth code."),
                "client": ("invalid_grant", "Bad Request"),
                "reused": ("invalid_grant", "Bad Request"),
                "expired": ("invalid_grant", "Bad Request"),
                "redirect_uri": ("redirect_uri_mismatch", "Bad Request"),
                "verifier_missing": ("invalid_grant", "Missing code verifier."),
                "verifier_mismatch": ("invalid_grant", "Invalid code verifier."),
            }
            error, description = answers[reason]
            return json_response(400, {"error": error, "error_description": description})
        payload: dict[str, Any] = {
            "access_token": self._issue_access(redeemed.user),
            "expires_in": self.token_lifetime,
            "scope": redeemed.scope,
            "token_type": "Bearer",
        }
        if redeemed.extra.get("refresh"):
            refresh = "1//fake-google-rt-" + _b64url(self.random.randbytes(24))
            self._refresh[refresh] = _Refresh(redeemed.user, client_id, redeemed.scope)
            payload["refresh_token"] = refresh
        return json_response(200, payload)

    # ------------------------------------------------------------------ API

    def _authenticate(self, request: FakeRequest) -> _Token:
        token = request.bearer()
        grant = self._access.get(token) if token else None
        if grant is None or grant.expires_at <= self.now():
            raise _GmailError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                "authError",
            )
        return grant

    def _api(self, request: FakeRequest) -> HandlerResult:
        rest = request.url[len(self.base_url) :].split("?", 1)[0]
        segments = split_path(rest)
        if segments and segments[0] == "batch":
            if request.method != "POST":
                raise _GmailError(405, "Method not allowed.", "badRequest")
            if request.in_batch:
                raise _GmailError(400, "Nested batch requests are not allowed.", "badRequest")
            if segments[1:] not in ([], ["gmail", "v1"]):
                raise _GmailError(404, "Not Found", "notFound")
            self._authenticate_batch(request)
            return self._batch(request)
        grant = self._authenticate(request)
        if len(segments) < 4 or segments[:3] != ["gmail", "v1", "users"]:
            raise _GmailError(404, "Not Found", "notFound")
        box = self._resolve_mailbox(grant, segments[3])
        return self._user_api(request, box, segments[4:])

    def _authenticate_batch(self, request: FakeRequest) -> None:
        # The outer request of a batch may omit Authorization (each part carries its own).
        if request.bearer() is not None:
            self._authenticate(request)

    def _resolve_mailbox(self, grant: _Token, user_id: str) -> GmailMailbox:
        if grant.email is None:
            raise _GmailError(400, "Precondition check failed.", "failedPrecondition")
        if user_id != "me" and user_id.lower() != grant.email.lower():
            raise _GmailError(403, f"Delegation denied for {grant.email}", "forbidden")
        return self.add_mailbox(grant.email)

    def _user_api(self, request: FakeRequest, box: GmailMailbox, tail: list[str]) -> HandlerResult:
        method = request.method
        route = tuple(tail[:1]) + tuple(tail[2:3]) if len(tail) >= 3 else tuple(tail[:1])
        if tail == ["profile"] and method == "GET":
            return json_response(
                200,
                {
                    "emailAddress": box.email,
                    "messagesTotal": len(box.messages),
                    "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                    "historyId": str(box.history_id),
                },
            )
        if tail == ["messages"] and method == "GET":
            return self._list(request, box)
        if len(tail) == 2 and tail[0] == "messages" and method == "GET":
            return self._get(request, box, tail[1])
        if len(tail) == 3 and route == ("messages", "modify") and method == "POST":
            return self._modify(request, box, tail[1])
        if len(tail) == 4 and route == ("messages", "attachments") and method == "GET":
            return self._attachment(box, tail[1], tail[3])
        if tail == ["labels"] and method == "GET":
            return json_response(200, {"labels": [dict(label) for label in box.labels.values()]})
        if tail == ["labels"] and method == "POST":
            return self._labels_create(request, box)
        if len(tail) == 2 and tail[0] == "labels" and method == "GET":
            label = box.labels.get(tail[1])
            if label is None:
                raise _GmailError(404, "Requested entity was not found.", "notFound")
            return json_response(200, dict(label))
        if tail == ["history"] and method == "GET":
            return self._history(request, box)
        if tail == ["watch"] and method == "POST":
            return self._watch(request, box)
        if tail == ["stop"] and method == "POST":
            box.watch = None
            return empty_response(204)
        raise _GmailError(404, "Not Found", "notFound")

    def _message(self, box: GmailMailbox, message_id: str) -> GmailMessage:
        message = box.messages.get(message_id)
        if message is None:
            raise _GmailError(404, "Requested entity was not found.", "notFound")
        return message

    # ------------------------------------------------------------------ messages

    def _get(self, request: FakeRequest, box: GmailMailbox, message_id: str) -> HandlerResult:
        fmt = (request.param("format") or "full").lower()
        if fmt not in ("full", "metadata", "minimal", "raw"):
            raise _GmailError(400, f"Invalid value at 'format' ({fmt!r})", "invalidArgument")
        message = self._message(box, message_id)
        return json_response(200, self.render(message, fmt, request.query.get("metadataHeaders")))

    def render(
        self, message: GmailMessage, fmt: str = "full", metadata_headers: list[str] | None = None
    ) -> dict[str, Any]:
        """The ``users.messages.get`` resource of ``message`` in ``fmt``."""
        data: dict[str, Any] = {
            "id": message.id,
            "threadId": message.thread_id,
            "labelIds": list(message.label_ids),
            "snippet": _snippet(message.parsed),
            "sizeEstimate": len(message.raw),
            "historyId": str(message.history_id),
            "internalDate": str(message.internal_date),
        }
        if fmt == "raw":
            data["raw"] = _b64url(message.raw)
        elif fmt == "metadata":
            wanted = {name.lower() for name in metadata_headers or []}
            root = message.parsed.message
            data["payload"] = {
                "partId": "",
                "mimeType": content_type(root),
                "filename": "",
                "headers": [
                    {"name": name, "value": value}
                    for name, value in message.parsed.headers
                    if not wanted or name.lower() in wanted
                ],
            }
        elif fmt == "full":
            data["payload"] = self._part(message.id, message.parsed.message, "")
        return data

    def _part(self, message_id: str, part: Message, part_id: str) -> dict[str, Any]:
        mime = content_type(part)
        filename = part_filename(part) or ""
        out: dict[str, Any] = {
            "partId": part_id,
            "mimeType": mime,
            "filename": filename,
            "headers": [
                {"name": name, "value": header_text(value)} for name, value in part.raw_items()
            ],
        }
        if is_container(part):
            out["body"] = {"size": 0}
            children = part.get_payload()
            out["parts"] = [
                self._part(message_id, child, f"{part_id}.{index}" if part_id else str(index))
                for index, child in enumerate(children if isinstance(children, list) else [])
            ]
            return out
        data = leaf_payload(part)
        big = (
            self.body_attachment_threshold is not None
            and len(data) > self.body_attachment_threshold
        )
        if filename or mime == "message/rfc822" or big:
            out["body"] = {
                "attachmentId": self._attachment_id(message_id, part_id),
                "size": len(data),
            }
        else:
            body: dict[str, Any] = {"size": len(data)}
            if data:
                body["data"] = _b64url(data)
            out["body"] = body
        return out

    def _attachment_id(self, message_id: str, part_id: str) -> str:
        digest = hashlib.sha256(f"{message_id}|{part_id}".encode()).digest()[:24]
        token = f"{message_id}|{part_id}|".encode() + digest
        return _ATTACHMENT_PREFIX + _b64url(token).rstrip("=")

    def _attachment(self, box: GmailMailbox, message_id: str, attachment_id: str) -> HandlerResult:
        message = self._message(box, message_id)
        part_id: str | None = None
        if attachment_id.startswith(_ATTACHMENT_PREFIX):
            encoded = attachment_id[len(_ATTACHMENT_PREFIX) :]
            try:
                decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                owner, found_part, _ = decoded.split(b"|", 2)
                if owner.decode() == message.id:
                    part_id = found_part.decode()
            except (ValueError, UnicodeDecodeError):
                part_id = None
        if part_id is None or self._attachment_id(message.id, part_id) != attachment_id:
            raise _GmailError(400, "Invalid attachment token", "invalidArgument")
        for candidate_id, part in _walk(message.parsed.message):
            if candidate_id == part_id and not is_container(part):
                data = leaf_payload(part)
                return json_response(200, {"size": len(data), "data": _b64url(data)})
        raise _GmailError(404, "Requested entity was not found.", "notFound")

    def _modify(self, request: FakeRequest, box: GmailMailbox, message_id: str) -> HandlerResult:
        message = self._message(box, message_id)
        body = _json_body(request)
        add = body.get("addLabelIds") or []
        remove = body.get("removeLabelIds") or []
        if not isinstance(add, list) or not isinstance(remove, list):
            raise _GmailError(400, "Invalid label lists.", "invalidArgument")
        if len(add) > 100 or len(remove) > 100:
            raise _GmailError(400, "Too many label ids (at most 100).", "invalidArgument")
        for label in [*add, *remove]:
            if label not in box.labels:
                raise _GmailError(400, f"Invalid label: {label}", "invalidArgument")
            if box.labels[label]["type"] == "system" and label not in _MUTABLE_SYSTEM:
                raise _GmailError(400, f"Invalid label: {label}", "invalidArgument")
        added = [label for label in add if label not in message.label_ids]
        removed = [label for label in remove if label in message.label_ids and label not in add]
        if added:
            message.label_ids.extend(added)
            message.history_id = self._next_history(box)
            box.history.append(
                _History(
                    message.history_id,
                    "labelAdded",
                    message.id,
                    message.thread_id,
                    list(message.label_ids),
                    added,
                )
            )
        if removed:
            message.label_ids = [label for label in message.label_ids if label not in removed]
            message.history_id = self._next_history(box)
            box.history.append(
                _History(
                    message.history_id,
                    "labelRemoved",
                    message.id,
                    message.thread_id,
                    list(message.label_ids),
                    removed,
                )
            )
        return json_response(
            200,
            {"id": message.id, "threadId": message.thread_id, "labelIds": list(message.label_ids)},
        )

    def _list(self, request: FakeRequest, box: GmailMailbox) -> HandlerResult:
        label_filter = request.query.get("labelIds") or []
        include_spam = (request.param("includeSpamTrash") or "false").lower() == "true"
        max_results = _bounded_int(request.param("maxResults"), 100, 1, 500, "maxResults")
        offset = _page_offset(request.param("pageToken"))
        query = request.param("q") or ""
        conditions = _parse_query(query, box, self.now())
        include_spam = include_spam or _search_includes_spam(query)
        items = [
            m
            for m in box.messages.values()
            if all(label in m.label_ids for label in label_filter)
            and (include_spam or not ({"SPAM", "TRASH"} & set(m.label_ids)))
            and all(condition(m) for condition in conditions)
        ]
        items.sort(key=lambda m: (m.internal_date, m.id), reverse=True)
        page = items[offset : offset + max_results]
        payload: dict[str, Any] = {}
        if page:
            payload["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + max_results < len(items):
            payload["nextPageToken"] = _page_token(offset + max_results)
        payload["resultSizeEstimate"] = len(items)
        return json_response(200, payload)

    # ------------------------------------------------------------------ labels

    def _create_label(self, box: GmailMailbox, name: str, **extra: Any) -> dict[str, Any]:
        if name.upper() in SYSTEM_LABELS:
            raise _GmailError(400, "Invalid label name", "invalidArgument")
        if any(label["name"].lower() == name.lower() for label in box.labels.values()):
            raise _GmailError(409, "Label name exists or conflicts", "duplicate")
        number = 1 + sum(1 for label in box.labels.values() if label["type"] == "user")
        label_id = f"Label_{number}"
        while label_id in box.labels:
            number += 1
            label_id = f"Label_{number}"
        label = {
            "id": label_id,
            "name": name,
            "messageListVisibility": extra.get("messageListVisibility", "show"),
            "labelListVisibility": extra.get("labelListVisibility", "labelShow"),
            "type": "user",
        }
        if extra.get("color"):
            label["color"] = extra["color"]
        box.labels[label_id] = label
        return label

    def _labels_create(self, request: FakeRequest, box: GmailMailbox) -> HandlerResult:
        body = _json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _GmailError(400, "Invalid label name", "invalidArgument")
        extra = {
            key: body[key]
            for key in ("messageListVisibility", "labelListVisibility", "color")
            if key in body
        }
        return json_response(200, dict(self._create_label(box, name, **extra)))

    # ------------------------------------------------------------------ history

    def _history(self, request: FakeRequest, box: GmailMailbox) -> HandlerResult:
        raw_start = request.param("startHistoryId")
        if raw_start is None:
            raise _GmailError(400, "Missing required parameter startHistoryId", "required")
        if not raw_start.isdigit():
            raise _GmailError(400, "Invalid startHistoryId", "invalidArgument")
        start = int(raw_start)
        if start < box.history_floor:
            raise _GmailError(404, "Requested entity was not found.", "notFound")
        types = request.query.get("historyTypes") or []
        for kind in types:
            if kind not in _HISTORY_TYPES:
                raise _GmailError(
                    400, f"Invalid value at 'history_types' ({kind})", "invalidArgument"
                )
        label = request.param("labelId")
        max_results = _bounded_int(request.param("maxResults"), 100, 1, 500, "maxResults")
        after = start
        token = request.param("pageToken")
        if token is not None:
            after = max(after, _page_offset(token))
        records = [
            record
            for record in box.history
            if record.id > after
            and (not types or record.kind in types)
            and (label is None or label in record.labels)
        ]
        page = records[:max_results]
        payload: dict[str, Any] = {}
        if page:
            payload["history"] = [_history_json(record) for record in page]
        if len(records) > max_results:
            payload["nextPageToken"] = _page_token(page[-1].id)
        payload["historyId"] = str(box.history_id)
        return json_response(200, payload)

    def _watch(self, request: FakeRequest, box: GmailMailbox) -> HandlerResult:
        body = _json_body(request)
        topic = body.get("topicName")
        if not isinstance(topic, str) or not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            raise _GmailError(
                400,
                "Invalid topicName does not match projects/{project}/topics/*",
                "invalidArgument",
            )
        labels = body.get("labelIds") or []
        if not isinstance(labels, list) or any(label not in box.labels for label in labels):
            raise _GmailError(400, "Invalid label in labelIds", "invalidArgument")
        expires = self.now() + WATCH_LIFETIME
        box.watch = {
            "topicName": topic,
            "labelIds": list(labels),
            "labelFilterBehavior": body.get("labelFilterBehavior")
            or body.get("labelFilterAction")
            or "include",
            "expires_at": expires,
        }
        return json_response(
            200,
            {"historyId": str(box.history_id), "expiration": str(int(expires.timestamp() * 1000))},
        )

    # ------------------------------------------------------------------ batch

    def _batch(self, request: FakeRequest) -> HandlerResult:
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            raise _GmailError(400, "Batch requests must be multipart/mixed.", "badRequest")
        envelope = email.message_from_bytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + request.body,
            policy=email.policy.compat32,
        )
        parts = envelope.get_payload()
        if not envelope.is_multipart() or not isinstance(parts, list) or not parts:
            raise _GmailError(400, "The batch holds no requests.", "badRequest")
        if len(parts) > MAX_BATCH:
            raise _GmailError(
                400,
                "Inner request count exceeds the limit. "
                f"Received: {len(parts)}, Limit: {MAX_BATCH}",
                "badRequest",
            )
        outer = {
            key: value
            for key, value in request.headers.items()
            if not key.lower().startswith("content-") and key.lower() != "host"
        }
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(request.url))
        boundary = "batch_" + _b64url(self.random.randbytes(12)).rstrip("=").replace("-", "x")
        chunks: list[bytes] = []
        for part in parts:
            if not isinstance(part, Message):
                continue
            content_id = header_text(part.get("Content-ID", "")).strip("<>")
            payload = part.get_payload(decode=False)
            text = payload if isinstance(payload, str) else ""
            result = self._batch_member(text, outer, origin)
            reason = _reason(result.status)
            head = [f"HTTP/1.1 {result.status} {reason}"]
            head += [f"{key}: {value}" for key, value in result.headers.items()]
            head.append(f"Content-Length: {len(result.body)}")
            inner = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + result.body
            chunks.append(
                (
                    f"--{boundary}\r\nContent-Type: application/http\r\n"
                    f"Content-ID: <response-{content_id}>\r\n\r\n"
                ).encode("latin-1")
                + inner
                + b"\r\n"
            )
        body = b"".join(chunks) + f"--{boundary}--\r\n".encode("latin-1")
        return bytes_response(200, body, f"multipart/mixed; boundary={boundary}")

    def _batch_member(self, text: str, outer: dict[str, str], origin: str) -> HandlerResult:
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.strip("\n").split("\n")
        request_line = lines[0].split() if lines and lines[0].strip() else []
        if len(request_line) < 2:
            return self._error_response(_GmailError(400, "Malformed batch part.", "badRequest"))
        method, target = request_line[0].upper(), request_line[1]
        headers = dict(outer)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip()] = value.strip()
        url = origin + target
        rest = url[len(self.base_url) :] if url.startswith(self.base_url) else ""
        if not rest.startswith("/gmail/v1/"):
            # A path relative to the API root rather than to the host.
            url = self.base_url + target
        inner = FakeRequest.parse(method, url, headers, body.encode("utf-8"), in_batch=True)
        return self._handle_parsed(inner)


# ====================================================================== helpers


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _walk(part: Message, part_id: str = "") -> list[tuple[str, Message]]:
    out = [(part_id, part)]
    if is_container(part):
        children = part.get_payload()
        for index, child in enumerate(children if isinstance(children, list) else []):
            out.extend(_walk(child, f"{part_id}.{index}" if part_id else str(index)))
    return out


def _snippet(parsed: ParsedRaw) -> str:
    # Gmail's snippet is HTML-escaped, with &#39; for the apostrophe.
    return html_lib.escape(preview(parsed.preview_text, 200), quote=True).replace("&#x27;", "&#39;")


def _history_json(record: _History) -> dict[str, Any]:
    message = {"id": record.message_id, "threadId": record.thread_id}
    full = {**message, "labelIds": list(record.labels)}
    data: dict[str, Any] = {"id": str(record.id), "messages": [message]}
    if record.kind == "messageAdded":
        data["messagesAdded"] = [{"message": full}]
    elif record.kind == "labelAdded":
        data["labelsAdded"] = [{"message": full, "labelIds": list(record.changed)}]
    elif record.kind == "labelRemoved":
        data["labelsRemoved"] = [{"message": full, "labelIds": list(record.changed)}]
    return data


def _json_body(request: FakeRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = request.json()
    except ValueError:
        raise _GmailError(400, "Invalid JSON payload received.", "parseError") from None
    if not isinstance(body, dict):
        raise _GmailError(400, "Invalid JSON payload received.", "parseError")
    return body


def _bounded_int(raw: str | None, default: int, low: int, high: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise _GmailError(400, f"Invalid value for {name}: {raw}", "invalidArgument")
    return max(low, min(high, int(raw)))


def _page_token(value: int) -> str:
    return _b64url(f"p{value}".encode()).rstrip("=")


def _page_offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.startswith("p") or not decoded[1:].isdigit():
        raise _GmailError(400, "Invalid pageToken", "invalidArgument")
    return int(decoded[1:])


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        data = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _query_time(value: str) -> float:
    if value.isdigit():
        return float(value)
    match = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value)
    if match is None:
        raise _GmailError(400, f"Invalid date in query: {value}", "invalidArgument")
    year, month, day = (int(group) for group in match.groups())
    # Gmail reads dates in the account's zone; the fake uses UTC.
    return datetime(year, month, day, tzinfo=timezone.utc).timestamp()


#: ``in:`` / ``label:`` names of system labels as Gmail's search box spells them.
_SEARCH_ALIASES = {
    "inbox": "INBOX", "sent": "SENT", "draft": "DRAFT", "drafts": "DRAFT", "spam": "SPAM",
    "trash": "TRASH", "chat": "CHAT", "chats": "CHAT", "starred": "STARRED",
    "important": "IMPORTANT", "unread": "UNREAD",
}
_SEARCH_TOKEN = re.compile(r'-?[A-Za-z_]+:"[^"]*"|-?"[^"]*"|\S+')
_UNITS = {"d": 86_400, "m": 30 * 86_400, "y": 365 * 86_400}


def _search_terms(query: str) -> list[tuple[bool, str, str]]:
    """``(negated, operator, value)`` of each term of a Gmail search (``-`` negates a term;
    values may be quoted). ``OR``, ``{}`` and ``()`` groups are not supported: 400."""
    terms: list[tuple[bool, str, str]] = []
    for token in _SEARCH_TOKEN.findall(query):
        negated = token.startswith("-")
        body = token[1:] if negated else token
        key, sep, value = body.partition(":")
        value = value.strip('"')
        if not sep or not value or any(c in token for c in "{}()"):
            raise _GmailError(
                400, f"Unsupported search term in the fake: {token}", "invalidArgument"
            )
        terms.append((negated, key.lower(), value))
    return terms


def _search_includes_spam(query: str) -> bool:
    """Whether the search asks for SPAM / TRASH itself (``in:spam``, ``in:anywhere``...), which
    lifts ``messages.list``'s default exclusion of those labels."""
    return any(
        not negated and key in ("in", "label") and value.lower() in ("spam", "trash", "anywhere")
        for negated, key, value in _search_terms(query)
    )


def _parse_query(query: str, box: GmailMailbox, now: datetime | None = None) -> list[Any]:
    """Conditions of a Gmail search; the fake supports a documented subset (each term may be
    negated with ``-``) and rejects the rest: an unsupported operator silently ignored would make
    a test pass for the wrong reason."""
    conditions: list[Any] = []
    for negated, key, value in _search_terms(query):
        condition = _search_condition(key, value, box, now)
        if condition is None:
            if negated:  # -in:anywhere matches nothing
                conditions.append(lambda m: False)
            continue
        if negated:
            conditions.append(lambda m, c=condition: not c(m))
        else:
            conditions.append(condition)
    return conditions


def _search_condition(key: str, value: str, box: GmailMailbox, now: datetime | None) -> Any:
    """One term's test of a message (None: the term matches every message)."""
    if key in ("after", "before"):
        moment = _query_time(value)
        if key == "after":
            return lambda m, t=moment: m.internal_date / 1000 >= t
        return lambda m, t=moment: m.internal_date / 1000 < t
    if key in ("newer_than", "older_than"):
        match = re.fullmatch(r"(\d+)([dmy])", value.lower())
        if match is None or now is None:
            raise _GmailError(400, f"Invalid value in query: {key}:{value}", "invalidArgument")
        edge = now.timestamp() - int(match.group(1)) * _UNITS[match.group(2)]
        if key == "newer_than":
            return lambda m, t=edge: m.internal_date / 1000 >= t
        return lambda m, t=edge: m.internal_date / 1000 < t
    if key == "is" and value.lower() in ("unread", "read", "starred", "important"):
        flag = value.lower()
        if flag == "read":
            return lambda m: "UNREAD" not in m.label_ids
        name = flag.upper()
        return lambda m, n=name: n in m.label_ids
    if key == "has" and value.lower() == "attachment":
        return lambda m: bool(m.parsed.attachments)
    if key == "category":
        wanted_category = "CATEGORY_" + value.upper()
        return lambda m, w=wanted_category: w in m.label_ids
    if key in ("in", "label"):
        wanted = value.lower()
        if wanted == "anywhere":
            return None
        alias = _SEARCH_ALIASES.get(wanted)
        # Gmail's search writes the "/" and " " of label names as "-".
        spellings = {wanted, wanted.replace("-", " "), wanted.replace("-", "/")}
        ids = {
            label_id
            for label_id, label in box.labels.items()
            if label_id.lower() == wanted or label["name"].lower() in spellings or label_id == alias
        }
        return lambda m, found=ids: bool(found & set(m.label_ids))
    if key in ("from", "to"):
        header = "From" if key == "from" else "To"
        needle = value.lower()
        return lambda m, h=header, n=needle: any(
            n in f"{name} {address}".lower() for name, address in m.parsed.addresses(h)
        )
    if key == "subject":
        needle = value.lower()
        return lambda m, n=needle: n in (m.parsed.decoded("Subject") or "").lower()
    raise _GmailError(400, f"Unsupported search term in the fake: {key}:{value}", "invalidArgument")

