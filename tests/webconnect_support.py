"""Shared set-up of the web connect tests: a store, both fakes answering through ``responses``,
and a :class:`~mailparity.webconnect.WebConnect` pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
import responses

from mailparity.stores.memory import InMemoryStore
from mailparity.testing import FakeGmail, FakeGraph
from mailparity.webconnect import WebConnect

CALLBACK = "https://helpdesk.test/mail/connect/callback"
MS_CLIENT = "helpdesk-ms-app"
MS_SECRET = "ms-app-secret-value"
G_CLIENT = "helpdesk-google-app"
G_SECRET = "google-app-secret-value"
MS_BOX = "support@contoso.test"
G_BOX = "help@example.test"
MS_WEBHOOK = "https://helpdesk.test/mail/webhooks/microsoft"


@dataclass
class Env:
    store: InMemoryStore
    graph: FakeGraph
    gmail: FakeGmail
    connect: WebConnect

    def providers(self) -> dict[str, dict[str, Any]]:
        return provider_settings(self.graph, self.gmail)


def provider_settings(graph: FakeGraph, gmail: FakeGmail) -> dict[str, dict[str, Any]]:
    """The host's settings of both providers, pointed at the fakes."""
    return {
        "microsoft": {
            "client_id": MS_CLIENT, "client_secret": MS_SECRET,
            "webhook_notification_url": MS_WEBHOOK, **graph.config_overrides(),
        },
        "google": {
            "client_id": G_CLIENT, "client_secret": G_SECRET, "project_id": "helpdesk",
            "pubsub_topic_name": "gmail-inbound", **gmail.config_overrides(),
        },
    }


def make_fakes(clock: Any = None) -> tuple[FakeGraph, FakeGmail]:
    graph, gmail = FakeGraph(clock=clock), FakeGmail(clock=clock)
    graph.add_client(MS_CLIENT, MS_SECRET, [CALLBACK])
    gmail.add_client(G_CLIENT, G_SECRET, [CALLBACK])
    graph.add_mailbox(MS_BOX)
    graph.add_mailbox("someone.else@contoso.test")
    gmail.add_mailbox(G_BOX)
    gmail.add_mailbox("other@example.test")
    return graph, gmail


@contextmanager
def environment(**options: Any) -> Iterator[Env]:
    """Both fakes behind ``responses`` for the duration, and a WebConnect over a fresh store."""
    graph, gmail = make_fakes(options.get("clock"))
    store = InMemoryStore()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        graph.register(mock)
        gmail.register(mock)
        options.setdefault("redirect_uri", CALLBACK)
        options.setdefault("providers", provider_settings(graph, gmail))
        yield Env(store, graph, gmail, WebConnect(store, **options))


def authorize(url: str, **extra: str) -> tuple[int, dict[str, str], str]:
    """Visit the provider's authorization URL (``extra`` appended: ``fake_user`` ...): the
    status, the query of the redirect (empty without one) and the body."""
    if extra:
        url = f"{url}&{urlencode(extra)}"
    response = requests.get(url, allow_redirects=False, timeout=10)
    location = response.headers.get("Location")
    query = dict(parse_qsl(urlsplit(location).query, keep_blank_values=True)) if location else {}
    return response.status_code, query, response.text
