"""The helpdesk's day one against the fakes, narrated: ``python -m fastapi_helpdesk.demo`` (from
the ``examples`` folder of a checkout, after ``make venv``).

FakeGraph and FakeGmail are served over HTTPS on 127.0.0.1; the agent "acme" connects a
Microsoft 365 and a Gmail mailbox through the web connect flow (the browser's visit to the
provider's sign-in page is one request, signing in as the mailbox), an email with an attachment
reaches each, the providers push, the emails are processed, and the helpdesk shows one ticket
each with its attachment saved on disk. The tests drive the same steps through :func:`day_one`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

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

__all__ = ["BASE", "CALLBACK", "G_BOX", "LOG", "MS_BOX", "PDF", "Day", "day_one", "main"]

BASE = "https://helpdesk.test"
CALLBACK = f"{BASE}/mail/connect/callback"
MS_BOX = "support@contoso.test"
G_BOX = "help@example.test"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
LOG = b"E-204 Fuser temperature low\n"


@dataclass
class Day:
    """The running helpdesk, the fakes, and a browser signed in as the agent "acme"."""

    server: FakeServer
    graph: FakeGraph
    gmail: FakeGmail
    helpdesk: Helpdesk
    client: TestClient

    def sign_in_at_provider(self, start_path: str, account: str, **query: str) -> str:
        """Follow "Connect" (``start_path`` with ``query``) to the provider and sign in there
        as ``account``: the path and query the provider sends the browser back to."""
        start = self.client.get(start_path, params=query)
        if start.status_code != 302:
            raise RuntimeError(f"connect did not start: {start.status_code} {start.text}")
        signed_in = self.server.session().get(
            f"{start.headers['location']}&{urlencode({'fake_user': account})}",
            allow_redirects=False, timeout=10,
        )
        back = urlsplit(signed_in.headers["Location"])
        if f"{back.scheme}://{back.netloc}{back.path}" != CALLBACK:
            raise RuntimeError("the provider did not send the browser back to the callback")
        return f"{back.path}?{back.query}"

    def connect(self, provider: str, mailbox: str) -> str:
        """Click "Connect", sign in as ``mailbox``, come back: the new connection's id."""
        callback = self.sign_in_at_provider(
            f"/mail/connect/{provider}", mailbox, mailbox=mailbox, return_to="/"
        )
        done = self.client.get(callback)
        location = str(done.headers.get("location", ""))
        if done.status_code != 303 or not location.startswith("/?connected="):
            raise RuntimeError(f"connecting {mailbox} failed: {done.status_code} {done.text}")
        return location.split("=", 1)[1]

    def email_with_attachment(self) -> None:
        """An email with an attachment reaches each mailbox, and each provider pushes."""
        graph_message = self.graph.deliver(MS_BOX, build_message(
            from_="Zoë <zoe@nordlicht.example>", to=MS_BOX,
            subject="Printer prints blank pages", text="The log is attached.",
            attachments=[("printer.log", LOG, "text/plain")],
        ))
        self.gmail.deliver(G_BOX, build_message(
            from_="Taro <taro@sakura.example>", to=G_BOX, subject="Invoice #4711",
            text="Please check the invoice.",
            attachments=[("invoice-4711.pdf", PDF, "application/pdf")],
        ))
        self.push("microsoft", graph_notification_request(self.graph, graph_message))
        self.push("google", gmail_push_request(self.gmail, G_BOX))

    def push(self, provider: str, request: Any) -> None:
        answer = self.client.post(f"/mail/webhooks/{provider}", content=request.body,
                                  headers=dict(request.headers))
        if answer.status_code not in (200, 202, 204):
            raise RuntimeError(f"the {provider} push was refused: {answer.status_code}")


@contextmanager
def day_one(workdir: Path) -> Iterator[Day]:
    """The fakes served over HTTPS, the helpdesk on them (its store and attachments in
    ``workdir``), and a browser signed in as "acme"."""
    graph, gmail = FakeGraph(), FakeGmail()
    graph.add_client("helpdesk-app", "helpdesk-app-secret", [CALLBACK])
    gmail.add_client("helpdesk-google", "helpdesk-google-secret", [CALLBACK])
    graph.add_mailbox(MS_BOX)
    gmail.add_mailbox(G_BOX)
    with serve(graph, gmail, tls=True) as server:
        helpdesk = Helpdesk(Settings(
            base_url=BASE,
            database=workdir / "helpdesk.sqlite3",
            attachments_dir=workdir / "attachments",
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
        with TestClient(create_app(helpdesk), base_url=BASE, follow_redirects=False) as client:
            client.get("/login", params={"user": "acme"})
            yield Day(server, graph, gmail, helpdesk, client)


def main() -> int:
    """Run the day one and say what happened."""
    with tempfile.TemporaryDirectory(prefix="helpdesk-") as folder, day_one(Path(folder)) as day:
        for provider, mailbox in (("microsoft", MS_BOX), ("google", G_BOX)):
            print(f"connected {mailbox} through the web flow as {day.connect(provider, mailbox)}")
        day.email_with_attachment()
        ran = day.helpdesk.mail.webhooks.run_pending()
        print(f"two emails arrived, the providers pushed, {ran} jobs ran")
        for ticket in day.client.get("/api/tickets").json():
            data = ticket["emailData"]
            print(f"ticket {ticket['eventId']}: {data['subject']!r} to {data['mailbox']}")
            for attachment in data["attachments"]:
                print(f"    {attachment['name']} saved as {attachment['storedAs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
