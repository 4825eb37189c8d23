"""TLS certificate failures: told apart from outages, named by cause, with the fix.

requests reports an untrusted certificate as ``requests.exceptions.SSLError``, a subclass of
``ConnectionError``: treated like any connection error, it would be retried as if transient and
its cause dropped. :func:`tls_verification_error` finds a certificate-verification failure
anywhere in an exception's chain (requests, urllib3, google-auth and msal wrap it differently)
and turns it into a :class:`~mailparity.errors.TLSVerificationError` that is never retried.

Other TLS failures (a handshake cut short, a reset) stay what they were: possibly transient.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit

from .errors import TLSVerificationError

__all__ = ["CA_BUNDLE_VARIABLES", "tls_verification_error"]

#: The environment variables requests reads for its CA bundle, in its order. When one is set it
#: replaces a session's own ``verify`` (requests merges the environment over the session).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _verification_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate-verification error inside ``exc``'s chain, if there is one."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        # requests -> urllib3 MaxRetryError (.reason) -> urllib3 SSLError (args) -> ssl error.
        pending.extend(current.args)
        pending.extend(
            getattr(current, name, None) for name in ("reason", "__cause__", "__context__")
        )
    return None


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.netloc:
            return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        pass
    return "the server"


def tls_verification_error(
    exc: BaseException, url: str, *, provider: str | None = None
) -> TLSVerificationError | None:
    """A TLSVerificationError for ``exc`` when its cause is an untrusted certificate; else None.

    The message names the server (scheme, host and port only: never a path or query), the
    verifier's reason, and the fix; when ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is set it
    says so, because requests then ignores the session's own ``verify``.
    """
    failure = _verification_failure(exc)
    if failure is None:
        return None
    reason = getattr(failure, "verify_message", None) or failure.reason or "not trusted"
    message = (
        f"TLS certificate verification failed for {_origin(url)}: {reason}. Retrying cannot"
        " help: make the session trust the CA that signed the server's certificate"
        " (requests: session.verify = '/path/to/ca.pem'; the testing kit: server.trust(session))"
    )
    overriding = [name for name in CA_BUNDLE_VARIABLES if os.environ.get(name)]
    if overriding:
        message += (
            f"; note that {overriding[0]} is set, and requests uses it instead of"
            " session.verify (pass verify= per request or unset it)"
        )
    return TLSVerificationError(message, provider=provider)
