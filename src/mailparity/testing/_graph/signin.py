"""The Graph fake's sign-in side: the Entra token endpoint and the authorization and
admin-consent endpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._authorize import AuthCode, Refusal, chooser, page, redirect
from .._fakebase import (
    FakeRequest,
    HandlerResult,
    isoformat_z,
    json_response,
    split_path,
)
from .model import (
    GraphUser,
    _b64,
)
from .state import GraphState


class GraphSignIn(GraphState):
    """The Graph fake's sign-in side: the Entra token endpoint and the authorization and"""

    # ------------------------------------------------------------------ sign-in

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
