"""Microsoft tokens through msal, over the library's requests session.

msal is imported inside the functions (``import mailparity`` must stay light). Every request msal
makes (tenant discovery, token endpoint) goes through the adapter's ``requests.Session``, so the
``responses`` library sees them in tests and hosts can add proxies / CA bundles in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import requests
from pydantic import SecretStr

from ...errors import (
    AuthExpiredError,
    ConfigurationError,
    CredentialsMissingError,
    MailParityError,
    ProviderUnavailableError,
)
from ...models import MicrosoftProviderConfig, OAuthTokens
from ...tls import tls_verification_error

__all__ = [
    "TERMINAL_AADSTS",
    "TERMINAL_ERRORS",
    "MsalHttpClient",
    "aadsts_codes",
    "build_msal_app",
    "token_error",
    "tokens_from_result",
]

log = logging.getLogger("mailparity.graph.auth")

#: OAuth ``error`` values after which only a new consent helps.
TERMINAL_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "interaction_required", "consent_required"}
)
#: Entra codes that are terminal whatever ``error`` says: refresh token expired by inactivity,
#: token revoked / password changed, consent missing, authorization code or grant invalid.
TERMINAL_AADSTS = frozenset({"AADSTS700082", "AADSTS50173", "AADSTS65001", "AADSTS70000"})

_AADSTS_RE = re.compile(r"AADSTS\d+")

#: Access-token lifetime assumed when the token endpoint does not say (Entra issues ~1 hour).
_DEFAULT_EXPIRES_IN = 3600


class MsalHttpClient:
    """The http_client msal calls (``get``/``post``), over our session and with our timeout.

    msal passes no timeout of its own when given an http_client; without one a stalled token
    endpoint would hang a worker forever.
    """

    def __init__(self, session: requests.Session, timeout: tuple[float, float]) -> None:
        self.session = session
        self.timeout = timeout

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.post(url, params=params, data=data, headers=headers, **kwargs)

    def get(self, url: str, params: Any = None, headers: Any = None,
            **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.get(url, params=params, headers=headers, **kwargs)

    def close(self) -> None:
        """msal may close its client; the session belongs to the adapter, so nothing happens."""


def authority_url(config: MicrosoftProviderConfig) -> str:
    """``{login_base_url}/{authority_tenant}`` (national clouds change the login host)."""
    return f"{config.login_base_url.rstrip('/')}/{config.authority_tenant.strip('/')}"


def build_msal_app(
    config: MicrosoftProviderConfig,
    *,
    client_id: str,
    client_secret: str | None,
    session: requests.Session,
    timeout: tuple[float, float],
) -> Any:
    """A msal ``ConfidentialClientApplication`` (with a secret) or ``PublicClientApplication``.

    Building one fetches the authority's OpenID configuration (one GET through ``session``);
    instance discovery is off, so no request goes to a host other than ``login_base_url``.
    Every msal request goes through ``session`` (its ``verify``, proxies and adapters apply).
    A login host that is not one of Microsoft's (a test server on loopback, for instance) is
    used without authority validation; msal requires ``https`` whatever the host.
    """
    import msal  # lazy: msal is heavy and only needed when a token is refreshed

    if config.auth_mode == "application":
        if not client_secret:
            raise ConfigurationError(
                f"provider {config.provider_id!r}: application mode needs a client secret",
                provider="microsoft",
            )
        if config.authority_tenant.lower() in ("common", "organizations", "consumers"):
            raise ConfigurationError(
                f"provider {config.provider_id!r}: application mode needs the directory (tenant)"
                f" id as authority_tenant, not {config.authority_tenant!r}",
                provider="microsoft",
            )
    http = MsalHttpClient(session, timeout)
    authority = authority_url(config)
    parsed = urlparse(authority)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ConfigurationError(
            f"login_base_url must be an https URL (msal refuses {parsed.scheme or 'no'} scheme);"
            " serve test fakes with serve(..., tls=True)",
            provider="microsoft",
        )
    validate = parsed.hostname.lower() in _microsoft_login_hosts()
    try:
        if client_secret:
            return msal.ConfidentialClientApplication(
                client_id,
                client_credential=client_secret,
                authority=authority,
                validate_authority=validate,
                http_client=http,
                instance_discovery=False,
                token_cache=msal.TokenCache(),
            )
        return msal.PublicClientApplication(
            client_id,
            authority=authority,
            validate_authority=validate,
            http_client=http,
            instance_discovery=False,
            token_cache=msal.TokenCache(),
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        tls_error = tls_verification_error(exc, authority, provider="microsoft")
        if tls_error is not None:
            raise tls_error from None
        raise ProviderUnavailableError(
            f"authority {authority} unreachable: {type(exc).__name__}", provider="microsoft"
        ) from None
    except ValueError:
        # msal raises ValueError when the OpenID configuration answers 4xx: unknown tenant.
        raise ConfigurationError(
            f"authority {authority} is not usable (unknown tenant or login host?)",
            provider="microsoft",
        ) from None
    except Exception as exc:  # msal raises its own errors (or requests' HTTPError) on 5xx
        raise ProviderUnavailableError(
            f"authority {authority} discovery failed: {type(exc).__name__}", provider="microsoft"
        ) from None


def _microsoft_login_hosts() -> frozenset[str]:
    """Microsoft's sign-in hosts (every cloud), as msal knows them."""
    from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

    return frozenset(host.lower() for host in WELL_KNOWN_AUTHORITY_HOSTS)


def run_token_call(call: Callable[[], Any], login_base_url: str = "") -> Mapping[str, Any]:
    """Run one msal token call; transport failures become ProviderUnavailableError, an untrusted
    certificate of ``login_base_url`` a TLSVerificationError."""
    try:
        result = call()
    except MailParityError:
        raise
    except (requests.ConnectionError, requests.Timeout) as exc:
        tls_error = tls_verification_error(exc, login_base_url, provider="microsoft")
        if tls_error is not None:
            raise tls_error from None
        raise ProviderUnavailableError(
            f"Microsoft token endpoint unreachable: {type(exc).__name__}", provider="microsoft"
        ) from None
    except Exception as exc:  # MsalServiceError on 5xx, ValueError on a non-JSON answer
        raise ProviderUnavailableError(
            f"Microsoft token endpoint failed: {type(exc).__name__}", provider="microsoft"
        ) from None
    if not isinstance(result, Mapping):
        raise ProviderUnavailableError(
            "Microsoft token endpoint gave no result", provider="microsoft"
        )
    return result


def aadsts_codes(result: Mapping[str, Any]) -> list[str]:
    """The Entra ``AADSTS<n>`` codes of an error answer (``error_description`` and
    ``error_codes``), in order; nothing else of the description is kept."""
    found: list[str] = []
    description = result.get("error_description")
    if isinstance(description, str):
        found.extend(_AADSTS_RE.findall(description))
    codes = result.get("error_codes")
    if isinstance(codes, list):
        found.extend(f"AADSTS{c}" for c in codes if isinstance(c, int | str))
    return found


def token_error(result: Mapping[str, Any]) -> MailParityError:
    """The exception for a msal error result; never includes a token or the raw description.

    Terminal (:class:`AuthExpiredError`): ``invalid_grant``, ``invalid_client``,
    ``interaction_required``, ``consent_required``, or an AADSTS code of :data:`TERMINAL_AADSTS`
    in ``error_codes`` / ``error_description``. Anything else (``temporarily_unavailable``, 429,
    5xx) is :class:`ProviderUnavailableError`, retried later.
    """
    error = str(result.get("error") or "unknown_error")
    found = aadsts_codes(result)
    aadsts = next((c for c in found if c in TERMINAL_AADSTS), found[0] if found else None)
    detail = f"{error} ({aadsts})" if aadsts else error
    request_id = result.get("correlation_id") or result.get("trace_id")
    rid = request_id if isinstance(request_id, str) else None
    if error in TERMINAL_ERRORS or any(code in TERMINAL_AADSTS for code in found):
        return AuthExpiredError(
            f"Microsoft refused the grant: {detail}; the mailbox must be connected again",
            code=aadsts if aadsts in TERMINAL_AADSTS else error,
            request_id=rid,
            provider="microsoft",
        )
    return ProviderUnavailableError(
        f"Microsoft token endpoint error: {detail}", code=error, request_id=rid,
        provider="microsoft",
    )


def tokens_from_result(
    result: Mapping[str, Any], *, now: datetime, previous: OAuthTokens | None
) -> OAuthTokens:
    """OAuthTokens from a msal success result; keeps the previous refresh token when none came."""
    if result.get("error") or not result.get("access_token"):
        raise token_error(result)
    try:
        expires_in = int(result.get("expires_in") or _DEFAULT_EXPIRES_IN)
    except (TypeError, ValueError):
        expires_in = _DEFAULT_EXPIRES_IN
    refresh = result.get("refresh_token")
    if not refresh and previous is not None and previous.refresh_token is not None:
        refresh = previous.refresh_token.get_secret_value()
    scope = result.get("scope")
    return OAuthTokens(
        access_token=SecretStr(str(result["access_token"])),
        refresh_token=SecretStr(str(refresh)) if refresh else None,
        expires_at=now + timedelta(seconds=expires_in),
        scope=" ".join(scope) if isinstance(scope, list) else scope,
    )


def missing_refresh_token(provider_id: str) -> AuthExpiredError:
    """Delegated tokens without a refresh token cannot be renewed: consent is needed again."""
    return AuthExpiredError(
        f"provider {provider_id!r} has no refresh token; the mailbox must be connected again",
        code="missing_refresh_token",
        provider="microsoft",
    )


def no_tokens(provider_id: str) -> CredentialsMissingError:
    """No tokens in the store nor the legacy secret (delegated mode)."""
    return CredentialsMissingError(
        f"no tokens for provider {provider_id!r}: connect the mailbox first", provider="microsoft"
    )
