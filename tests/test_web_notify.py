"""``notify=`` of the Flask, FastAPI and Django integrations: with the Celery integration, an
accepted push sends ``mailparity.process_jobs`` and the event goes out without anything else
running the jobs. Celery's messages are executed locally (``Task.apply``, eager), in place of a
broker and a worker; ``test_celery_e2e.py`` covers the real ones."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mailparity import InMemoryPublisher, InMemoryStore, MicrosoftProviderConfig, WebhookHandler
from mailparity.testing import FakeGraph, build_message, graph_notification_request
from mailparity.webhooks import WebhookRequest, WebhookResponse, notify_hook

celery = pytest.importorskip("celery")
from mailparity.contrib.celery import PROCESS_TASK, MailParityCelery, configure  # noqa: E402

RAW = build_message(from_="customer@example.com", to="support@contoso.test",
                    subject="Printer on fire", text="Please help.")


class EagerCelery:
    """The Celery integration on an app whose messages run at once, in this process."""

    def __init__(self, store: Any, publisher: InMemoryPublisher) -> None:
        self.app = celery.Celery("web-notify", broker="memory://", set_as_current=False)
        self.integration: MailParityCelery = configure(
            self.app, store_factory=lambda: store, publisher_factory=lambda: publisher,
        )
        self.sent: list[str] = []
        self.app.send_task = self.send_task  # type: ignore[method-assign]

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append(name)
        assert name == PROCESS_TASK
        # What a worker does with the message, here and now.
        self.integration.process_task.apply()


@pytest.fixture
def events() -> InMemoryPublisher:
    """Where the Celery worker publishes (the web handler's own publisher stays empty)."""
    return InMemoryPublisher()


@pytest.fixture
def eager(mailparity_store: InMemoryStore, events: InMemoryPublisher) -> Iterator[EagerCelery]:
    runner = EagerCelery(mailparity_store, events)
    yield runner
    runner.integration.close()


@pytest.fixture
def push(fake_graph: FakeGraph, microsoft_mailbox: MicrosoftProviderConfig) -> WebhookRequest:
    """A Graph notification of a new message of the connected mailbox."""
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    return graph_notification_request(fake_graph, message_id)


@pytest.fixture
def handler(mailparity_store: InMemoryStore) -> WebhookHandler:
    return WebhookHandler(store=mailparity_store, publisher=InMemoryPublisher())


def _url(request: WebhookRequest) -> str:
    from urllib.parse import urlencode

    return "/mail/webhooks/microsoft" + (f"?{urlencode(request.query)}" if request.query else "")


def _assert_processed_at_once(eager: EagerCelery, events: InMemoryPublisher,
                              store: InMemoryStore) -> None:
    assert eager.sent == [PROCESS_TASK]
    [event] = events.emails
    assert event.email_data.subject == "Printer on fire"
    assert store.count_jobs(status="pending") == 0


def test_flask(handler: WebhookHandler, push: WebhookRequest, eager: EagerCelery,
               events: InMemoryPublisher, mailparity_store: InMemoryStore) -> None:
    flask = pytest.importorskip("flask")
    from mailparity.contrib.flask import webhook_blueprint

    app = flask.Flask("notify")
    app.register_blueprint(webhook_blueprint(handler, notify=eager.integration),
                           url_prefix="/mail")
    response = app.test_client().post(_url(push), data=push.body, headers=dict(push.headers))
    assert response.status_code == 202
    _assert_processed_at_once(eager, events, mailparity_store)


def test_fastapi(handler: WebhookHandler, push: WebhookRequest, eager: EagerCelery,
                 events: InMemoryPublisher, mailparity_store: InMemoryStore) -> None:
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mailparity.contrib.fastapi import webhook_router

    app = fastapi.FastAPI()
    app.include_router(webhook_router(handler, notify=eager.integration), prefix="/mail")
    response = TestClient(app).post(_url(push), content=push.body, headers=dict(push.headers))
    assert response.status_code == 202
    _assert_processed_at_once(eager, events, mailparity_store)


def test_django_view(handler: WebhookHandler, push: WebhookRequest, eager: EagerCelery,
                     events: InMemoryPublisher, mailparity_store: InMemoryStore) -> None:
    django_support = pytest.importorskip("django_support")
    django_support.configure()
    from django.test import RequestFactory

    from mailparity.contrib.django import webhook_urlpatterns

    [view] = [p.callback for p in webhook_urlpatterns(handler, notify=eager.integration)
              if p.name == "mailparity-microsoft"]
    request = RequestFactory().post(_url(push), data=push.body,
                                    content_type=push.headers.get("Content-Type", ""))
    assert view(request).status_code == 202
    _assert_processed_at_once(eager, events, mailparity_store)


#: What the Django app's ``MAILPARITY["NOTIFY"]`` names in the test below.
DJANGO_NOTIFY: list[MailParityCelery] = []


def notify_from_settings(response: WebhookResponse) -> None:
    """The function ``MAILPARITY["NOTIFY"]`` points at: hands over to the Celery integration."""
    DJANGO_NOTIFY[0].notify_after(response)


def test_django_app_setting(fake_graph: FakeGraph, events: InMemoryPublisher) -> None:
    django_support = pytest.importorskip("django_support")
    django_support.configure()
    from django.test import Client, override_settings

    from mailparity.contrib.django import conf
    from mailparity.testing import connect_microsoft

    setting = {"STORE": "memory", "HEALTH": {"require_worker": False},
               "NOTIFY": f"{__name__}.notify_from_settings"}
    with override_settings(MAILPARITY=setting):
        conf.reset()
        try:
            store = conf.get_app().store
            mailbox = connect_microsoft(store, fake_graph)
            eager = EagerCelery(store, events)
            DJANGO_NOTIFY[:] = [eager.integration]
            push = graph_notification_request(fake_graph, fake_graph.deliver(mailbox.mailbox, RAW))
            response = Client().post(_url(push), data=push.body,
                                     content_type=push.headers.get("Content-Type", ""))
            assert response.status_code == 202
            _assert_processed_at_once(eager, events, store)
        finally:
            DJANGO_NOTIFY.clear()
            conf.reset()


def test_django_setting_is_checked() -> None:
    django_support = pytest.importorskip("django_support")
    django_support.configure()
    from django.core.exceptions import ImproperlyConfigured

    from mailparity.contrib.django import conf

    assert conf.parse_settings({"NOTIFY": "helpdesk.celery.mailparity"}).notify == (
        "helpdesk.celery.mailparity"
    )
    with pytest.raises(ImproperlyConfigured, match="NOTIFY"):
        conf.parse_settings({"NOTIFY": 42})
    with pytest.raises(ImproperlyConfigured, match="NOTIFY"):
        conf.notify_target(conf.parse_settings({"NOTIFY": "no_such_module.thing"}))


# ---------------------------------------------------------------------------- the hook itself


def test_validation_handshake_sends_nothing(handler: WebhookHandler, eager: EagerCelery) -> None:
    flask = pytest.importorskip("flask")
    from mailparity.contrib.flask import webhook_blueprint

    app = flask.Flask("notify")
    app.register_blueprint(webhook_blueprint(handler, notify=eager.integration),
                           url_prefix="/mail")
    response = app.test_client().post("/mail/webhooks/microsoft?validationToken=abc")
    assert response.status_code == 200
    assert eager.sent == []  # a 200 handshake stored no work


def test_a_failing_hook_still_answers_2xx(
    handler: WebhookHandler, push: WebhookRequest, mailparity_store: InMemoryStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flask = pytest.importorskip("flask")
    from mailparity.contrib.flask import webhook_blueprint

    def broker_down(response: WebhookResponse) -> None:
        raise ConnectionError("broker unreachable")

    app = flask.Flask("notify")
    app.register_blueprint(webhook_blueprint(handler, notify=broker_down), url_prefix="/mail")
    with caplog.at_level(logging.WARNING, logger="mailparity.webhooks"):
        response = app.test_client().post(_url(push), data=push.body,
                                          headers=dict(push.headers))
    assert response.status_code == 202
    assert mailparity_store.count_jobs(status="pending") == 1  # durable: a worker runs it later
    assert "notify hook failed after a webhook answer: ConnectionError" in caplog.text


def test_notify_hook_takes_the_integration_or_a_function() -> None:
    assert notify_hook(None) is None
    seen: list[int] = []
    hook = notify_hook(lambda response: seen.append(response.status))
    assert hook is not None
    hook(WebhookResponse(202, {}, b""))
    assert seen == [202]

    class Integration:
        def notify_after(self, response: WebhookResponse) -> bool:
            seen.append(-response.status)
            return True

    hook = notify_hook(Integration())
    assert hook is not None
    hook(WebhookResponse(204, {}, b""))
    assert seen == [202, -204]
    with pytest.raises(TypeError, match="notify="):
        notify_hook("mailparity")
