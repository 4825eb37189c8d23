"""The real IMAP server of the tests: Dovecot started by ``scripts/services.sh``.

The script exports ``MAILPARITY_TEST_IMAP_*`` (host, cleartext/STARTTLS port, IMAPS port, the one
password every user name signs in with, the self-signed certificate). Each test signs in as
fresh user names, so it starts from empty mailboxes. Without the server the tests skip with the
reason; under ``CI=true`` they fail (CI must not pass by skipping), like PostgreSQL's.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from conftest import corpus_required
from mailparity.providers.imap.config import ImapProviderConfig

#: The UIDPLUS answer of APPEND: ``[APPENDUID <uidvalidity> <uid>]``.
APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    imaps_port: int
    password: str
    ca_file: str

    def config(self, provider_id: str | None = None, **changes: Any) -> ImapProviderConfig:
        """A config of a fresh mailbox (its own user) over cleartext on loopback."""
        user = f"u{uuid.uuid4().hex[:12]}@example.com"
        fields: dict[str, Any] = {
            "provider_id": provider_id or f"imap-{uuid.uuid4().hex[:8]}",
            "tenant": "t1",
            "mailbox": user,
            "host": self.host,
            "port": self.port,
            "security": "none",
            "password": SecretStr(self.password),
            "timeout": 20.0,
        }
        fields.update(changes)
        return ImapProviderConfig(**fields)

    def client(self, config: ImapProviderConfig) -> Any:
        """A plain signed-in imapclient connection as ``config``'s user (for delivering and
        looking at the mailbox from the outside)."""
        import imapclient

        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=20)
        client.login(config.login_name, self.password)
        return client

    def deliver(self, config: ImapProviderConfig, *messages: bytes,
                folder: str | None = None) -> None:
        """APPEND ``messages`` to the config's folder (created when missing)."""
        client = self.client(config)
        try:
            target = folder or config.folder
            if not client.folder_exists(target):
                client.create_folder(target)
            for raw in messages:
                client.append(target, raw)
        finally:
            client.logout()


def dovecot_or_none() -> Dovecot | None:
    """The Dovecot of ``scripts/services.sh``, or None without it (a failure under CI), for
    scenarios that run their other providers either way."""
    if not os.environ.get("MAILPARITY_TEST_IMAP_PORT") and not corpus_required():
        return None
    return dovecot_or_skip()


def dovecot_or_skip() -> Dovecot:
    """The Dovecot of ``scripts/services.sh``; skips (fails under CI) without it."""
    env = os.environ
    if not env.get("MAILPARITY_TEST_IMAP_PORT"):
        reason = "no Dovecot: run the tests with scripts/with-services.sh (MAILPARITY_TEST_IMAP_*)"
        if corpus_required():
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    pytest.importorskip("imapclient")
    return Dovecot(
        host=env.get("MAILPARITY_TEST_IMAP_HOST", "127.0.0.1"),
        port=int(env["MAILPARITY_TEST_IMAP_PORT"]),
        imaps_port=int(env.get("MAILPARITY_TEST_IMAPS_PORT") or 0),
        password=env["MAILPARITY_TEST_IMAP_PASSWORD"],
        ca_file=env.get("MAILPARITY_TEST_IMAP_CA", ""),
    )


def make_mail(subject: str, message_id: str | None = None, body: str = "hello",
              size: int = 0) -> bytes:
    """A small RFC 5322 message (``size`` pads the body to at least that many bytes)."""
    mid = message_id or f"<{uuid.uuid4().hex}@example.com>"
    text = body + ("x" * max(0, size - len(body)))
    return (
        f"From: Sender <sender@example.com>\r\nTo: support@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: {mid}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()


class CuttingProxy:
    """A TCP proxy to the server that cuts the connection in the middle of a message body: once
    ``cuts`` times, after the server started sending a ``BODY[]`` literal, it forwards half of
    what it read and closes both sides."""

    def __init__(self, host: str, port: int, cuts: int = 1) -> None:
        self.target = (host, port)
        self.cuts = cuts
        self.cut_done = 0
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(downstream, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_server and b"BODY[] {" in data and self.cut_done < self.cuts:
                    self.cut_done += 1
                    sink.sendall(data[: data.index(b"BODY[] {") + 12])
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed (a bounded wait for work
    done by other threads; never an assertion on timing)."""
    done = threading.Event()
    for _ in range(int(timeout / step)):
        if predicate():
            return True
        done.wait(step)
    return predicate()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    return dovecot_or_skip()
