"""The example of docs/testing.md, verbatim: a host's handler receiving an event, both providers.

The fixtures come from mailparity's pytest plugin (loaded automatically once mailparity is
installed). Keep this file and the page identical.
"""

from dataclasses import dataclass

from mailparity import (
    GmailProviderConfig,
    InboundEmailReceived,
    InMemoryPublisher,
    MicrosoftProviderConfig,
    WebhookHandler,
)
from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    build_message,
    gmail_push_request,
    graph_notification_request,
)


# --- the host's code (in a real project: imported from the application) ---------------------
@dataclass
class Ticket:
    title: str
    requester: str
    attachments: list[str]


def create_ticket(event: InboundEmailReceived) -> Ticket:
    email = event.email_data
    return Ticket(
        title=email.subject,
        requester=email.from_.email,
        attachments=[a.name for a in email.attachments],
    )


# --- the tests ----------------------------------------------------------------------------------
RAW = build_message(
    from_=("Zoë Ångström", "zoe@customer.example"),
    to="support@contoso.test",
    subject="Drucker druckt nicht",
    text="Seit heute früh nur leere Seiten.",
    attachments=[("log.txt", b"E-204\n")],
)


def test_outlook_email_becomes_a_ticket(
    fake_graph: FakeGraph,
    microsoft_mailbox: MicrosoftProviderConfig,
    mailparity_handler: WebhookHandler,
    mailparity_publisher: InMemoryPublisher,
) -> None:
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)

    response = mailparity_handler.handle_microsoft(
        graph_notification_request(fake_graph, message_id)
    )
    assert response.status == 202
    mailparity_handler.run_pending()

    [event] = mailparity_publisher.emails  # the INBOUND_EMAIL_RECEIVED events, typed
    ticket = create_ticket(event)
    assert ticket == Ticket("Drucker druckt nicht", "zoe@customer.example", ["log.txt"])


def test_gmail_email_becomes_a_ticket(
    fake_gmail: FakeGmail,
    google_mailbox: GmailProviderConfig,
    mailparity_handler: WebhookHandler,
    mailparity_publisher: InMemoryPublisher,
) -> None:
    fake_gmail.deliver(google_mailbox.mailbox, RAW)

    response = mailparity_handler.handle_google(
        gmail_push_request(fake_gmail, google_mailbox.mailbox)
    )
    assert response.status == 204
    mailparity_handler.run_pending()

    [event] = mailparity_publisher.emails
    ticket = create_ticket(event)
    assert ticket == Ticket("Drucker druckt nicht", "zoe@customer.example", ["log.txt"])
