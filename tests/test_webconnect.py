"""The web connect flow (mailparity.webconnect) end to end against FakeGraph and FakeGmail:
start, the provider's authorization endpoint, the callback, disconnect, admin consent, and every
bad input refused with a clear error and nothing stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conftest import FakeClock
from mailparity.errors import (
    ConfigurationError,
    ConnectDeniedError,
    ConnectStateError,
    MailboxMismatchError,
    MailParityError,
    WebConnectError,
)
from mailparity.maintenance import RetentionPolicy
from mailparity.webconnect import STATE_META_OWNER, WebConnect, web_connect_providers
from webconnect_support import (
    CALLBACK,
    G_BOX,
    G_CLIENT,
    G_SECRET,
    MS_BOX,
    MS_SECRET,
    MS_WEBHOOK,
    Env,
    authorize,
    environment,
)

BOXES = {"microsoft": MS_BOX, "google": G_BOX}
OTHER = {"microsoft": "someone.else@contoso.test", "google": "other@example.test"}


@pytest.fixture
def env() -> Any:
    with environment() as value:
        yield value


def nothing_stored(env: Env) -> None:
    assert env.store.list_providers() == []
    assert env.store._tokens == {}


def flow(env: Env, provider: str, *, owner: str = "user-1", **start: Any) -> dict[str, str]:
    """Start, sign in at the fake as the provider's mailbox: the callback's query."""
    started = env.connect.start(provider, owner=owner, **start)
    status, query, _ = authorize(started.url, fake_user=start.get("mailbox") or BOXES[provider])
    assert status == 302
    return query


def assert_clean(error: BaseException, *values: str) -> None:
    """The error's text and repr carry none of ``values`` (state, code, secrets)."""
    for text in (str(error), repr(error)):
        for value in values:
            assert value not in text


def test_both_providers_are_web_connectable() -> None:
    assert {"microsoft", "google"} <= set(web_connect_providers())


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_connect_stores_tokens_verifies_and_subscribes(env: Env, provider: str) -> None:
    started = env.connect.start(provider, owner="user-1", return_to="/settings/mail")
    assert "state=" in started.url
    assert "code_challenge=" in started.url
    assert "code_challenge_method=S256" in started.url
    assert started.url not in repr(started)
    status, query, _ = authorize(started.url, fake_user=BOXES[provider])
    assert status == 302
    assert query["code"]
    assert query["state"]
    result = env.connect.callback(query, owner="user-1")
    assert result.kind == "connect"
    assert result.provider == provider
    assert result.mailbox == BOXES[provider]
    assert result.tenant == "user-1"
    assert result.reconnected is False
    assert result.return_to == "/settings/mail"
    assert result.subscription is not None
    assert result.subscription_error is None
    assert result.provider_id is not None
    config = env.store.get_provider(result.provider_id)
    assert config is not None
    assert config.mailbox == BOXES[provider]
    tokens = env.store.load_tokens(result.provider_id)
    assert tokens is not None
    assert tokens.refresh_token is not None
    assert "client_secret" not in result.fields
    if provider == "microsoft":
        assert config.webhook_notification_url == MS_WEBHOOK  # type: ignore[union-attr]
        assert config.webhook_subscription_id in env.graph.subscriptions  # type: ignore[union-attr]
    else:
        assert env.gmail.mailbox(G_BOX).watch is not None
        assert config.history_id is not None  # type: ignore[union-attr]
    # The connection works: the adapter refreshes with the stored refresh token.
    from mailparity.providers import create_adapter

    env.graph.expire_tokens()
    env.gmail.expire_tokens()
    assert create_adapter(config, store=env.store).test_connection().success


def test_the_expected_mailbox_is_the_login_hint_and_signs_in(env: Env) -> None:
    started = env.connect.start("microsoft", owner="u", mailbox=MS_BOX)
    assert "login_hint=support%40contoso.test" in started.url
    status, query, _ = authorize(started.url)  # no fake_user: the hint signs in
    assert status == 302
    assert env.connect.callback(query, owner="u").mailbox == MS_BOX


def test_without_any_account_the_fake_shows_a_chooser(env: Env) -> None:
    started = env.connect.start("google", owner="u")
    status, query, body = authorize(started.url)
    assert status == 200
    assert query == {}
    assert "Pick an account" in body
    assert "fake_user=help%40example.test" in body
    env.gmail.sign_in(G_BOX)
    status, query, _ = authorize(started.url)
    assert status == 302
    assert env.connect.callback(query, owner="u").mailbox == G_BOX


# ---------------------------------------------------------------------- the state


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_missing_state(env: Env, provider: str) -> None:
    query = flow(env, provider)
    del query["state"]
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "state_missing"
    nothing_stored(env)


def test_unknown_state(env: Env) -> None:
    query = flow(env, "google")
    query["state"] = "forged-" + query["state"]
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "state_unknown"
    assert_clean(caught.value, query["state"], query["code"])
    nothing_stored(env)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_reused_state(env: Env, provider: str) -> None:
    query = flow(env, provider)
    env.connect.callback(query, owner="user-1")
    saved = env.store.list_providers()
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "state_reused"
    assert_clean(caught.value, query["state"], query["code"])
    assert env.store.list_providers() == saved


def test_a_state_is_spent_by_a_failed_callback_too(env: Env) -> None:
    query = flow(env, "google")
    with pytest.raises(ConnectStateError):
        env.connect.callback(query, owner="intruder")
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "state_reused"
    nothing_stored(env)


def test_a_state_in_use_by_a_racing_callback_is_refused(env: Env) -> None:
    from mailparity.webconnect import _state_key

    query = flow(env, "google")
    now = env.connect.clock()
    key = _state_key(query["state"])
    assert env.store.acquire_lock(key, "other", until=now + timedelta(minutes=1), now=now)
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "state_reused"
    nothing_stored(env)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_expired_state(provider: str) -> None:
    clock = FakeClock()
    with environment(clock=clock) as env:
        query = flow(env, provider)
        clock.now += timedelta(minutes=10, seconds=1)
        with pytest.raises(ConnectStateError) as caught:
            env.connect.callback(query, owner="user-1")
        assert caught.value.code == "state_expired"
        nothing_stored(env)


def test_state_of_another_owner(env: Env) -> None:
    query = flow(env, "microsoft", owner="tenant-a")
    with pytest.raises(ConnectStateError) as caught:
        env.connect.callback(query, owner="tenant-b")
    assert caught.value.code == "owner_mismatch"
    nothing_stored(env)


def test_only_a_digest_of_the_state_is_stored(env: Env) -> None:
    started = env.connect.start("google", owner="u")
    state = started.url.split("state=", 1)[1].split("&", 1)[0]
    stored = env.store._meta
    assert [key for key in stored if key[0] == STATE_META_OWNER]
    assert all(state not in key[1] and state not in value for key, value in stored.items())


def test_abandoned_states_are_pruned_by_retention(env: Env) -> None:
    env.connect.start("google", owner="u")
    later = env.connect.clock() + timedelta(days=46)
    cutoffs = RetentionPolicy().cutoffs(later)
    pruned = env.store.prune(cutoffs)
    assert pruned["meta"] == 1


# ---------------------------------------------------------------------- provider errors


def test_microsoft_user_declines(env: Env) -> None:
    started = env.connect.start("microsoft", owner="u")
    status, query, _ = authorize(started.url, fake_user=MS_BOX, fake_decline="1")
    assert status == 302
    assert query["error"] == "access_denied"
    with pytest.raises(ConnectDeniedError) as caught:
        env.connect.callback(query, owner="u")
    assert caught.value.code == "access_denied"
    assert caught.value.provider_code == "AADSTS65004"
    assert "declined" in str(caught.value)
    nothing_stored(env)


def test_google_user_declines(env: Env) -> None:
    env.gmail.decline_next()
    started = env.connect.start("google", owner="u")
    _status, query, _ = authorize(started.url, fake_user=G_BOX)
    assert query == {"error": "access_denied", "state": query["state"]}
    with pytest.raises(ConnectDeniedError) as caught:
        env.connect.callback(query, owner="u")
    assert caught.value.code == "access_denied"
    assert caught.value.provider_code is None
    nothing_stored(env)


def test_an_injected_error_description_is_not_repeated(env: Env) -> None:
    started = env.connect.start("google", owner="u")
    state = started.url.split("state=", 1)[1].split("&", 1)[0]
    query = {"state": state, "error": "<script>x</script>",
             "error_description": "Call +1 555 to restore your account"}
    with pytest.raises(ConnectDeniedError) as caught:
        env.connect.callback(query, owner="u")
    assert "<script>" not in str(caught.value)
    assert "555" not in str(caught.value)
    assert caught.value.code == "error"


def test_neither_code_nor_error(env: Env) -> None:
    query = flow(env, "google")
    del query["code"]
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback(query, owner="user-1")
    assert caught.value.code == "code_missing"
    nothing_stored(env)


# ---------------------------------------------------------------------- the mailbox


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_wrong_mailbox(env: Env, provider: str) -> None:
    started = env.connect.start(provider, owner="u", mailbox=BOXES[provider])
    status, query, _ = authorize(started.url, fake_user=OTHER[provider])
    assert status == 302
    with pytest.raises(MailboxMismatchError) as caught:
        env.connect.callback(query, owner="u")
    error = caught.value
    assert error.code == "mailbox_mismatch"
    assert error.expected == BOXES[provider]
    assert error.observed is not None
    assert error.observed.lower() == OTHER[provider]
    assert OTHER[provider] in str(error)
    nothing_stored(env)


def test_a_mailbox_of_another_tenant_is_refused(env: Env) -> None:
    env.connect.callback(flow(env, "google", owner="tenant-a"), owner="tenant-a")
    before = env.store.load_tokens("google-help-example-test")
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback(flow(env, "google", owner="tenant-b"), owner="tenant-b")
    assert caught.value.code == "mailbox_taken"
    assert [c.tenant for c in env.store.list_providers()] == ["tenant-a"]
    assert env.store.load_tokens("google-help-example-test") == before


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_reconnect_keeps_the_connection_and_clears_needs_consent(env: Env, provider: str) -> None:
    first = env.connect.callback(flow(env, provider), owner="user-1")
    assert first.provider_id is not None
    env.store.update_provider(first.provider_id, {"needs_consent": True,
                                                  "auth_error_code": "invalid_grant"})
    old_tokens = env.store.load_tokens(first.provider_id)
    second = env.connect.callback(flow(env, provider), owner="user-1")
    assert second.reconnected is True
    assert second.provider_id == first.provider_id
    assert second.subscription is not None
    config = env.store.get_provider(first.provider_id)
    assert config is not None
    assert not config.needs_consent
    assert config.auth_error_code is None
    assert env.store.load_tokens(first.provider_id) != old_tokens
    assert len(env.store.list_providers()) == 1


def test_google_permission_unticked(env: Env) -> None:
    started = env.connect.start("google", owner="u")
    status, query, _ = authorize(started.url, fake_user=G_BOX, fake_scopes="openid")
    assert status == 302
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback(query, owner="u")
    assert caught.value.code == "scope_not_granted"
    nothing_stored(env)


def test_google_without_refresh_token(env: Env) -> None:
    env.connect.provider_settings["google"]["prompt"] = None
    env.connect.callback(flow(env, "google"), owner="user-1")
    # A second consent without prompt=consent: Google issues no refresh token.
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback(flow(env, "google"), owner="user-1")
    assert caught.value.code == "no_refresh_token"


# ---------------------------------------------------------------------- the code


@pytest.mark.parametrize(("provider", "detail"),
                         [("microsoft", "AADSTS54005"), ("google", "invalid_grant")])
def test_code_reuse(env: Env, provider: str, detail: str) -> None:
    first = flow(env, provider)
    env.connect.callback(first, owner="user-1")
    saved = env.store.list_providers()
    second = flow(env, provider)
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback({**second, "code": first["code"]}, owner="user-1")
    assert caught.value.code == "invalid_grant"
    assert detail in str(caught.value)
    assert_clean(caught.value, first["code"], second["state"], MS_SECRET, G_SECRET)
    assert env.store.list_providers() == saved


@pytest.mark.parametrize(("provider", "detail"),
                         [("microsoft", "AADSTS501481"), ("google", "Invalid code verifier")])
def test_pkce_mismatch(env: Env, provider: str, detail: str) -> None:
    # A code obtained for one flow presented with another flow's state (and so its verifier).
    first = flow(env, provider)
    second = flow(env, provider)
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback({**second, "code": first["code"]}, owner="user-1")
    assert caught.value.code == "invalid_grant"
    assert detail in str(caught.value)
    nothing_stored(env)


def test_redirect_uri_must_match_the_registration(env: Env) -> None:
    env.connect.provider_settings["google"]["redirect_uri"] = "https://evil.test/cb"
    started = env.connect.start("google", owner="u")
    status, query, body = authorize(started.url, fake_user=G_BOX)
    assert status == 400
    assert query == {}
    assert "redirect_uri_mismatch" in body


# ---------------------------------------------------------------------- disconnect


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_disconnect_stops_the_push_and_forgets(env: Env, provider: str) -> None:
    result = env.connect.callback(flow(env, provider), owner="user-1")
    assert result.provider_id is not None
    with pytest.raises(WebConnectError) as caught:
        env.connect.disconnect(result.provider_id, tenant="someone-else")
    assert caught.value.code == "not_found"
    gone = env.connect.disconnect(result.provider_id, tenant="user-1")
    assert gone.push_stopped is True
    assert gone.error is None
    assert gone.mailbox == BOXES[provider]
    assert env.store.get_provider(result.provider_id) is None
    assert env.store.load_tokens(result.provider_id) is None
    if provider == "microsoft":
        assert env.graph.subscriptions == {}
    else:
        assert env.gmail.count("/stop", "POST") == 1
    with pytest.raises(WebConnectError):
        env.connect.disconnect(result.provider_id, tenant="user-1")


def test_disconnect_with_revoked_tokens_still_forgets(env: Env) -> None:
    result = env.connect.callback(flow(env, "google"), owner="user-1")
    assert result.provider_id is not None
    env.gmail.revoke_refresh_token()
    env.gmail.expire_tokens()
    gone = env.connect.disconnect(result.provider_id, tenant="user-1")
    assert gone.push_stopped is False
    assert gone.error is not None
    assert "invalid_grant" in gone.error
    assert env.store.get_provider(result.provider_id) is None


# ---------------------------------------------------------------------- admin consent


def test_admin_consent_then_application_mailbox(env: Env) -> None:
    started = env.connect.start_admin_consent("microsoft", owner="u", mailbox=MS_BOX)
    assert "/organizations/v2.0/adminconsent?" in started.url
    status, query, _ = authorize(started.url)
    assert status == 302
    assert query["admin_consent"] == "True"
    assert query["tenant"] == env.graph.tenant_id
    result = env.connect.callback(query, owner="u")
    assert result.kind == "connect"
    assert result.mailbox == MS_BOX
    config = env.store.get_provider(result.provider_id or "")
    assert config is not None
    assert config.auth_mode == "application"  # type: ignore[union-attr]
    assert config.authority_tenant == env.graph.tenant_id  # type: ignore[union-attr]
    assert result.subscription is not None
    assert "helpdesk-ms-app" in env.graph.admin_consents


def test_admin_consent_without_mailbox_then_connect_mailbox(env: Env) -> None:
    started = env.connect.start_admin_consent("microsoft", owner="u")
    _, query, _ = authorize(started.url)
    consent = env.connect.callback(query, owner="u")
    assert "client_secret" not in consent.fields
    assert MS_SECRET not in repr(consent)
    assert consent.kind == "admin_consent"
    assert consent.provider_id is None
    nothing_stored(env)
    added = env.connect.connect_mailbox(
        "microsoft", tenant="u", mailbox="someone.else@contoso.test", fields=consent.fields
    )
    assert added.mailbox == "someone.else@contoso.test"
    with pytest.raises(WebConnectError) as caught:
        env.connect.connect_mailbox("microsoft", tenant="u", mailbox="nobody@contoso.test",
                                    fields=consent.fields)
    assert caught.value.code == "ErrorItemNotFound" or caught.value.status == 404
    assert len(env.store.list_providers()) == 1


def test_admin_declines_consent(env: Env) -> None:
    env.graph.decline_next()
    started = env.connect.start_admin_consent("microsoft", owner="u", mailbox=MS_BOX)
    _, query, _ = authorize(started.url)
    with pytest.raises(ConnectDeniedError) as caught:
        env.connect.callback(query, owner="u")
    assert caught.value.code == "access_denied"
    nothing_stored(env)


def test_admin_consent_in_another_directory_is_refused(env: Env) -> None:
    env.connect.provider_settings["microsoft"]["authority_tenant"] = env.graph.tenant_id
    started = env.connect.start_admin_consent("microsoft", owner="u", mailbox=MS_BOX)
    _, query, _ = authorize(started.url)
    query["tenant"] = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(WebConnectError) as caught:
        env.connect.callback(query, owner="u")
    assert caught.value.code == "tenant_mismatch"
    nothing_stored(env)


def test_google_has_no_admin_consent(env: Env) -> None:
    with pytest.raises(ConfigurationError):
        env.connect.start_admin_consent("google", owner="u")


# ---------------------------------------------------------------------- settings


def test_client_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with environment() as env:
        settings = env.providers()["google"]
        del settings["client_id"], settings["client_secret"]
        monkeypatch.setenv("GOOGLE_CLIENT_ID", G_CLIENT)
        monkeypatch.setenv("GOOGLE_CLIENT_SECRET", G_SECRET)
        connect = WebConnect(env.store, redirect_uri=CALLBACK, providers={"google": settings})
        started = connect.start("google", owner="u")
        _, query, _ = authorize(started.url, fake_user=G_BOX)
        result = connect.callback(query, owner="u")
        config = env.store.get_provider(result.provider_id or "")
        # The secret from the environment is resolved again by the adapter, not copied.
        assert config is not None
        assert config.client_secret is None
        assert config.client_id == G_CLIENT


def test_no_client_id_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROSOFT_CLIENT_ID", raising=False)
    with environment(providers={"microsoft": {}}) as env:
        with pytest.raises(ConfigurationError) as caught:
            env.connect.start("microsoft", owner="u")
        assert "MICROSOFT_CLIENT_ID" in str(caught.value)
        with pytest.raises(ConfigurationError):
            env.connect.start("google", owner="u")  # not set up here


def test_microsoft_needs_a_client_secret() -> None:
    with environment() as env:
        del env.connect.provider_settings["microsoft"]["client_secret"]
        with pytest.raises(ConfigurationError):
            env.connect.start("microsoft", owner="u")


def test_return_to_is_a_local_path_only(env: Env) -> None:
    for bad in ("https://evil.test/", "//evil.test", "/\\evil.test", "settings"):
        query = flow(env, "google", return_to=bad)
        assert env.connect.callback(query, owner="user-1").return_to is None


def test_subscription_failure_is_reported_and_the_connection_kept(env: Env) -> None:
    env.graph.fail_next(3, status=500, retry_after=None, path="/subscriptions")
    connect = WebConnect(env.store, redirect_uri=CALLBACK, providers=env.providers(),
                         adapter_options={"sleep": lambda _s: None})
    started = connect.start("microsoft", owner="u")
    _, query, _ = authorize(started.url, fake_user=MS_BOX)
    result = connect.callback(query, owner="u")
    assert result.subscription is None
    assert result.subscription_error
    assert env.store.get_provider(result.provider_id or "") is not None


def test_errors_are_library_errors_without_secrets(env: Env) -> None:
    first = flow(env, "microsoft")
    env.connect.callback(first, owner="user-1")
    second = flow(env, "microsoft")
    with pytest.raises(MailParityError) as caught:
        env.connect.callback({**second, "code": first["code"]}, owner="user-1")
    assert_clean(caught.value, MS_SECRET, first["code"], second["state"])


@pytest.mark.parametrize(("provider", "path"),
                         [("microsoft", "/oauth2/v2.0/token"), ("google", "/token")])
def test_token_endpoint_outage_is_transient_and_stores_nothing(
    env: Env, provider: str, path: str
) -> None:
    from mailparity.errors import ProviderUnavailableError

    query = flow(env, provider)
    (env.graph if provider == "microsoft" else env.gmail).fail_next(
        1, status=503, retry_after=None, path=path
    )
    with pytest.raises(ProviderUnavailableError):
        env.connect.callback(query, owner="user-1")
    nothing_stored(env)


def test_a_look_alike_mailbox_gets_its_own_id(env: Env) -> None:
    env.gmail.add_mailbox("help-example@test.example")
    env.connect.callback(flow(env, "google"), owner="user-1")
    env.gmail.add_mailbox("help.example@test.example")
    first = env.connect.callback(
        flow(env, "google", mailbox="help-example@test.example"), owner="user-1"
    )
    second = env.connect.callback(
        flow(env, "google", mailbox="help.example@test.example"), owner="user-1"
    )
    assert first.provider_id == "google-help-example-test-example"
    assert second.provider_id is not None
    assert second.provider_id.startswith("google-help-example-test-example-")
    assert {c.mailbox for c in env.store.list_providers()} == {
        G_BOX, "help-example@test.example", "help.example@test.example"}


def test_states_and_connections_in_a_sqlite_store(env: Env, tmp_path: Any) -> None:
    from mailparity.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "connect.sqlite3")
    connect = WebConnect(store, redirect_uri=CALLBACK, providers=env.providers())
    for provider in ("microsoft", "google"):
        started = connect.start(provider, owner="user-1")
        _, query, _ = authorize(started.url, fake_user=BOXES[provider])
        result = connect.callback(query, owner="user-1")
        assert store.load_tokens(result.provider_id or "") is not None
        with pytest.raises(ConnectStateError) as caught:
            connect.callback(query, owner="user-1")
        assert caught.value.code == "state_reused"
    assert len(store.list_providers()) == 2
