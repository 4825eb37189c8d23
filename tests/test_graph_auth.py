"""Graph adapter tokens: msal refresh, rotation, terminal failures, legacy tokens, app mode."""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses

from graph_payloads import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    GRAPH,
    LOGIN,
    MAILBOX,
    REFRESH_TOKEN,
    TENANT_DIR,
    DictSecrets,
    add_openid,
    assert_immutable_everywhere,
    config,
    graph_error,
    store_with,
    token_error,
    token_ok,
    tokens,
)
from mailparity.errors import (
    AuthExpiredError,
    ConfigurationError,
    CredentialsMissingError,
    ProviderUnavailableError,
    UnauthorizedError,
)
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.providers.graph.auth import token_error as classify


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock
        assert_immutable_everywhere(mock)


def _form(call: Any) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


def test_import_mailparity_does_not_import_msal() -> None:
    import subprocess

    code = "import mailparity, sys; print('msal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_refresh_rotates_and_persists_refresh_token(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    token_url = add_openid(rsps)
    rsps.post(token_url, json=token_ok("at-NEW", "rt-NEW", 3600))
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock, sleep=clock.sleep)
    new = adapter.refresh_access_token()
    assert new.access_token.get_secret_value() == "at-NEW"
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == "rt-NEW"
    assert saved.expires_at == clock() + timedelta(seconds=3600)
    form = _form(rsps.calls[-1])
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == [REFRESH_TOKEN]
    assert form["client_id"] == ["client-123"]
    assert form["client_secret"] == [CLIENT_SECRET]
    # Reserved scopes are msal's business: it adds offline_access itself.
    assert "offline_access" in form["scope"][0]


def test_refresh_without_new_refresh_token_keeps_old_one(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.post(add_openid(rsps), json=token_ok("at-NEW", refresh=None))
    MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == REFRESH_TOKEN


def test_expired_token_refreshes_before_the_graph_call(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=60))  # inside the 5-minute margin
    rsps.post(add_openid(rsps), json=token_ok("at-NEW", "rt-NEW"))
    rsps.get(f"{GRAPH}/me", json={"mail": MAILBOX})
    rsps.get(f"{GRAPH}/me/mailFolders/inbox/messages", json={"value": []})
    result = MicrosoftGraphAdapter(cfg, store=store, clock=clock).test_connection()
    assert result.success
    graph = [c for c in rsps.calls if c.request.url.startswith(GRAPH)]
    assert all(c.request.headers["Authorization"] == "Bearer at-NEW" for c in graph)


def test_401_then_refresh_then_success(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock()))
    rsps.get(f"{GRAPH}/me/messages/M1/attachments/A1/$value", status=401,
             json=graph_error("InvalidAuthenticationToken", "Access token has expired"))
    rsps.post(add_openid(rsps), json=token_ok("at-NEW", "rt-NEW"))
    rsps.get(f"{GRAPH}/me/messages/M1/attachments/A1/$value", body=b"bytes")
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock, sleep=clock.sleep)
    assert adapter.get_attachment_content("M1", "A1") == b"bytes"
    graph = [c for c in rsps.calls if c.request.url.startswith(GRAPH)]
    assert graph[0].request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert graph[1].request.headers["Authorization"] == "Bearer at-NEW"
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == "rt-NEW"


def test_second_401_raises_unauthorized(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock()))
    for _ in range(2):
        rsps.get(f"{GRAPH}/me/messages/M1/attachments/A1/$value", status=401,
                 json=graph_error("InvalidAuthenticationToken"))
    rsps.post(add_openid(rsps), json=token_ok())
    with pytest.raises(UnauthorizedError):
        MicrosoftGraphAdapter(cfg, store=store, clock=clock).get_attachment_content("M1", "A1")


@pytest.mark.parametrize(
    "case",
    [
        ("invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.",
         [700082], "AADSTS700082"),
        ("invalid_grant", "AADSTS50173: The provided grant has expired.", [50173], "AADSTS50173"),
        ("interaction_required", "AADSTS65001: The user has not consented.", [65001],
         "AADSTS65001"),
        ("invalid_client", "AADSTS7000215: Invalid client secret provided.", [7000215],
         "invalid_client"),
        ("invalid_grant", "AADSTS9002313: Invalid request.", [9002313], "invalid_grant"),
        ("consent_required", "needs consent", [], "consent_required"),
        ("invalid_request", "AADSTS70000: grant is not valid", [70000], "AADSTS70000"),
    ],
)
def test_terminal_refresh_failures_raise_auth_expired(
    rsps: Any, clock: Any, caplog: Any, case: tuple[str, str, list[int], str]
) -> None:
    error, description, codes, code = case
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.post(add_openid(rsps), status=400, json=token_error(error, description, codes))
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthExpiredError) as info:
        adapter.refresh_access_token()
    assert info.value.code == code
    assert info.value.request_id == "corr-1"
    text = str(info.value) + repr(info.value) + caplog.text + repr(adapter)
    for secret in (REFRESH_TOKEN, ACCESS_TOKEN, CLIENT_SECRET):
        assert secret not in text
    # The old tokens stay: nothing was overwritten by a failed refresh.
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == REFRESH_TOKEN


def test_transient_token_errors_are_provider_unavailable() -> None:
    error = classify({"error": "temporarily_unavailable", "error_description": "AADSTS50196"})
    assert isinstance(error, ProviderUnavailableError)
    assert error.code == "temporarily_unavailable"


def test_token_endpoint_5xx_is_provider_unavailable(rsps: Any, clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.post(add_openid(rsps), status=503, body="down")
    with pytest.raises(ProviderUnavailableError):
        MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()


def test_unknown_tenant_is_configuration_error(rsps: Any, clock: Any) -> None:
    cfg = config(authority_tenant="nope")
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.get(f"{LOGIN}/nope/v2.0/.well-known/openid-configuration", status=400,
             json={"error": "invalid_tenant"})
    with pytest.raises(ConfigurationError):
        MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()


def test_no_refresh_token_is_terminal(clock: Any) -> None:
    cfg = config()
    store = store_with(cfg, tokens(clock(), valid_for=-10, refresh=None))
    with pytest.raises(AuthExpiredError) as info:
        MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()
    assert info.value.code == "missing_refresh_token"


def test_no_tokens_anywhere(clock: Any) -> None:
    cfg = config()
    with pytest.raises(CredentialsMissingError):
        MicrosoftGraphAdapter(cfg, store=store_with(cfg, None), clock=clock).load_credentials()


def test_legacy_tokens_from_tenant_secret_are_refreshed_into_the_store(
    rsps: Any, clock: Any
) -> None:
    cfg = config()
    store = store_with(cfg, None)
    legacy = {cfg.provider_id: {"access_token": "legacy-at", "refresh_token": "legacy-rt",
                                "token_expires_at": "2025-12-31T00:00:00Z"}}
    secrets = DictSecrets({(cfg.tenant, "email_provider_credentials"): json.dumps(legacy)})
    rsps.post(add_openid(rsps), json=token_ok("at-NEW", "rt-NEW"))
    rsps.get(f"{GRAPH}/me/messages/M1/attachments/A1/$value", body=b"x")
    adapter = MicrosoftGraphAdapter(cfg, store=store, secrets=secrets, clock=clock)
    assert adapter.get_attachment_content("M1", "A1") == b"x"
    token_call = next(c for c in rsps.calls if c.request.method == "POST")
    assert _form(token_call)["refresh_token"] == ["legacy-rt"]
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == "rt-NEW"
    # never written back to the secrets
    assert "rt-NEW" not in secrets.values[(cfg.tenant, "email_provider_credentials")]


def test_client_id_from_environment_and_public_client(
    rsps: Any, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MICROSOFT_CLIENT_ID", "env-client")
    monkeypatch.delenv("MICROSOFT_CLIENT_SECRET", raising=False)
    cfg = config(client_id=None, client_secret=None)
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.post(add_openid(rsps), json=token_ok())
    MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()
    form = _form(rsps.calls[-1])
    assert form["client_id"] == ["env-client"]
    assert "client_secret" not in form  # no secret: a public client


def test_client_id_and_secret_from_tenant_secrets(rsps: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("MICROSOFT_CLIENT_ID", raising=False)
    monkeypatch.delenv("MICROSOFT_CLIENT_SECRET", raising=False)
    cfg = config(client_id=None, client_secret=None)
    secrets = DictSecrets({(cfg.tenant, "microsoft_client_id"): "sec-client",
                           (cfg.tenant, "microsoft_client_secret"): "sec-secret"})
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    rsps.post(add_openid(rsps), json=token_ok())
    MicrosoftGraphAdapter(cfg, store=store, secrets=secrets, clock=clock).refresh_access_token()
    form = _form(rsps.calls[-1])
    assert form["client_id"] == ["sec-client"]
    assert form["client_secret"] == ["sec-secret"]


def test_missing_client_id_is_configuration_error(clock: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("MICROSOFT_CLIENT_ID", raising=False)
    cfg = config(client_id=None)
    store = store_with(cfg, tokens(clock(), valid_for=-10))
    with pytest.raises(ConfigurationError, match="MICROSOFT_CLIENT_ID"):
        MicrosoftGraphAdapter(cfg, store=store, clock=clock).refresh_access_token()


def test_application_mode_client_credentials_and_user_paths(rsps: Any, clock: Any) -> None:
    cfg = config(auth_mode="application", authority_tenant=TENANT_DIR,
                 scopes=["Mail.Read"])
    store = store_with(cfg, None)
    rsps.post(add_openid(rsps, TENANT_DIR), json=token_ok("app-at", refresh=None))
    rsps.get(f"{GRAPH}/users/{MAILBOX}", json={"id": "u1", "mail": MAILBOX})
    rsps.get(f"{GRAPH}/users/{MAILBOX}/mailFolders/inbox/messages", json={"value": []})
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock)
    result = adapter.test_connection()
    assert result.success, result.error
    form = _form(next(c for c in rsps.calls if c.request.method == "POST"))
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["https://graph.microsoft.com/.default"]
    saved = store.load_tokens(cfg.provider_id)
    assert saved is not None
    assert saved.refresh_token is None
    assert saved.access_token.get_secret_value() == "app-at"
    assert adapter.mailbox_root == f"/users/{MAILBOX}"


def test_application_mode_refresh_goes_back_to_the_token_endpoint(rsps: Any, clock: Any) -> None:
    cfg = config(auth_mode="application", authority_tenant=TENANT_DIR)
    store = store_with(cfg, None)
    token_url = add_openid(rsps, TENANT_DIR)
    rsps.post(token_url, json=token_ok("app-at-1", refresh=None))
    rsps.post(token_url, json=token_ok("app-at-2", refresh=None))
    adapter = MicrosoftGraphAdapter(cfg, store=store, clock=clock)
    assert adapter.get_access_token() == "app-at-1"
    assert adapter.force_refresh() == "app-at-2"


def test_application_mode_needs_a_directory_tenant(clock: Any) -> None:
    cfg = config(auth_mode="application")  # authority_tenant "common"
    with pytest.raises(ConfigurationError, match="tenant"):
        MicrosoftGraphAdapter(cfg, store=store_with(cfg, None), clock=clock).load_credentials()


def test_national_cloud_hosts(rsps: Any, clock: Any) -> None:
    login = "https://login.microsoftonline.us"
    graph = "https://graph.microsoft.us/v1.0"
    cfg = config(auth_mode="application", authority_tenant=TENANT_DIR, login_base_url=login,
                 graph_base_url=graph)
    rsps.post(add_openid(rsps, TENANT_DIR, login), json=token_ok("gov-at", refresh=None))
    rsps.get(f"{graph}/users/{MAILBOX}/messages/M1/attachments/A1/$value", body=b"gov")
    adapter = MicrosoftGraphAdapter(cfg, store=store_with(cfg, None), clock=clock)
    assert adapter.get_attachment_content("M1", "A1") == b"gov"
    form = _form(next(c for c in rsps.calls if c.request.method == "POST"))
    assert form["scope"] == ["https://graph.microsoft.us/.default"]
    assert rsps.calls[-1].request.headers["Prefer"] == 'IdType="ImmutableId"'


def test_repr_and_errors_hold_no_secret(clock: Any) -> None:
    cfg = config(webhook_verification_token="state-SECRET-0001")
    adapter = MicrosoftGraphAdapter(cfg, store=store_with(cfg, tokens(clock())), clock=clock)
    text = repr(adapter) + repr(adapter.config) + str(adapter.config.public_dict())
    for secret in (CLIENT_SECRET, "state-SECRET-0001", ACCESS_TOKEN):
        assert secret not in text
