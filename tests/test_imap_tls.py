"""IMAP over TLS: a server certificate the client does not accept (an unknown CA, a host name or
address the certificate is not for) is a TLSVerificationError naming the server's host and port,
never retried and free of secrets, over implicit TLS and STARTTLS alike.

The server is a loopback socket with throwaway certificates (the testing kit's) that speaks just
enough IMAP to reach the handshake and a sign-in, so these run without Dovecot; the Dovecot suite
(``test_imap_dovecot.py``) checks the same code against a real server."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mailparity.errors import ProviderUnavailableError, TLSVerificationError, is_transient
from mailparity.providers.imap import client as imap
from mailparity.providers.imap.adapter import ImapAdapter
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.stores.memory import InMemoryStore

pytest.importorskip("imapclient")
pytest.importorskip("cryptography")

from mailparity.testing.server import _make_certificates

PASSWORD = "app-password-never-shown"


class TlsImapServer:
    """A loopback IMAP server over TLS (implicit, or after STARTTLS) with a throwaway CA.

    Args:
        cert_host: the name the server certificate is for (plus loopback unless
            ``loopback=False``).
    """

    def __init__(self, folder: Path, *, starttls: bool, cert_host: str = "localhost",
                 loopback: bool = True) -> None:
        ca_pem, chain_pem, key_pem = _make_certificates(cert_host, loopback=loopback)
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(ca_pem)
        (folder / "chain.pem").write_bytes(chain_pem)
        (folder / "key.pem").write_bytes(key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(folder / "chain.pem"), str(folder / "key.pem"))
        self.starttls = starttls
        self.logins = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the thread (close() alone does not on Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError, ValueError):
                self._serve(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        if not self.starttls:
            conn = self.context.wrap_socket(conn, server_side=True)  # the client may refuse
        stream = conn.makefile("rwb")
        capabilities = b"IMAP4rev1 AUTH=PLAIN" + (b" STARTTLS" if self.starttls else b"")
        stream.write(b"* OK [CAPABILITY " + capabilities + b"] ready\r\n")
        stream.flush()
        while line := stream.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"STARTTLS":
                stream.write(tag + b" OK begin TLS now\r\n")
                stream.flush()
                conn = self.context.wrap_socket(conn, server_side=True)
                stream = conn.makefile("rwb")
                continue
            if command == b"CAPABILITY":
                stream.write(b"* CAPABILITY " + capabilities + b"\r\n")
            if command == b"LOGIN":
                self.logins += 1
            if command == b"LOGOUT":
                stream.write(b"* BYE\r\n")
            stream.write(tag + b" OK done\r\n")
            stream.flush()
            if command == b"LOGOUT":
                return


@pytest.fixture(params=["ssl", "starttls"])
def security(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def running(tmp_path: Path, security: str, **options: Any) -> Iterator[TlsImapServer]:
    server = TlsImapServer(tmp_path, starttls=security == "starttls", **options)
    try:
        yield server
    finally:
        server.close()


def config(server: TlsImapServer, security: str, host: str = "127.0.0.1",
           **changes: Any) -> ImapProviderConfig:
    return ImapProviderConfig(
        provider_id="imap-tls", tenant="t1", mailbox="support@example.com", host=host,
        port=server.port, security=security, password=SecretStr(PASSWORD), timeout=10.0,
        **changes,
    )


def _refused(cfg: ImapProviderConfig) -> TLSVerificationError:
    with pytest.raises(TLSVerificationError) as caught:
        imap.connect(cfg)
    return caught.value


def test_a_trusted_certificate_connects_and_signs_in(tmp_path: Path, security: str) -> None:
    with running(tmp_path, security) as server:
        client = imap.connect(config(server, security, ca_file=str(server.ca_file)))
        imap.close(client)
        assert server.logins == 1


def test_an_untrusted_certificate_is_a_tls_verification_error(
    tmp_path: Path, security: str
) -> None:
    with running(tmp_path, security) as server:
        error = _refused(config(server, security))
        assert server.logins == 0  # the password never left
    text = str(error)
    assert f"127.0.0.1:{server.port}" in text
    assert "self-signed certificate in certificate chain" in text  # the verifier's reason
    assert "ca_file" in text  # the fix
    assert PASSWORD not in text
    assert error.code == "tls_verification"
    assert error.provider == "imap"
    assert not is_transient(error)
    assert error.__cause__ is None  # raised "from None": no chain carrying connection details


def test_a_host_name_mismatch_is_a_tls_verification_error(tmp_path: Path, security: str) -> None:
    # The certificate is signed by a CA we trust, but for another name than the one we dialled.
    with running(tmp_path, security, cert_host="mail.example.test", loopback=False) as server:
        error = _refused(config(server, security, ca_file=str(server.ca_file)))
        assert server.logins == 0
    assert f"127.0.0.1:{server.port}" in str(error)
    assert "mismatch" in str(error)


def test_the_adapter_connection_test_reports_it(tmp_path: Path) -> None:
    with running(tmp_path, "ssl") as server:
        result = ImapAdapter(config(server, "ssl"), store=InMemoryStore()).test_connection()
    assert not result.success
    assert result.code == "tls_verification"
    assert f"127.0.0.1:{server.port}" in (result.error or "")
    assert PASSWORD not in (result.error or "")


def test_verification_off_accepts_the_untrusted_certificate(tmp_path: Path) -> None:
    with running(tmp_path, "ssl") as server:
        imap.close(imap.connect(config(server, "ssl", verify_certificate=False)))
        assert server.logins == 1


def test_a_verification_failure_inside_a_wrapped_error_is_found() -> None:
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
    failure.verify_message = "certificate has expired"
    wrapped = RuntimeError("handshake")
    wrapped.__cause__ = failure
    cfg = ImapProviderConfig(provider_id="p", tenant="t", mailbox="m@example.com",
                             host="imap.example.com")
    error = imap.map_error(wrapped, "connect", cfg)
    assert isinstance(error, TLSVerificationError)
    assert "imap.example.com:993" in str(error)
    assert "certificate has expired" in str(error)
    assert "the server" in str(imap.map_error(failure, "connect"))  # no config: no address
    # Other TLS failures (a handshake cut short) stay connection errors: possibly transient.
    assert isinstance(imap.map_error(ssl.SSLEOFError(8, "EOF"), "connect"),
                      ProviderUnavailableError)
