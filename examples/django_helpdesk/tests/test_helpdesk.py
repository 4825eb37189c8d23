"""The helpdesk, end to end against mailparity's fakes (no network): an agent connects a
Microsoft 365 and a Gmail mailbox through the web flow, a customer writes to each with an
attachment, the pushes arrive, the worker runs, and each email becomes one ticket whose
attachment was saved through the attachment store."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
import responses
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client, override_settings
from helpdesk.models import Ticket

from mailparity.contrib.django import conf, get_store
from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    build_message,
    gmail_push_request,
    graph_notification_request,
)
from mailparity.testing.connect import PUSH_SERVICE_ACCOUNT, TEST_AUDIENCE
from mailparity.webhooks import WebhookRequest

CALLBACK = "https://helpdesk.test/mail/connect/callback"
BOXES = {"microsoft": "support@contoso.test", "google": "help@example.test"}


@dataclass
class Helpdesk:
    graph: FakeGraph
    gmail: FakeGmail
    agent: Client

    def connect(self, provider: str) -> str:
        """Click "Connect", sign in at the (fake) provider, come back: the connected id."""
        started = self.agent.get(f"/mail/connect/{provider}?return_to=/")
        assert started.status_code == 302
        # The browser at the provider: the fake signs BOXES[provider] in and redirects back.
        signed_in = requests.get(
            f"{started['Location']}&{urlencode({'fake_user': BOXES[provider]})}",
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302
        back = urlsplit(signed_in.headers["Location"])
        assert f"https://{back.netloc}{back.path}" == CALLBACK
        done = self.agent.get(f"{back.path}?{back.query}")
        assert done.status_code == 303, done.content
        assert done["Location"].startswith("/?connected=")
        return str(dict(parse_qsl(urlsplit(done["Location"]).query))["connected"])

    def push(self, path: str, request: WebhookRequest) -> int:
        """What the provider's push service does: POST the notification."""
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        response = Client().post(
            path,
            data=request.body,
            content_type=request.headers.get("Content-Type", "application/json"),
            headers=headers,
        )
        return int(response.status_code)


@pytest.fixture
def helpdesk(settings_for_fakes: Any) -> Iterator[Helpdesk]:
    graph, gmail = settings_for_fakes
    user = User.objects.create(username="ana")
    agent = Client()
    agent.force_login(user)
    try:
        yield Helpdesk(graph, gmail, agent)
    finally:
        user.delete()
        Ticket.objects.all().delete()
        for config in get_store().list_providers():
            get_store().delete_provider(config.provider_id)


@pytest.fixture
def settings_for_fakes() -> Iterator[tuple[FakeGraph, FakeGmail]]:
    """The helpdesk's MAILPARITY setting, pointed at the fakes (the client ids and secrets the
    fakes know, their URLs, their Pub/Sub signer)."""
    from django.conf import settings

    graph, gmail = FakeGraph(), FakeGmail()
    graph.add_client("helpdesk-ms", "ms-secret", [CALLBACK])
    gmail.add_client("helpdesk-google", "google-secret", [CALLBACK])
    graph.add_mailbox(BOXES["microsoft"])
    gmail.add_mailbox(BOXES["google"])
    setting = dict(settings.MAILPARITY)
    providers = setting["CONNECT"]["PROVIDERS"]
    setting["CONNECT"] = {
        **setting["CONNECT"],
        "PROVIDERS": {
            "microsoft": {**providers["microsoft"], "client_id": "helpdesk-ms",
                          "client_secret": "ms-secret", **graph.config_overrides()},
            "google": {**providers["google"], "client_id": "helpdesk-google",
                       "client_secret": "google-secret", **gmail.config_overrides()},
        },
    }
    setting["PUSH"] = {
        "google_audience": TEST_AUDIENCE,
        "google_service_accounts": [PUSH_SERVICE_ACCOUNT],
        "google_certs_url": gmail.certs_url,
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        graph.register(mock)
        gmail.register(mock)  # the "browser" (requests.get) reaches the sign-in pages here too
        with override_settings(MAILPARITY=setting):
            conf.reset(conf.build_app(sleep=lambda seconds: None))
            try:
                yield graph, gmail
            finally:
                conf.reset()


def _email(to: str, name: str, content: bytes) -> bytes:
    return build_message(
        from_=("Zoë Ångström", "zoe@customer.example"),
        to=to,
        subject=f"Printer broken ({name})",
        text="Only blank pages since this morning.",
        attachments=[(name, content)],
    )


def test_two_mailboxes_connected_from_the_web_each_email_one_ticket(helpdesk: Helpdesk) -> None:
    microsoft_id = helpdesk.connect("microsoft")
    google_id = helpdesk.connect("google")
    home = helpdesk.agent.get("/").content.decode()
    assert BOXES["microsoft"] in home
    assert BOXES["google"] in home

    message_id = helpdesk.graph.deliver(BOXES["microsoft"], _email(BOXES["microsoft"],
                                                                   "log.txt", b"E-204\n"))
    helpdesk.gmail.deliver(BOXES["google"], _email(BOXES["google"], "scan.pdf", b"%PDF-1.7"))
    assert helpdesk.push("/mail/webhooks/microsoft",
                         graph_notification_request(helpdesk.graph, message_id)) == 202
    assert helpdesk.push("/mail/webhooks/google",
                         gmail_push_request(helpdesk.gmail, BOXES["google"])) == 204

    call_command("mailparity_worker", stop_after=1, stdout=_Sink(), stderr=_Sink())

    tickets = {ticket.provider_id: ticket for ticket in Ticket.objects.all()}
    assert set(tickets) == {microsoft_id, google_id}  # one event each
    for provider_id, (name, content) in (
        (microsoft_id, ("log.txt", b"E-204\n")),
        (google_id, ("scan.pdf", b"%PDF-1.7")),
    ):
        ticket = tickets[provider_id]
        assert ticket.requester == "zoe@customer.example"
        assert ticket.team == "team-ana"
        [attachment] = ticket.attachments.all()
        assert attachment.name == name
        assert attachment.stored_as  # saved through the attachment store
        with default_storage.open(attachment.stored_as, "rb") as saved:
            assert saved.read() == content
        download = helpdesk.agent.get(f"/attachments/{attachment.pk}")
        assert download.status_code == 200
        assert b"".join(download.streaming_content) == content

    home = helpdesk.agent.get("/").content.decode()
    assert home.count('class="ticket"') == 2
    assert "Printer broken (log.txt)" in home
    assert "Printer broken (scan.pdf)" in home


def test_a_redelivered_push_opens_no_second_ticket(helpdesk: Helpdesk) -> None:
    helpdesk.connect("google")
    helpdesk.gmail.deliver(BOXES["google"], _email(BOXES["google"], "a.txt", b"a"))
    push = gmail_push_request(helpdesk.gmail, BOXES["google"])
    assert helpdesk.push("/mail/webhooks/google", push) == 204
    call_command("mailparity_worker", stop_after=1, stdout=_Sink(), stderr=_Sink())
    assert helpdesk.push("/mail/webhooks/google", push) == 204
    call_command("mailparity_worker", stop_after=1, stdout=_Sink(), stderr=_Sink())
    assert Ticket.objects.count() == 1


def test_another_agent_sees_neither_the_mailbox_nor_its_tickets(helpdesk: Helpdesk) -> None:
    helpdesk.connect("google")
    other = User.objects.create(username="bo")
    try:
        client = Client()
        client.force_login(other)
        page = client.get("/").content.decode()
        assert BOXES["google"] not in page
        assert "No mailbox yet." in page
    finally:
        other.delete()


def test_signed_out_visitors_are_sent_to_sign_in() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Client().get("/mail/connect/google").status_code == 401


class _Sink:
    """Swallows a command's output."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None
