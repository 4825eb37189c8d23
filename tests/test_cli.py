"""The ``mailparity`` command line: argument parsing of every subcommand, providers list / show /
remove on a SqliteStore, test / subscribe / renew / sync with the real adapters over
``responses``, events tail, user errors, --verbose, connect (msal and InstalledAppFlow faked),
and the wiring of the long-running serve / worker. No network, no real sleeps.

The provider-generic commands (providers list / show / remove, renew, sync) run over Microsoft
Graph (its real adapter over ``responses``) and over the third, test-only provider of
``third_provider.py`` (its fake mailboxes), which the CLI knows only through the registry: the
``Kind`` driver says what each one is asked and answers. Provider-specific on purpose: secret
masking of each provider's own secret fields, ``test`` and ``subscribe`` (their HTTP calls and
answers are the point), ``connect microsoft|google`` (each provider's sign-in flow), and the
parsing table."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import SecretStr

from fake_adapter import FakeMailbox
from mailparity import cli
from mailparity.cli import build_parser, main
from mailparity.errors import PermissionDeniedError, SubscriptionError
from mailparity.models import (
    EmailAddress,
    EmailMessage,
    EmailProviderAuthFailed,
    GmailProviderConfig,
    InboundEmailReceived,
    MicrosoftProviderConfig,
    OAuthTokens,
)
from mailparity.providers import spec_for
from mailparity.publishers import JsonlFilePublisher
from mailparity.stores.sqlite import SqliteStore
from third_provider import BOXES, make_config

GRAPH = "https://graph.microsoft.com/v1.0"
GMAIL = "https://gmail.googleapis.com/gmail/v1/users/me"
ACCESS = "at-SECRET-cli-0001"
REFRESH = "rt-SECRET-cli-0001"
CLIENT_SECRET = "cs-SECRET-cli-0001"
STATE = "state-SECRET-cli-0001"
SECRETS = (ACCESS, REFRESH, CLIENT_SECRET, STATE)
MAILBOX = "support@contoso.com"


# ---------------------------------------------------------------------------- fixtures


class Cli:
    """Runs ``main`` on one store and events file; returns (exit code, stdout, stderr)."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.store_path = tmp_path / "cli.sqlite3"
        self.events = tmp_path / "events.jsonl"
        self.tmp_path = tmp_path
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main(["--store", str(self.store_path), "--events", str(self.events), *argv])
        except SystemExit as exit_:  # argparse: a usage error (or --help, --version)
            code = int(exit_.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def store(self) -> SqliteStore:
        return SqliteStore(self.store_path)

    def add(self, config: MicrosoftProviderConfig | GmailProviderConfig,
            *, valid_for: float = 3600) -> None:
        with self.store() as store:
            store.save_provider(config)
            store.save_tokens(config.provider_id, OAuthTokens(
                access_token=SecretStr(ACCESS), refresh_token=SecretStr(REFRESH),
                expires_at=datetime.now(timezone.utc) + timedelta(seconds=valid_for),
            ))


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET", "GOOGLE_CLIENT_ID",
                 "GOOGLE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return Cli(tmp_path, capsys)


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock() as mock:
        yield mock


def graph_config(pid: str = "ms", **overrides: Any) -> MicrosoftProviderConfig:
    data: dict[str, Any] = {
        "provider_id": pid, "tenant": "t1", "mailbox": MAILBOX, "client_id": "client-1",
        "client_secret": SecretStr(CLIENT_SECRET),
        "webhook_notification_url": "https://hooks.example.com/graph",
        "webhook_verification_token": SecretStr(STATE),
    }
    data.update(overrides)
    return MicrosoftProviderConfig(**data)


def gmail_config(pid: str = "g", **overrides: Any) -> GmailProviderConfig:
    data: dict[str, Any] = {
        "provider_id": pid, "tenant": "t1", "mailbox": "help@example.com",
        "client_id": "gclient", "client_secret": SecretStr(CLIENT_SECRET),
        "project_id": "proj", "pubsub_topic_name": "mail", "history_id": 100,
    }
    data.update(overrides)
    return GmailProviderConfig(**data)


class Kind:
    """The provider a generic CLI test runs over: Graph (its real adapter, answered through
    ``responses``) or the third provider (the fake mailboxes of ``third_provider.BOXES``)."""

    def __init__(self, kind: str, rsps: Any) -> None:
        self.kind = kind
        self.rsps = rsps

    @property
    def graph(self) -> bool:
        return self.kind == "microsoft"

    def config(self, pid: str = "ms", *, subscription: str | None = None,
               expires: datetime | None = None, **fields: Any) -> Any:
        if self.graph:
            return graph_config(pid, webhook_subscription_id=subscription,
                                webhook_expires_at=expires, **fields)
        fields.setdefault("mailbox", MAILBOX)
        config = make_config(self.kind, pid, subscription_id=subscription, expires_at=expires,
                             client_id="client-1", client_secret=SecretStr(CLIENT_SECRET),
                             **fields)
        BOXES[pid] = FakeMailbox(config)  # type: ignore[arg-type]
        return config

    def box(self, pid: str) -> FakeMailbox:
        return BOXES[pid]

    def expect_delete(self, pid: str, subscription: str, *, refused: bool = False) -> None:
        if self.graph:
            if refused:
                self.rsps.delete(f"{GRAPH}/subscriptions/{subscription}", status=403, json={
                    "error": {"code": "Forbidden", "message": "Access denied"}})
            else:
                self.rsps.delete(f"{GRAPH}/subscriptions/{subscription}", status=204)
        elif refused:
            self.box(pid).fail("delete", "*", PermissionDeniedError("Access denied", status=403))

    def calls(self, pid: str) -> int:
        """Provider calls made for ``pid`` (HTTP requests, or fake mailbox calls)."""
        if self.graph:
            return len(self.rsps.calls)
        return sum(self.box(pid).calls.values())

    def expect_renew(self, subscription: str) -> None:
        if self.graph:
            self.rsps.patch(f"{GRAPH}/subscriptions/{subscription}", json={
                "id": subscription, "expirationDateTime": "2030-01-03T22:00:00Z"})

    def refuse_create(self, pid: str) -> None:
        if self.graph:
            self.rsps.post(f"{GRAPH}/subscriptions", status=400, json={"error": {
                "code": "InvalidRequest", "message": "Subscription validation request failed."}})
        else:
            self.box(pid).fail("register", "*", SubscriptionError("validation failed"))

    def new_message(self, pid: str, message_id: str) -> Any:
        """A message waiting for the next catch-up; returns the cursor after it."""
        if self.graph:
            old_link = f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=old"
            new_link = f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=new"
            self.rsps.get(old_link, json={"value": [{"id": message_id, "receivedDateTime":
                                                     "2030-01-01T10:00:00Z"}],
                                          "@odata.deltaLink": new_link})
            self.rsps.get(f"{GRAPH}/me/messages/{message_id}", json=_graph_message(message_id))
            return {"inbox": new_link}
        box = self.box(pid)
        box.add(message_id)
        box.changes, box.next_cursor = [message_id], 7
        return 7

    def refuse_catch_up(self, pid: str) -> None:
        if self.graph:
            self.rsps.get(f"{GRAPH}/me/mailFolders/inbox/messages/delta", status=403,
                          json={"error": {"code": "ErrorAccessDenied",
                                          "message": "Access is denied."}})
        else:
            self.box(pid).fail_always(
                "fetch_changes", "*", PermissionDeniedError("Access is denied.", status=403))


@pytest.fixture
def kind(provider_kind: str, rsps: Any) -> Kind:
    return Kind(provider_kind, rsps)


def cursor_of(config: Any) -> Any:
    field = spec_for(config).cursor_field
    assert field is not None
    return getattr(config, field)


def assert_user_error(code: int, out: str, err: str, *, expected_code: int = 2,
                      contains: str = "", after: str = "") -> None:
    """One ``mailparity: error:`` line on stderr (after the ``after`` text, the sign-in
    instructions of a device flow, when given), the exit code, no traceback, no secret."""
    assert after in err
    lines = err.replace(after, "", 1).strip().splitlines() if after else err.strip().splitlines()
    if lines and lines[0].startswith("usage: "):
        # An argparse usage error: the usage (maybe wrapped), then the one error line.
        usage, lines = lines[:-1], lines[-1:]
        assert all(line.startswith(("usage: ", " ")) for line in usage), err
    assert code == expected_code
    assert len(lines) == 1, err
    assert lines[0].startswith("mailparity: error:")
    assert contains in lines[0]
    assert "Traceback" not in err + out
    for secret in SECRETS:
        assert secret not in err + out


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("argv", "func", "expected"),
    [
        (["connect", "microsoft", "--client-id", "c", "--authority-tenant", "dir",
          "--login-base-url", "https://login.example", "--tenant", "t", "--mailbox", "m@x",
          "--id", "p", "--webhook-url", "https://h/graph"],
         "_cmd_connect_microsoft",
         {"client_id": "c", "authority_tenant": "dir", "login_base_url": "https://login.example",
          "tenant": "t", "mailbox": "m@x", "id": "p", "webhook_url": "https://h/graph"}),
        (["connect", "microsoft"], "_cmd_connect_microsoft",
         {"client_id": None, "authority_tenant": "common", "tenant": "default",
          "login_base_url": "https://login.microsoftonline.com", "webhook_url": None}),
        (["connect", "google", "--client-id", "c", "--client-secret", "s", "--project-id", "p",
          "--topic", "t", "--subscription", "s2", "--port", "8085", "--no-browser",
          "--mailbox", "m@x"],
         "_cmd_connect_google",
         {"client_id": "c", "client_secret": "s", "project_id": "p", "topic": "t",
          "subscription": "s2", "port": 8085, "no_browser": True, "mailbox": "m@x"}),
        (["connect", "google"], "_cmd_connect_google", {"port": 0, "no_browser": False}),
        (["providers", "list"], "_cmd_providers_list", {}),
        (["providers", "show", "p1"], "_cmd_providers_show", {"provider_id": "p1"}),
        (["providers", "remove", "p1"], "_cmd_providers_remove",
         {"provider_id": "p1", "keep_subscription": False}),
        (["providers", "remove", "p1", "--keep-subscription"], "_cmd_providers_remove",
         {"keep_subscription": True}),
        (["test", "p1"], "_cmd_test", {"provider_id": "p1"}),
        (["subscribe", "p1"], "_cmd_subscribe", {"provider_id": "p1"}),
        (["renew"], "_cmd_renew", {"provider_id": None}),
        (["renew", "p1"], "_cmd_renew", {"provider_id": "p1"}),
        (["sync"], "_cmd_sync", {"provider_id": None}),
        (["sync", "p1"], "_cmd_sync", {"provider_id": "p1"}),
        (["serve"], "_cmd_serve", {"host": "127.0.0.1", "port": 8080, "google_audience": None,
                                   "google_service_account": None}),
        (["serve", "--host", "10.1.2.3", "--port", "9000", "--google-audience", "aud",
          "--google-service-account", "a@x", "--google-service-account", "b@x"], "_cmd_serve",
         {"host": "10.1.2.3", "port": 9000, "google_audience": "aud",
          "google_service_account": ["a@x", "b@x"]}),
        (["worker"], "_cmd_worker", {"threads": 4}),
        (["worker", "--threads", "2"], "_cmd_worker", {"threads": 2}),
        (["maintain"], "_cmd_maintain",
         {"loop": False, "interval": 900.0, "silence_minutes": 360.0, "no_jobs": False}),
        (["maintain", "--loop", "--interval", "5", "--silence-minutes", "10", "--no-jobs"],
         "_cmd_maintain", {"loop": True, "interval": 5.0, "silence_minutes": 10.0,
                           "no_jobs": True}),
        (["events", "tail"], "_cmd_events_tail", {"n": 20, "follow": False}),
        (["events", "tail", "-n", "5", "-f"], "_cmd_events_tail", {"n": 5, "follow": True}),
        (["db", "upgrade", "--url", "sqlite:///x.db"], "_cmd_db_upgrade",
         {"url": "sqlite:///x.db"}),
        (["demo"], "_cmd_demo", {"output": "demo-output"}),
        (["demo", "--output", "out"], "_cmd_demo", {"output": "out"}),
    ],
)
def test_every_subcommand_parses(argv: list[str], func: str, expected: dict[str, Any]) -> None:
    args = build_parser().parse_args(["--store", "s.db", "--secrets", "sec.json", "-v", *argv])
    assert args.func is getattr(cli, func)
    assert (args.store, args.secrets, args.verbose) == ("s.db", "sec.json", True)
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    "argv",
    [[], ["connect"], ["connect", "yahoo"], ["providers"], ["providers", "show"], ["test"],
     ["worker", "--threads", "many"], ["events"], ["db", "upgrade"], ["nonsense"]],
)
def test_bad_arguments_exit_2_with_usage(argv: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "mailparity: error:" in capsys.readouterr().err


def test_store_and_events_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPARITY_STORE", "/srv/mp.sqlite3")
    monkeypatch.setenv("MAILPARITY_EVENTS", "/srv/events.jsonl")
    args = build_parser().parse_args(["providers", "list"])
    assert (args.store, args.events, args.secrets) == (
        "/srv/mp.sqlite3", "/srv/events.jsonl", None)
    monkeypatch.delenv("MAILPARITY_STORE")
    monkeypatch.delenv("MAILPARITY_EVENTS")
    args = build_parser().parse_args(["providers", "list"])
    assert (args.store, args.events) == ("mailparity.sqlite3", "mailparity-events.jsonl")


# ---------------------------------------------------------------------------- providers


def test_providers_list(run: Cli, kind: Kind) -> None:
    code, out, _ = run("providers", "list")
    assert code == 0
    assert "no providers" in out
    run.add(kind.config("ms-a"))
    run.add(gmail_config("g-b", needs_consent=True))
    run.add(gmail_config("g-c", active=False, mailbox="other@example.com"))
    code, out, err = run("providers", "list")
    assert code == 0
    assert err == ""
    rows = out.strip().splitlines()
    assert rows[0].split()[:2] == ["PROVIDER", "ID"]
    by_id = {line.split()[0]: line for line in rows[1:]}
    assert set(by_id) == {"ms-a", "g-b", "g-c"}
    assert kind.kind in by_id["ms-a"].split()
    assert MAILBOX in by_id["ms-a"]
    assert by_id["ms-a"].rstrip().endswith("active")
    assert by_id["g-b"].rstrip().endswith("needs consent")
    assert by_id["g-c"].rstrip().endswith("paused")


def test_providers_show_masks_every_secret(run: Cli) -> None:
    run.add(graph_config(previous_webhook_verification_token=SecretStr("old-" + STATE)))
    code, out, err = run("providers", "show", "ms")
    assert code == 0
    assert err == ""
    data = json.loads(out)
    assert data["provider_id"] == "ms"
    assert data["mailbox"] == MAILBOX
    assert data["client_secret"] == "**********"
    assert data["webhook_verification_token"] == "**********"
    assert data["tokens"]["has_refresh_token"] is True
    assert "access_token_expires_at" in data["tokens"]
    for secret in SECRETS:
        assert secret not in out
    run.add(gmail_config(service_account_info=SecretStr('{"private_key": "' + ACCESS + '"}')))
    code, out, _ = run("providers", "show", "g")
    assert code == 0
    assert json.loads(out)["service_account_info"] == "**********"
    assert all(secret not in out for secret in SECRETS)


def test_providers_show_without_tokens(run: Cli, kind: Kind) -> None:
    with run.store() as store:
        store.save_provider(kind.config("p"))
    code, out, _ = run("providers", "show", "p")
    assert code == 0
    data = json.loads(out)
    assert data["tokens"] is None
    assert (data["provider"], data["client_secret"]) == (kind.kind, "**********")
    assert CLIENT_SECRET not in out


def test_providers_remove_deletes_the_subscription(run: Cli, kind: Kind) -> None:
    run.add(kind.config(subscription="sub-1"))
    kind.expect_delete("ms", "sub-1")
    code, out, err = run("providers", "remove", "ms")
    assert code == 0
    assert "removed ms" in out
    assert err == ""
    assert kind.calls("ms") == 1
    with run.store() as store:
        assert store.get_provider("ms") is None
        assert store.load_tokens("ms") is None


def test_providers_remove_keep_subscription_makes_no_call(run: Cli, kind: Kind) -> None:
    run.add(kind.config(subscription="sub-1"))
    code, out, _ = run("providers", "remove", "ms", "--keep-subscription")
    assert code == 0
    assert "removed ms" in out
    assert kind.calls("ms") == 0


def test_providers_remove_warns_when_the_subscription_cannot_be_deleted(
    run: Cli, kind: Kind
) -> None:
    run.add(kind.config(subscription="sub-1"))
    kind.expect_delete("ms", "sub-1", refused=True)
    code, out, err = run("providers", "remove", "ms")
    assert code == 0
    assert "removed ms" in out
    assert err.startswith("warning: subscription not deleted")
    assert "Access denied" in err
    with run.store() as store:
        assert store.get_provider("ms") is None


# ---------------------------------------------------------------------------- test / subscribe


def test_test_command_graph_ok(run: Cli, rsps: Any) -> None:
    run.add(graph_config())
    rsps.get(f"{GRAPH}/me", json={"mail": MAILBOX, "userPrincipalName": MAILBOX})
    rsps.get(f"{GRAPH}/me/mailFolders/inbox/messages", json={"value": []})
    code, out, err = run("test", "ms")
    assert (code, out.strip(), err) == (0, f"ok: {MAILBOX}", "")
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"


def test_test_command_gmail_ok(run: Cli, rsps: Any) -> None:
    run.add(gmail_config())
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "help@example.com", "historyId": "5"})
    code, out, _ = run("test", "g")
    assert (code, out.strip()) == (0, "ok: help@example.com")


def test_test_command_failure_is_one_line(run: Cli, rsps: Any) -> None:
    run.add(graph_config())
    rsps.get(f"{GRAPH}/me", json={"mail": MAILBOX})
    rsps.get(f"{GRAPH}/me/mailFolders/inbox/messages", status=403,
             json={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})
    code, out, err = run("test", "ms")
    assert_user_error(code, out, err, expected_code=1, contains="Access is denied")
    assert "ErrorAccessDenied" in err


def test_subscribe_creates_the_graph_subscription(run: Cli, rsps: Any) -> None:
    # The folder already has its delta baseline (registering would take one first).
    run.add(graph_config(delta_links={"inbox": f"{GRAPH}/me/mailFolders/inbox/messages/delta?d=0"}))
    rsps.post(f"{GRAPH}/subscriptions", status=201, json={
        "id": "sub-9", "expirationDateTime": "2030-01-03T22:00:00Z",
        "resource": "me/mailFolders('inbox')/messages"})
    code, out, err = run("subscribe", "ms")
    assert code == 0
    assert err == ""
    assert "id=sub-9" in out
    assert "2030-01-03T22:00:00" in out
    body = json.loads(rsps.calls[0].request.body)
    assert body["clientState"] == STATE
    assert STATE not in out
    with run.store() as store:
        assert store.find_provider_by_subscription("sub-9") is not None


def test_subscribe_gmail_watch(run: Cli, rsps: Any) -> None:
    run.add(gmail_config())
    expiration_ms = int(datetime(2030, 1, 8, tzinfo=timezone.utc).timestamp() * 1000)
    rsps.post(f"{GMAIL}/watch", json={"historyId": "150", "expiration": str(expiration_ms)})
    code, out, _ = run("subscribe", "g")
    assert code == 0
    assert "resource=projects/proj/topics/mail" in out
    assert json.loads(rsps.calls[0].request.body)["topicName"] == "projects/proj/topics/mail"
    with run.store() as store:
        saved = store.get_provider("g")
        assert saved.watch_expiration == datetime(2030, 1, 8, tzinfo=timezone.utc)
        assert saved.history_id == 100  # an existing cursor is kept


def test_subscribe_without_webhook_url_is_a_configuration_error(run: Cli, rsps: Any) -> None:
    run.add(graph_config(webhook_notification_url=None))
    code, out, err = run("subscribe", "ms")
    assert_user_error(code, out, err, contains="ConfigurationError")
    assert "webhook_notification_url" in err
    assert len(rsps.calls) == 0


def test_verbose_shows_the_details(run: Cli, rsps: Any) -> None:
    run.add(graph_config(webhook_notification_url=None))
    code, _, err = run("--verbose", "subscribe", "ms")
    assert code == 2
    assert "Traceback" in err
    assert "ConfigurationError" in err
    assert err.strip().splitlines()[-1].startswith("mailparity: error: ConfigurationError")
    assert all(secret not in err for secret in SECRETS)


# ---------------------------------------------------------------------------- renew / sync


def test_renew_one_provider(run: Cli, kind: Kind) -> None:
    now = datetime.now(timezone.utc)
    run.add(kind.config(subscription="sub-1", expires=now + timedelta(hours=1)))
    kind.expect_renew("sub-1")
    code, out, _ = run("renew", "ms")
    assert code == 0
    assert "renewed: id=sub-1" in out
    with run.store() as store:
        _, expires = spec_for(kind.config()).renewal.state(store.get_provider("ms"))
    assert expires is not None
    if kind.graph:
        assert "2030-01-03T22:00:00" in out
        assert expires == datetime(2030, 1, 3, 22, tzinfo=timezone.utc)
    else:
        assert expires > now + timedelta(days=1)  # the fake's subscriptions live two days


def test_renew_sweep_over_all_providers(run: Cli, kind: Kind) -> None:
    now = datetime.now(timezone.utc)
    # Within every provider's renewal window, and outside of it.
    run.add(kind.config("due", subscription="sub-due", expires=now + timedelta(minutes=30)))
    run.add(kind.config("fresh", subscription="sub-fresh", expires=now + timedelta(days=2)))
    kind.expect_renew("sub-due")
    code, out, _ = run("renew")
    assert code == 0
    assert "renewed=1" in out
    assert "skipped=1" in out
    assert "failed=0" in out
    if kind.graph:
        assert kind.calls("due") == 1
    else:
        assert (kind.box("due").count("renew"), kind.box("fresh").count("renew")) == (1, 0)


def test_renew_sweep_exits_1_when_a_renewal_failed(run: Cli, kind: Kind) -> None:
    run.add(kind.config())
    kind.refuse_create("ms")
    code, out, _ = run("renew")
    assert code == 1
    assert "failed=1" in out


def _graph_message(message_id: str) -> dict[str, Any]:
    return {
        "id": message_id, "receivedDateTime": "2030-01-01T10:00:00Z", "subject": "Printer",
        "body": {"contentType": "text", "content": "It is on fire."},
        "from": {"emailAddress": {"name": "Alice", "address": "alice@example.com"}},
        "toRecipients": [{"emailAddress": {"address": MAILBOX}}],
        "conversationId": "conv-1", "internetMessageId": "<m1@example.com>",
        "internetMessageHeaders": [{"name": "Message-ID", "value": "<m1@example.com>"}],
        "attachments": [],
    }


def test_sync_publishes_new_messages_to_the_events_file(run: Cli, kind: Kind) -> None:
    old_link = f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=old"
    run.add(kind.config(delta_links={"inbox": old_link}) if kind.graph else kind.config())
    cursor = kind.new_message("ms", "AAMk1=")
    code, _, err = run("sync", "ms")
    assert code == 0, err
    assert err.splitlines()[-1] == "sync: 1/1 messages (1 published)"
    assert "\r" not in err  # not a terminal: plain lines
    events = JsonlFilePublisher.read(run.events)
    assert [(e["eventType"], e["emailData"]["provider"], e["emailData"]["id"])
            for e in events] == [("INBOUND_EMAIL_RECEIVED", kind.kind, "AAMk1=")]
    if kind.graph:
        assert events[0]["emailData"]["subject"] == "Printer"
    with run.store() as store:
        assert cursor_of(store.get_provider("ms")) == cursor


def test_sync_every_provider_takes_baselines(run: Cli, rsps: Any) -> None:
    run.add(graph_config())
    run.add(gmail_config(history_id=None))
    link = f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=base"
    rsps.get(f"{GRAPH}/me/mailFolders/inbox/messages/delta",
             json={"value": [], "@odata.deltaLink": link})
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "help@example.com", "historyId": "777"})
    code, _, err = run("sync")
    assert code == 0, err
    with run.store() as store:
        assert store.get_provider("g").history_id == 777
        assert store.get_provider("ms").delta_links == {"inbox": link}
    assert JsonlFilePublisher.read(run.events) == []


def test_sync_that_cannot_finish_exits_1(run: Cli, kind: Kind) -> None:
    run.add(kind.config())
    kind.refuse_catch_up("ms")
    code, _, err = run("sync", "ms")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("mailparity: error:")]
    assert len(lines) == 1
    assert "sync job of ms" in lines[0]
    assert "Access is denied" in lines[0]
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- events tail


def _write_events(path: Path) -> None:
    publisher = JsonlFilePublisher(path, fsync=False)
    for i in range(3):
        message = EmailMessage(
            id=f"m{i}", provider="google", provider_id="g", tenant="t1", mailbox="help@x.com",
            received_at=datetime(2030, 1, 1, tzinfo=timezone.utc), subject=f"Subject {i}",
            from_=EmailAddress(email=f"sender{i}@example.com"),  # type: ignore[call-arg]
        )
        publisher.publish(InboundEmailReceived.for_message(
            message, occurred_at=datetime(2030, 1, 1, 9, i, tzinfo=timezone.utc)))
    publisher.publish(EmailProviderAuthFailed(
        event_id="e-auth", tenant_id="t1", provider_id="g", provider="google",
        mailbox="help@x.com", error_code="invalid_grant", error="revoked",
        occurred_at=datetime(2030, 1, 1, 10, tzinfo=timezone.utc)))
    with path.open("a", encoding="utf-8") as fh:
        fh.write("not json at all\n[1, 2]\n")


def test_events_tail_reads_a_jsonl_file(run: Cli) -> None:
    _write_events(run.events)
    code, out, _ = run("events", "tail", "-n", "0")
    lines = out.strip().splitlines()
    assert code == 0
    assert len(lines) == 6
    assert lines[0].startswith("2030-01-01T09:00:00")
    assert "INBOUND_EMAIL_RECEIVED" in lines[0]
    assert "sender0@example.com" in lines[0]
    assert lines[0].endswith("Subject 0")
    assert "EMAIL_PROVIDER_AUTH_FAILED" in lines[3]
    assert "invalid_grant" in lines[3]
    assert lines[4:] == ["not json at all", "[1, 2]"]
    code, out, _ = run("events", "tail", "-n", "3")
    assert out.strip().splitlines()[0].startswith("2030-01-01T10:00:00")
    assert len(out.strip().splitlines()) == 3


def test_events_tail_follow_prints_new_lines(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_events(run.events)
    publisher = JsonlFilePublisher(run.events, fsync=False)
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            message = EmailMessage(
                id="late", provider="google", provider_id="g", tenant="t1", mailbox="h@x.com",
                received_at=datetime(2030, 1, 2, tzinfo=timezone.utc), subject="Late one",
            )
            publisher.publish(InboundEmailReceived.for_message(message))
            with run.events.open("a", encoding="utf-8") as fh:
                fh.write('{"eventType": "PARTIAL')  # a line still being written
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", fake_sleep)
    code, out, _ = run("events", "tail", "-n", "1", "-f")
    lines = out.strip().splitlines()
    assert code == 0
    assert len(lines) == 2
    assert lines[1].endswith("Late one")
    assert "PARTIAL" not in out


def test_events_tail_user_errors(run: Cli) -> None:
    assert_user_error(*run("events", "tail"), contains="no events file")
    run.events.write_text("")
    assert_user_error(*run("events", "tail", "-n", "-2"), contains="-n: -2 must be 0 or more")


# ---------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "argv",
    [["test", "nope"], ["subscribe", "nope"], ["renew", "nope"], ["sync", "nope"],
     ["providers", "show", "nope"], ["providers", "remove", "nope"]],
)
def test_unknown_provider_is_one_line(run: Cli, argv: list[str]) -> None:
    run.add(graph_config())
    assert_user_error(*run(*argv), contains="no provider 'nope'")


def test_missing_client_id_for_connect(run: Cli) -> None:
    assert_user_error(*run("connect", "microsoft"), contains="client id")
    assert_user_error(*run("connect", "google", "--client-id", "x"), contains="OAuth client")


@pytest.mark.parametrize(
    ("content", "contains"),
    [
        (None, "cannot read secrets file"),
        ('{"t1": {"microsoft_client_secret": "' + CLIENT_SECRET + '"', "not valid JSON"),
        ('["' + CLIENT_SECRET + '"]', "must be a JSON object"),
        ('{"t1": {"microsoft_client_secret": 5}}', "must be a JSON object"),
    ],
)
def test_bad_secrets_file(run: Cli, content: str | None, contains: str) -> None:
    run.add(graph_config())
    path = run.tmp_path / "secrets.json"
    if content is not None:
        path.write_text(content)
    assert_user_error(*run("--secrets", str(path), "test", "ms"), contains=contains)


def test_good_secrets_file_supplies_the_client_secret(run: Cli, rsps: Any) -> None:
    run.add(graph_config(client_secret=None, webhook_subscription_id="sub-1"))
    path = run.tmp_path / "secrets.json"
    path.write_text(json.dumps({"t1": {"microsoft_client_secret": CLIENT_SECRET}}))
    rsps.delete(f"{GRAPH}/subscriptions/sub-1", status=204)
    code, out, _ = run("--secrets", str(path), "providers", "remove", "ms")
    assert code == 0
    assert "removed ms" in out


def test_unexpected_errors_are_one_line_without_details(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    run.add(graph_config())

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"token {ACCESS} leaked in a message")

    monkeypatch.setattr("mailparity.providers.create_adapter", explode)
    assert_user_error(*run("test", "ms"), expected_code=1, contains="unexpected RuntimeError")


def test_store_that_cannot_be_opened(run: Cli) -> None:
    code, out, err = main_with_store(run, str(run.tmp_path / "missing" / "dir" / "x.sqlite3"))
    assert_user_error(code, out, err, expected_code=1, contains="StoreError")


def main_with_store(run: Cli, store: str) -> tuple[int, str, str]:
    run.capsys.readouterr()
    code = main(["--store", store, "providers", "list"])
    out, err = run.capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------- connect microsoft


DEVICE_MESSAGE = "To sign in, open https://microsoft.com/devicelogin and enter ABCD-EFGH."


class FakePublicClient:
    """Stands in for msal.PublicClientApplication (the device flow needs a person)."""

    instances: list[FakePublicClient] = []
    result: dict[str, Any] = {}
    flow: dict[str, Any] = {}

    def __init__(self, client_id: str, **kwargs: Any) -> None:
        self.client_id = client_id
        self.kwargs = kwargs
        self.scopes: list[str] | None = None
        FakePublicClient.instances.append(self)

    def initiate_device_flow(self, scopes: list[str]) -> dict[str, Any]:
        self.scopes = scopes
        return dict(self.flow)

    def acquire_token_by_device_flow(self, flow: dict[str, Any]) -> dict[str, Any]:
        assert flow["user_code"] == "ABCD-EFGH"
        return dict(self.result)


@pytest.fixture
def msal_fake(monkeypatch: pytest.MonkeyPatch) -> type[FakePublicClient]:
    import msal

    FakePublicClient.instances = []
    FakePublicClient.flow = {
        "user_code": "ABCD-EFGH", "device_code": "dc",
        "message": DEVICE_MESSAGE,
    }
    FakePublicClient.result = {
        "access_token": ACCESS, "refresh_token": REFRESH, "expires_in": "3599",
        "id_token_claims": {"preferred_username": MAILBOX},
    }
    monkeypatch.setattr(msal, "PublicClientApplication", FakePublicClient)
    return FakePublicClient


def test_connect_microsoft_stores_provider_and_tokens(
    run: Cli, msal_fake: type[FakePublicClient]
) -> None:
    before = datetime.now(timezone.utc)
    code, out, err = run("connect", "microsoft", "--client-id", "client-1", "--id", "ms",
                         "--authority-tenant", "organizations", "--tenant", "acme",
                         "--webhook-url", "https://hooks.example.com/graph")
    assert code == 0, err
    assert f"connected {MAILBOX} as provider ms" in out
    assert "devicelogin" in err  # the sign-in instructions go to stderr
    app = msal_fake.instances[0]
    assert app.client_id == "client-1"
    assert app.kwargs["authority"] == "https://login.microsoftonline.com/organizations"
    assert app.scopes == ["Mail.ReadWrite", "User.Read"]
    with run.store() as store:
        config = store.get_provider("ms")
        assert isinstance(config, MicrosoftProviderConfig)
        assert (config.mailbox, config.tenant, config.client_id, config.authority_tenant) == (
            MAILBOX, "acme", "client-1", "organizations")
        assert config.webhook_notification_url == "https://hooks.example.com/graph"
        tokens = store.load_tokens("ms")
        assert tokens is not None
        assert tokens.access_token.get_secret_value() == ACCESS
        assert tokens.refresh_token is not None
        assert tokens.refresh_token.get_secret_value() == REFRESH
        assert before + timedelta(seconds=3590) <= tokens.expires_at
        assert tokens.expires_at <= datetime.now(timezone.utc) + timedelta(seconds=3600)
    assert all(secret not in out + err for secret in SECRETS)


def test_connect_microsoft_env_client_id_and_generated_id(
    run: Cli, msal_fake: type[FakePublicClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROSOFT_CLIENT_ID", "env-client")
    code, out, _ = run("connect", "microsoft")
    assert code == 0
    provider_id = out.strip().rsplit(" ", 1)[-1]
    assert provider_id.startswith("microsoft-")
    assert msal_fake.instances[0].client_id == "env-client"


def test_connect_microsoft_reconnects_an_existing_mailbox(
    run: Cli, msal_fake: type[FakePublicClient]
) -> None:
    run.add(graph_config("ms", webhook_subscription_id="sub-1", needs_consent=True,
                         auth_error_code="invalid_grant"))
    code, out, _ = run("connect", "microsoft", "--client-id", "client-1")
    assert code == 0
    assert f"reconnected {MAILBOX} as provider ms" in out
    with run.store() as store:
        assert [c.provider_id for c in store.list_providers()] == ["ms"]
        config = store.get_provider("ms")
        assert config.needs_consent is False
        assert config.auth_error_code is None
        assert config.webhook_subscription_id == "sub-1"  # kept
        assert config.webhook_notification_url == "https://hooks.example.com/graph"


def test_connect_microsoft_sign_in_failure(run: Cli, msal_fake: type[FakePublicClient]) -> None:
    msal_fake.result = {"error": "authorization_declined",
                        "error_description": "AADSTS70000: The user declined.\nTrace ID: x"}
    assert_user_error(*run("connect", "microsoft", "--client-id", "c"), after=DEVICE_MESSAGE,
                      contains="authorization_declined: AADSTS70000: The user declined.")
    with run.store() as store:
        assert store.list_providers() == []


def test_connect_microsoft_flow_cannot_start(run: Cli,
                                             msal_fake: type[FakePublicClient]) -> None:
    msal_fake.flow = {"error": "invalid_client", "error_description": "AADSTS7000218: bad\nx"}
    assert_user_error(*run("connect", "microsoft", "--client-id", "c"),
                      contains="could not start: AADSTS7000218: bad")


def test_connect_microsoft_needs_a_mailbox(run: Cli, msal_fake: type[FakePublicClient]) -> None:
    msal_fake.result = {"access_token": ACCESS, "expires_in": 3600}
    assert_user_error(*run("connect", "microsoft", "--client-id", "c"), after=DEVICE_MESSAGE,
                      contains="--mailbox")
    code, out, err = run("connect", "microsoft", "--client-id", "c", "--mailbox", "x@y.com")
    assert code == 0
    assert "connected x@y.com" in out
    assert "no refresh token" in err


def test_connect_microsoft_with_msal_over_responses(run: Cli, rsps: Any) -> None:
    """The real msal against mocked login endpoints: discovery and the device-code start."""
    login = "https://login.microsoftonline.com/common"
    rsps.get(f"{login}/v2.0/.well-known/openid-configuration", json={
        "authorization_endpoint": f"{login}/oauth2/v2.0/authorize",
        "token_endpoint": f"{login}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{login}/oauth2/v2.0/devicecode",
        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
    })
    rsps.post(f"{login}/oauth2/v2.0/devicecode", status=400, json={
        "error": "unauthorized_client",
        "error_description": "AADSTS700016: Application not found.\r\nTrace ID: 1"})
    assert_user_error(*run("connect", "microsoft", "--client-id", "c"),
                      contains="AADSTS700016: Application not found.")


# ---------------------------------------------------------------------------- connect google


class FakeCreds:
    def __init__(self, token: str | None, refresh: str | None, expiry: datetime | None) -> None:
        self.token = token
        self.refresh_token = refresh
        self.expiry = expiry


class FakeFlow:
    config: dict[str, Any] = {}
    scopes: list[str] = []
    kwargs: dict[str, Any] = {}
    creds = FakeCreds(None, None, None)
    error: BaseException | None = None

    @classmethod
    def from_client_config(cls, config: dict[str, Any], scopes: list[str]) -> FakeFlow:
        cls.config, cls.scopes = config, scopes
        return cls()

    def run_local_server(self, **kwargs: Any) -> FakeCreds:
        FakeFlow.kwargs = kwargs
        if FakeFlow.error is not None:
            raise FakeFlow.error
        return FakeFlow.creds


@pytest.fixture
def google_fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeFlow]:
    import google_auth_oauthlib.flow

    FakeFlow.creds = FakeCreds(ACCESS, REFRESH, datetime(2030, 1, 1, 10, 0))  # naive UTC
    FakeFlow.error = None
    monkeypatch.setattr(google_auth_oauthlib.flow, "InstalledAppFlow", FakeFlow)
    return FakeFlow


def test_connect_google_stores_provider_and_tokens(
    run: Cli, rsps: Any, google_fake: type[FakeFlow]
) -> None:
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "Help@Example.com", "historyId": "9"})
    code, out, err = run("connect", "google", "--client-id", "gclient", "--client-secret",
                         CLIENT_SECRET, "--id", "g", "--project-id", "proj", "--topic", "mail",
                         "--subscription", "mail-push", "--no-browser", "--port", "8085")
    assert code == 0, err
    assert "connected Help@Example.com as provider g" in out
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert google_fake.kwargs["prompt"] == "consent"
    assert google_fake.kwargs["access_type"] == "offline"
    assert (google_fake.kwargs["port"], google_fake.kwargs["open_browser"]) == (8085, False)
    assert google_fake.config["installed"]["client_id"] == "gclient"
    assert google_fake.scopes == ["https://www.googleapis.com/auth/gmail.modify"]
    with run.store() as store:
        config = store.get_provider("g")
        assert isinstance(config, GmailProviderConfig)
        assert (config.mailbox, config.project_id, config.topic_path) == (
            "Help@Example.com", "proj", "projects/proj/topics/mail")
        assert config.pubsub_subscription_name == "mail-push"
        assert config.client_secret is not None
        assert config.client_secret.get_secret_value() == CLIENT_SECRET
        tokens = store.load_tokens("g")
        assert tokens is not None
        assert tokens.expires_at == datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)
        assert tokens.refresh_token is not None
        assert tokens.refresh_token.get_secret_value() == REFRESH
    assert all(secret not in out + err for secret in SECRETS)


def test_connect_google_profile_failure(run: Cli, rsps: Any, google_fake: type[FakeFlow]) -> None:
    rsps.get(f"{GMAIL}/profile", status=403, json={"error": {
        "code": 403, "message": "Gmail API has not been used in project 1",
        "status": "PERMISSION_DENIED",
        "errors": [{"reason": "accessNotConfigured", "message": "not used"}]}})
    assert_user_error(*run("connect", "google", "--client-id", "c", "--client-secret", "s"),
                      contains="could not read the Gmail profile")
    with run.store() as store:
        assert store.list_providers() == []


def test_connect_google_profile_is_retried_through_the_http_layer(
    run: Cli, rsps: Any, google_fake: type[FakeFlow], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(cli.time, "sleep", waits.append)
    rsps.get(f"{GMAIL}/profile", status=503, headers={"Retry-After": "2"})
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "help@example.com"})
    code, out, _ = run("connect", "google", "--client-id", "c", "--client-secret", "s")
    assert code == 0
    assert "connected help@example.com" in out
    assert waits == [2.0]


def test_connect_google_mailbox_mismatch(run: Cli, rsps: Any,
                                         google_fake: type[FakeFlow]) -> None:
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "someone@example.com"})
    assert_user_error(*run("connect", "google", "--client-id", "c", "--client-secret", "s",
                           "--mailbox", "help@example.com"),
                      contains="signed in as someone@example.com, not help@example.com")


def test_connect_google_sign_in_refused(run: Cli, google_fake: type[FakeFlow]) -> None:
    class AccessDeniedError(Exception):
        error = "access_denied"

    google_fake.error = AccessDeniedError("(access_denied) https://x/?code=" + ACCESS)
    assert_user_error(*run("connect", "google", "--client-id", "c", "--client-secret", "s"),
                      contains="Google sign-in failed: access_denied")


def test_connect_google_without_expiry_or_refresh_token(
    run: Cli, rsps: Any, google_fake: type[FakeFlow]
) -> None:
    google_fake.creds = FakeCreds(ACCESS, None, None)
    rsps.get(f"{GMAIL}/profile", json={"emailAddress": "help@example.com"})
    before = datetime.now(timezone.utc)
    code, out, err = run("connect", "google", "--client-id", "c", "--client-secret", "s")
    assert code == 0
    assert "no refresh token" in err
    provider_id = out.strip().rsplit(" ", 1)[-1]
    with run.store() as store:
        tokens = store.load_tokens(provider_id)
        assert tokens is not None
        assert tokens.refresh_token is None
        assert before + timedelta(minutes=54) <= tokens.expires_at
        assert tokens.expires_at <= datetime.now(timezone.utc) + timedelta(minutes=56)


# ---------------------------------------------------------------------------- serve / worker


def test_serve_wiring(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity.webhooks import WebhookHandler
    from mailparity.wsgi import ServerLimits

    calls: list[tuple[Any, str, int, ServerLimits]] = []
    monkeypatch.setattr("mailparity.wsgi.serve", lambda *a: pytest.fail("not the dev server"))

    def production(handler: Any, host: str, port: int, *, limits: ServerLimits,
                   ready: Callable[[str], None]) -> None:
        ready(f"http://{host}:{port}")
        calls.append((handler, host, port, limits))

    monkeypatch.setattr("mailparity.wsgi.serve_production", production)
    code, _, err = run("serve", "--host", "10.1.2.3", "--port", "9000", "--google-audience",
                       "https://hooks.example.com/google", "--google-service-account",
                       "push@proj.iam.gserviceaccount.com")
    assert code == 0
    assert "http://10.1.2.3:9000 (waitress: 8 threads" in err
    ((handler, host, port, limits),) = calls
    assert isinstance(handler, WebhookHandler)
    assert (host, port) == ("10.1.2.3", 9000)
    assert limits == ServerLimits()
    assert (handler.max_body_bytes, handler.max_notification_items) == (1_000_000, 1000)


def test_serve_limits_from_the_command_line(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity.wsgi import ServerLimits

    calls: list[tuple[Any, ServerLimits]] = []
    monkeypatch.setattr(
        "mailparity.wsgi.serve_production",
        lambda handler, host, port, *, limits, ready: calls.append((handler, limits)),
    )
    code, _, err = run("serve", "--threads", "3", "--connection-limit", "50", "--read-timeout",
                       "7", "--max-body-bytes", "5000", "--max-notification-items", "20")
    assert code == 0, err
    ((handler, limits),) = calls
    assert (limits.threads, limits.connection_limit, limits.read_timeout) == (3, 50, 7)
    assert (handler.max_body_bytes, handler.max_notification_items) == (5000, 20)
    assert_user_error(*run("serve", "--threads", "0"), contains="--threads: 0 must be 1 or more")


def test_serve_dev_server_is_the_builtin_one(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr("mailparity.wsgi.serve_production",
                        lambda *a, **k: pytest.fail("not the production server"))
    monkeypatch.setattr("mailparity.wsgi.serve",
                        lambda handler, host, port: calls.append((host, port)))
    code, _, err = run("serve", "--dev-server")
    assert code == 0
    assert "tests and demos only" in err
    assert calls == [("127.0.0.1", 8080)]


def test_serve_without_waitress_says_what_to_install(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_waitress(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "waitress":
            raise ImportError("No module named 'waitress'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_waitress)
    assert_user_error(*run("serve"),
                      contains="mailparity[server] (in a checkout: pip install '.[server]'")


def test_serve_with_inconsistent_google_settings(run: Cli,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mailparity.wsgi.serve", lambda *a: pytest.fail("must not serve"))
    monkeypatch.setattr("mailparity.wsgi.serve_production",
                        lambda *a, **k: pytest.fail("must not serve"))
    assert_user_error(*run("serve", "--google-audience", "aud"), contains="ConfigurationError")


def test_worker_wiring(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity.worker import Worker

    seen: list[Worker] = []
    def fake_run(self: Worker) -> None:
        seen.append(self)

    monkeypatch.setattr(Worker, "run", fake_run)
    code, _, _ = run("worker", "--threads", "3")
    assert code == 0
    assert len(seen) == 1
    assert seen[0].threads == 3
    assert isinstance(seen[0].processor.store, SqliteStore)


def test_worker_interrupted(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity.worker import Worker

    def interrupted(self: Worker) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Worker, "run", interrupted)
    assert run("worker")[0] == 130


# ---------------------------------------------------------------------------- db / demo


def test_db_upgrade(run: Cli) -> None:
    url = f"sqlite:///{run.tmp_path / 'sql.db'}"
    code, out, _ = run("db", "upgrade", "--url", url)
    assert code == 0
    assert out.startswith("database at schema version ")
    assert int(out.strip().rsplit(" ", 1)[-1]) >= 1


def test_demo_wiring(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("mailparity.demo")
    fake.run_demo = lambda **kwargs: calls.append(kwargs) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mailparity.demo", fake)
    code, _, _ = run("demo", "--output", str(run.tmp_path / "out"))
    assert code == 0
    assert calls == [{"output_dir": run.tmp_path / "out", "verbose": False}]


# ---------------------------------------------------------------------------- connection events


def test_connect_publishes_connected_then_reauthorized(
    run: Cli, msal_fake: type[FakePublicClient]
) -> None:
    from mailparity.publishers import JsonlFilePublisher

    assert run("connect", "microsoft", "--client-id", "client-1", "--id", "ms")[0] == 0
    with run.store() as store:
        store.update_provider("ms", {"needs_consent": True, "auth_error_code": "invalid_grant"})
    assert run("connect", "microsoft", "--client-id", "client-1")[0] == 0
    events = JsonlFilePublisher.read(run.events)
    assert [e["eventType"] for e in events] == [
        "EMAIL_PROVIDER_CONNECTED", "EMAIL_PROVIDER_REAUTHORIZED"]
    assert events[0]["providerId"] == events[1]["providerId"] == "ms"
    assert events[0]["mailbox"] == MAILBOX
    assert events[1]["neededConsent"] is True
    assert all(secret not in json.dumps(events) for secret in SECRETS)


def test_connect_warns_when_the_event_cannot_be_published(
    run: Cli, msal_fake: type[FakePublicClient]
) -> None:
    run.events.mkdir()  # a directory: appending to it fails
    code, out, err = run("connect", "microsoft", "--client-id", "client-1", "--id", "ms")
    assert code == 0
    assert "connected" in out
    assert "the connection event was not published" in err
    with run.store() as store:
        assert store.get_provider("ms") is not None
