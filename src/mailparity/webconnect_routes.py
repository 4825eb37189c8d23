"""The web connect flow as HTTP answers, for the framework integrations (Flask, FastAPI,
Django): each route turns its framework's request into a query, an owner and a few headers, and
sends back the :class:`~mailparity.webhooks.WebhookResponse` a :class:`ConnectRoutes` method
returns. Paths below a prefix (``/connect`` by default)::

    GET  {prefix}/{provider}                  start: 302 to the provider (query: mailbox, return_to)
    GET  {prefix}/{provider}/admin-consent    start an admin consent (query: mailbox, return_to)
    GET  {prefix}/callback                    the redirect URI: finish, then 303 to return_to or
                                              a page (HTML, or JSON when the client asks for it)
    POST {prefix}/{provider_id}/disconnect    stop the push and forget the connection

The host says who the current user or tenant is (the ``owner``; None: nobody is signed in, 401).
Error answers are small pages (or JSON) with the error's message and code: never the state, the
code, a token or a secret. Every answer carries ``Cache-Control: no-store`` and
``Referrer-Policy: no-referrer`` (the callback's URL holds the authorization code).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .errors import (
    ConfigurationError,
    ConnectStateError,
    MailParityError,
    WebConnectError,
    is_transient,
)
from .webconnect import ConnectResult, WebConnect, _local_path
from .webhooks import WebhookResponse

__all__ = ["CALLBACK_PATH", "DEFAULT_CONNECT_PREFIX", "ConnectRoutes", "same_origin"]

#: Where the routes are mounted by default.
DEFAULT_CONNECT_PREFIX = "/connect"
#: The callback's path below the prefix (register ``https://host{prefix}/callback``).
CALLBACK_PATH = "/callback"

log = logging.getLogger("mailparity.webconnect")

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def same_origin(headers: Mapping[str, str], host: str) -> bool:
    """Whether a state-changing request comes from the host's own pages: refused when the
    browser says the request is cross-site (``Sec-Fetch-Site``) or its ``Origin`` names another
    host than ``host`` (the request's ``Host``). The scheme is not compared: behind a proxy that
    terminates TLS the app sees ``http`` while the browser's origin is ``https``. Requests
    without either header (non-browser clients) pass."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("sec-fetch-site", "").lower() == "cross-site":
        return False
    origin = lowered.get("origin")
    if origin is None or origin == "":
        return True
    if origin == "null":  # an opaque origin (a sandboxed frame, a data: page)
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


class ConnectRoutes:
    """The answers of the web connect routes, framework-free.

    Args:
        connect: the :class:`~mailparity.webconnect.WebConnect` to run.
        on_connected: called with each successful :class:`~mailparity.webconnect.ConnectResult`
            (link the connection to your records); an exception there is logged, the
            connection stays.
    """

    def __init__(
        self, connect: WebConnect, *, on_connected: Callable[[ConnectResult], None] | None = None
    ) -> None:
        self.connect = connect
        self.on_connected = on_connected

    # ------------------------------------------------------------------ routes

    def start(
        self,
        provider: str,
        query: Mapping[str, str],
        owner: str | None,
        *,
        accept: str = "",
        admin: bool = False,
    ) -> WebhookResponse:
        """``GET {prefix}/{provider}`` (``admin``: ``/admin-consent``): 302 to the provider."""
        if not owner:
            return _signed_out(accept)
        begin = self.connect.start_admin_consent if admin else self.connect.start
        try:
            started = begin(
                provider, owner=owner, mailbox=query.get("mailbox") or None,
                return_to=query.get("return_to") or None,
            )
        except ConfigurationError as exc:
            return _error(404, "This provider cannot be connected here", exc, accept)
        except MailParityError as exc:
            return _error(502, "The provider could not be reached", exc, accept)
        return WebhookResponse(302, {"Location": started.url, **_SECURITY_HEADERS}, b"")

    def callback(
        self, query: Mapping[str, str], owner: str | None, accept: str = ""
    ) -> WebhookResponse:
        """``GET {prefix}/callback``: finish the flow; 303 to the flow's ``return_to`` (with
        ``connected=<provider id>``), else a page."""
        if not owner:
            return _signed_out(accept)
        try:
            result = self.connect.callback(query, owner=owner)
        except ConnectStateError as exc:
            return _error(400, "This connect link cannot be used", exc, accept)
        except WebConnectError as exc:
            return _error(400, "The mailbox was not connected", exc, accept)
        except MailParityError as exc:
            status = 502 if is_transient(exc) else 500
            return _error(status, "The mailbox was not connected", exc, accept)
        if self.on_connected is not None:
            try:
                self.on_connected(result)
            except Exception:  # the host's hook must not undo a stored connection
                log.exception("web connect: on_connected failed for %s", result.provider_id)
        if result.return_to:
            separator = "&" if "?" in result.return_to else "?"
            key = "connected" if result.provider_id else "consented"
            value = result.provider_id or result.provider
            location = f"{result.return_to}{separator}{urlencode({key: value})}"
            return WebhookResponse(303, {"Location": location, **_SECURITY_HEADERS}, b"")
        return _connected(result, accept)

    def disconnect(
        self,
        provider_id: str,
        owner: str | None,
        *,
        headers: Mapping[str, str],
        host: str,
        scheme: str | None = None,
        return_to: str | None = None,
    ) -> WebhookResponse:
        """``POST {prefix}/{provider_id}/disconnect`` (the connection must be the owner's).

        ``headers`` and ``host`` (the request's ``Host``) feed :func:`same_origin`; ``scheme`` is
        accepted from integrations that pass it and not compared (see there)."""
        accept = _header(headers, "accept")
        if not owner:
            return _signed_out(accept)
        if not same_origin(headers, host):
            return _page(403, "Refused", "The request did not come from this site.",
                         accept, {"error": "cross_site"})
        try:
            gone = self.connect.disconnect(provider_id, tenant=owner)
        except WebConnectError as exc:
            return _error(exc.status or 400, "The mailbox was not disconnected", exc, accept)
        target = _local_path(return_to)
        if target and not _wants_json(accept):
            return WebhookResponse(303, {"Location": target, **_SECURITY_HEADERS}, b"")
        data = {"status": "disconnected", "provider_id": gone.provider_id,
                "provider": gone.provider, "mailbox": gone.mailbox,
                "push_stopped": gone.push_stopped, "error": gone.error}
        text = f"{gone.mailbox} is no longer connected."
        if gone.error:
            text += f" Stopping its notifications failed ({gone.error}); they lapse by themselves."
        return _page(200, "Disconnected", text, accept, data)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def _wants_json(accept: str) -> bool:
    lowered = accept.lower()
    return "application/json" in lowered and "text/html" not in lowered


def _page(
    status: int, title: str, text: str, accept: str, data: Mapping[str, Any]
) -> WebhookResponse:
    """A small HTML page, or ``data`` as JSON when the client asks for JSON."""
    if _wants_json(accept):
        body = json.dumps(dict(data)).encode("utf-8")
        return WebhookResponse(
            status, {"Content-Type": "application/json", **_SECURITY_HEADERS}, body
        )
    page = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return WebhookResponse(
        status, {"Content-Type": "text/html; charset=utf-8", **_SECURITY_HEADERS},
        page.encode("utf-8"),
    )


def _error(status: int, title: str, error: MailParityError, accept: str) -> WebhookResponse:
    # The library's messages are free of secrets, states and codes (see errors.py).
    data = {"error": error.code or type(error).__name__, "message": error.message}
    return _page(status, title, error.message, accept, data)


def _signed_out(accept: str) -> WebhookResponse:
    return _page(401, "Sign in first", "Sign in to connect a mailbox.", accept,
                 {"error": "not_signed_in"})


def _connected(result: ConnectResult, accept: str) -> WebhookResponse:
    if result.kind == "admin_consent":
        text = "The administrator's consent was recorded; mailboxes can now be connected."
    else:
        verb = "reconnected" if result.reconnected else "connected"
        text = f"{result.mailbox} is {verb}."
        if result.subscription_error:
            text += (" Its notifications could not be set up yet"
                     f" ({result.subscription_error}); they are retried.")
    data = {"status": result.kind, "provider": result.provider,
            "provider_id": result.provider_id, "mailbox": result.mailbox,
            "reconnected": result.reconnected, "subscription_error": result.subscription_error}
    return _page(200, "Mailbox connected" if result.mailbox else "Consent granted", text,
                 accept, data)
