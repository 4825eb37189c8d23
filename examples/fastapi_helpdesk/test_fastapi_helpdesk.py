"""The helpdesk's day one, end to end: an agent connects a Microsoft 365 and a Gmail mailbox
through the web flow (FakeGraph and FakeGmail served over HTTPS on 127.0.0.1), an email with an
attachment reaches each, the providers push, the attachments are saved on disk while the emails
are processed, and the helpdesk shows one ticket (one event) each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailparity.testing import gmail_push_request

from .app import create_app
from .demo import BASE, G_BOX, LOG, MS_BOX, PDF, Day, day_one, main


@pytest.fixture
def day(tmp_path: Path) -> Iterator[Day]:
    with day_one(tmp_path) as value:
        yield value


def test_day_one(day: Day) -> None:
    ms_id = day.connect("microsoft", MS_BOX)
    g_id = day.connect("google", G_BOX)
    page = day.client.get("/").text
    assert MS_BOX in page
    assert G_BOX in page
    assert [event.event_type for event in day.helpdesk.connections] == [
        "EMAIL_PROVIDER_CONNECTED", "EMAIL_PROVIDER_CONNECTED"]
    assert [event.provider_id for event in day.helpdesk.connections] == [ms_id, g_id]

    day.email_with_attachment()
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

    # A push delivered twice makes no second ticket.
    day.push("google", gmail_push_request(day.gmail, G_BOX))
    day.helpdesk.mail.webhooks.run_pending()
    assert len(day.client.get("/api/tickets").json()) == 2

    # Another agent sees none of it, and cannot download it.
    with TestClient(create_app(day.helpdesk), base_url=BASE, follow_redirects=False) as other:
        other.get("/login", params={"user": "globex"})
        assert other.get("/api/tickets").json() == []
        first = tickets[0]
        attachment_id = first["emailData"]["attachments"][0]["id"]
        download = other.get(f"/tickets/{first['eventId']}/attachments/{attachment_id}")
        assert download.status_code == 404


def test_disconnect_from_the_page(day: Day) -> None:
    provider_id = day.connect("google", G_BOX)
    answer = day.client.post(f"/mail/connect/{provider_id}/disconnect",
                             data={"return_to": "/"}, headers={"Origin": BASE})
    assert answer.status_code == 303
    assert day.helpdesk.mailboxes("acme") == []
    assert day.gmail.mailbox(G_BOX).watch is None


def test_a_mailbox_that_is_not_the_expected_one_is_not_connected(day: Day) -> None:
    day.gmail.add_mailbox("someone@example.test")
    callback = day.sign_in_at_provider("/mail/connect/google", "someone@example.test",
                                       mailbox=G_BOX)
    answer = day.client.get(callback, headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "mailbox_mismatch"
    assert day.helpdesk.mailboxes("acme") == []


def test_the_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main() == 0
    out = capsys.readouterr().out
    assert out.count("connected ") == 2
    assert out.count("ticket ") == 2
    assert "printer.log saved as" in out
    assert "invoice-4711.pdf saved as" in out
