"""Google tokens through google-auth, over the adapter's ``requests.Session``.

Two modes:

* ``user``: ``google.oauth2.credentials.Credentials`` built from the stored tokens and refreshed
  with the refresh-token grant at ``config.token_uri``;
* ``service_account``: ``google.oauth2.service_account.Credentials`` from the key JSON in
  ``config.service_account_info`` with ``subject=config.mailbox`` (domain-wide delegation).

google-auth is imported inside the functions: ``import mailparity`` must stay cheap. The token
call goes through ``google.auth.transport.requests.Request(session)`` so the host's session (and the
``responses`` mock in tests) sees it. google-auth retries a failing token endpoint by itself with
real ``time.sleep`` calls; the transport below turns a retryable answer into an error at once
instead, so the library's own retry and job layers decide when to try again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from pydantic import SecretStr

from ...errors import (
    AuthError,
    AuthExpiredError,
    ConfigurationError,
    MailParityError,
    ProviderUnavailableError,
)
from ...models import OAuthTokens
from ...tls import tls_verification_error

__all__ = [
    "TERMINAL_OAUTH_ERRORS",
    "map_refresh_error",
    "refresh_service_account",
    "refresh_user_tokens",
]

#: OAuth ``error`` codes after which only a new consent (or admin grant) helps.
TERMINAL_OAUTH_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}
)
_RETRYABLE_OAUTH_ERRORS = frozenset({"internal_failure", "server_error", "temporarily_unavailable"})
_DEFAULT_LIFETIME = timedelta(hours=1)


class _TokenEndpointUnavailableError(Exception):
    """Internal: the token endpoint answered with a retryable status."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.code = code


def _oauth_error_code(data: Any) -> str | None:
    if isinstance(data, Mapping):
        code = data.get("error")
        if isinstance(code, str):
            return code
    return None


def _transport(session: requests.Session) -> Any:
    """A google-auth transport over ``session`` that fails fast on retryable token answers."""
    from google.auth.transport.requests import Request

    base: Any = Request

    class _FailFastRequest(base):  # type: ignore[misc]
        def __call__(self, url: Any, method: Any = "GET", **kwargs: Any) -> Any:
            response = super().__call__(url, method=method, **kwargs)
            status = int(response.status)
            if status in (408, 429) or status >= 500:
                raise _TokenEndpointUnavailableError(status, None)
            if status >= 400:
                try:
                    data = json.loads(response.data)
                except (ValueError, TypeError):
                    data = None
                code = _oauth_error_code(data)
                if code in _RETRYABLE_OAUTH_ERRORS:
                    raise _TokenEndpointUnavailableError(status, code)
            return response

    return _FailFastRequest(session=session)


def map_refresh_error(exc: BaseException, token_uri: str = "") -> MailParityError:
    """Turn a google-auth / transport failure of a token refresh into the library's errors.

    Terminal OAuth errors become :class:`AuthExpiredError` (the user or admin must act); outages
    become :class:`ProviderUnavailableError`, an untrusted certificate of ``token_uri`` a
    :class:`~mailparity.errors.TLSVerificationError`; anything else is an :class:`AuthError`.
    The message carries the OAuth error code and Google's description, never a token or secret.
    """
    from google.auth import exceptions as gexc

    if isinstance(exc, _TokenEndpointUnavailableError):
        return ProviderUnavailableError(
            f"the Google token endpoint is unavailable (HTTP {exc.status})",
            status=exc.status,
            code=exc.code,
            provider="google",
        )
    if isinstance(exc, gexc.RefreshError):
        data = exc.args[1] if len(exc.args) > 1 else None
        code = _oauth_error_code(data)
        detail = str(exc.args[0]) if exc.args else ""
        if code is None and ":" in detail:
            # google-auth formats the message as "<error>: <description>".
            head = detail.split(":", 1)[0].strip()
            code = head if head.replace("_", "").isalpha() else None
        description = None
        if isinstance(data, Mapping) and isinstance(data.get("error_description"), str):
            description = str(data["error_description"]).splitlines()[0]
        message = f"Google token refresh failed: {code or 'error'}"
        if description:
            message += f" ({description})"
        if code in TERMINAL_OAUTH_ERRORS:
            return AuthExpiredError(message, code=code, provider="google")
        if getattr(exc, "retryable", False) or code in _RETRYABLE_OAUTH_ERRORS:
            return ProviderUnavailableError(message, code=code, provider="google")
        return AuthError(message, code=code, provider="google")
    if isinstance(exc, gexc.TransportError):
        tls_error = tls_verification_error(exc, token_uri, provider="google")
        if tls_error is not None:
            return tls_error
        return ProviderUnavailableError(
            f"the Google token endpoint could not be reached ({type(exc).__name__})",
            provider="google",
        )
    return AuthError(f"Google token refresh failed ({type(exc).__name__})", provider="google")


def _expiry(value: datetime | None, clock: Callable[[], datetime]) -> datetime:
    if value is None:
        return clock() + _DEFAULT_LIFETIME
    # google-auth keeps expiry as naive UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def refresh_user_tokens(
    session: requests.Session,
    *,
    tokens: OAuthTokens,
    token_uri: str,
    client_id: str,
    client_secret: str,
    clock: Callable[[], datetime],
) -> OAuthTokens:
    """The refresh-token grant: new access token and expiry, and the new refresh token when
    Google rotated it (else the old one is kept)."""
    from google.auth import exceptions as gexc
    from google.oauth2.credentials import Credentials

    if tokens.refresh_token is None:
        raise AuthExpiredError(
            "no Google refresh token is stored: connect the mailbox again",
            code="no_refresh_token",
            provider="google",
        )
    refresh_token = tokens.refresh_token.get_secret_value()
    # No scopes: the refresh keeps the scopes that were granted; asking again could fail.
    factory: Any = Credentials
    creds: Any = factory(
        token=tokens.access_token.get_secret_value(),
        refresh_token=refresh_token,
        token_uri=token_uri,
        client_id=client_id,
        client_secret=client_secret,
    )
    try:
        creds.refresh(_transport(session))
    except (gexc.GoogleAuthError, _TokenEndpointUnavailableError) as exc:
        raise map_refresh_error(exc, token_uri) from None
    new_refresh = str(creds.refresh_token or refresh_token)
    return OAuthTokens(
        access_token=SecretStr(str(creds.token)),
        refresh_token=SecretStr(new_refresh),
        expires_at=_expiry(creds.expiry, clock),
        scope=tokens.scope,
    )


def refresh_service_account(
    session: requests.Session,
    *,
    info: str,
    subject: str,
    scopes: Sequence[str],
    token_uri: str,
    clock: Callable[[], datetime],
) -> OAuthTokens:
    """A token for ``subject`` from a service-account key with domain-wide delegation."""
    from google.auth import exceptions as gexc
    from google.oauth2 import service_account

    try:
        data = json.loads(info)
    except ValueError:
        raise ConfigurationError(
            "service_account_info is not valid JSON", provider="google"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError("service_account_info must be a JSON object", provider="google")
    data = {**data, "token_uri": token_uri}
    try:
        sa_factory: Any = service_account.Credentials.from_service_account_info
        creds: Any = sa_factory(
            data, scopes=list(scopes), subject=subject
        )
    except (ValueError, KeyError) as exc:
        # The key material is never echoed back: only which field was wrong.
        raise ConfigurationError(
            f"service_account_info is not a usable service-account key ({type(exc).__name__}:"
            f" {exc.args[0] if isinstance(exc, KeyError) and exc.args else 'invalid'})",
            provider="google",
        ) from None
    try:
        creds.refresh(_transport(session))
    except (gexc.GoogleAuthError, _TokenEndpointUnavailableError) as exc:
        raise map_refresh_error(exc, token_uri) from None
    return OAuthTokens(
        access_token=SecretStr(str(creds.token)),
        refresh_token=None,
        expires_at=_expiry(creds.expiry, clock),
        scope=" ".join(scopes),
    )
