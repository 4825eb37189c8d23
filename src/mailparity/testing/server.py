"""Serve provider fakes over real HTTP on loopback, for end-to-end tests and local runs.

``serve(FakeGraph(), FakeGmail())`` starts a threaded ``http.server`` on an ephemeral port and
re-mounts each fake below the server's URL, one clear prefix per service::

    {url}/graph/v1.0/...   Microsoft Graph           (graph_base_url)
    {url}/login/...        Entra sign-in             (login_base_url)
    {url}/gmail/...        Gmail API and its batch   (gmail_base_url)
    {url}/google/token     Google's token endpoint   (token_uri)
    {url}/google/certs     the push signer's certs   (where Pub/Sub token verification looks)

``fake.config_overrides()`` returns those fields for a provider config. Every response goes out
in ONE write with ``Content-Length`` on a keep-alive connection, and ``TCP_NODELAY`` is set: a
headers-then-body pair of writes stalls each keep-alive request about 40 ms on delayed ACKs.
The routing itself is the fakes' own ``handle``, so both modes (this server and ``register`` with
``responses``) behave identically.
"""

from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ._fakebase import ProviderFake

__all__ = ["FakeServer", "serve"]

#: Largest request body the server reads (the fakes never need more).
MAX_BODY = 64 * 1024 * 1024


class FakeServer:
    """A running server; stop it with :meth:`close` or use it as a context manager."""

    def __init__(self, fakes: tuple[ProviderFake, ...], host: str, port: int) -> None:
        self.fakes = fakes
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        bound_host, bound_port = self._httpd.server_address[:2]
        shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{bound_port}"
        for fake in fakes:
            fake.mount(self.url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mailparity-fake-server",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"FakeServer(url={self.url!r}, fakes={len(self.fakes)})"

    def config_overrides(self) -> dict[str, str]:
        """The base-URL fields of every served fake, merged."""
        merged: dict[str, str] = {}
        for fake in self.fakes:
            overrides = getattr(fake, "config_overrides", None)
            if callable(overrides):
                merged.update(overrides())
        return merged

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def route(self, url: str) -> ProviderFake | None:
        """The fake that owns ``url`` (None: nobody does)."""
        for fake in self.fakes:
            if fake.owns(url):
                return fake
        return None


def serve(*fakes: ProviderFake, host: str = "127.0.0.1", port: int = 0) -> FakeServer:
    """Serve ``fakes`` on ``host:port`` (port 0: an ephemeral port) in a background thread."""
    if not fakes:
        raise ValueError("serve() needs at least one fake")
    return FakeServer(tuple(fakes), host, port)


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mailparity-fake"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            # Silent: request lines may carry tokens in query strings of third-party clients.
            return

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
            lines = [f"HTTP/1.1 {status} {phrase}"]
            sent = {key.lower() for key in headers}
            for key, value in headers.items():
                if key.lower() in ("content-length", "connection", "transfer-encoding"):
                    continue
                lines.append(f"{key}: {value}")
            if "date" not in sent:
                lines.append(f"Date: {self.date_time_string()}")
            lines.append(f"Server: {self.server_version}")
            lines.append(f"Content-Length: {len(body)}")
            lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            # One write: headers and body in the same segment (see the module docstring).
            self.wfile.write(head + body)
            self.wfile.flush()

        def _serve(self) -> None:
            length_header = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()
            elif length_header is not None:
                try:
                    length = int(length_header)
                except ValueError:
                    self.close_connection = True
                    self._answer(400, {"Content-Type": "text/plain"}, b"bad Content-Length")
                    return
                if length < 0 or length > MAX_BODY:
                    self.close_connection = True
                    self._answer(413, {"Content-Type": "text/plain"}, b"body too large")
                    return
                body = self.rfile.read(length)
            else:
                body = b""
            url = f"{server.url}{self.path}"
            fake = server.route(url)
            if fake is None:
                self._answer(404, {"Content-Type": "text/plain"}, b"no fake serves this path")
                return
            headers = dict(self.headers.items())
            try:
                result = fake.handle(self.command, url, headers, body)
            except Exception as exc:  # a bug in a fake must not kill the connection silently
                message = f"fake error: {type(exc).__name__}".encode()
                self._answer(500, {"Content-Type": "text/plain"}, message)
                return
            self._answer(result.status, dict(result.headers), result.body)

        def _read_chunked(self) -> bytes:
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("chunked body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        # http.server dispatches on these stdlib names.
        do_GET = _serve  # noqa: N815
        do_POST = _serve  # noqa: N815
        do_PATCH = _serve  # noqa: N815
        do_PUT = _serve  # noqa: N815
        do_DELETE = _serve  # noqa: N815

    return Handler
