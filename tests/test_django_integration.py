"""The Django app end to end on the ORM store: pushes through the app's URLs, the management
commands, the signals, the health endpoints and the admin, against FakeGraph and FakeGmail."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import responses

from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    build_message,
    connect_google,
    connect_microsoft,
    gmail_push_request,
    graph_notification_request,
)
from mailparity.testing.connect import PUSH_SERVICE_ACCOUNT, TEST_AUDIENCE
from mailparity.webhooks import WebhookRequest

django_support = pytest.importorskip("django_support")
django_support.configure()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from mailparity.contrib.django import conf, signals  # noqa: E402
from mailparity.contrib.django.store import DjangoStore  # noqa: E402

RAW = build_message(
    from_=("Zoë Ångström", "zoe@customer.example"),
    to=["support@contoso.test", "help@example.test"],
    subject="Drucker druckt nicht",
    text="Seit heute früh nur leere Seiten.",
    attachments=[("log.txt", b"E-204\n")],
)


class Env:
    """What a test gets: the fakes, the store, the events the signals carried, the sleeps."""

    def __init__(self, graph: FakeGraph, gmail: FakeGmail, store: DjangoStore) -> None:
        self.graph = graph
        self.gmail = gmail
        self.store = store
        self.events: list[Any] = []
        self.sleeps: list[float] = []
        self.client = Client(enforce_csrf_checks=True)

    def post(self, path: str, request: WebhookRequest) -> Any:
        url = path + (f"?{urlencode(request.query)}" if request.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        return self.client.post(
            url,
            data=request.body,
            content_type=request.headers.get("Content-Type", "application/json"),
            headers=headers,
        )


def _environment(alias: str, tmp_path: Any) -> Iterator[Env]:
    django_support.migrated(alias)
    django_support.clear_tables(alias)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        graph, gmail = FakeGraph(), FakeGmail()
        graph.register(mock)
        gmail.register(mock)
        setting = {
            "PUSH": {
                "google_audience": TEST_AUDIENCE,
                "google_service_accounts": [PUSH_SERVICE_ACCOUNT],
                "google_certs_url": gmail.certs_url,
            },
            "WORKER": {"threads": 2, "poll_interval": 0.001},
            "ATTACHMENTS": {
                "STORE": "mailparity.contrib.django.attachments.StorageAttachmentStore"
            },
        }
        with override_settings(MAILPARITY=setting, MEDIA_ROOT=str(tmp_path)):
            store = DjangoStore(alias)
            environment = Env(graph, gmail, store)
            # The App of the settings, with waiting recorded instead of done.
            conf.reset(conf.build_app(store=store, sleep=environment.sleeps.append))

            def receive(sender: Any, event: Any, **kwargs: Any) -> None:
                environment.events.append(event)

            signals.mailparity_event.connect(receive)
            try:
                yield environment
            finally:
                signals.mailparity_event.disconnect(receive)
                conf.reset()
    django_support.clear_tables(alias)


@pytest.fixture
def env(tmp_path: Any) -> Iterator[Env]:
    """The app on the ORM store on SQLite."""
    yield from _environment("default", tmp_path)


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def any_db_env(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Env]:
    """The app on the ORM store on SQLite, then on PostgreSQL (skipped without a server)."""
    yield from _environment(request.param, tmp_path)


def _run(command: str, *args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=out, **options)
    return out.getvalue()


# ------------------------------------------------------------------------------ pushes


def test_gmail_push_through_the_urls_then_the_worker_command_sends_the_signal(
    any_db_env: Env,
) -> None:
    env = any_db_env
    mailbox = connect_google(env.store, env.gmail)
    env.gmail.deliver(mailbox.mailbox, RAW)

    response = env.post("/mail/webhooks/google", gmail_push_request(env.gmail, mailbox.mailbox))
    assert response.status_code == 204
    assert env.events == []  # the push only stored a job

    output = _run("mailparity_worker", stop_after=1)
    assert "job(s) run" in output
    [event] = env.events
    assert event.event_type == "INBOUND_EMAIL_RECEIVED"
    assert event.email_data.subject == "Drucker druckt nicht"
    [attachment] = event.email_data.attachments
    assert attachment.name == "log.txt"
    # Saved through the attachment store (Django's storage) before the signal was sent.
    assert attachment.stored_as is not None
    from django.core.files.storage import default_storage

    with default_storage.open(attachment.stored_as, "rb") as saved:
        assert saved.read() == b"E-204\n"
    assert env.store.count_jobs() == 0


def test_graph_notification_through_the_urls_then_the_worker_runs_once(
    any_db_env: Env,
) -> None:
    env = any_db_env
    mailbox = connect_microsoft(env.store, env.graph)
    message_id = env.graph.deliver(mailbox.mailbox, RAW)

    response = env.post(
        "/mail/webhooks/microsoft", graph_notification_request(env.graph, message_id)
    )
    assert response.status_code == 202
    _run("mailparity_worker", once=True, threads=1)
    [event] = env.events
    assert event.email_data.from_.email == "zoe@customer.example"
    assert event.provider_id == mailbox.provider_id
    assert event.email_data.attachments[0].stored_as is not None


def test_the_validation_handshake_and_a_forged_push_through_the_urls(env: Env) -> None:
    connect_microsoft(env.store, env.graph)
    response = env.client.post(
        "/mail/webhooks/microsoft?validationToken=abc%20def", data=b"", content_type="text/plain"
    )
    assert response.status_code == 200
    assert response.content == b"abc def"
    forged = env.client.post(
        "/mail/webhooks/google", data=b"{}", content_type="application/json",
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert forged.status_code in (401, 403)
    assert env.store.count_jobs() == 0


def test_names_reverse_in_the_namespace() -> None:
    from django.urls import reverse

    assert reverse("mailparity:google") == "/mail/webhooks/google"
    assert reverse("mailparity:microsoft") == "/mail/webhooks/microsoft"
    assert reverse("mailparity:readyz") == "/mail/readyz"


# ------------------------------------------------------------------------------ health


def test_readyz_follows_the_worker_heartbeat(env: Env) -> None:
    assert env.client.get("/mail/healthz").status_code == 200
    not_ready = env.client.get("/mail/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["worker"] == "no heartbeat recorded"
    _run("mailparity_worker", once=True)
    ready = env.client.get("/mail/readyz")
    assert ready.status_code == 200, ready.content
    assert ready.json() == {"checks": {"store": "ok", "worker": "ok"}, "status": "ok"}
    assert Client().post("/mail/readyz").status_code == 405


def test_readyz_without_a_worker_checks_the_store_only(env: Env) -> None:
    with override_settings(
        MAILPARITY={"HEALTH": {"require_worker": False}, "STORE": "memory"}
    ):
        ready = env.client.get("/mail/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": "ok"}


# ------------------------------------------------------------------------------ commands


def test_maintenance_once_and_in_a_loop_without_sleeping(env: Env) -> None:
    connect_google(env.store, env.gmail)
    connect_microsoft(env.store, env.graph)
    output = _run("mailparity_maintenance")
    assert "mailparity maintenance: renewed=" in output
    assert env.sleeps == []
    output = _run("mailparity_maintenance", loop=True, iterations=3, interval=5)
    assert output.count("mailparity maintenance:") == 3
    assert env.sleeps == [5, 5]


def test_maintenance_reports_a_failing_mailbox(env: Env) -> None:
    mailbox = connect_microsoft(env.store, env.graph)
    # Renewal due now, and the fake refuses it.
    env.store.update_provider(mailbox.provider_id, {"webhook_expires_at": None})
    env.graph.fail_next(5, status=400, retry_after=None, path="/subscriptions")
    with pytest.raises(CommandError, match=r"1 mailbox\(es\) failed"):
        _run("mailparity_maintenance", no_jobs=True)


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("mailparity_worker", {"threads": 0}, "--threads must be at least 1"),
        ("mailparity_worker", {"poll_interval": 0}, "--poll-interval"),
        ("mailparity_worker", {"stop_after": 0}, "--stop-after must be at least 1"),
        ("mailparity_maintenance", {"interval": -5}, "--interval must be a positive"),
        ("mailparity_maintenance", {"loop": True, "iterations": 0}, "--iterations"),
    ],
)
def test_command_options_are_checked(
    env: Env, command: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        _run(command, **options)


# ------------------------------------------------------------------------------ admin


def _secrets(env: Env) -> list[str]:
    values = []
    for config in env.store.list_providers():
        for name in ("client_secret", "webhook_verification_token", "service_account_info"):
            secret = getattr(config, name, None)
            if secret is not None:
                values.append(secret.get_secret_value())
        tokens = env.store.load_tokens(config.provider_id)
        assert tokens is not None
        values.append(tokens.access_token.get_secret_value())
        if tokens.refresh_token is not None:
            values.append(tokens.refresh_token.get_secret_value())
    assert len(values) >= 5
    return values


@pytest.fixture
def admin_client(env: Env) -> Iterator[Client]:
    from django.contrib.auth.models import User

    # force_login needs no password (hashing one is slow by design).
    user = User.objects.create(username="mp-admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    yield client
    user.delete()


def test_the_admin_lists_mailboxes_with_their_health_and_no_secret(
    env: Env, admin_client: Client
) -> None:
    google = connect_google(env.store, env.gmail)
    microsoft = connect_microsoft(env.store, env.graph)
    env.gmail.deliver(google.mailbox, RAW)
    env.post("/mail/webhooks/google", gmail_push_request(env.gmail, google.mailbox))
    _run("mailparity_worker", stop_after=1)
    env.store.update_provider(
        microsoft.provider_id, {"needs_consent": True, "auth_error_code": "invalid_grant"}
    )

    page = admin_client.get("/admin/mailparity/mailbox/")
    assert page.status_code == 200
    html = page.content.decode()
    assert google.mailbox in html
    assert microsoft.mailbox in html
    assert "needs consent (invalid_grant)" in html
    assert "Last push" in html
    assert "Subscription expires" in html
    assert html.count(" UTC") >= 4  # pushes, the event, both expiries
    for secret in _secrets(env):
        assert secret not in html

    detail = admin_client.get(f"/admin/mailparity/mailbox/{google.provider_id}/change/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert google.mailbox in body
    for secret in _secrets(env):
        assert secret not in body
    # Read-only: nothing to add, change or delete here.
    assert admin_client.get("/admin/mailparity/mailbox/add/").status_code == 403
    assert admin_client.post(
        f"/admin/mailparity/mailbox/{google.provider_id}/delete/", {"post": "yes"}
    ).status_code == 403
    assert env.store.get_provider(google.provider_id) is not None


def test_the_admin_lists_jobs(env: Env, admin_client: Client) -> None:
    google = connect_google(env.store, env.gmail)
    env.gmail.deliver(google.mailbox, RAW)
    env.post("/mail/webhooks/google", gmail_push_request(env.gmail, google.mailbox))
    page = admin_client.get("/admin/mailparity/job/")
    assert page.status_code == 200
    html = page.content.decode()
    assert google.provider_id in html
    assert "pending" in html


def test_the_admin_retries_a_dead_job_and_buries_a_pending_one(
    env: Env, admin_client: Client
) -> None:
    from datetime import datetime, timezone

    from mailparity.models import Job

    now = datetime.now(timezone.utc)
    for job_id in ("dead-1", "pending-1"):
        env.store.enqueue_job(Job(id=job_id, kind="sync", provider_id="p", payload={},
                                  available_at=now, created_at=now))
    env.store.claim_jobs("w", limit=1, now=now, lease_until=now, kinds=["sync"],
                         provider_ids=["p"])
    env.store.bury_job("dead-1", error="poison")
    assert {j.id: j.status for j in env.store.list_jobs()} == {
        "dead-1": "dead", "pending-1": "pending",
    }

    retried = admin_client.post(
        "/admin/mailparity/job/", {"action": "retry_jobs", "_selected_action": ["dead-1"]}
    )
    assert retried.status_code == 302
    jobs = env.store.list_jobs()
    assert "dead-1" not in {j.id for j in jobs}  # a fresh copy replaced it
    assert sorted(j.status for j in jobs) == ["pending", "pending"]

    buried = admin_client.post(
        "/admin/mailparity/job/",
        {"action": "bury_jobs", "_selected_action": ["pending-1"]},
        follow=True,
    )
    assert "1 job(s) buried." in buried.content.decode()
    [dead] = env.store.list_jobs(status="dead")
    assert dead.id == "pending-1"
    assert dead.last_error == "buried by an operator: from the admin by mp-admin"
    # Burying it again is refused with the reason, nothing changes.
    again = admin_client.post(
        "/admin/mailparity/job/",
        {"action": "bury_jobs", "_selected_action": ["pending-1"]},
        follow=True,
    )
    assert "only pending jobs are buried" in again.content.decode()


def test_job_actions_need_the_change_permission(env: Env) -> None:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create(username="viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    try:
        client = Client()
        client.force_login(user)
        page = client.get("/admin/mailparity/job/")
        assert page.status_code == 200
        assert "retry_jobs" not in page.content.decode()
    finally:
        user.delete()
