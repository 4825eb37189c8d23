"""The authorization side of the OAuth fakes: what FakeGraph's ``/authorize`` and FakeGmail's
``/o/oauth2/v2/auth`` share (each fake speaks its provider's error dialect on top).

An authorization request is checked like the real endpoints check it: the client id and the
redirect URI first (a failure there is an error PAGE, never a redirect: the redirect URI is not
trusted yet), then the response type, the scopes and the PKCE challenge (failures go back to the
redirect URI as ``error=``). A granted request gets a one-time code bound to the client, the
redirect URI, the user, the scopes, the PKCE challenge and the nonce, valid
:attr:`AuthorizationServer.code_lifetime`.

Who signs in, in tests and demos (no login form to fill in):

1. the ``fake_user`` query parameter of the authorization URL (append it to the URL the library
   built: ``url + "&fake_user=alice@contoso.test"``);
2. else the account set with ``fake.sign_in("alice@contoso.test")``;
3. else the ``login_hint`` the library sent (the mailbox the host expects);
4. else an account chooser page lists the fake's mailboxes, each a link with ``fake_user``.

``fake_decline=1`` (or ``fake.decline_next()``) makes the user decline: the redirect carries
``error=access_denied``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._fakebase import FakeRequest, HandlerResult, bytes_response

__all__ = ["AuthCode", "AuthorizationServer", "Refusal", "pkce_matches"]

_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass
class AuthCode:
    """One issued authorization code and what it is bound to."""

    user: str
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: datetime
    challenge: str | None = None
    method: str | None = None
    nonce: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    used: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: ``page`` (shown, no redirect) or ``redirect`` (``error`` to
    the redirect URI). ``error`` is the OAuth error; ``code`` the provider's own number."""

    error: str
    description: str
    page: bool = False
    status: int = 400
    code: int | None = None


def pkce_matches(challenge: str, method: str | None, verifier: str) -> bool:
    """Whether ``verifier`` answers ``challenge`` (RFC 7636: S256, or plain)."""
    if (method or "plain") == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return computed == challenge
    return verifier == challenge


class AuthorizationServer:
    """Clients' redirect URIs, the signed-in account, and the issued codes of one fake."""

    def __init__(
        self,
        *,
        new_code: Callable[[], str],
        now: Callable[[], datetime],
        code_lifetime: timedelta = timedelta(minutes=10),
    ) -> None:
        self.new_code = new_code
        self.now = now
        self.code_lifetime = code_lifetime
        self.redirect_uris: dict[str, list[str]] = {}
        self.signed_in: str | None = None
        self.declines: list[str] = []
        self.codes: dict[str, AuthCode] = {}

    # ------------------------------------------------------------------ setup

    def allow_redirects(self, client_id: str, redirect_uris: Iterable[str] | None) -> None:
        """Register the client's redirect URIs (None: any redirect URI is accepted)."""
        if redirect_uris is None:
            self.redirect_uris.pop(client_id, None)
        else:
            self.redirect_uris[client_id] = list(redirect_uris)

    # ------------------------------------------------------------------ authorize

    def check_client(
        self, request: FakeRequest, clients: Mapping[str, str]
    ) -> tuple[str, str] | Refusal:
        """The client id and redirect URI, or the refusal PAGE (unknown client, redirect URI
        missing, not absolute, or not registered)."""
        client_id = request.param("client_id") or ""
        if not client_id:
            return Refusal("invalid_request", "The request must contain 'client_id'.", page=True)
        if clients and client_id not in clients:
            return Refusal(
                "unauthorized_client", "Application was not found.", page=True, status=400
            )
        redirect_uri = request.param("redirect_uri") or ""
        parts = urlsplit(redirect_uri)
        if not redirect_uri or parts.scheme not in ("http", "https") or not parts.netloc:
            return Refusal(
                "invalid_request", "The request must contain a valid 'redirect_uri'.", page=True
            )
        allowed = self.redirect_uris.get(client_id)
        if allowed is not None and redirect_uri not in allowed:
            return Refusal(
                "redirect_uri_mismatch",
                "The redirect URI in the request does not match the ones registered.",
                page=True,
            )
        return client_id, redirect_uri

    def check_request(
        self, request: FakeRequest, scope_ok: Callable[[str], bool]
    ) -> Refusal | None:
        """Response type, scopes and PKCE challenge (refusals go back to the redirect URI)."""
        if request.param("response_type") != "code":
            return Refusal("unsupported_response_type", "Only response_type=code is supported.")
        scopes = (request.param("scope") or "").split()
        if not scopes:
            return Refusal("invalid_request", "The request must contain a 'scope'.")
        unknown = [scope for scope in scopes if not scope_ok(scope)]
        if unknown:
            return Refusal("invalid_scope", f"The scope '{unknown[0]}' is not valid.")
        challenge = request.param("code_challenge")
        method = request.param("code_challenge_method")
        if method is not None and method not in ("S256", "plain"):
            return Refusal("invalid_request", "The code_challenge_method is not supported.")
        if method is not None and challenge is None:
            return Refusal("invalid_request", "code_challenge_method without code_challenge.")
        if challenge is not None and not _CHALLENGE.match(challenge):
            return Refusal("invalid_request", "The code_challenge is malformed.")
        return None

    def declined(self, request: FakeRequest) -> bool:
        """Whether the user declines this request (``fake_decline=1`` or a queued decline)."""
        if request.param("fake_decline") not in (None, "", "0"):
            return True
        if self.declines:
            self.declines.pop(0)
            return True
        return False

    def user_for(self, request: FakeRequest, known: Callable[[str], str | None]) -> str | None:
        """Who signs in (see the module docstring); ``known`` maps an address to the fake's
        canonical one (None when there is no such mailbox)."""
        for candidate in (request.param("fake_user"), self.signed_in, request.param("login_hint")):
            if candidate:
                found = known(candidate)
                if found is not None:
                    return found
        return None

    def issue(
        self,
        request: FakeRequest,
        *,
        user: str,
        client_id: str,
        redirect_uri: str,
        scope: str,
        **extra: Any,
    ) -> str:
        """A new one-time code for this request."""
        code = self.new_code()
        self.codes[code] = AuthCode(
            user=user,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=self.now() + self.code_lifetime,
            challenge=request.param("code_challenge"),
            method=request.param("code_challenge_method"),
            nonce=request.param("nonce"),
            extra=dict(extra),
        )
        return code

    # ------------------------------------------------------------------ token

    def redeem(
        self, form: Mapping[str, str], client_id: str
    ) -> AuthCode | tuple[str, str]:
        """The code of an ``authorization_code`` grant, consumed; or ``(reason, detail)`` with
        reason one of ``unknown``, ``reused``, ``expired``, ``client``, ``redirect_uri``,
        ``verifier_missing``, ``verifier_mismatch``. A code is spent by its first redemption
        attempt that names it with its own client, whatever happens next."""
        code = self.codes.get(form.get("code", ""))
        if code is None:
            return "unknown", "The code is not valid."
        if code.client_id != client_id:
            return "client", "The code was issued to another client."
        if code.used:
            return "reused", "The code was already redeemed."
        code.used = True
        if code.expires_at <= self.now():
            return "expired", "The code has expired."
        if form.get("redirect_uri", "") != code.redirect_uri:
            return "redirect_uri", "The redirect_uri does not match the authorization request."
        if code.challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                return "verifier_missing", "The code_verifier is missing."
            if not pkce_matches(code.challenge, code.method, verifier):
                return "verifier_mismatch", "The code_verifier does not match the code_challenge."
        return code


def redirect(redirect_uri: str, params: Mapping[str, str | None]) -> HandlerResult:
    """A 302 to ``redirect_uri`` with ``params`` added to its query."""
    query = urlencode({key: value for key, value in params.items() if value is not None})
    separator = "&" if "?" in redirect_uri else "?"
    return HandlerResult(
        302, {"Location": f"{redirect_uri}{separator}{query}", "Cache-Control": "no-store"}, b""
    )


def page(
    status: int, title: str, text: str, links: Iterable[tuple[str, str]] = ()
) -> HandlerResult:
    """A small HTML page (an error page, or the account chooser with its ``links``)."""
    items = "".join(
        f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>' for label, href in links
    )
    body = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"{f'<ul>{items}</ul>' if items else ''}</body></html>"
    )
    return bytes_response(status, body.encode("utf-8"), "text/html; charset=utf-8")


def chooser(request: FakeRequest, accounts: Iterable[str]) -> HandlerResult:
    """The account chooser: one link per mailbox (the request's URL with ``fake_user``)."""
    separator = "&" if "?" in request.url else "?"
    links = [
        (account, f"{request.url}{separator}{urlencode({'fake_user': account})}")
        for account in accounts
    ]
    return page(200, "Pick an account", "Choose the account to sign in with.", links)
