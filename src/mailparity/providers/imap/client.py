"""IMAP connections: TLS, sign-in, error mapping and a per-server connection bound.

Everything that touches the IMAP client library (``imapclient``, the ``imap`` extra) is here or
in the adapter and listener, which import this module. A missing extra is a
:class:`~mailparity.errors.ConfigurationError` naming the extra.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import (
    AuthExpiredError,
    ConfigurationError,
    MailParityError,
    NotFoundError,
    ProviderUnavailableError,
    TLSVerificationError,
    install_hint,
)
from ...tls import _verification_failure
from .config import ImapProviderConfig

__all__ = [
    "LIMITER",
    "ConnectionLimiter",
    "ImapAuthFailedError",
    "connect",
    "imapclient_module",
    "map_error",
]

log = logging.getLogger("mailparity.providers.imap")

#: Parallel connections to one server (host:port) from this process, listener and adapters
#: together. Dovecot allows 10 per user and address by default (``mail_max_userip_connections``).
DEFAULT_MAX_CONNECTIONS = 20

#: ``factory(config) -> client``: builds an unconnected-or-connected client (tests pass a fake).
ClientFactory = Callable[[ImapProviderConfig], Any]


class ImapAuthFailedError(AuthExpiredError):
    """The server refused the sign-in (wrong password, revoked app password, expired token)."""


def imapclient_module() -> Any:
    """The ``imapclient`` package, or a ConfigurationError naming the extra to install."""
    try:
        import imapclient
    except ImportError:
        raise ConfigurationError(
            f"the IMAP provider needs the 'imap' extra: {install_hint('imap')}", provider="imap"
        ) from None
    return imapclient


def ssl_context(config: ImapProviderConfig) -> ssl.SSLContext:
    """A client TLS context: the system trust store (plus ``ca_file``), hostname checked;
    verification is off only when the config says so."""
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def map_error(
    exc: BaseException, action: str, config: ImapProviderConfig | None = None
) -> MailParityError:
    """The library error for a failure of the IMAP client or the socket (secret-free).

    A certificate the client did not accept (an unknown CA, a host name or address the
    certificate is not for, an expired one), wherever it sits in ``exc``'s chain, is a
    :class:`~mailparity.errors.TLSVerificationError` (code ``tls_verification``, never retried)
    naming the server as ``host:port`` when ``config`` is given, the verifier's reason and the
    fix."""
    if isinstance(exc, MailParityError):
        return exc
    failure = _verification_failure(exc)
    if failure is not None:
        return _tls_error(failure, action, config)
    imapclient = imapclient_module()
    errors = imapclient.exceptions
    if isinstance(exc, errors.LoginError):
        return ImapAuthFailedError(
            f"IMAP {action}: the server refused the sign-in", code="imap_login_failed",
            provider="imap",
        )
    if isinstance(exc, (errors.IMAPClientAbortError, OSError, EOFError)):
        return ProviderUnavailableError(
            f"IMAP {action}: the connection failed ({type(exc).__name__})",
            code="imap_connection", provider="imap",
        )
    if isinstance(exc, errors.IMAPClientError):
        # A NO / BAD answer; its text comes from the server and names no secret of ours.
        text = str(exc)[:200]
        if "nonexistent" in text.lower() or "doesn't exist" in text.lower():
            return NotFoundError(f"IMAP {action}: {text}", code="imap_no_such_folder",
                                 provider="imap")
        return ProviderUnavailableError(f"IMAP {action}: {text}", code="imap_error",
                                        provider="imap")
    return ProviderUnavailableError(
        f"IMAP {action}: {type(exc).__name__}", code="imap_error", provider="imap"
    )


def _tls_error(
    failure: ssl.SSLCertVerificationError, action: str, config: ImapProviderConfig | None
) -> TLSVerificationError:
    server = "the server" if config is None else f"{config.host}:{config.effective_port}"
    reason = failure.verify_message or failure.reason or "not trusted"
    return TLSVerificationError(
        f"IMAP {action}: TLS certificate verification failed for {server}: {reason}. Retrying"
        " cannot help: give the CA that signed the server's certificate as ca_file (or add it"
        " to the system's trust store), and connect to a host name the certificate is for",
        code="tls_verification", provider="imap",
    )


class ConnectionLimiter:
    """Counts the open connections per server; ``slot(key)`` waits for a free one."""

    def __init__(self, limit: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.limit = limit
        self._lock = threading.Condition()
        self._open: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        """Take a slot of ``key`` if one is free (no waiting)."""
        with self._lock:
            if self._open.get(key, 0) >= self.limit:
                return False
            self._open[key] = self._open.get(key, 0) + 1
            return True

    def acquire(self, key: str, timeout: float) -> bool:
        """Take a slot of ``key``, waiting up to ``timeout`` seconds for one."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._open.get(key, 0) < self.limit, timeout):
                return False
            self._open[key] = self._open.get(key, 0) + 1
            return True

    def release(self, key: str) -> None:
        """Give a slot of ``key`` back."""
        with self._lock:
            count = self._open.get(key, 0) - 1
            if count <= 0:
                self._open.pop(key, None)
            else:
                self._open[key] = count
            self._lock.notify_all()

    def in_use(self, key: str) -> int:
        """Open connections to ``key``."""
        with self._lock:
            return self._open.get(key, 0)


#: The process-wide limiter of the adapters and the listener.
LIMITER = ConnectionLimiter()


def _default_factory(config: ImapProviderConfig) -> Any:
    imapclient = imapclient_module()
    context = ssl_context(config)
    client = imapclient.IMAPClient(
        config.host,
        port=config.effective_port,
        ssl=config.security == "ssl",
        ssl_context=context if config.security == "ssl" else None,
        timeout=config.timeout,
    )
    if config.security == "starttls":
        try:
            client.starttls(context)
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
    return client


def connect(
    config: ImapProviderConfig,
    *,
    access_token: Callable[[], str] | None = None,
    factory: ClientFactory | None = None,
) -> Any:
    """A signed-in client (no folder selected yet).

    ``access_token()`` gives the XOAUTH2 token (``auth_method="xoauth2"``). Raises the library's
    errors: :class:`ImapAuthFailedError` for a refused sign-in, TLSVerificationError,
    ProviderUnavailableError for network failures, ConfigurationError for a missing password."""
    try:
        client = (factory or _default_factory)(config)
    except Exception as exc:
        raise map_error(exc, "connect", config) from None
    try:
        # INTERNALDATE as timezone-aware datetimes, not converted to the local zone.
        client.normalise_times = False
        _login(client, config, access_token)
    except Exception as exc:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise map_error(exc, "sign-in", config) from None
    return client


def _login(client: Any, config: ImapProviderConfig, access_token: Callable[[], str] | None) -> None:
    if config.auth_method == "xoauth2":
        if access_token is None:
            raise ConfigurationError("XOAUTH2 sign-in needs an access token", provider="imap")
        client.oauth2_login(config.login_name, access_token())
        return
    if config.password is None or not config.password.get_secret_value():
        raise ConfigurationError(
            f"provider {config.provider_id!r}: no IMAP password is configured", provider="imap"
        )
    client.login(config.login_name, config.password.get_secret_value())


def close(client: Any) -> None:
    """Log out politely, or at least close the socket; never raises."""
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):
            client.shutdown()


@contextlib.contextmanager
def socket_timeout(client: Any, seconds: float | None) -> Iterator[None]:
    """Temporarily change the socket timeout of ``client`` (IDLE waits longer than commands)."""
    sock: socket.socket | None = None
    with contextlib.suppress(Exception):
        sock = client.socket()
    previous = sock.gettimeout() if sock is not None else None
    if sock is not None:
        sock.settimeout(seconds)
    try:
        yield
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(previous)
