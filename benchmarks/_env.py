"""Shared set-up of the benchmarks: the served fakes, realistic messages, mailboxes, handlers.

Everything runs against :mod:`mailparity.testing` fakes served on 127.0.0.1 (one server for every
side of a comparison, so each side fetches the same messages through the same socket code).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from mailparity.models import GmailProviderConfig, MicrosoftProviderConfig
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.fake_gmail import DEFAULT_PUSH_ACCOUNT, FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import FakeServer, serve
from mailparity.webhooks import WebhookHandler, WebhookRequest

GRAPH_HOOK = "https://hooks.bench.example/webhooks/microsoft"
GOOGLE_HOOK = "https://hooks.bench.example/webhooks/google"
CLIENT_STATE = "bench-client-state-value"
BENCH_CLIENT_ID = "bench-client"


class MovableClock:
    """A UTC clock that can be moved forward (shared by a fake and the library under test)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


_WORDS = [
    "invoice", "ticket", "printer", "network", "outage", "password", "reset", "meeting",
    "agenda", "quarterly", "report", "shipment", "delayed", "customer", "request", "approval",
    "budget", "server", "migration", "backup", "license", "renewal", "laptop", "onboarding",
    "access", "vpn", "firewall", "update", "schedule", "contract", "signature", "follow-up",
]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def realistic_messages(count: int, seed: int = 7) -> list[bytes]:
    """``count`` raw messages like a helpdesk inbox receives: text and HTML bodies of a few KB,
    every fifth with a small PDF attachment, every third a reply (In-Reply-To, References),
    some non-ASCII display names and subjects."""
    rng = random.Random(seed)
    out: list[bytes] = []
    previous: list[str] = []
    for index in range(count):
        paragraphs = [_sentence(rng, rng.randint(12, 40)) for _ in range(rng.randint(3, 12))]
        text = "\n\n".join(paragraphs)
        html = "<html><body>" + "".join(f"<p>{p}</p>" for p in paragraphs) + (
            f"<table><tr><td>Ticket</td><td>#{index}</td></tr></table></body></html>"
        )
        message_id = f"<bench-{index}-{rng.getrandbits(32):08x}@customer.example>"
        name = ("Zoë Åkesson" if index % 7 == 0 else f"Customer {index % 50}")
        subject = ("Ré: " if index % 3 == 0 else "") + _sentence(rng, 6)
        attachments: list[tuple[str, bytes, str]] = []
        if index % 5 == 0:
            attachments.append(
                (
                    f"report-{index}.pdf",
                    rng.randbytes(rng.randint(8_000, 40_000)),
                    "application/pdf",
                )
            )
        reply_to = previous[-1] if index % 3 == 0 and previous else None
        out.append(
            build_message(
                from_=(name, f"customer{index % 50}@customer.example"),
                to=["support@contoso.example"],
                cc=["team@contoso.example"] if index % 4 == 0 else [],
                subject=subject,
                text=text,
                html=html,
                attachments=attachments,
                message_id=message_id,
                in_reply_to=reply_to,
                references=[reply_to] if reply_to else [],
            )
        )
        previous.append(message_id)
    return out


@dataclass
class Served:
    """The fakes and their server (one per benchmark run)."""

    graph: FakeGraph
    gmail: FakeGmail
    server: FakeServer
    clock: MovableClock

    def close(self) -> None:
        self.server.close()

    def graph_api_requests(self) -> int:
        """Requests the Graph API part received (batch members not counted: one HTTP request)."""
        return sum(
            1 for r in self.graph.requests if "/graph/" in r.path and not r.in_batch
        )

    def gmail_api_requests(self) -> int:
        """Requests the Gmail API received (token and certificate endpoints not counted)."""
        return sum(1 for r in self.gmail.requests if r.path.startswith("/gmail") and not r.in_batch)


def start_fakes(*, token_lifetime: int = 30 * 86400) -> Served:
    clock = MovableClock()
    graph = FakeGraph(clock=clock, token_lifetime=token_lifetime, seed=1)
    gmail = FakeGmail(clock=clock, token_lifetime=token_lifetime, seed=2)
    server = serve(graph, gmail)
    return Served(graph, gmail, server, clock)


# ---------------------------------------------------------------------- Microsoft Graph


@dataclass
class GraphBox:
    config: MicrosoftProviderConfig
    access_token: str


def graph_box(
    served: Served, store: Any, index: int, *, subscribe: bool = True, session: Any = None
) -> GraphBox:
    """A mailbox in the fake, its provider config and tokens in ``store`` (and a subscription)."""
    from mailparity.providers.graph import MicrosoftGraphAdapter

    mailbox = f"support{index}@contoso.example"
    # One app for every mailbox, as a host has: each subscription is per mailbox.
    client_id = BENCH_CLIENT_ID
    issued = served.graph.issue_tokens(mailbox, client_id=client_id)
    config = MicrosoftProviderConfig(
        provider_id=f"ms-{index}",
        tenant="tenant-bench",
        mailbox=mailbox,
        client_id=client_id,
        client_secret="fake-client-secret",
        webhook_notification_url=f"{GRAPH_HOOK}/{index}",
        webhook_verification_token=CLIENT_STATE,
        processed_strategy="none",
        **served.graph.config_overrides(),
    )
    store.save_provider(config)
    from mailparity.models import OAuthTokens

    store.save_tokens(
        config.provider_id,
        OAuthTokens(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=issued["expires_at"],
        ),
    )
    if subscribe:
        adapter = MicrosoftGraphAdapter(config, store=store, session=session)
        adapter.register_webhook_subscription()
        stored = store.get_provider(config.provider_id)
        assert isinstance(stored, MicrosoftProviderConfig)
        config = stored
    return GraphBox(config, issued["access_token"])


def graph_request(body: dict[str, Any]) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=json.dumps(body).encode("utf-8"),
    )


# ---------------------------------------------------------------------- Gmail


@dataclass
class GmailBox:
    config: GmailProviderConfig
    access_token: str


def gmail_box(served: Served, store: Any, index: int) -> GmailBox:
    """A Gmail mailbox in the fake, its config (cursor at the mailbox's current historyId)."""
    from mailparity.models import OAuthTokens

    mailbox = f"helpdesk{index}@example.com"
    issued = served.gmail.issue_tokens(mailbox)
    config = GmailProviderConfig(
        provider_id=f"g-{index}",
        tenant="tenant-bench",
        mailbox=mailbox,
        client_id="fake-google-client",
        client_secret="fake-google-secret",
        project_id="mailparity-test",
        pubsub_topic_name="gmail-bench",
        history_id=served.gmail.mailbox(mailbox).history_id,
        processed_strategy="none",
        **served.gmail.config_overrides(),
    )
    store.save_provider(config)
    store.save_tokens(
        config.provider_id,
        OAuthTokens(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=issued["expires_at"],
        ),
    )
    return GmailBox(config, issued["access_token"])


def google_request(served: Served, mailbox: str, history_id: int) -> WebhookRequest:
    """A signed Pub/Sub push, as Pub/Sub sends it to the handler."""
    body = served.gmail.push_body(mailbox, history_id)
    token = served.gmail.signer.push_token(GOOGLE_HOOK, DEFAULT_PUSH_ACCOUNT)
    return WebhookRequest(
        method="POST",
        query={},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        body=body,
    )


# ---------------------------------------------------------------------- pipeline


@dataclass
class Pipeline:
    store: Any
    publisher: InMemoryPublisher
    handler: WebhookHandler
    session: requests.Session
    extra: dict[str, Any] = field(default_factory=dict)


def pipeline(served: Served, store: Any | None = None) -> Pipeline:
    session = requests.Session()
    store = store if store is not None else InMemoryStore()
    publisher = InMemoryPublisher()
    handler = WebhookHandler(
        store=store,
        publisher=publisher,
        session=session,
        google_audience=GOOGLE_HOOK,
        google_service_accounts=[DEFAULT_PUSH_ACCOUNT],
        google_certs_url=served.gmail.certs_url,
    )
    return Pipeline(store, publisher, handler, session)


class Stopwatch:
    """Sums the time spent inside ``with watch.paused():`` blocks, to take it out of a run."""

    def __init__(self) -> None:
        self.excluded = 0.0
        self._lock = threading.Lock()

    def paused(self) -> _Pause:
        return _Pause(self)


class _Pause:
    def __init__(self, watch: Stopwatch) -> None:
        self.watch = watch
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        with self.watch._lock:
            self.watch.excluded += time.perf_counter() - self.start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if not ordered:
        return float("nan")
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def repeat(times: int, run: Callable[[], float]) -> list[float]:
    return [run() for _ in range(times)]


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------- servers in their own process


@dataclass
class ReplayServer:
    """A :mod:`replay` server in its own process (see that module): prebuilt responses, one
    write each, an optional delay. Every side of a comparison talks to the same one."""

    process: Any
    url: str

    def _control(self, method: str, path: str) -> dict[str, Any]:
        response = requests.request(method, self.url + path, timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        """``{"served": requests answered, "cpu": CPU seconds of the server process}``."""
        return self._control("GET", "/__stats")

    def set_delay(self, seconds: float) -> None:
        self._control("POST", f"/__delay?seconds={seconds}")

    def rebase(self, url: str) -> str:
        """``url`` (of the in-process fake the data was captured from) moved onto this server."""
        parts = url.split("/", 3)
        return self.url + ("/" + parts[3] if len(parts) > 3 else "")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


def start_replay(
    routes: dict[str, dict[str, Any]],
    templates: list[dict[str, str]] | None = None,
    *,
    delay: float = 0.0,
) -> ReplayServer:
    """Start ``benchmarks/replay.py`` in a subprocess serving ``routes`` (path -> response)."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    spec = {"routes": routes, "templates": templates or [], "delay": delay}
    fd, name = tempfile.mkstemp(suffix=".json", prefix="replay-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "replay.py"), name],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"replay server did not start: {line!r}")
    return ReplayServer(process, f"http://127.0.0.1:{int(line.split()[1])}")


def capture(served: Served, url: str, params: dict[str, str], token: str) -> dict[str, Any]:
    """One response of the in-process fakes, as a replay route (status, type, body)."""
    response = requests.get(
        url, params=params, headers={"Authorization": f"Bearer {token}",
                                     "Prefer": 'IdType="ImmutableId"'}, timeout=30,
    )
    response.raise_for_status()
    return {
        "status": response.status_code,
        "type": response.headers.get("Content-Type", "application/json"),
        "body": response.text,
    }


def msgraph_client(token: str, base_url: str) -> tuple[Any, Any]:
    """An msgraph-sdk ``GraphServiceClient`` on ``base_url`` sending ``token``, and the request
    configuration of a message fetch with the library's ``$select``/``$expand`` and
    ``Prefer: IdType="ImmutableId"`` (call inside a running event loop)."""
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.users.item.messages.item.message_item_request_builder import (
        MessageItemRequestBuilder,
    )

    from mailparity.providers.graph.messages import ATTACHMENT_EXPAND, MESSAGE_SELECT

    class StaticToken(AccessTokenProvider):  # type: ignore[misc]
        async def get_authorization_token(
            self, uri: str, additional_authentication_context: Any = None
        ) -> str:
            return token

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([])

    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken()))
    adapter.base_url = base_url
    client = GraphServiceClient(request_adapter=adapter)
    query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
        select=MESSAGE_SELECT.split(","), expand=[ATTACHMENT_EXPAND]
    )
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", 'IdType="ImmutableId"')
    return client, config
