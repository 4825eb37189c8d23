"""1 and 2. End-to-end throughput per provider, and HTTP requests per inbound message.

Each side fetches the same messages from the same served fakes. mailparity runs the whole pipeline
(webhook handler, durable job, fetch, normalize, dedupe, publish; marking processed is off); the
baseline and the official SDKs only fetch. Times spent by the *fake* receiving mail (delivery) or
by Pub/Sub signing pushes are taken out of every side's time alike.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from typing import Any

import requests
from _env import (
    Served,
    Stopwatch,
    chunks,
    gmail_box,
    google_request,
    graph_box,
    graph_request,
    msgraph_client,
    pipeline,
)

from mailparity.models import GmailProviderConfig, InboundEmailReceived, Job
from mailparity.providers.graph.messages import ATTACHMENT_EXPAND, MESSAGE_SELECT
from mailparity.worker import Worker

_box_ids = itertools.count(1)


def _settle() -> None:
    """Start every timed side with the same garbage-collector state: the served fakes live in
    this process, and a full collection that walks their accumulated mail would otherwise land
    in whichever side happens to cross the threshold (tens of ms, on one side only)."""
    gc.collect()


def _complete_events(publisher: Any) -> int:
    return sum(
        1
        for event in publisher.events
        if isinstance(event, InboundEmailReceived) and event.email_data.complete
    )


def _drain(pipe: Any, threads: int | None) -> None:
    if threads is None:
        pipe.handler.run_pending()
    else:
        Worker(
            pipe.store, pipe.publisher, threads=threads, session=pipe.session, poll_interval=0.002
        ).run(stop_after=1)


# ====================================================================== Microsoft Graph


def graph_mailparity(
    served: Served,
    raws: list[bytes],
    threads: int | None,
    *,
    store: Any = None,
    recorded: int = 0,
) -> dict[str, float]:
    """Notifications in (one POST each), events out. ``threads`` None: one worker in the caller's
    thread (``run_pending``); else the Worker's thread pool. ``recorded``: dedupe keys of earlier
    mail already in the store (for the scale benchmark)."""
    from datetime import datetime, timezone

    pipe = pipeline(served, store)
    box = graph_box(served, pipe.store, next(_box_ids), session=pipe.session)
    if recorded:
        pipe.store.mark_published(
            box.config.provider_id,
            [f"id:earlier-{n}" for n in range(recorded)],
            complete=True,
            event_id="00000000-0000-0000-0000-000000000000",
            at=datetime.now(timezone.utc),
        )
    ids = [served.graph.deliver(box.config.mailbox, raw) for raw in raws]
    served.graph.pending.clear()
    bodies = [served.graph.notifications_for(mid) for mid in ids]
    before = served.graph_api_requests()
    _settle()
    start = time.perf_counter()
    for body in bodies:
        answer = pipe.handler.handle_microsoft(graph_request(body))
        if answer.status != 202:
            raise RuntimeError(f"Graph notification answered {answer.status}")
    _drain(pipe, threads)
    elapsed = time.perf_counter() - start
    events = _complete_events(pipe.publisher)
    if events != len(ids):
        raise RuntimeError(f"mailparity published {events} events for {len(ids)} messages")
    pipe.session.close()
    return {
        "rate": len(ids) / elapsed,
        "requests_per_message": (served.graph_api_requests() - before) / len(ids),
        "events": events,
    }


def _graph_targets(served: Served, raws: list[bytes]) -> tuple[Any, list[str]]:
    from mailparity.stores.memory import InMemoryStore

    box = graph_box(served, InMemoryStore(), next(_box_ids), subscribe=False)
    ids = [served.graph.deliver(box.config.mailbox, raw) for raw in raws]
    served.graph.pending.clear()
    return box, ids


def graph_bare(served: Served, raws: list[bytes]) -> dict[str, float]:
    """The limit: one GET per message with the same $select/$expand, no parsing."""
    box, ids = _graph_targets(served, raws)
    session = requests.Session()
    headers = {
        "Authorization": f"Bearer {box.access_token}",
        "Prefer": 'IdType="ImmutableId"',
    }
    params = {"$select": MESSAGE_SELECT, "$expand": ATTACHMENT_EXPAND}
    base = box.config.graph_base_url
    _settle()
    start = time.perf_counter()
    for mid in ids:
        response = session.get(f"{base}/me/messages/{mid}", params=params, headers=headers)
        if response.status_code != 200 or not response.content:
            raise RuntimeError(f"bare GET answered {response.status_code}")
    elapsed = time.perf_counter() - start
    session.close()
    return {"rate": len(ids) / elapsed, "requests_per_message": 1.0, "events": 0}


def graph_sdk(served: Served, raws: list[bytes]) -> dict[str, float]:
    """The official msgraph-sdk (kiota, httpx), one awaited GET after the other."""
    box, ids = _graph_targets(served, raws)

    async def run() -> float:
        client, config = msgraph_client(box.access_token, box.config.graph_base_url)
        _settle()
        start = time.perf_counter()
        for mid in ids:
            message = await client.me.messages.by_message_id(mid).get(request_configuration=config)
            if message is None or message.id is None:
                raise RuntimeError("msgraph-sdk returned no message")
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {"rate": len(ids) / elapsed, "requests_per_message": 1.0, "events": 0}


# ====================================================================== Gmail


def _gmail_rounds(
    served: Served, boxes: list[Any], raws: list[bytes], burst: int, watch: Stopwatch
) -> list[list[tuple[Any, list[int]]]]:
    """Split the messages into rounds: in each round every mailbox receives one burst."""
    rounds: list[list[tuple[Any, list[bytes]]]] = []
    groups = list(chunks(raws, burst))
    for start in range(0, len(groups), len(boxes)):
        rounds.append(list(zip(boxes, groups[start : start + len(boxes)], strict=False)))
    return rounds  # type: ignore[return-value]


def _deliver_burst(served: Served, box: Any, raws: list[bytes]) -> list[int]:
    """Deliver a burst; the historyId each message's push carries."""
    history: list[int] = []
    for raw in raws:
        served.gmail.deliver(box.config.mailbox, raw)
        history.append(served.gmail.mailbox(box.config.mailbox).history_id)
    return history


def gmail_mailparity(
    served: Served, raws: list[bytes], threads: int | None, *, mailboxes: int = 4, burst: int = 10
) -> dict[str, float]:
    """Pushes arrive in bursts (one per message); each round, every mailbox gets a burst, then
    the worker drains the jobs."""
    pipe = pipeline(served)
    boxes = [gmail_box(served, pipe.store, next(_box_ids)) for _ in range(mailboxes)]
    watch = Stopwatch()
    before = served.gmail_api_requests()
    _settle()
    start = time.perf_counter()
    for round_ in _gmail_rounds(served, boxes, raws, burst, watch):
        for box, group in round_:
            with watch.paused():  # Gmail receiving mail and Pub/Sub signing: not ours
                history = _deliver_burst(served, box, group)  # type: ignore[arg-type]
                pushes = [google_request(served, box.config.mailbox, h) for h in history]
            for push in pushes:
                answer = pipe.handler.handle_google(push)
                if answer.status not in (200, 204):
                    raise RuntimeError(f"push answered {answer.status}")
        _drain(pipe, threads)
    elapsed = time.perf_counter() - start - watch.excluded
    events = _complete_events(pipe.publisher)
    if events != len(raws):
        raise RuntimeError(f"mailparity published {events} events for {len(raws)} messages")
    pipe.session.close()
    return {
        "rate": len(raws) / elapsed,
        "requests_per_message": (served.gmail_api_requests() - before) / len(raws),
        "events": events,
    }


def _gmail_fetch_loop(
    served: Served,
    raws: list[bytes],
    history_call: Any,
    get_call: Any,
    *,
    mailboxes: int = 4,
    burst: int = 10,
) -> dict[str, float]:
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    boxes = [gmail_box(served, store, next(_box_ids)) for _ in range(mailboxes)]
    cursors = {box.config.provider_id: int(box.config.history_id or 0) for box in boxes}
    watch = Stopwatch()
    fetched = 0
    _settle()
    start = time.perf_counter()
    for round_ in _gmail_rounds(served, boxes, raws, burst, watch):
        for box, group in round_:
            with watch.paused():
                history = _deliver_burst(served, box, group)  # type: ignore[arg-type]
            for _ in history:  # one history.list per push, then the new messages
                pid = box.config.provider_id
                data = history_call(box, cursors[pid])
                cursors[pid] = int(data.get("historyId", cursors[pid]))
                for record in data.get("history", []):
                    for added in record.get("messagesAdded", []):
                        get_call(box, added["message"]["id"])
                        fetched += 1
    elapsed = time.perf_counter() - start - watch.excluded
    if fetched != len(raws):
        raise RuntimeError(f"fetched {fetched} of {len(raws)} messages")
    return {"rate": len(raws) / elapsed, "requests_per_message": None, "events": 0}  # type: ignore[dict-item]


def gmail_bare(served: Served, raws: list[bytes]) -> dict[str, float]:
    """The limit: bare requests, one history.list per push and one messages.get per message."""
    session = requests.Session()

    def headers(box: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {box.access_token}"}

    def history_call(box: Any, cursor: int) -> dict[str, Any]:
        url = f"{box.config.gmail_base_url}/gmail/v1/users/me/history"
        params = {"startHistoryId": cursor, "historyTypes": "messageAdded", "labelId": "INBOX"}
        response = session.get(url, params=params, headers=headers(box))
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def get_call(box: Any, mid: str) -> None:
        url = f"{box.config.gmail_base_url}/gmail/v1/users/me/messages/{mid}"
        response = session.get(url, params={"format": "full"}, headers=headers(box))
        if response.status_code != 200 or not response.content:
            raise RuntimeError(f"bare GET answered {response.status_code}")

    result = _gmail_fetch_loop(served, raws, history_call, get_call)
    session.close()
    return result


def gmail_apiclient(served: Served, raws: list[bytes]) -> dict[str, float]:
    """google-api-python-client on its default transport (httplib2), same calls as the bare loop."""
    import google.oauth2.credentials
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    services: dict[str, Any] = {}

    def service(box: Any) -> Any:
        pid = box.config.provider_id
        if pid not in services:
            credentials = google.oauth2.credentials.Credentials(token=box.access_token)
            http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
            services[pid] = build(
                "gmail", "v1", http=http, static_discovery=True, cache_discovery=False,
                client_options={"api_endpoint": box.config.gmail_base_url + "/"},
            )
        return services[pid]

    def history_call(box: Any, cursor: int) -> dict[str, Any]:
        request = service(box).users().history().list(
            userId="me", startHistoryId=cursor, historyTypes="messageAdded", labelId="INBOX"
        )
        return request.execute()  # type: ignore[no-any-return]

    def get_call(box: Any, mid: str) -> None:
        service(box).users().messages().get(userId="me", id=mid, format="full").execute()

    return _gmail_fetch_loop(served, raws, history_call, get_call)


# ====================================================================== catch-up sync (2)


def catchup_requests(served: Served, count: int, raws: list[bytes]) -> dict[str, float]:
    """A catch-up sync of ``count`` messages that arrived without any push: requests per message."""
    out: dict[str, float] = {}
    from _env import realistic_messages

    # Distinct mail (a repeated Message-ID would rightly be deduplicated into one event).
    messages = realistic_messages(count, seed=len(raws) + count)
    # Graph: a baseline delta round first (the mailbox is not replayed), then the mail arrives.
    pipe = pipeline(served)
    box = graph_box(served, pipe.store, next(_box_ids), subscribe=False, session=pipe.session)
    pid = box.config.provider_id

    def sync() -> None:
        pipe.store.enqueue_job(
            Job(kind="sync", provider_id=pid, payload={"reason": "bench"},
                unique_key=f"sync:{pid}")
        )
        pipe.handler.run_pending()

    sync()
    for raw in messages:
        served.graph.deliver(box.config.mailbox, raw)
    served.graph.pending.clear()
    before = served.graph_api_requests()
    sync()
    events = _complete_events(pipe.publisher)
    if events != count:
        raise RuntimeError(f"Graph catch-up published {events} of {count}")
    out["graph"] = (served.graph_api_requests() - before) / count
    # Gmail: the cursor is behind; a sync job reads history from it.
    pipe = pipeline(served)
    gbox = gmail_box(served, pipe.store, next(_box_ids))
    for raw in messages:
        served.gmail.deliver(gbox.config.mailbox, raw)
    before = served.gmail_api_requests()
    gpid = gbox.config.provider_id
    pipe.store.enqueue_job(
        Job(kind="sync", provider_id=gpid, payload={"reason": "bench"}, unique_key=f"sync:{gpid}")
    )
    pipe.handler.run_pending()
    events = _complete_events(pipe.publisher)
    if events != count:
        raise RuntimeError(f"Gmail catch-up published {events} of {count}")
    stored = pipe.store.get_provider(gpid)
    assert isinstance(stored, GmailProviderConfig)
    out["gmail"] = (served.gmail_api_requests() - before) / count
    return out
