"""Google's web sign-in (the spec's ``web_connect`` hook): the OAuth 2.0 authorization-code flow
for web server applications, with PKCE (S256).

The authorization URL asks for offline access (a refresh token) and, by default,
``prompt=consent`` (Google issues a refresh token on the first consent only; asking again makes a
reconnect get a new one). The code is redeemed with one POST to the token endpoint over the
library's session (``grant_type=authorization_code`` with the ``code_verifier``): never retried,
since a code is single-use. Google's consent screen lets the user untick a permission, so the
granted ``scope`` is checked. The signed-in address comes from ``users.getProfile``.

Settings options (besides config fields such as ``token_uri``, ``auth_uri``,
``gmail_base_url``, ``scopes``, ``project_id``, ``pubsub_topic_name``): ``prompt`` (default
``consent``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from pydantic import SecretStr

from ...errors import (
    ConfigurationError,
    MailParityError,
    ProviderUnavailableError,
    WebConnectError,
)
from ...models import OAuthTokens
from ...tls import tls_verification_error
from ..base import WebAuthorization, WebConnectHook, WebConnectSettings, WebGrant
from .connect import GMAIL_API, GMAIL_SCOPES, GOOGLE_TOKEN_URI

__all__ = ["GOOGLE_AUTH_URI", "WEB", "pkce_pair"]

#: Google's authorization endpoint for web server applications.
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
_DEFAULT_LIFETIME = 3599
_ERROR = re.compile(r"^[a-z_]{1,64}$")


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)``: 64 random bytes as the verifier (86
    characters of the unreserved set, within RFC 7636's 43-128), the challenge its S256."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _scopes(settings: WebConnectSettings) -> list[str]:
    given = settings.options.get("scopes")
    return list(given) if given else list(GMAIL_SCOPES)


def authorize(
    settings: WebConnectSettings, *, state: str, login_hint: str | None = None
) -> WebAuthorization:
    """The authorization URL (offline access, PKCE S256, the core's ``state``)."""
    if not settings.client_secret:
        raise ConfigurationError(
            "web connect with Google needs the OAuth client's secret (a web application client)",
            provider="google",
        )
    verifier, challenge = pkce_pair()
    scopes = _scopes(settings)
    query: dict[str, str] = {
        "client_id": settings.client_id,
        "redirect_uri": settings.redirect_uri,
        "response_type": "code",
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "include_granted_scopes": "true",
    }
    prompt = settings.options.get("prompt", "consent")
    if prompt:
        query["prompt"] = str(prompt)
    if login_hint:
        query["login_hint"] = login_hint
    base = str(settings.options.get("auth_uri") or GOOGLE_AUTH_URI)
    return WebAuthorization(
        url=f"{base}?{urlencode(query)}", flow={"code_verifier": verifier, "scopes": scopes}
    )


def exchange(
    settings: WebConnectSettings, *, params: Mapping[str, str], flow: Mapping[str, Any]
) -> WebGrant:
    """Redeem the code (one POST, never retried), check the granted scopes, read the address."""
    token_uri = str(settings.options.get("token_uri") or GOOGLE_TOKEN_URI)
    issued_at = settings.clock()
    data = _redeem(settings, token_uri, params.get("code", ""), str(flow.get("code_verifier", "")))
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderUnavailableError(
            "Google's token endpoint answered without an access token", provider="google"
        )
    wanted = [str(s) for s in flow.get("scopes") or _scopes(settings)]
    # RFC 6749 lets a token answer leave ``scope`` out when it is what was asked for.
    granted = str(data["scope"]).split() if "scope" in data else list(wanted)
    missing = [scope for scope in wanted if scope not in granted]
    if missing:
        raise WebConnectError(
            "Google did not grant the access to Gmail (the consent screen lets it be unticked);"
            " connect again and allow it",
            code="scope_not_granted", provider="google",
        )
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        raise WebConnectError(
            "Google issued no refresh token (ask with prompt=consent); connect again",
            code="no_refresh_token", provider="google",
        )
    try:
        lifetime = int(data.get("expires_in") or _DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        lifetime = _DEFAULT_LIFETIME
    tokens = OAuthTokens(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh),
        expires_at=issued_at + timedelta(seconds=lifetime),
        scope=" ".join(granted or wanted),
    )
    base_url = str(settings.options.get("gmail_base_url") or GMAIL_API)
    mailbox = profile_address(access, base_url=base_url, session=settings.session)
    return WebGrant(tokens=tokens, fields={"auth_mode": "user", "scopes": wanted}, mailbox=mailbox)


def _redeem(
    settings: WebConnectSettings, token_uri: str, code: str, verifier: str
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": settings.redirect_uri,
        "client_id": settings.client_id,
        "client_secret": settings.client_secret or "",
        "code_verifier": verifier,
    }
    try:
        response = settings.session.post(
            token_uri, data=form, headers={"Accept": "application/json"},
            timeout=settings.timeout,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        tls_error = tls_verification_error(exc, token_uri, provider="google")
        if tls_error is not None:
            raise tls_error from None
        raise ProviderUnavailableError(
            f"the Google token endpoint could not be reached ({type(exc).__name__})",
            provider="google",
        ) from None
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderUnavailableError(
            f"the Google token endpoint is unavailable (HTTP {response.status_code})",
            status=response.status_code, provider="google",
        )
    if not isinstance(data, dict):
        raise ProviderUnavailableError(
            f"the Google token endpoint answered HTTP {response.status_code} without JSON",
            status=response.status_code, provider="google",
        )
    if response.status_code >= 400 or data.get("error"):
        error = str(data.get("error") or "error")
        error = error if _ERROR.match(error) else "error"
        description = data.get("error_description")
        text = ""
        if isinstance(description, str) and description.strip():
            text = f" ({description.strip().splitlines()[0][:120]})"
        raise WebConnectError(
            f"Google refused the authorization code: {error}{text}; start connecting again",
            code=error, status=response.status_code, provider="google",
        )
    return data


def profile_address(
    access_token: str,
    *,
    base_url: str,
    session: requests.Session,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The address of the account ``access_token`` belongs to (``users.getProfile``), through
    the library's Gmail HTTP layer (timeouts, retries, error mapping); ``sleep`` waits between
    retries. Used by the web connect flow and by ``mailparity connect google``.

    Raises:
        MailParityError: the profile could not be read or names no address.
    """
    from ...http import RetryPolicy
    from .transport import GmailHttpClient, is_gmail_retryable, map_gmail_error

    client = GmailHttpClient(
        session=session,
        sleep=sleep,
        provider="google",
        map_error=map_gmail_error,
        is_retryable=is_gmail_retryable,
        retry=RetryPolicy(max_attempts=3, max_total=30.0),
    )
    response = client.request(
        "GET",
        f"{base_url.rstrip('/')}/gmail/v1/users/me/profile",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    try:
        data = response.json()
    except ValueError:
        raise ProviderUnavailableError(
            "the Gmail profile answer is not JSON", provider="google"
        ) from None
    address = data.get("emailAddress") if isinstance(data, dict) else None
    if not isinstance(address, str) or not address:
        raise MailParityError("the Gmail profile has no emailAddress", provider="google")
    return address


#: The ``web_connect`` hook of Gmail / Google Workspace.
WEB = WebConnectHook(authorize=authorize, exchange=exchange)
