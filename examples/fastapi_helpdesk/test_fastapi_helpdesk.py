"""The helpdesk's day one, end to end: an agent connects a Microsoft 365 and a Gmail mailbox
through the web flow (FakeGraph and FakeGmail served over HTTPS on 127.0.0.1), an email with an
attachment reaches each, the providers push, the attachments are saved on disk while the emails
are processed, and the helpdesk shows one ticket (one event) each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    FakeServer,
    build_message,
    gmail_push_request,
    graph_notification_request,
    serve,
)
from mailparity.testing.connect import PUSH_SERVICE_ACCOUNT, TEST_AUDIENCE

from .app import Helpdesk, Settings, create_app

BASE = "https://helpdesk.test"
CALLBACK = f"{BASE}/mail/connect/callback"
MS_BOX = "support@contoso.test"
G_BOX = "help@example.test"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
LOG = b"E-204 Fuser temperature low\n"


@dataclass
class Day:
    server: FakeServer
    graph: FakeGraph
    gmail: FakeGmail
    helpdesk: Helpdesk
    client: TestClient

    def connect(self, provider: str, mailbox: str) -> str:
        """Click "Connect", sign in at the provider, come back: the new connection's id."""
        start = self.client.get(f"/mail/connect/{provider}",
                                params={"mailbox": mailbox, "return_to": "/"})
        assert start.status_code == 302
        signed_in = self.server.session().get(
            f"{start.headers['location']}&{urlencode({'fake_user': mailbox})}",
            allow_redirects=False, timeout=10,
        )
        assert signed_in.status_code == 302
        back = urlsplit(signed_in.headers["Location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
        done = self.client.get(f"{back.path}?{back.query}")
        assert done.status_code == 303, done.text
        location = str(done.headers["location"])
        assert location.startswith("/?connected=")
        return location.split("=", 1)[1]

    def push(self, provider: str, request: Any) -> None:
        answer = self.client.post(f"/mail/webhooks/{provider}", content=request.body,
                                  headers=dict(request.headers))
        assert answer.status_code in (200, 202, 204), answer.text


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    graph, gmail = FakeGraph(), FakeGmail()
    graph.add_client("helpdesk-app", "helpdesk-app-secret", [CALLBACK])
    gmail.add_client("helpdesk-google", "helpdesk-google-secret", [CALLBACK])
    graph.add_mailbox(MS_BOX)
    gmail.add_mailbox(G_BOX)
    with serve(graph, gmail, tls=True) as server:
        helpdesk = Helpdesk(Settings(
            base_url=BASE,
            database=tmp_path / "helpdesk.sqlite3",
            attachments_dir=tmp_path / "attachments",
            providers={
                "microsoft": {"client_id": "helpdesk-app",
                              "client_secret": "helpdesk-app-secret",
                              **graph.config_overrides()},
                "google": {"client_id": "helpdesk-google",
                           "client_secret": "helpdesk-google-secret",
                           "project_id": "helpdesk", "pubsub_topic_name": "gmail-inbound",
                           **gmail.config_overrides()},
            },
            push={"google_audience": TEST_AUDIENCE,
                  "google_service_accounts": [PUSH_SERVICE_ACCOUNT],
                  "google_certs_url": gmail.certs_url},
            session=server.session(),
        ))
        client = TestClient(create_app(helpdesk), base_url=BASE, follow_redirects=False)
        assert client.get("/login", params={"user": "acme"}).status_code == 303
        yield Day(server, graph, gmail, helpdesk, client)
        client.close()


def test_day_one(day: Day) -> None:
    ms_id = day.connect("microsoft", MS_BOX)
    g_id = day.connect("google", G_BOX)
    page = day.client.get("/").text
    assert MS_BOX in page
    assert G_BOX in page

    graph_message = day.graph.deliver(MS_BOX, build_message(
        from_="Zoë <zoe@nordlicht.example>", to=MS_BOX, subject="Printer prints blank pages",
        text="The log is attached.", attachments=[("printer.log", LOG, "text/plain")],
    ))
    day.gmail.deliver(G_BOX, build_message(
        from_="Taro <taro@sakura.example>", to=G_BOX, subject="Invoice #4711",
        text="Please check the invoice.", attachments=[("invoice-4711.pdf", PDF,
                                                        "application/pdf")],
    ))
    day.push("microsoft", graph_notification_request(day.graph, graph_message))
    day.push("google", gmail_push_request(day.gmail, G_BOX))
    assert day.helpdesk.mail.webhooks.run_pending() >= 2

    tickets = day.client.get("/api/tickets").json()
    assert sorted(t["providerId"] for t in tickets) == sorted([ms_id, g_id])  # one event each
    saved = {}
    for ticket in tickets:
        assert ticket["eventType"] == "INBOUND_EMAIL_RECEIVED"
        [attachment] = ticket["emailData"]["attachments"]
        assert attachment["storedAs"] is not None
        download = day.client.get(
            f"/tickets/{ticket['eventId']}/attachments/{attachment['id']}"
        )
        assert download.status_code == 200
        saved[attachment["name"]] = download.content
    assert saved == {"printer.log": LOG, "invoice-4711.pdf": PDF}
    page = day.client.get("/").text
    assert "Printer prints blank pages" in page
    assert "Invoice #4711" in page

    # Another agent sees none of it, and cannot download it.
    other = TestClient(create_app(day.helpdesk), base_url=BASE, follow_redirects=False)
    other.get("/login", params={"user": "globex"})
    assert other.get("/api/tickets").json() == []
    first = tickets[0]
    attachment_id = first["emailData"]["attachments"][0]["id"]
    assert other.get(
        f"/tickets/{first['eventId']}/attachments/{attachment_id}"
    ).status_code == 404


def test_disconnect_from_the_page(day: Day) -> None:
    provider_id = day.connect("google", G_BOX)
    answer = day.client.post(f"/mail/connect/{provider_id}/disconnect",
                             data={"return_to": "/"}, headers={"Origin": BASE})
    assert answer.status_code == 303
    assert day.helpdesk.mailboxes("acme") == []
    assert day.gmail.mailbox(G_BOX).watch is None


def test_a_mailbox_that_is_not_the_expected_one_is_not_connected(day: Day) -> None:
    day.gmail.add_mailbox("someone@example.test")
    start = day.client.get("/mail/connect/google", params={"mailbox": G_BOX})
    signed_in = day.server.session().get(
        f"{start.headers['location']}&fake_user=someone%40example.test",
        allow_redirects=False, timeout=10,
    )
    back = urlsplit(signed_in.headers["Location"])
    answer = day.client.get(f"{back.path}?{back.query}", headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "mailbox_mismatch"
    assert day.helpdesk.mailboxes("acme") == []
