"""The helpdesk: one FastAPI app with mailparity's webhooks, the web connect flow, and tickets.

::

    helpdesk = Helpdesk(Settings(base_url="https://helpdesk.example", ...))
    app = create_app(helpdesk)          # run it with any ASGI server

Routes:

* ``GET /login?user=<name>``: the demo's sign-in (a cookie; use your own authentication);
* ``GET /``: the signed-in agent's mailboxes (connect, disconnect) and tickets;
* ``GET /api/tickets``: the tickets as the events' JSON;
* ``GET /tickets/{event_id}/attachments/{attachment_id}``: a saved attachment;
* ``/mail/connect/...``: the web connect flow (``mailparity.contrib.fastapi.connect_router``);
* ``/mail/webhooks/microsoft`` and ``/mail/webhooks/google``: the providers' pushes.

The agent's name is the ``owner`` of the connect flow and the ``tenant`` of the mailboxes they
connect, so an agent sees only their own mailboxes and tickets.
"""

from __future__ import annotations

import html
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

import mailparity as mp
from mailparity.contrib.fastapi import connect_router, webhook_router
from mailparity.models import ProviderConfigBase

__all__ = ["Helpdesk", "Settings", "create_app"]

#: The demo's sign-in cookie (a real app uses its own authentication).
USER_COOKIE = "helpdesk_user"
#: Where mailparity's routes are mounted.
MAIL_PREFIX = "/mail"


@dataclass
class Settings:
    """What the helpdesk needs.

    Attributes:
        base_url: the public URL of the app (``https://helpdesk.example``): the OAuth
            redirect URI and the Graph notification URL are built from it.
        database: the SQLite file of mailparity's store.
        attachments_dir: where attachments are saved.
        providers: the web connect settings per provider (``client_id``, ``client_secret``,
            ``project_id``, ``pubsub_topic_name`` ...); the Graph notification URL is added.
        push: the webhook handler's options (``google_audience``,
            ``google_service_accounts`` ...).
        session: the ``requests.Session`` for every call to the providers.
        run_worker: process pushes in a background worker thread (off: call
            ``helpdesk.mail.webhooks.run_pending()`` yourself, as the tests do).
    """

    base_url: str
    database: str | Path
    attachments_dir: str | Path
    providers: Mapping[str, Mapping[str, Any]]
    push: Mapping[str, Any] = field(default_factory=dict)
    session: requests.Session | None = None
    run_worker: bool = False


class Helpdesk:
    """mailparity's App and web connect flow over one store, and the tickets they produce.

    Tickets are kept in memory here (a real helpdesk writes them to its own database in
    :meth:`on_email`); the attachments are in the attachment store on disk.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        base = settings.base_url.rstrip("/")
        self.store = mp.SqliteStore(str(settings.database))
        self.attachments = mp.FilesystemAttachmentStore(settings.attachments_dir)
        self.tickets: list[mp.InboundEmailReceived] = []
        self.alerts: list[mp.EmailProviderAuthFailed] = []
        #: Mailboxes connected (or connected again) through the web flow, newest last.
        self.connections: list[mp.EmailProviderConnected | mp.EmailProviderReauthorized] = []
        self._lock = threading.Lock()
        publisher = mp.CallbackPublisher(
            on_email=self.on_email,
            on_auth_failure=self.on_auth_failure,
            on_connected=self.on_connection,
            on_reauthorized=self.on_connection,
        )
        self.mail = mp.App(
            self.store,
            publisher,
            session=settings.session,
            push=dict(settings.push),
            attachment_store=self.attachments,
        )
        providers = {key: dict(value) for key, value in settings.providers.items()}
        if "microsoft" in providers:
            providers["microsoft"].setdefault(
                "webhook_notification_url", f"{base}{MAIL_PREFIX}/webhooks/microsoft"
            )
        self.connect = mp.WebConnect(
            self.store,
            redirect_uri=f"{base}{MAIL_PREFIX}/connect/callback",
            providers=providers,
            session=settings.session,
            publisher=publisher,
        )

    # ------------------------------------------------------------------ mailparity's events

    def on_email(self, event: mp.InboundEmailReceived) -> None:
        """One new email: one ticket (a redelivered event has the same id and is dropped)."""
        with self._lock:
            if all(ticket.event_id != event.event_id for ticket in self.tickets):
                self.tickets.append(event)

    def on_auth_failure(self, event: mp.EmailProviderAuthFailed) -> None:
        """A mailbox needs its owner to connect it again."""
        with self._lock:
            self.alerts.append(event)

    def on_connection(
        self, event: mp.EmailProviderConnected | mp.EmailProviderReauthorized
    ) -> None:
        """A mailbox was connected through the web flow (or connected again after its consent
        had lapsed)."""
        with self._lock:
            self.connections.append(event)

    # ------------------------------------------------------------------ per agent

    def mailboxes(self, agent: str) -> list[ProviderConfigBase]:
        """The agent's connected mailboxes."""
        return [config for config in self.store.list_providers() if config.tenant == agent]

    def tickets_of(self, agent: str) -> list[mp.InboundEmailReceived]:
        """The agent's tickets, oldest first."""
        with self._lock:
            return [ticket for ticket in self.tickets if ticket.tenant_id == agent]

    def ticket(self, agent: str, event_id: str) -> mp.InboundEmailReceived | None:
        """One of the agent's tickets."""
        return next((t for t in self.tickets_of(agent) if t.event_id == event_id), None)


def agent_of(request: Request) -> str | None:
    """The signed-in agent (the demo's cookie), or None."""
    value = request.cookies.get(USER_COOKIE)
    return value if value else None


def create_app(helpdesk: Helpdesk) -> FastAPI:
    """The helpdesk's FastAPI app (see the module docstring)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = helpdesk.mail.worker(threads=2) if helpdesk.settings.run_worker else None
        thread = None
        if worker is not None:
            thread = threading.Thread(target=worker.run, name="helpdesk-worker", daemon=True)
            thread.start()
        yield
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(timeout=10)

    app = FastAPI(title="Helpdesk", lifespan=lifespan)
    app.include_router(webhook_router(helpdesk.mail.webhooks), prefix=MAIL_PREFIX)
    app.include_router(connect_router(helpdesk.connect, owner=agent_of), prefix=MAIL_PREFIX)

    @app.get("/login")
    def login(user: str) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(USER_COOKIE, user, httponly=True, samesite="lax", secure=True)
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        agent = agent_of(request)
        if agent is None:
            return HTMLResponse("<p>Sign in: /login?user=you</p>", status_code=401)
        return HTMLResponse(_home_page(helpdesk, agent))

    @app.get("/api/tickets")
    def tickets(request: Request) -> Response:
        agent = agent_of(request)
        if agent is None:
            return JSONResponse({"error": "not_signed_in"}, status_code=401)
        return JSONResponse(
            [t.model_dump(mode="json", by_alias=True) for t in helpdesk.tickets_of(agent)]
        )

    @app.get("/tickets/{event_id}/attachments/{attachment_id}")
    def attachment(request: Request, event_id: str, attachment_id: str) -> Response:
        agent = agent_of(request)
        ticket = helpdesk.ticket(agent, event_id) if agent else None
        found = next(
            (a for a in ticket.email_data.attachments if a.id == attachment_id), None
        ) if ticket else None
        if found is None or found.stored_as is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        with helpdesk.attachments.open(found.stored_as) as stored:
            content = stored.read()
        disposition = f"attachment; filename*=UTF-8''{quote(found.name)}"
        return Response(
            content,
            media_type=found.content_type or "application/octet-stream",
            headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"},
        )

    return app


def _home_page(helpdesk: Helpdesk, agent: str) -> str:
    esc = html.escape
    boxes = "".join(
        f"<li>{esc(box.mailbox)} ({esc(box.provider)})"
        f'<form method="post" action="{MAIL_PREFIX}/connect/{quote(box.provider_id)}/disconnect">'
        '<input type="hidden" name="return_to" value="/"><button>Disconnect</button></form></li>'
        for box in helpdesk.mailboxes(agent)
    )
    rows = "".join(
        f"<li><b>{esc(t.email_data.subject)}</b> from {esc(t.email_data.from_.email)}"
        f" to {esc(t.email_data.mailbox)}<ul>"
        + "".join(
            f'<li><a href="/tickets/{quote(t.event_id)}/attachments/{quote(a.id, safe="")}">'
            f"{esc(a.name)}</a> ({a.size} bytes)</li>"
            for a in t.email_data.attachments
            if a.stored_as is not None
        )
        + "</ul></li>"
        for t in helpdesk.tickets_of(agent)
    )
    return (
        f"<!doctype html><title>Helpdesk</title><h1>Helpdesk of {esc(agent)}</h1>"
        f'<p><a href="{MAIL_PREFIX}/connect/microsoft?return_to=/">Connect Microsoft 365</a> '
        f'<a href="{MAIL_PREFIX}/connect/google?return_to=/">Connect Gmail</a></p>'
        f"<h2>Mailboxes</h2><ul>{boxes}</ul><h2>Tickets</h2><ul>{rows}</ul>"
    )
