"""The IMAP provider without a server: config rules, ids, the missing extra, the CLI hook,
the registry line. (Against a real server: ``test_imap_dovecot.py``.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from imap_support import Dovecot, dovecot
from mailparity.cli import main
from mailparity.errors import ConfigurationError, NotFoundError
from mailparity.models import provider_config_from_dict, provider_config_to_storage
from mailparity.providers import get_spec
from mailparity.providers.imap.adapter import ImapAdapter, format_message_id, parse_message_id
from mailparity.providers.imap.client import ConnectionLimiter
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.providers.imap.listener import ImapListener
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore

__all__ = ["dovecot"]


def config(**changes: object) -> ImapProviderConfig:
    fields: dict[str, object] = {"provider_id": "i1", "tenant": "t", "mailbox": "a@example.com",
                                 "host": "imap.example.com", "password": SecretStr("pw-secret")}
    fields.update(changes)
    return ImapProviderConfig(**fields)  # type: ignore[arg-type]


def test_registered_with_its_cursor_listener_and_connect_hook() -> None:
    spec = get_spec("imap")
    assert spec.config_model is ImapProviderConfig
    assert spec.adapter_class() is ImapAdapter
    assert spec.listener_class() is ImapListener
    assert spec.cursor_field == "imap_cursor"
    assert spec.renewal is None
    assert spec.push is None


def test_config_defaults_and_secret_masking() -> None:
    value = config()
    assert value.effective_port == 993
    assert value.verify_certificate
    assert value.login_name == "a@example.com"
    assert config(security="starttls").effective_port == 143
    assert "pw-secret" not in repr(value)
    assert "pw-secret" not in value.model_dump_json()
    stored = provider_config_to_storage(value)
    assert provider_config_from_dict(stored) == value


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"security": "none"}, "loopback"),
        ({"processed_strategy": "move"}, "processed_folder"),
        ({"auth_method": "xoauth2"}, "oauth_issuer"),
    ],
)
def test_config_rejects_unsafe_or_incomplete_settings(changes: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**changes)


def test_cleartext_is_allowed_to_loopback_only() -> None:
    assert config(security="none", host="127.0.0.1").effective_port == 143
    assert config(security="none", host="localhost").security == "none"
    assert config(security="none", host="::1").security == "none"


def test_message_ids() -> None:
    assert format_message_id(17, 4) == "17-4"
    assert parse_message_id("17-4") == (17, 4)
    for bad in ("", "17", "a-4", "17-", "../17-4"):
        with pytest.raises(NotFoundError):
            parse_message_id(bad)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imapclient", None)
    with pytest.raises(ConfigurationError, match=r"mailparity\[imap\]"):
        ImapAdapter(config(), store=InMemoryStore())


def test_limiter_bounds_connections_per_server() -> None:
    limiter = ConnectionLimiter(2)
    assert limiter.try_acquire("h:993")
    assert limiter.try_acquire("h:993")
    assert not limiter.try_acquire("h:993")
    assert limiter.try_acquire("other:993")
    assert not limiter.acquire("h:993", timeout=0)
    limiter.release("h:993")
    assert limiter.acquire("h:993", timeout=0)
    assert limiter.in_use("h:993") == 2


def test_no_webhook_subscription(dovecot: Dovecot) -> None:
    adapter = ImapAdapter(dovecot.config(), store=InMemoryStore())
    with pytest.raises(ConfigurationError, match="mailparity listen"):
        adapter.register_webhook_subscription()
    assert adapter.process_webhook_notification({"anything": 1}) == []


def test_cli_connect_imap_tests_then_saves(dovecot: Dovecot, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "s.sqlite3")
    mailbox = dovecot.config().mailbox
    base = ["--store", db, "--events", str(tmp_path / "events.jsonl"), "connect", "imap",
            "--host", dovecot.host, "--port", str(dovecot.port), "--security", "none",
            "--mailbox", mailbox,
            "--password-env", "TEST_IMAP_PW", "--processed-strategy", "seen"]
    monkeypatch.setenv("TEST_IMAP_PW", "wrong")
    assert main(base) == 2
    assert "imap_login_failed" in capsys.readouterr().err
    assert SqliteStore(db).list_providers() == []
    monkeypatch.setenv("TEST_IMAP_PW", dovecot.password)
    assert main(base) == 0
    assert f"connected {mailbox}" in capsys.readouterr().out
    [saved] = SqliteStore(db).list_providers()
    assert isinstance(saved, ImapProviderConfig)
    assert saved.processed_strategy == "seen"
    assert saved.password is not None
    assert saved.password.get_secret_value() == dovecot.password
    assert main(["--store", db, "test", saved.provider_id]) == 0


class RecordingClient:
    """Just enough of an IMAPClient to sign in and select a folder."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.normalise_times = True

    def oauth2_login(self, user: str, token: str) -> None:
        self.calls.append(("oauth2_login", user, token))

    def login(self, user: str, password: str) -> None:
        self.calls.append(("login", user))

    def select_folder(self, folder: str, readonly: bool = False) -> dict[bytes, int]:
        self.calls.append(("select", folder))
        return {b"UIDVALIDITY": 7, b"UIDNEXT": 1}

    def logout(self) -> None:
        self.calls.append(("logout",))


def test_xoauth2_signs_in_with_the_stored_access_token() -> None:
    from datetime import datetime, timedelta, timezone

    from mailparity.models import OAuthTokens

    store = InMemoryStore()
    value = config(auth_method="xoauth2", oauth_issuer="microsoft", password=None)
    store.save_provider(value)
    store.save_tokens(value.provider_id, OAuthTokens(
        access_token=SecretStr("access-1"), refresh_token=SecretStr("refresh-1"),
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    ))
    client = RecordingClient()
    adapter = ImapAdapter(value, store=store, client_factory=lambda cfg: client)
    assert adapter.test_connection().success
    assert client.calls[0] == ("oauth2_login", "a@example.com", "access-1")
    assert client.normalise_times is False


def test_password_connection_without_a_password_is_a_configuration_error() -> None:
    client = RecordingClient()
    adapter = ImapAdapter(config(password=None), store=InMemoryStore(),
                          client_factory=lambda cfg: client)
    result = adapter.test_connection()
    assert not result.success
    assert "no IMAP password" in (result.error or "")
    assert not [call for call in client.calls if call[0] in ("login", "oauth2_login")]


def test_xoauth2_refreshes_an_expired_google_token_with_the_google_token_code() -> None:
    from datetime import datetime, timezone

    import responses

    from mailparity.models import OAuthTokens

    store = InMemoryStore()
    value = config(auth_method="xoauth2", oauth_issuer="google", password=None,
                   client_id="cid", client_secret=SecretStr("csecret"))
    store.save_provider(value)
    store.save_tokens(value.provider_id, OAuthTokens(
        access_token=SecretStr("stale"), refresh_token=SecretStr("refresh-1"),
        expires_at=datetime(2020, 1, 1, tzinfo=timezone.utc),
    ))
    client = RecordingClient()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://oauth2.googleapis.com/token",
                 json={"access_token": "fresh", "expires_in": 3600, "token_type": "Bearer"})
        adapter = ImapAdapter(value, store=store, client_factory=lambda cfg: client)
        assert adapter.test_connection().success
    assert client.calls[0] == ("oauth2_login", "a@example.com", "fresh")
    saved = store.load_tokens(value.provider_id)
    assert saved is not None
    assert saved.access_token.get_secret_value() == "fresh"
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() == "refresh-1"
