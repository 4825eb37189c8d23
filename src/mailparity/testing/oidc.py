"""Sign Pub/Sub push tokens the way Google does, for tests that never reach Google.

:class:`TestOidcSigner` holds an RSA key and a self-signed certificate. Serve
:meth:`TestOidcSigner.certs_json` where the handler fetches Google's certificates (for example with
``responses`` at :data:`~mailparity.webhooks.GOOGLE_CERTS_URL`) and put
:meth:`TestOidcSigner.push_token` in the ``Authorization`` header of a push built with
:func:`pubsub_push_body`::

    signer = TestOidcSigner()
    responses.get(GOOGLE_CERTS_URL, json=signer.certs_json())
    headers = {"Authorization": f"Bearer {signer.push_token(AUDIENCE, PUSH_SA)}"}
    body = pubsub_push_body("user@example.com", 12345)

Needs ``cryptography`` (a dependency of google-auth's RSA support).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["DEFAULT_SUBSCRIPTION", "TestOidcSigner", "pubsub_push_body"]

DEFAULT_SUBSCRIPTION = "projects/mailparity-test/subscriptions/gmail-push"

_message_ids = itertools.count(2070443601311540)


class TestOidcSigner:
    """An RSA key pair with a key id and a self-signed X.509 certificate, signing RS256 JWTs.

    Args:
        kid: the key id put in each token's header and in :meth:`certs_json`; random by default.
        key_size: RSA modulus size in bits.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, kid: str | None = None, *, key_size: int = 2048) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.kid = kid or uuid.uuid4().hex
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        self._private_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailparity-test-oidc")])
        now = datetime.now(timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def __repr__(self) -> str:
        return f"TestOidcSigner(kid={self.kid!r})"

    def certs_json(self) -> dict[str, str]:
        """``{kid: PEM certificate}``, the format of Google's ``oauth2/v1/certs``."""
        return {self.kid: self.certificate_pem}

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
        """An RS256 JWT of ``claims`` signed with this key (header ``kid``: ours unless given)."""
        from google.auth import crypt
        from google.auth import jwt as google_jwt

        signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
            self._private_pem, kid or self.kid
        )
        token = google_jwt.encode(signer, dict(claims))  # type: ignore[no-untyped-call]
        return token.decode("ascii") if isinstance(token, bytes) else str(token)

    def push_token(
        self,
        audience: str,
        email: str,
        *,
        email_verified: bool = True,
        issuer: str = "https://accounts.google.com",
        issued_at: float | None = None,
        lifetime: float = 3600,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A token shaped like the one Pub/Sub attaches to an authenticated push.

        ``issued_at`` is a POSIX timestamp (now by default); the token lives ``lifetime`` seconds.
        """
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": "113774264463038321964",
            "email": email,
            "email_verified": email_verified,
            "exp": iat + int(lifetime),
            "iat": iat,
            "iss": issuer,
            "sub": "113774264463038321964",
        }
        if extra_claims:
            claims.update(extra_claims)
        return self.sign(claims)


def pubsub_push_body(
    email_address: str,
    history_id: int | str,
    *,
    message_id: str | None = None,
    subscription: str = DEFAULT_SUBSCRIPTION,
    publish_time: datetime | None = None,
    attributes: Mapping[str, str] | None = None,
    urlsafe: bool = False,
) -> bytes:
    """The body of a Pub/Sub push carrying a Gmail notification, as Pub/Sub sends it.

    ``data`` is base64 (``urlsafe=True``: base64url) of ``{"emailAddress", "historyId"}``; the
    message id and publish time come in both the camelCase and snake_case spellings.
    """
    data = json.dumps({"emailAddress": email_address, "historyId": history_id}).encode("utf-8")
    encoded = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
    pubsub_id = message_id or str(next(_message_ids))
    published = (publish_time or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = published.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message: dict[str, Any] = {
        "data": encoded,
        "messageId": pubsub_id,
        "message_id": pubsub_id,
        "publishTime": stamp,
        "publish_time": stamp,
    }
    if attributes:
        message["attributes"] = dict(attributes)
    return json.dumps({"message": message, "subscription": subscription}).encode("utf-8")
