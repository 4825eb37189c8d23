"""Serve provider fakes over real HTTP on loopback, for end-to-end tests and local runs.

``serve(FakeGraph(), FakeGmail())`` starts a threaded ``http.server`` on an ephemeral port and
re-mounts each fake below the server's URL, one clear prefix per service::

    {url}/graph/v1.0/...   Microsoft Graph           (graph_base_url)
    {url}/login/...        Entra sign-in             (login_base_url)
    {url}/gmail/...        Gmail API and its batch   (gmail_base_url)
    {url}/google/token     Google's token endpoint   (token_uri)
    {url}/google/certs     the push signer's certs   (where Pub/Sub token verification looks)
    {url}/google/auth      Google's authorization endpoint (auth_uri)

``fake.config_overrides()`` returns those fields for a provider config. Every response goes out
in ONE write with ``Content-Length`` on a keep-alive connection, and ``TCP_NODELAY`` is set: a
headers-then-body pair of writes stalls each keep-alive request about 40 ms on delayed ACKs.
The routing itself is the fakes' own ``handle``, so both modes (this server and ``register`` with
``responses``) behave identically.

TLS: ``serve(*fakes, tls=True)`` serves HTTPS instead (MSAL refuses a plain-http authority, so a
Graph adapter can refresh its tokens against the fakes only this way). A throwaway CA and a
server certificate for ``127.0.0.1``, ``::1`` and ``localhost`` are generated with
``cryptography`` into a temporary directory, which :meth:`FakeServer.close` deletes. ``url`` is
then ``https://127.0.0.1:PORT`` and ``ca_path`` names the CA certificate to trust::

    with serve(FakeGraph(), tls=True) as server:
        session = server.session()          # or server.trust(an_existing_session)
        adapter = MicrosoftGraphAdapter(config, store=store, session=session)

Nothing is added to the system's trust store; only sessions given the server's trust do.
``session.verify = server.ca_path`` alone is NOT enough wherever ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` is set: requests lets those variables override a session's ``verify``.
:meth:`FakeServer.trust` mounts a transport adapter for the server's URL that verifies with
``ca_path`` whatever the environment says (and never sends loopback traffic through a proxy).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import requests.adapters

from ._fakebase import ProviderFake

__all__ = ["FakeServer", "serve"]

#: Largest request body the server reads (the fakes never need more).
MAX_BODY = 64 * 1024 * 1024
#: A TLS client must finish its handshake within this many seconds (its thread is freed then).
TLS_HANDSHAKE_TIMEOUT = 10.0


class FakeServer:
    """A running server; stop it with :meth:`close` or use it as a context manager.

    Attributes:
        url: ``http://HOST:PORT``, or ``https://HOST:PORT`` in TLS mode.
        ca_path: TLS mode: the file of the CA certificate that signed the server's certificate
            (``session.verify = server.ca_path``); None without TLS.
    """

    def __init__(
        self, fakes: tuple[ProviderFake, ...], host: str, port: int, *, tls: bool = False
    ) -> None:
        self.fakes = fakes
        self.tls = tls
        self.ca_path: str | None = None
        self._tls_cleanup: Callable[[], object] | None = None
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        if tls:
            try:
                self._enable_tls(host)
            except BaseException:
                self._httpd.server_close()
                if self._tls_cleanup is not None:
                    self._tls_cleanup()
                raise
        bound_host, bound_port = self._httpd.server_address[:2]
        shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{shown}:{bound_port}"
        for fake in fakes:
            fake.mount(self.url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mailparity-fake-server",
            daemon=True,
        )
        self._thread.start()

    def _enable_tls(self, host: str) -> None:
        """Generate the throwaway certificates and wrap the listening socket."""
        directory = tempfile.mkdtemp(prefix="mailparity-tls-")
        # Deleted on close(), or when the server is garbage-collected without one.
        self._tls_cleanup = weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        ca_pem, chain_pem, key_pem = _make_certificates(host)
        ca_file = Path(directory) / "ca.pem"
        chain_file = Path(directory) / "server.pem"
        key_file = Path(directory) / "server-key.pem"
        ca_file.write_bytes(ca_pem)
        chain_file.write_bytes(chain_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(chain_file), str(key_file))
        # The handshake runs in the connection's own thread (see the handler's setup): done on
        # accept, one silent client would stall every other connection.
        self._httpd.socket = context.wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.ca_path = str(ca_file)

    def __repr__(self) -> str:
        return f"FakeServer(url={self.url!r}, fakes={len(self.fakes)})"

    def trust(self, session: requests.Session) -> requests.Session:
        """Make ``session`` trust this server (TLS mode) and return it.

        Requests to :attr:`url` are verified against :attr:`ca_path`, even where
        ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` is set (requests would let those override
        ``session.verify``), and go direct, never through an environment proxy. Other URLs keep
        the session's own settings. Without TLS the session is returned unchanged."""
        if self.ca_path is not None:
            session.verify = self.ca_path
            session.mount(f"{self.url}/", _LoopbackTrustAdapter(self.ca_path))
        return session

    def session(self) -> requests.Session:
        """A new ``requests.Session`` that trusts this server (see :meth:`trust`)."""
        return self.trust(requests.Session())

    def config_overrides(self) -> dict[str, str]:
        """The base-URL fields of every served fake, merged."""
        merged: dict[str, str] = {}
        for fake in self.fakes:
            overrides = getattr(fake, "config_overrides", None)
            if callable(overrides):
                merged.update(overrides())
        return merged

    def close(self) -> None:
        """Stop serving, release the port and delete the TLS files (if any)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        if self._tls_cleanup is not None:
            self._tls_cleanup()

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


class _LoopbackTrustAdapter(requests.adapters.HTTPAdapter):
    """Sends with ``verify=ca_path`` and no proxy, whatever requests merged from the
    environment: the one place a session's trust cannot be overridden by a variable."""

    def __init__(self, ca_path: str) -> None:
        super().__init__()
        self._ca_path = ca_path

    def send(  # noqa: PLR0917 - the signature of HTTPAdapter.send
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return super().send(
            request, stream=stream, timeout=timeout, verify=self._ca_path, cert=cert, proxies=None
        )


def serve(
    *fakes: ProviderFake, host: str = "127.0.0.1", port: int = 0, tls: bool = False
) -> FakeServer:
    """Serve ``fakes`` on ``host:port`` (port 0: an ephemeral port) in a background thread.

    ``tls=True`` serves HTTPS with a throwaway certificate; trust it through ``ca_path`` (see
    the module docstring)."""
    if not fakes:
        raise ValueError("serve() needs at least one fake")
    return FakeServer(tuple(fakes), host, port, tls=tls)


def _make_certificates(host: str, *, loopback: bool = True) -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and a server certificate it signed, valid for loopback (and ``host``);
    with ``loopback=False``, for ``host`` only (a host-name mismatch on loopback, for tests).

    Returns (CA certificate, server certificate + CA, server key), PEM. Two certificates
    rather than one self-signed: strict verifiers (Python 3.13's default context) refuse a
    certificate that is both the CA and the server. EC P-256 keys: generated in a millisecond.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    not_before, not_after = now - timedelta(hours=1), now + timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailparity fake server CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ] if loopback else []
    try:
        extra: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        extra = x509.DNSName(host)
    if host and extra not in names:
        names.append(extra)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca_cert.public_bytes(pem)
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_pem, cert.public_bytes(pem) + ca_pem, key_pem


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mailparity-fake"

        def setup(self) -> None:
            self.tls_failed = False
            if isinstance(self.request, ssl.SSLSocket):
                # Handshake here, in this connection's thread, not in the accept loop.
                try:
                    self.request.settimeout(TLS_HANDSHAKE_TIMEOUT)
                    self.request.do_handshake()
                    self.request.settimeout(None)
                except (ssl.SSLError, OSError):
                    # A client that refused our certificate or went away: nothing to serve.
                    self.tls_failed = True
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def handle(self) -> None:
            if not self.tls_failed:
                super().handle()

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
