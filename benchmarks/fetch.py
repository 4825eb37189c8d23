"""Fetch + normalize per message, single thread, against a server in its own process.

The messages are rendered by the provider fakes (Graph with the library's ``$select``/``$expand``,
Gmail ``format=full``), captured, and served by :mod:`replay` in a subprocess, so that every side
pays only its own CPU. Sides, run interleaved against the same server:

- *bare*: a ``requests.Session`` loop, ``session.get(url, params=..., headers=...)`` and
  ``response.json()``: the least any Python client does (the limit);
- *mailparity*: the adapter's ``get_message_details`` (fetch, parse, normalize into an
  ``EmailMessage``);
- the official clients: msgraph-sdk (kiota, httpx, async) and google-api-python-client (httplib2).

Then one more pass runs ``Processor.process_message`` (dedupe claims, fetch, normalize, event,
publish, mark published) with the CPU time of the calling thread charged to HTTP,
normalization, store and publish (``CpuSplit``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from _env import (
    ReplayServer,
    capture,
    gmail_box,
    graph_box,
    msgraph_client,
    start_fakes,
    start_replay,
)

from mailparity.models import OAuthTokens
from mailparity.providers.graph.messages import ATTACHMENT_EXPAND, MESSAGE_SELECT
from mailparity.stores.memory import InMemoryStore

GRAPH_PARAMS = {"$select": MESSAGE_SELECT, "$expand": ATTACHMENT_EXPAND}


@dataclass
class FetchSetup:
    replay: ReplayServer
    store: InMemoryStore
    graph_config: Any
    gmail_config: Any
    graph_token: str
    gmail_token: str
    graph_ids: list[str]
    gmail_ids: list[str]
    #: Graph responses with their id and internetMessageId, for the latency server's templates.
    graph_templates: list[dict[str, str]]

    def close(self) -> None:
        self.replay.close()


def prepare(raws: list[bytes]) -> FetchSetup:
    """Deliver ``raws`` to a Graph and a Gmail mailbox of the in-process fakes, capture every
    message as the library requests it, stop the fakes and serve the captures from a subprocess."""
    import json

    served = start_fakes()
    store = InMemoryStore()
    try:
        gbox = graph_box(served, store, 1, subscribe=False)
        mbox = gmail_box(served, store, 1)
        routes: dict[str, dict[str, Any]] = {}
        templates: list[dict[str, str]] = []
        graph_ids: list[str] = []
        gmail_ids: list[str] = []
        base = gbox.config.graph_base_url.rstrip("/")
        for raw in raws:
            mid = served.graph.deliver(gbox.config.mailbox, raw)
            url = f"{base}/me/messages/{mid}"
            route = capture(served, url, GRAPH_PARAMS, gbox.access_token)
            routes["/" + url.split("/", 3)[3]] = route
            data = json.loads(route["body"])
            templates.append(
                {"body": route["body"], "id": data["id"], "mid": data["internetMessageId"]}
            )
            graph_ids.append(mid)
            gid = served.gmail.deliver(mbox.config.mailbox, raw)
            url = f"{mbox.config.gmail_base_url.rstrip('/')}/gmail/v1/users/me/messages/{gid}"
            routes["/" + url.split("/", 3)[3]] = capture(
                served, url, {"format": "full"}, mbox.access_token
            )
            gmail_ids.append(gid)
    finally:
        served.close()
    replay = start_replay(routes, templates)
    graph_config = gbox.config.model_copy(
        update={"graph_base_url": replay.rebase(gbox.config.graph_base_url)}
    )
    gmail_config = mbox.config.model_copy(
        update={"gmail_base_url": replay.rebase(mbox.config.gmail_base_url)}
    )
    fresh = InMemoryStore()
    for config in (graph_config, gmail_config):
        fresh.save_provider(config)
        tokens = store.load_tokens(config.provider_id)
        assert isinstance(tokens, OAuthTokens)
        fresh.save_tokens(config.provider_id, tokens)
    del served
    gc.collect()
    return FetchSetup(
        replay, fresh, graph_config, gmail_config, gbox.access_token, mbox.access_token,
        graph_ids, gmail_ids, templates,
    )


def _timed(ids: list[str], one: Callable[[str], Any]) -> dict[str, float]:
    gc.collect()
    cpu = time.thread_time()
    start = time.perf_counter()
    for mid in ids:
        one(mid)
    elapsed = time.perf_counter() - start
    cpu = time.thread_time() - cpu
    return {"rate": len(ids) / elapsed, "cpu_us": cpu / len(ids) * 1e6}


# ====================================================================== Graph


def graph_bare(setup: FetchSetup) -> dict[str, float]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {setup.graph_token}", "Prefer": 'IdType="ImmutableId"'}
    base = setup.graph_config.graph_base_url.rstrip("/")

    def one(mid: str) -> None:
        response = session.get(f"{base}/me/messages/{mid}", params=GRAPH_PARAMS, headers=headers)
        if response.status_code != 200 or not response.json().get("id"):
            raise RuntimeError(f"bare GET answered {response.status_code}")

    try:
        return _timed(setup.graph_ids, one)
    finally:
        session.close()


def graph_mailparity(setup: FetchSetup) -> dict[str, float]:
    from mailparity.providers.graph import MicrosoftGraphAdapter

    session = requests.Session()
    adapter = MicrosoftGraphAdapter(setup.graph_config, store=setup.store, session=session)

    def one(mid: str) -> None:
        if adapter.get_message_details(mid).id != mid:
            raise RuntimeError("wrong message")

    try:
        return _timed(setup.graph_ids, one)
    finally:
        session.close()


def graph_sdk(setup: FetchSetup, limit: int | None = None) -> dict[str, float]:
    """The official msgraph-sdk (kiota, httpx), one awaited GET after the other."""
    ids = setup.graph_ids[:limit] if limit else setup.graph_ids

    async def run() -> dict[str, float]:
        client, config = msgraph_client(setup.graph_token, setup.graph_config.graph_base_url)
        gc.collect()
        cpu = time.thread_time()
        start = time.perf_counter()
        for mid in ids:
            message = await client.me.messages.by_message_id(mid).get(request_configuration=config)
            if message is None or message.id is None:
                raise RuntimeError("msgraph-sdk returned no message")
        elapsed = time.perf_counter() - start
        return {"rate": len(ids) / elapsed, "cpu_us": (time.thread_time() - cpu) / len(ids) * 1e6}

    return asyncio.run(run())


# ====================================================================== Gmail


def gmail_bare(setup: FetchSetup) -> dict[str, float]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {setup.gmail_token}"}
    base = setup.gmail_config.gmail_base_url.rstrip("/") + "/gmail/v1/users/me/messages/"

    def one(mid: str) -> None:
        response = session.get(base + mid, params={"format": "full"}, headers=headers)
        if response.status_code != 200 or not response.json().get("id"):
            raise RuntimeError(f"bare GET answered {response.status_code}")

    try:
        return _timed(setup.gmail_ids, one)
    finally:
        session.close()


def gmail_mailparity(setup: FetchSetup) -> dict[str, float]:
    from mailparity.providers.gmail import GmailAdapter

    session = requests.Session()
    adapter = GmailAdapter(setup.gmail_config, store=setup.store, session=session)

    def one(mid: str) -> None:
        if adapter.get_message_details(mid).id != mid:
            raise RuntimeError("wrong message")

    try:
        return _timed(setup.gmail_ids, one)
    finally:
        session.close()


def gmail_apiclient(setup: FetchSetup) -> dict[str, float]:
    """google-api-python-client on its default transport (httplib2)."""
    import google.oauth2.credentials
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    credentials = google.oauth2.credentials.Credentials(token=setup.gmail_token)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
    service = build(
        "gmail", "v1", http=http, static_discovery=True, cache_discovery=False,
        client_options={"api_endpoint": setup.gmail_config.gmail_base_url.rstrip("/") + "/"},
    )
    messages = service.users().messages()

    def one(mid: str) -> None:
        if not messages.get(userId="me", id=mid, format="full").execute().get("id"):
            raise RuntimeError("no message")

    return _timed(setup.gmail_ids, one)


# ====================================================================== CPU split


class CpuSplit:
    """Charges the CPU time of the calling thread to the innermost open category."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack = ["other"]
        self._mark = time.thread_time()

    def _charge(self) -> None:
        now = time.thread_time()
        top = self._stack[-1]
        self.totals[top] = self.totals.get(top, 0.0) + now - self._mark
        self._mark = now

    @contextmanager
    def category(self, name: str) -> Iterator[None]:
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.category(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)


def cpu_split(setup: FetchSetup, provider: str) -> dict[str, float]:
    """``Processor.process_message`` for every message of ``provider``; CPU microseconds per
    message in HTTP (request and JSON parsing), normalization (the adapter's remaining work and
    building the event), store, publish and the rest (the processor's own logic)."""
    import mailparity.http as mhttp
    from mailparity.models import InboundEmailReceived
    from mailparity.processing import Processor
    from mailparity.publishers import InMemoryPublisher

    store = InMemoryStore()
    config = setup.graph_config if provider == "graph" else setup.gmail_config
    store.save_provider(config)
    tokens = setup.store.load_tokens(config.provider_id)
    assert tokens is not None
    store.save_tokens(config.provider_id, tokens)
    publisher = InMemoryPublisher()
    session = requests.Session()
    processor = Processor(store, publisher, session=session)
    adapter = processor.adapter_for(config)
    ids = setup.graph_ids if provider == "graph" else setup.gmail_ids
    split = CpuSplit()
    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attribute: str, name: str) -> None:
        patches.append((owner, attribute, owner.__dict__.get(attribute)))
        split.wrap(owner, attribute, name)

    patch(mhttp.HttpClient, "request", "http")
    patch(requests.Response, "json", "http")
    patch(adapter, "get_message_details", "normalize")
    for name in ("claim_keys", "mark_published", "get_meta", "set_meta", "published_state",
                 "release_keys", "load_tokens", "get_provider"):
        patch(store, name, "store")
    patch(publisher, "publish", "publish")
    patch(InboundEmailReceived, "for_message", "normalize")
    try:
        gc.collect()
        split._mark = time.thread_time()
        for mid in ids:
            result = processor.process_message(adapter, config, mid)
            if result.status != "published":
                raise RuntimeError(f"{provider} {mid}: {result.status} {result.error}")
        split._charge()
    finally:
        for owner, attribute, before in reversed(patches):
            if before is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, before)
        session.close()
    return {name: total / len(ids) * 1e6 for name, total in split.totals.items()}
