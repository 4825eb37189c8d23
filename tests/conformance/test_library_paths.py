"""Library paths that depend on fake behaviour the real clients proved: end to end through the
adapters and the webhook handler, against the served fakes (TLS where the client needs it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests

from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import (
    PUSH_SERVICE_ACCOUNT,
    TEST_AUDIENCE,
    connect_google,
    connect_microsoft,
)
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import serve
from mailparity.webhooks import WebhookHandler

from ._clients import gmail_service, graph_client, immutable

GMAIL_BOX = "help@example.test"
GRAPH_BOX = "desk@contoso.test"


def _raw(n: int, to: str) -> bytes:
    return build_message(from_="client@example.org", to=to, subject=f"case {n}", text="hi",
                         message_id=f"<case-{n}@example.org>")


def test_expired_gmail_history_recovers_by_full_sync_end_to_end() -> None:
    """The documented ``expire_history`` fault: history answers 404, the adapter lists the
    mailbox with ``after:... -in:sent -in:drafts`` (Gmail search syntax the fake now evaluates)
    and every inbound message is published once; sent mail is not."""
    gmail = FakeGmail(seed=3)
    store, publisher = InMemoryStore(), InMemoryPublisher()
    with serve(gmail):
        session = requests.Session()
        session.trust_env = False
        config = connect_google(store, gmail, GMAIL_BOX, session=session)
        inbound = [gmail.deliver(GMAIL_BOX, _raw(n, GMAIL_BOX)) for n in range(3)]
        gmail.deliver(GMAIL_BOX, _raw(9, "someone@example.org"), ["SENT"])
        gmail.expire_history(GMAIL_BOX)
        handler = WebhookHandler(
            store=store, publisher=publisher, session=session, google_audience=TEST_AUDIENCE,
            google_service_accounts=[PUSH_SERVICE_ACCOUNT], google_certs_url=gmail.certs_url,
            sleep=lambda seconds: None,
        )
        from mailparity.testing.connect import gmail_push_request

        assert handler.handle_google(gmail_push_request(gmail, config.mailbox)).status == 204
        handler.run_pending()
    assert sorted(e.email_data.id for e in publisher.events) == sorted(inbound)
    listed = [r for r in gmail.requests if r.path.endswith("/messages") and r.method == "GET"]
    assert listed
    assert "-in:sent -in:drafts" in listed[0].query["q"][0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_both_clients_over_tls() -> None:
    """The fakes' TLS mode with each real client trusting only the throwaway CA."""
    graph, gmail = FakeGraph(seed=4), FakeGmail(seed=4)
    with serve(graph, gmail, tls=True) as server:
        assert server.ca_path is not None
        assert graph.base_url.startswith("https://127.0.0.1:")
        graph.add_mailbox(GRAPH_BOX)
        message_id = graph.deliver(GRAPH_BOX, _raw(1, GRAPH_BOX))
        token = graph.issue_tokens(GRAPH_BOX)["access_token"]

        async def fetch() -> Any:
            client = graph_client(graph, token, verify=server.ca_path)
            return await client.me.messages.by_message_id(message_id).get(
                request_configuration=immutable()
            )

        assert asyncio.run(fetch()).subject == "case 1"
        users = gmail_service(gmail, GMAIL_BOX, ca_certs=server.ca_path).users()
        assert users.getProfile(userId="me").execute()["emailAddress"] == GMAIL_BOX


def test_graph_folder_strategy_finds_child_folders_and_creates_missing_ones() -> None:
    """The ``move`` processed strategy looks a folder up among the top-level folders, then the
    Inbox's child folders, and creates it when missing: endpoints the fake lacked before."""
    from mailparity.providers.graph import MicrosoftGraphAdapter

    graph = FakeGraph(seed=5)
    store = InMemoryStore()
    with serve(graph):
        session = requests.Session()
        session.trust_env = False
        graph.add_mailbox(GRAPH_BOX)
        child = graph.add_folder(GRAPH_BOX, "Tickets", parent="inbox")
        config = connect_microsoft(
            store, graph, GRAPH_BOX, subscribe=False, session=session,
            processed_strategy="move", processed_folder="Tickets",
        )
        first = graph.deliver(GRAPH_BOX, _raw(1, GRAPH_BOX))
        adapter = MicrosoftGraphAdapter(config, store=store, session=session)
        adapter.mark_message_processed(first)
        assert graph.message(first).folder_id == child

        other = config.model_copy(update={"processed_folder": "Done"})
        second = graph.deliver(GRAPH_BOX, _raw(2, GRAPH_BOX))
        MicrosoftGraphAdapter(other, store=store, session=session).mark_message_processed(second)
        done = graph.message(second).folder_id
        folder = graph.user(GRAPH_BOX).folders[done]
        assert folder.display_name == "Done"
        assert folder.parent_id == graph.user(GRAPH_BOX).folder("msgfolderroot").id
