"""Serve a :class:`~mailparity.webhooks.WebhookHandler` over plain WSGI.

:func:`make_wsgi_app` returns a WSGI application that any WSGI server (gunicorn, uWSGI, waitress,
mod_wsgi) can run. :func:`serve` and :func:`serve_in_thread` run it on the standard library's
``wsgiref`` with one thread per request, for small deployments, demos and tests.

The body is read from ``wsgi.input`` using ``CONTENT_LENGTH`` and never beyond the handler's
``max_body_bytes``: a larger declared body is refused with 413 without being read.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .webhooks import DEFAULT_PREFIX, WebhookHandler, WebhookRequest, WebhookResponse, push_routes

__all__ = ["WebhookServer", "make_wsgi_app", "serve", "serve_in_thread"]

log = logging.getLogger("mailparity.wsgi")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Unknown')}"


def _plain(status: int, message: str) -> WebhookResponse:
    return WebhookResponse(
        status, {"Content-Type": "text/plain; charset=utf-8"}, (message + "\n").encode()
    )


def _headers_from_environ(environ: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = str(value)
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = str(environ[key])
    return headers


def _query_from_environ(environ: dict[str, Any]) -> dict[str, str]:
    raw = environ.get("QUERY_STRING", "") or ""
    # PEP 3333 hands the query string over as latin-1 decoded bytes; URL-decode it as UTF-8.
    with contextlib.suppress(UnicodeError):
        raw = raw.encode("latin-1").decode("utf-8")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(name, value)  # the first value of a repeated name wins
    return query


def _read_body(environ: dict[str, Any], limit: int) -> bytes | WebhookResponse:
    """The request body, or the response refusing it (400 bad length, 413 too large)."""
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if not length_text:
        if environ.get("wsgi.input_terminated"):
            # The server de-chunked the body and marks its end: read at most one byte past the
            # limit to tell "too large" apart.
            data = stream.read(limit + 1)
            return _plain(413, "request body too large") if len(data) > limit else bytes(data)
        # Without a length the body cannot be read safely (the read could block forever).
        return b""
    if not length_text.isdigit():
        return _plain(400, "invalid Content-Length")
    length = int(length_text)
    if length > limit:
        return _plain(413, "request body too large")
    chunks: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    if remaining:
        return _plain(400, "request body shorter than Content-Length")
    return b"".join(chunks)


def make_wsgi_app(
    handler: WebhookHandler, *, prefix: str = DEFAULT_PREFIX, **paths: str
) -> WSGIApp:
    """A WSGI application routing each provider's push endpoint to ``handler``: ``{prefix}/{key}``
    for every provider with a push source (``/webhooks/microsoft``, ``/webhooks/google``), or the
    path given as ``<key>_path=`` (``microsoft_path="/graph"``).

    Other paths answer 404. A handler that raises (a bug, never bad input) answers 500 and is
    logged without the request's contents.
    """
    routes: dict[str, Callable[[WebhookRequest], WebhookResponse]] = {
        path.rstrip("/") or "/": getattr(handler, f"handle_{key}")
        for key, path in push_routes(handler, prefix=prefix, paths=paths).items()
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "") or "/")
        with contextlib.suppress(UnicodeError):
            path = path.encode("latin-1").decode("utf-8")
        route = routes.get(path.rstrip("/") or "/")
        if route is None:
            response = _plain(404, "not found")
        else:
            body = _read_body(environ, handler.max_body_bytes)
            if isinstance(body, WebhookResponse):
                response = body
            else:
                request = WebhookRequest(
                    method=str(environ.get("REQUEST_METHOD", "GET")),
                    query=_query_from_environ(environ),
                    headers=_headers_from_environ(environ),
                    body=body,
                )
                try:
                    response = route(request)
                except Exception:
                    log.exception("webhook handler failed")
                    response = _plain(500, "internal error")
        headers = dict(response.headers)
        headers["Content-Length"] = str(len(response.body))
        start_response(_status_line(response.status), list(headers.items()))
        return [response.body]

    return app


class _RequestHandler(WSGIRequestHandler):
    # Buffer the response so that headers and body leave in one write, and disable Nagle as well:
    # written in pieces, each response would stall ~40 ms on the client's delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the query string (Graph's validationToken): log at debug only.
        log.debug("%s - %s", self.address_string(), format % args)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class WebhookServer:
    """A running webhook server. ``url`` is its base URL; ``shutdown()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread | None) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"

    def __repr__(self) -> str:
        return f"WebhookServer(url={self.url!r})"

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`shutdown` is called from another thread."""
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving, close the socket and join the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> WebhookServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _make_server(handler: WebhookHandler, host: str, port: int, **paths: str) -> WSGIServer:
    app = make_wsgi_app(handler, **paths)
    server_class: type[WSGIServer] = _ThreadingWSGIServer
    if ":" in host:
        class _V6Server(_ThreadingWSGIServer):
            address_family = socket.AF_INET6

        server_class = _V6Server
    return make_server(host, port, app, server_class=server_class, handler_class=_RequestHandler)


def serve(
    handler: WebhookHandler,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    microsoft_path: str = "/webhooks/microsoft",
    google_path: str = "/webhooks/google",
) -> None:
    """Serve ``handler`` on ``host:port`` until interrupted (one thread per request)."""
    server = WebhookServer(
        _make_server(handler, host, port, microsoft_path=microsoft_path, google_path=google_path),
        None,
    )
    log.info("mailparity webhooks listening on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


def serve_in_thread(
    handler: WebhookHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    microsoft_path: str = "/webhooks/microsoft",
    google_path: str = "/webhooks/google",
) -> WebhookServer:
    """Start serving ``handler`` in a daemon thread; ``port=0`` picks a free port.

    Returns the started :class:`WebhookServer` (``.url``, ``.shutdown()``; a context manager).
    """
    wsgi_server = _make_server(
        handler, host, port, microsoft_path=microsoft_path, google_path=google_path
    )
    thread = threading.Thread(
        target=wsgi_server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="mailparity-webhooks",
        daemon=True,
    )
    server = WebhookServer(wsgi_server, thread)
    thread.start()
    return server
