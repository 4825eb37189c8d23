"""Microsoft's web sign-in (the spec's ``web_connect`` hook): msal's authorization-code flow for
delegated access, and the v2.0 ``/adminconsent`` endpoint for application access.

Delegated: ``ConfidentialClientApplication.initiate_auth_code_flow`` builds the authorization
URL (PKCE S256, nonce, the core's ``state``); its flow dict (verifier, nonce) is kept
server-side by the core and handed back to ``acquire_token_by_auth_code_flow``, which redeems the
code and checks the ID token's nonce. A web app is a confidential client: a client secret is
required.

Application: the admin of the customer's directory grants the app's application permissions
tenant-wide at ``{login}/{tenant}/v2.0/adminconsent?client_id=&scope={graph}/.default&
redirect_uri=&state=``; Entra redirects back with ``admin_consent=True&tenant=<directory id>``
(or ``error``). The connection then runs with client credentials in that directory.

Settings options (besides config fields such as ``login_base_url``, ``authority_tenant``,
``graph_base_url``, ``scopes``): ``prompt`` (default ``select_account``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlparse

from ...errors import (
    ConfigurationError,
    MailParityError,
    ProviderUnavailableError,
    WebConnectError,
)
from ..base import WebAuthorization, WebConnectHook, WebConnectSettings, WebGrant
from .connect import GRAPH_DELEGATED_SCOPES

__all__ = ["WEB"]

_RESERVED = frozenset({"openid", "profile", "offline_access"})
_MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
_DIRECTORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,254}$")
_DEFAULT_LOGIN = "https://login.microsoftonline.com"
_DEFAULT_GRAPH = "https://graph.microsoft.com/v1.0"


def _login(settings: WebConnectSettings) -> str:
    return str(settings.options.get("login_base_url") or _DEFAULT_LOGIN).rstrip("/")


def _authority_tenant(settings: WebConnectSettings) -> str:
    return str(settings.options.get("authority_tenant") or "common").strip("/")


def _delegated_scopes(settings: WebConnectSettings) -> list[str]:
    given = settings.options.get("scopes")
    scopes = list(given) if given else list(GRAPH_DELEGATED_SCOPES)
    # msal adds openid/profile/offline_access itself and refuses them given.
    return [s for s in scopes if s.lower() not in _RESERVED and not s.endswith("/.default")] or (
        list(GRAPH_DELEGATED_SCOPES)
    )


def _msal_app(settings: WebConnectSettings) -> Any:
    """A ``ConfidentialClientApplication`` for the configured authority, over the session."""
    from ...models import MicrosoftProviderConfig
    from .auth import build_msal_app

    if not settings.client_secret:
        raise ConfigurationError(
            "web connect with Microsoft needs the app's client secret (a web app is a"
            " confidential client)",
            provider="microsoft",
        )
    probe = MicrosoftProviderConfig(
        provider_id="web-connect", tenant="web-connect", mailbox="web-connect",
        authority_tenant=_authority_tenant(settings), login_base_url=_login(settings),
    )
    return build_msal_app(
        probe, client_id=settings.client_id, client_secret=settings.client_secret,
        session=settings.session, timeout=settings.timeout,
    )


def authorize(
    settings: WebConnectSettings, *, state: str, login_hint: str | None = None
) -> WebAuthorization:
    """The authorization URL of the delegated flow (PKCE S256 and nonce by msal)."""
    app = _msal_app(settings)
    prompt = settings.options.get("prompt", "select_account")
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post. The answer then comes as a cross-site POST,
        # which carries no SameSite=Lax session cookie: the host could not tell who the owner
        # of the flow is. The query answer is safe here: PKCE binds the code to this flow, and
        # only this confidential client (with its secret) can redeem it.
        warnings.filterwarnings("ignore", message=".*response_mode='form_post'.*")
        flow = app.initiate_auth_code_flow(
            _delegated_scopes(settings),
            redirect_uri=settings.redirect_uri,
            state=state,
            prompt=prompt or None,
            login_hint=login_hint or None,
        )
    url = str(flow["auth_uri"])
    kept = {key: value for key, value in flow.items() if key != "auth_uri"}
    return WebAuthorization(url=url, flow=kept)


def exchange(
    settings: WebConnectSettings, *, params: Mapping[str, str], flow: Mapping[str, Any]
) -> WebGrant:
    """Redeem the code with msal (PKCE verifier sent, nonce checked); tokens and the address
    the ID token names."""
    from .auth import run_token_call, tokens_from_result

    app = _msal_app(settings)
    issued_at = settings.clock()

    def redeem() -> Any:
        try:
            return app.acquire_token_by_auth_code_flow(dict(flow), dict(params))
        except ValueError:
            # msal: state or scope of the answer do not match the flow (its message quotes both).
            raise WebConnectError(
                "Microsoft's answer does not match the started flow; start connecting again",
                code="flow_mismatch", provider="microsoft",
            ) from None
        except RuntimeError:
            # msal: the ID token's nonce is not the flow's (a replayed or injected token).
            raise WebConnectError(
                "Microsoft's ID token does not belong to this sign-in; start connecting again",
                code="nonce_mismatch", provider="microsoft",
            ) from None

    # Transport failures and msal's own errors become ProviderUnavailableError (or a TLS error).
    result = run_token_call(redeem, _login(settings))
    if result.get("error") or not result.get("access_token"):
        raise _code_refused(result)
    tokens = tokens_from_result(result, now=issued_at, previous=None)
    claims = result.get("id_token_claims") or {}
    mailbox = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
    fields = {
        "auth_mode": "delegated",
        "authority_tenant": _authority_tenant(settings),
        "scopes": _delegated_scopes(settings),
    }
    return WebGrant(tokens=tokens, fields=fields, mailbox=str(mailbox) if mailbox else None)


def _code_refused(result: Mapping[str, Any]) -> MailParityError:
    from .auth import aadsts_codes

    error = str(result.get("error") or "unknown_error")
    if not re.match(r"^[a-z_]{1,64}$", error):
        error = "unknown_error"
    codes = aadsts_codes(result)
    detail = f"{error} ({codes[0]})" if codes else error
    rid = result.get("correlation_id") or result.get("trace_id")
    if error in ("temporarily_unavailable", "server_error"):
        return ProviderUnavailableError(
            f"Microsoft's token endpoint is unavailable ({detail}); start connecting again",
            code=error, provider="microsoft", request_id=rid if isinstance(rid, str) else None,
        )
    return WebConnectError(
        f"Microsoft refused the authorization code: {detail}; start connecting again",
        code=error, provider="microsoft", request_id=rid if isinstance(rid, str) else None,
    )


def _graph_origin(settings: WebConnectSettings) -> str:
    root = urlparse(str(settings.options.get("graph_base_url") or _DEFAULT_GRAPH))
    return f"{root.scheme}://{root.netloc}"


def admin_consent(settings: WebConnectSettings, *, state: str) -> WebAuthorization:
    """The v2.0 admin consent URL: every application permission of the app, tenant-wide."""
    authority = _authority_tenant(settings)
    # A multi-tenant app asks the signing-in admin's own directory ("organizations").
    directory = "organizations" if authority.lower() in _MULTI_TENANT else authority
    query = urlencode(
        {
            "client_id": settings.client_id,
            "scope": f"{_graph_origin(settings)}/.default",
            "redirect_uri": settings.redirect_uri,
            "state": state,
        }
    )
    return WebAuthorization(url=f"{_login(settings)}/{directory}/v2.0/adminconsent?{query}")


def admin_grant(
    settings: WebConnectSettings, *, params: Mapping[str, str], flow: Mapping[str, Any]
) -> WebGrant:
    """The application-mode fields of a granted admin consent (the directory it was granted
    in becomes ``authority_tenant``)."""
    if str(params.get("admin_consent", "")).lower() != "true":
        raise WebConnectError(
            "the administrator did not grant consent; nothing was connected",
            code="consent_not_granted", provider="microsoft",
        )
    directory = str(params.get("tenant") or "")
    if not _DIRECTORY.match(directory) or directory.lower() in _MULTI_TENANT:
        raise WebConnectError(
            "Microsoft's consent answer names no directory; start again",
            code="tenant_missing", provider="microsoft",
        )
    configured = _authority_tenant(settings)
    if configured.lower() not in _MULTI_TENANT and configured.lower() != directory.lower():
        raise WebConnectError(
            "consent was granted in another directory than the configured one",
            code="tenant_mismatch", provider="microsoft",
        )
    return WebGrant(
        fields={
            "auth_mode": "application",
            "authority_tenant": directory,
            "scopes": [f"{_graph_origin(settings)}/.default"],
        }
    )


def error_code(params: Mapping[str, str]) -> str | None:
    """Entra's ``AADSTS<n>`` code of a refused callback (from ``error_description``)."""
    from .auth import aadsts_codes

    codes = aadsts_codes({"error_description": params.get("error_description")})
    return codes[0] if codes else None


#: The ``web_connect`` hook of Microsoft 365.
WEB = WebConnectHook(
    authorize=authorize,
    exchange=exchange,
    admin_consent=admin_consent,
    admin_grant=admin_grant,
    error_code=error_code,
)
