"""The Django app: the MAILPARITY setting, the App accessor, the signals publisher."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mailparity.errors import PublishError
from mailparity.mime import message_from_mime
from mailparity.models import EmailProviderAuthFailed, InboundEmailReceived
from mailparity.publishers import InMemoryPublisher
from mailparity.testing import build_message

django_support = pytest.importorskip("django_support")
django_support.configure()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import override_settings  # noqa: E402

from mailparity.contrib.django import conf, signals  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    conf.reset()
    yield
    conf.reset()


# ------------------------------------------------------------------------------ settings


def test_defaults_without_a_setting() -> None:
    parsed = conf.parse_settings(None)
    assert parsed.store == "django"
    assert parsed.database == "default"
    assert parsed.publisher is None
    assert parsed.retention is not None
    assert parsed.retention.dedupe == timedelta(days=45)
    assert parsed.require_worker is True


def test_every_key_is_read() -> None:
    parsed = conf.parse_settings(
        {
            "STORE": "memory",
            "PUBLISHER": "mailparity.publishers.InMemoryPublisher",
            "SECRETS": "helpdesk.secrets.Secrets",
            "PUSH": {"max_body_bytes": 1000},
            "PROCESSOR": {"retry_cap": 3},
            "RENEWAL": {"lock_seconds": 60},
            "RETENTION": {"dedupe_days": 60, "dead_jobs_days": 7.5},
            "WORKER": {"threads": 2},
            "HEALTH": {"require_worker": False, "heartbeat_max_age_seconds": 90},
        }
    )
    assert parsed.store == "memory"
    assert parsed.push == {"max_body_bytes": 1000}
    assert parsed.processor == {"retry_cap": 3}
    assert parsed.retention is not None
    assert parsed.retention.dedupe == timedelta(days=60)
    assert parsed.retention.dead_jobs == timedelta(days=7.5)
    assert parsed.retention.done_jobs == timedelta(days=7)
    assert parsed.worker == {"threads": 2}
    assert parsed.require_worker is False
    assert parsed.heartbeat_max_age == timedelta(seconds=90)
    assert conf.parse_settings({"RETENTION": None}).retention is None
    connect = conf.parse_settings(
        {
            "CONNECT": {
                "REDIRECT_URI": "https://help.example/mail/connect/callback",
                "PROVIDERS": {"google": {"client_id": "c", "client_secret": "s"}},
                "OWNER": "helpdesk.auth.tenant_of",
                "STATE_TTL_SECONDS": 300,
                "SUBSCRIBE": False,
            }
        }
    ).connect
    assert connect.redirect_uri == "https://help.example/mail/connect/callback"
    assert connect.providers == {"google": {"client_id": "c", "client_secret": "s"}}
    assert connect.owner == "helpdesk.auth.tenant_of"
    assert connect.on_connected is None
    assert connect.state_ttl == timedelta(minutes=5)
    assert connect.subscribe is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "MAILPARITY must be a dict"),
        ({"STROE": "django"}, r"unknown keys \['STROE'\]"),
        ({"STORE": "redis"}, r"MAILPARITY\['STORE'\] is 'redis'"),
        ({"DATABASE": "other"}, r"MAILPARITY\['DATABASE'\] is 'other', which is not in"),
        ({"PUBLISHER": "print"}, r"MAILPARITY\['PUBLISHER'\] is 'print', not a dotted path"),
        ({"PUSH": ["google_audience"]}, r"MAILPARITY\['PUSH'\] is a list"),
        ({"PUSH": {"max-body": 1}}, "not option names"),
        ({"RETENTION": {"dedupe": 45}}, r"MAILPARITY\['RETENTION'\] has unknown keys"),
        ({"RETENTION": {"dedupe_days": "45"}}, "not a number of days"),
        ({"RETENTION": {"dedupe_days": 0}}, "not a positive number of days"),
        ({"WORKER": {"threads": 0}}, r"\['threads'\] is 0"),
        ({"HEALTH": {"require_worker": "no"}}, r"\['require_worker'\] is 'no'"),
        ({"HEALTH": {"heartbeat_max_age_seconds": -1}}, "not a positive number"),
        ({"CONNECT": {"REDIRECT": "x"}}, r"MAILPARITY\['CONNECT'\] has unknown keys"),
        ({"CONNECT": {"REDIRECT_URI": "/mail/cb"}}, "not an http"),
        ({"CONNECT": {"PROVIDERS": {"google": "id"}}}, "not a dict of provider key"),
        ({"CONNECT": {"OWNER": "owner"}}, r"\['OWNER'\] is 'owner', not a dotted path"),
        ({"CONNECT": {"STATE_TTL_SECONDS": 0}}, "STATE_TTL_SECONDS"),
        ({"CONNECT": {"SUBSCRIBE": "yes"}}, "SUBSCRIBE"),
    ],
)
def test_a_wrong_setting_is_improperly_configured(value: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.parse_settings(value)


def test_the_app_config_checks_the_setting_at_start_up() -> None:
    from django.apps import apps

    config = apps.get_app_config("mailparity")
    assert config.name == "mailparity.contrib.django"
    with (
        override_settings(MAILPARITY={"STORE": 42}),
        pytest.raises(ImproperlyConfigured, match="STORE"),
    ):
        config.ready()


# ------------------------------------------------------------------------------ the App


def test_get_app_builds_one_app_from_the_setting() -> None:
    from mailparity.contrib.django.store import DjangoStore

    django_support.migrated("default")
    app = conf.get_app()
    assert app is conf.get_app()
    assert isinstance(app.store, DjangoStore)
    assert conf.get_store() is app.store
    assert isinstance(app.publisher, signals.SignalPublisher)
    assert app.renewal_options["retention"] == conf.mailparity_settings().retention


def test_get_app_follows_override_settings() -> None:
    with override_settings(
        MAILPARITY={
            "STORE": "memory",
            "PUBLISHER": "mailparity.publishers.InMemoryPublisher",
            "PROCESSOR": {"retry_cap": 3},
            "RETENTION": None,
        }
    ):
        app = conf.get_app()
        assert type(app.store).__name__ == "InMemoryStore"
        assert isinstance(app.publisher, InMemoryPublisher)
        assert app.processor_options == {"retry_cap": 3}
        assert app.renewal_options["retention"] is None
    assert conf.get_app() is not app  # the setting changed back: built again


def test_a_publisher_path_that_is_not_a_publisher_is_refused() -> None:
    with (
        override_settings(MAILPARITY={"STORE": "memory", "PUBLISHER": "builtins.print"}),
        pytest.raises(ImproperlyConfigured, match=r"PUBLISHER.*EventPublisher"),
    ):
        conf.get_app()
    with (
        override_settings(MAILPARITY={"STORE": "memory", "PUBLISHER": "no.such.Module"}),
        pytest.raises(ImproperlyConfigured, match=r"PUBLISHER'\] cannot be imported"),
    ):
        conf.get_app()


def test_build_app_takes_injected_parts() -> None:
    publisher = InMemoryPublisher()
    app = conf.build_app(conf.parse_settings({"STORE": "memory"}), publisher=publisher)
    assert app.publisher is publisher


# ------------------------------------------------------------------------------ signals


def _email_event() -> InboundEmailReceived:
    raw = build_message(
        from_="a@example.com", to="help@example.com", subject="Printer on fire", text="Help"
    )
    message = message_from_mime(
        raw, id="m1", provider="google", provider_id="p", tenant="t",
        mailbox="help@example.com", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    return InboundEmailReceived.for_message(message).model_copy(update={"event_id": "ev-1"})


def _auth_event() -> EmailProviderAuthFailed:
    return EmailProviderAuthFailed(
        event_id="ev-2", tenant_id="t", provider_id="p", provider="microsoft",
        mailbox="help@example.com", error="invalid_grant",
        occurred_at=_email_event().occurred_at,
    )


def test_signal_publisher_sends_the_signal_of_each_kind() -> None:
    received: list[tuple[str, Any, Any]] = []

    def on_email(sender: Any, event: Any, **kwargs: Any) -> None:
        received.append(("email", sender, event))

    def on_auth(sender: Any, event: Any, **kwargs: Any) -> None:
        received.append(("auth", sender, event))

    def on_any(sender: Any, event: Any, **kwargs: Any) -> None:
        received.append(("any", sender, event))

    signals.inbound_email_received.connect(on_email)
    signals.auth_failed.connect(on_auth)
    signals.mailparity_event.connect(on_any)
    try:
        publisher = signals.SignalPublisher()
        email, auth = _email_event(), _auth_event()
        publisher.publish(email)
        publisher.publish(auth)
    finally:
        signals.inbound_email_received.disconnect(on_email)
        signals.auth_failed.disconnect(on_auth)
        signals.mailparity_event.disconnect(on_any)
    assert [(kind, event.event_id) for kind, _, event in received] == [
        ("email", "ev-1"), ("any", "ev-1"), ("auth", "ev-2"), ("any", "ev-2"),
    ]
    assert received[0][1] is type(email)
    assert received[2][2].error == "invalid_grant"


def test_a_failing_receiver_fails_the_publish_without_quoting_it() -> None:
    def broken(sender: Any, event: Any, **kwargs: Any) -> None:
        raise ValueError(f"cannot file {event.email_data.subject}")

    signals.inbound_email_received.connect(broken)
    try:
        with pytest.raises(PublishError, match="ValueError") as caught:
            signals.SignalPublisher().publish(_email_event())
    finally:
        signals.inbound_email_received.disconnect(broken)
    assert "Printer" not in str(caught.value)


# ------------------------------------------------------------------------------ attachments


def _message_and_attachment(name: str = "../../etc/passwd") -> tuple[Any, Any]:
    raw = build_message(
        from_="a@example.com", to="help@example.com", subject="Logs", text="see attached",
        attachments=[(name, b"E-204\n")],
    )
    message = message_from_mime(
        raw, id="m1", provider="google", provider_id="p-1", tenant="t",
        mailbox="help@example.com", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    return message, message.attachments[0]


def test_storage_attachment_store_saves_replaces_and_keeps_names_safe(tmp_path: Any) -> None:
    from mailparity.contrib.django.attachments import StorageAttachmentStore

    with override_settings(MEDIA_ROOT=str(tmp_path)):
        store = StorageAttachmentStore()
        message, attachment = _message_and_attachment()
        reference = store.save(message, attachment, [b"E-2", b"04\n"])
        assert reference == store.reference_for(message, attachment)
        assert reference.startswith("mailparity/attachments/")
        assert reference.endswith("-passwd")  # the name's folders are gone
        assert ".." not in reference
        with store.open(reference) as saved:
            assert saved.read() == b"E-204\n"
        # A retried job saves again: the file is replaced, not duplicated.
        assert store.save(message, attachment, [b"again"]) == reference
        with store.open(reference) as saved:
            assert saved.read() == b"again"
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(files) == 1


def test_storage_attachment_store_keeps_nothing_of_a_failed_download(tmp_path: Any) -> None:
    from mailparity.contrib.django.attachments import StorageAttachmentStore

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise OSError("the provider hung up")

    with override_settings(MEDIA_ROOT=str(tmp_path)):
        store = StorageAttachmentStore(prefix="")
        message, attachment = _message_and_attachment("report.pdf")
        with pytest.raises(OSError, match="hung up"):
            store.save(message, attachment, broken())
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]
        assert store.save(message, attachment, [b"%PDF"]).endswith("-report.pdf")


def test_the_attachments_setting_reaches_the_processor() -> None:
    from mailparity.contrib.django.attachments import StorageAttachmentStore

    setting = {
        "STORE": "memory",
        "ATTACHMENTS": {
            "STORE": "mailparity.contrib.django.attachments.StorageAttachmentStore",
            "MAX_BYTES": 1000,
        },
    }
    with override_settings(MAILPARITY=setting):
        options = conf.get_app().processor_options
    assert isinstance(options["attachment_store"], StorageAttachmentStore)
    assert options["attachment_max_bytes"] == 1000
    for bad, message in (
        ({"STORE": "x"}, r"\['STORE'\] is 'x'"),
        ({"MAX_BYTES": 0}, "MAX_BYTES"),
        ({"MAXBYTES": 1}, "unknown keys"),
    ):
        with pytest.raises(ImproperlyConfigured, match=message):
            conf.parse_settings({"ATTACHMENTS": bad})


# ------------------------------------------------------------------------------ system checks


def test_sqlite_settings_are_checked() -> None:
    import django

    from mailparity.contrib.django.checks import sqlite_warnings

    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}
    ids = [warning.id for warning in sqlite_warnings("default", sqlite)]
    expected = ["mailparity.W001"] + (["mailparity.W002"] if django.VERSION >= (5, 1) else [])
    assert ids == expected
    tuned = {**sqlite, "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"}}
    assert sqlite_warnings("default", tuned) == []
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "helpdesk"}
    assert sqlite_warnings("default", postgres) == []


def test_manage_py_check_runs_the_checks() -> None:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    # The test database has a timeout and no IMMEDIATE mode: W002 is shown (on Django 5.1+).
    call_command("check", stdout=out, stderr=out)
    import django

    assert ("mailparity.W002" in out.getvalue()) == (django.VERSION >= (5, 1))
    assert "mailparity.W001" not in out.getvalue()
    with override_settings(MAILPARITY={"STORE": "memory"}):
        from mailparity.contrib.django.checks import check_sqlite_database

        assert check_sqlite_database() == []
