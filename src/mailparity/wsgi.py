"""Serve a :class:`~mailparity.webhooks.WebhookHandler` over plain WSGI.

:func:`make_wsgi_app` returns a WSGI application that any WSGI server (gunicorn, uWSGI, waitress,
mod_wsgi) can run. Two servers are bundled:

* :func:`serve_production` and :func:`serve_production_in_thread` (what ``mailparity serve``
  runs): waitress, the server to deploy with. One event loop reads every connection and hands
  complete requests to a fixed pool of threads, so idle and slow clients hold no thread; idle or
  half-sent connections are closed after a read timeout and open connections are capped
  (:class:`ServerLimits`). Needs the ``server`` extra.
* :func:`serve` and :func:`serve_in_thread`: the standard library's ``wsgiref`` with one thread
  per connection and no read timeout, for tests and demos only: a few hundred idle connections
  exhaust it.

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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import telemetry
from .errors import ConfigurationError, install_hint
from .health import HealthCheck, check_for
from .webhooks import DEFAULT_PREFIX, WebhookHandler, WebhookRequest, WebhookResponse, push_routes

__all__ = [
    "ProductionServer",
    "ServerLimits",
    "WebhookServer",
    "escape_log_text",
    "make_wsgi_app",
    "serve",
    "serve_in_thread",
    "serve_production",
    "serve_production_in_thread",
]

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
    handler: WebhookHandler,
    *,
    prefix: str = DEFAULT_PREFIX,
    health: HealthCheck | None = None,
    metrics_path: str | None = None,
    **paths: str,
) -> WSGIApp:
    """A WSGI application routing each provider's push endpoint to ``handler``: ``{prefix}/{key}``
    for every provider with a push source (``/webhooks/microsoft``, ``/webhooks/google``), or the
    path given as ``<key>_path=`` (``microsoft_path="/graph"``).

    ``GET /healthz`` and ``GET /readyz`` answer from ``health`` (a
    :class:`~mailparity.health.HealthCheck` of the handler's store by default): liveness, and
    readiness (store reachable, a worker heartbeat recent). A push route wins over them.

    ``metrics_path`` (``"/metrics"``; None, the default, serves none): ``GET`` answers the
    Prometheus text exposition of :func:`mailparity.telemetry.enable_prometheus`'s registry.

    Raises:
        ImportError: ``metrics_path`` is given without ``prometheus-client`` installed.

    Other paths answer 404. A handler that raises (a bug, never bad input) answers 500 and is
    logged without the request's contents.
    """
    routes: dict[str, Callable[[WebhookRequest], WebhookResponse]] = {
        path.rstrip("/") or "/": getattr(handler, f"handle_{key}")
        for key, path in push_routes(handler, prefix=prefix, paths=paths).items()
    }

    checks = check_for(handler, health)
    metrics_route = None if metrics_path is None else (metrics_path.rstrip("/") or "/")
    if metrics_route is not None and telemetry.prometheus_registry() is None:
        telemetry.enable_prometheus()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "") or "/")
        with contextlib.suppress(UnicodeError):
            path = path.encode("latin-1").decode("utf-8")
        route = routes.get(path.rstrip("/") or "/")
        answer = checks.respond(path) if route is None and checks is not None else None
        if route is None and metrics_route is not None and (path.rstrip("/") or "/") == (
            metrics_route
        ):
            answer = _metrics_response()
        if answer is not None:
            method = str(environ.get("REQUEST_METHOD", "GET"))
            response = answer if method in ("GET", "HEAD") else _plain(405, "method not allowed")
        elif route is None:
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


def _metrics_response() -> WebhookResponse:
    try:
        body, content_type = telemetry.prometheus_exposition()
    except Exception:  # a failing collector must not take the endpoint down with a traceback
        log.exception("rendering the Prometheus metrics failed")
        return _plain(500, "internal error")
    return WebhookResponse(200, {"Content-Type": content_type, "Cache-Control": "no-store"}, body)


#: Control characters as the standard library's ``http.server`` shows them in its log: C0, DEL
#: and C1 as ``\xNN``, a backslash doubled. A request line is the client's text: written raw,
#: it could move the terminal's cursor, recolour it, or forge whole log lines.
_LOG_ESCAPES = str.maketrans({
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    ord("\\"): "\\\\",
})


def escape_log_text(text: str) -> str:
    """``text`` with control characters escaped as ``http.server`` escapes its log lines."""
    return text.translate(_LOG_ESCAPES)


class _RequestHandler(WSGIRequestHandler):
    # Buffer the response so that headers and body leave in one write, and disable Nagle as well:
    # written in pieces, each response would stall ~40 ms on the client's delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the query string (Graph's validationToken): log at debug only.
        log.debug("%s - %s", self.address_string(), escape_log_text(format % args))


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


def _make_server(
    handler: WebhookHandler, host: str, port: int, metrics_path: str | None = None, **paths: str
) -> WSGIServer:
    app = make_wsgi_app(handler, health=None, metrics_path=metrics_path, **paths)
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
    metrics_path: str | None = None,
) -> None:
    """Serve ``handler`` on ``host:port`` until interrupted, on the standard library's server.

    For tests and demos only: one thread per connection and no read timeout, so a few hundred
    idle clients exhaust it. Deploy with :func:`serve_production`. ``metrics_path``: see
    :func:`make_wsgi_app`."""
    server = WebhookServer(
        _make_server(handler, host, port, metrics_path, microsoft_path=microsoft_path,
                     google_path=google_path),
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
    The standard library's server: for tests and demos only (see :func:`serve`); deploy with
    :func:`serve_production_in_thread` or :func:`serve_production`.
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


# --------------------------------------------------------------------------------------------
# The production server (waitress)


@dataclass(frozen=True)
class ServerLimits:
    """The limits of the production server (:func:`serve_production`); defaults in brackets.

    Attributes:
        threads: worker threads running the handler [8]. Reading requests never takes one: a
            slow or idle client costs a socket, not a thread.
        connection_limit: open connections at most [500]; beyond it new connections wait in the
            listen backlog until one closes.
        read_timeout: seconds a connection may stay idle (or half-sent) before it is closed [30].
        cleanup_interval: how often (seconds) idle connections are looked for [5].
        max_header_bytes: request line and headers together at most [65,536]; larger: 431.
    """

    threads: int = 8
    connection_limit: int = 500
    read_timeout: int = 30
    cleanup_interval: int = 5
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("threads", "connection_limit", "read_timeout", "cleanup_interval",
                     "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"ServerLimits.{name} must be at least 1")


def _waitress_server(
    handler: WebhookHandler,
    host: str,
    port: int,
    *,
    limits: ServerLimits,
    socket_map: dict[Any, Any],
    paths: dict[str, str],
    metrics_path: str | None = None,
) -> Any:
    try:
        import waitress
    except ImportError as exc:
        raise ConfigurationError(
            f"the production server needs waitress: {install_hint('server')}"
        ) from exc
    return waitress.create_server(
        make_wsgi_app(handler, health=None, metrics_path=metrics_path, **paths),
        map=socket_map,
        host=host,
        port=port,
        threads=limits.threads,
        connection_limit=limits.connection_limit,
        channel_timeout=limits.read_timeout,
        cleanup_interval=limits.cleanup_interval,
        max_request_header_size=limits.max_header_bytes,
        # The handler refuses larger bodies with 413 too; waitress then never buffers them.
        max_request_body_size=max(handler.max_body_bytes, 1),
        # poll(), not select(): select cannot watch descriptors above 1024.
        asyncore_use_poll=True,
        expose_tracebacks=False,
        ident="mailparity",
    )


class ProductionServer:
    """A running production server (waitress). ``url`` is its base URL; ``shutdown()`` stops it.

    Made by :func:`serve_production_in_thread`; :func:`serve_production` runs one in the calling
    thread."""

    def __init__(self, server: Any, socket_map: dict[Any, Any]) -> None:
        self._server = server
        self._map = socket_map
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.host = str(server.effective_host)
        self.port = int(server.effective_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"

    def __repr__(self) -> str:
        return f"ProductionServer(url={self.url!r})"

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`shutdown` (or Ctrl-C)."""
        from waitress import wasyncore

        try:
            while not self._stop.is_set() and self._map:
                wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            # Everything is closed in the serving thread, which owns the sockets.
            self._server.task_dispatcher.shutdown()
            wasyncore.close_all(self._map)

    def start(self) -> ProductionServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="mailparity-webhooks", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving, close every connection and join the serving thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ProductionServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve_production_in_thread(
    handler: WebhookHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: ServerLimits | None = None,
    microsoft_path: str = "/webhooks/microsoft",
    google_path: str = "/webhooks/google",
    metrics_path: str | None = None,
) -> ProductionServer:
    """Start the production server in a daemon thread; ``port=0`` picks a free port.
    ``metrics_path``: see :func:`make_wsgi_app`.

    Raises:
        ConfigurationError: waitress is not installed (the ``server`` extra).
    """
    socket_map: dict[Any, Any] = {}
    paths = {"microsoft_path": microsoft_path, "google_path": google_path}
    server = _waitress_server(handler, host, port, limits=limits or ServerLimits(),
                              socket_map=socket_map, paths=paths, metrics_path=metrics_path)
    return ProductionServer(server, socket_map).start()


def serve_production(
    handler: WebhookHandler,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    limits: ServerLimits | None = None,
    microsoft_path: str = "/webhooks/microsoft",
    google_path: str = "/webhooks/google",
    ready: Callable[[str], None] | None = None,
    metrics_path: str | None = None,
) -> None:
    """Serve ``handler`` with waitress until interrupted: the server to deploy with.

    Requests are read by one event loop and handed to ``limits.threads`` worker threads only
    once complete, so idle and slow clients hold no thread; they are closed after
    ``limits.read_timeout`` seconds, and at most ``limits.connection_limit`` connections are open
    at once. ``ready`` is called with the server's URL once it listens. ``metrics_path``: see
    :func:`make_wsgi_app`.

    Raises:
        ConfigurationError: waitress is not installed (the ``server`` extra).
    """
    socket_map: dict[Any, Any] = {}
    paths = {"microsoft_path": microsoft_path, "google_path": google_path}
    server = ProductionServer(
        _waitress_server(handler, host, port, limits=limits or ServerLimits(),
                         socket_map=socket_map, paths=paths, metrics_path=metrics_path),
        socket_map,
    )
    log.info("mailparity webhooks (waitress) listening on %s", server.url)
    if ready is not None:
        ready(server.url)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
