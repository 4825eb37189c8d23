"""Gmail push through Google Pub/Sub: OIDC verification, Google's certificate cache and the
Pub/Sub envelope.

* ``Authorization: Bearer <OIDC JWT>`` is verified against Google's certificates (cached as
  ``Cache-Control: max-age`` says; refetched on an unknown key id at most once a minute): RS256
  signature, expiry, issuer, ``aud == google_audience``, ``email`` one of
  ``google_service_accounts`` and ``email_verified``. Missing: ``401``; invalid: ``403``;
  certificates unreachable: ``503`` (Pub/Sub redelivers);
* the envelope must be a Pub/Sub push (``400`` otherwise). A message whose data is not Gmail's
  ``{"emailAddress", "historyId"}``, an unknown mailbox, a push from another subscription than
  the mailbox's configured ``pubsub_subscription_name``, or a stale ``historyId`` is acknowledged
  (``204``) and logged: redelivering it could never help. Otherwise a ``cursor`` job is
  stored (duplicate pushes coalesce on its unique key) and the answer is ``204``; ``503`` when the
  store failed.

Configuration: verification is on unless ``verify_google_tokens=False`` is passed (a warning is
logged at construction). ``google_audience`` and ``google_service_accounts`` go together: giving
one without the other raises :class:`~mailparity.errors.ConfigurationError` at construction,
because an audience alone accepts a token minted by *any* Google service account. Giving neither
is allowed (a host without Gmail): pushes are then answered ``403`` and a configuration error is
logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests

from ...errors import ConfigurationError, WebhookAuthenticationError
from ...models import Job
from ...pushing import (
    MAX_ID_LENGTH,
    PushSource,
    WebhookRequest,
    WebhookResponse,
    _empty,
    _has_control_chars,
    _json_loads,
    _method_not_allowed,
    _plain,
    _safe,
    _too_large,
    _valid_id,
)
from .config import GmailProviderConfig

__all__ = ["GOOGLE_CERTS_URL", "GOOGLE_ISSUERS", "GmailPush"]

#: The registry key of this provider (the mailbox lookup is per provider).
_KEY = "google"

log = logging.getLogger("mailparity.webhooks")

#: Where Google publishes the certificates that sign its OIDC tokens ({kid: PEM certificate}).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
#: The ``iss`` values of Google-signed ID tokens.
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: Longest Authorization header value considered (Google's ID tokens are about 1 KB).
MAX_BEARER_LENGTH = 16 * 1024
_UINT64_MAX = 2**64 - 1

_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*=*")
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def _decode_base64_lenient(data: str) -> bytes | None:
    """Decode base64 or base64url, padded or not; None when it is neither."""
    text = data.strip()
    if not _BASE64_CHARS.fullmatch(text):
        return None
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        return None
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_history_id(value: object) -> int | None:
    # Gmail documents a string; a JSON number is seen on the wire too.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        return None
    return number if 0 < number <= _UINT64_MAX else None


class _TokenRejectedError(WebhookAuthenticationError):
    """The push token is invalid (403). ``reason`` is our own wording, free of token data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CertsUnavailableError(Exception):
    """Google's certificates could not be obtained (503: not the caller's fault)."""


# --------------------------------------------------------------------------------------------
# Google certificates


class _GoogleCertCache:
    """Google's OIDC signing certificates, cached as the response's ``Cache-Control`` allows.

    An unknown key id triggers a refetch (Google rotates keys), at most once per
    ``refetch_interval`` so forged key ids cannot make us hammer Google. Thread-safe.
    """

    DEFAULT_MAX_AGE = 300.0
    MAX_MAX_AGE = 86_400.0

    def __init__(
        self,
        url: str,
        session: requests.Session | None,
        clock: Callable[[], datetime],
        *,
        refetch_interval: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._refetch_interval = timedelta(seconds=refetch_interval)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._expires_at: datetime | None = None
        self._last_attempt: datetime | None = None
        self.fetches = 0

    def certificate(self, kid: str) -> str | None:
        """The PEM certificate of ``kid``; None if Google does not (or no longer) publish it.

        Raises _CertsUnavailableError when no certificate set can be had at all.
        """
        with self._lock:
            now = self._clock()
            fresh = self._certs is not None and self._expires_at is not None and (
                now < self._expires_at
            )
            if not fresh:
                self._refresh(now, must_succeed=self._certs is None)
            assert self._certs is not None  # _refresh raised otherwise
            if kid in self._certs:
                return self._certs[kid]
            if self._last_attempt is None or now - self._last_attempt >= self._refetch_interval:
                self._refresh(now, must_succeed=False)
            return self._certs.get(kid)

    def _refresh(self, now: datetime, *, must_succeed: bool) -> None:
        if (
            must_succeed
            and self._last_attempt is not None
            and now - self._last_attempt < timedelta(seconds=5)
        ):
            # A failed fetch a moment ago: do not turn every push into a request to Google.
            raise _CertsUnavailableError("certificate fetch failed recently")
        self._last_attempt = now
        try:
            certs, max_age = self._fetch()
        except _CertsUnavailableError:
            if must_succeed:
                raise
            # Keep verifying with the certificates we have (Google keeps old keys published for
            # a while); the next push retries the fetch.
            log.warning("could not refresh Google's OIDC certificates; using the cached set")
            self._expires_at = now + timedelta(seconds=min(self.DEFAULT_MAX_AGE, 60.0))
            return
        self._certs = certs
        self._expires_at = now + timedelta(seconds=max_age)

    def _fetch(self) -> tuple[dict[str, str], float]:
        self.fetches += 1
        getter = self._session if self._session is not None else requests
        try:
            response = getter.get(self._url, timeout=self._timeout)
        except requests.RequestException as exc:
            log.error("fetching Google's OIDC certificates failed (%s)", type(exc).__name__)
            raise _CertsUnavailableError("network error") from exc
        if response.status_code != 200:
            log.error("fetching Google's OIDC certificates failed: HTTP %s", response.status_code)
            raise _CertsUnavailableError(f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise _CertsUnavailableError("certificates are not JSON") from exc
        if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and isinstance(v, str) and "-----BEGIN" in v
            for k, v in data.items()
        ):
            log.error("Google's OIDC certificate document has an unexpected shape")
            raise _CertsUnavailableError("unexpected certificate document")
        return dict(data), self._max_age(response.headers.get("Cache-Control", ""))

    def _max_age(self, cache_control: str) -> float:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            return 0.0
        match = _MAX_AGE.search(cache_control)
        if match is None:
            return self.DEFAULT_MAX_AGE
        return min(float(match.group(1)), self.MAX_MAX_AGE)


# --------------------------------------------------------------------------------------------
# The push source


class GmailPush(PushSource):
    """The Pub/Sub push endpoint of Gmail notifications.

    Args:
        google_audience: the ``aud`` that Pub/Sub puts in its push tokens (the subscription's
            ``pushConfig.oidcToken.audience``, by default the push endpoint URL).
        google_service_accounts: the service-account e-mails allowed to sign pushes
            (``pushConfig.oidcToken.serviceAccountEmail``), compared case-insensitively.
        verify_google_tokens: ``False`` skips push authentication (only behind a trusted proxy
            that verifies it); a warning is logged.
        google_certs_url: where Google's certificates are fetched (a test server in tests).
        google_clock_skew_seconds: the tolerance of the ``exp`` / ``iat`` checks.
        **base: see :class:`~mailparity.pushing.PushSource`.

    Raises:
        ConfigurationError: ``google_service_accounts`` without ``google_audience`` or the reverse
            (while verification is on).
    """

    def __init__(
        self,
        *,
        google_audience: str | None = None,
        google_service_accounts: Sequence[str] = (),
        verify_google_tokens: bool = True,
        google_certs_url: str = GOOGLE_CERTS_URL,
        google_clock_skew_seconds: int = 60,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if isinstance(google_service_accounts, str):
            google_service_accounts = (google_service_accounts,)
        accounts = tuple(a.strip().lower() for a in google_service_accounts if a and a.strip())
        if verify_google_tokens:
            if accounts and not google_audience:
                raise ConfigurationError(
                    "google_service_accounts is set but google_audience is not: Pub/Sub push"
                    " tokens cannot be verified without the expected audience"
                )
            if google_audience and not accounts:
                raise ConfigurationError(
                    "google_audience is set but google_service_accounts is empty: any Google"
                    " service account could mint a token for that audience"
                )
        else:
            log.warning(
                "Pub/Sub push authentication is DISABLED (verify_google_tokens=False): anyone who"
                " can reach the Google webhook can enqueue work"
            )
        self.google_audience = google_audience
        self.google_service_accounts = accounts
        self.verify_google_tokens = verify_google_tokens
        self._skew = max(0, int(google_clock_skew_seconds))
        self._certs = _GoogleCertCache(google_certs_url, self.session, self._clock)

    def describe(self) -> str:
        return (
            f"GmailPush(google_audience={self.google_audience!r},"
            f" verify_google_tokens={self.verify_google_tokens!r})"
        )

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one Pub/Sub push carrying a Gmail notification."""
        return self.handle_google(request)

    def handle_google(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one Pub/Sub push carrying a Gmail notification."""
        if request.method != "POST":
            return _method_not_allowed("POST")
        if len(request.body) > self.max_body_bytes:
            log.warning("Pub/Sub push refused: body of %d bytes is too large", len(request.body))
            return _too_large()
        refused = self._authenticate_google(request)
        if refused is not None:
            return refused

        envelope = self._pubsub_envelope(request.body)
        if envelope is None:
            return _plain(400, "body is not a Pub/Sub push")
        message, pubsub_id, subscription = envelope
        notification = self._gmail_notification(message, pubsub_id)
        if notification is None:
            self._ignored("not a gmail notification")
            return _empty(204)
        email_address, history_id = notification

        # A store failure (here or storing the job) is the handler's 503: Pub/Sub redelivers.
        config = self.store.find_provider_by_mailbox(_KEY, email_address)
        if not isinstance(config, GmailProviderConfig):
            log.warning("Pub/Sub push for unknown Gmail mailbox %s; acknowledged",
                        _safe(email_address))
            self._ignored("unknown mailbox")
            return _empty(204)
        pid = config.provider_id
        now = self._clock()
        if not config.active:
            log.info("Pub/Sub push for paused provider %s; acknowledged", pid)
            self._ignored("paused provider")
            return _empty(204)
        if not config.accepts_push_subscription(subscription):
            # Any allowed service account can sign a push naming any mailbox: a push is only
            # trusted for the mailbox whose own subscription delivered it.
            log.warning(
                "Pub/Sub push from subscription %s for provider %s, whose subscription is %s;"
                " acknowledged and ignored",
                _safe(subscription), pid, _safe(config.subscription_path),
            )
            self._ignored("foreign subscription")
            return _empty(204)
        if config.history_id is not None and history_id <= config.history_id:
            log.debug("stale Pub/Sub push for provider %s (historyId %d <= cursor %d)",
                      pid, history_id, config.history_id)
            self._record_push({pid}, now)
            return _empty(204)
        self._enqueue(Job(
            kind="cursor",
            provider_id=pid,
            payload={"history_id": history_id},
            unique_key=f"gmail-history:{pid}",
            available_at=now,
            created_at=now,
        ))
        self._record_push({pid}, now)
        return _empty(204)

    def _authenticate_google(self, request: WebhookRequest) -> WebhookResponse | None:
        if not self.verify_google_tokens:
            return None
        if not self.google_audience or not self.google_service_accounts:
            log.error(
                "configuration error: a Pub/Sub push arrived but the handler has no"
                " google_audience / google_service_accounts to verify it; refused"
            )
            return _plain(403, "push authentication is not configured")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            log.warning("Pub/Sub push refused: no bearer token")
            return _plain(401, "missing bearer token", WWW_Authenticate="Bearer")
        try:
            claims = self._verify_google_token(token)
        except _TokenRejectedError as exc:
            log.warning("Pub/Sub push refused: %s", exc.reason)
            return _plain(403, "invalid push token")
        except _CertsUnavailableError:
            return _plain(503, "cannot verify the push token now; retry later",
                          Retry_After="30")
        log.debug("Pub/Sub push token accepted for %s", _safe(claims.get("email")))
        return None

    def _verify_google_token(self, token: str) -> Mapping[str, Any]:
        """Verify the OIDC token and return its claims.

        Raises _TokenRejectedError (403) or _CertsUnavailableError (503).
        """
        from google.auth import exceptions as google_exceptions
        from google.auth import jwt as google_jwt

        if len(token) > MAX_BEARER_LENGTH or token.count(".") != 2:
            raise _TokenRejectedError("malformed token")
        try:
            header = google_jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, google_exceptions.GoogleAuthError) as exc:
            raise _TokenRejectedError("malformed token") from exc
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise _TokenRejectedError("token is not RS256-signed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _TokenRejectedError("token has no key id")
        certificate = self._certs.certificate(kid)
        if certificate is None:
            raise _TokenRejectedError("token is signed with a key Google does not publish")
        try:
            claims = google_jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs={kid: certificate},
                audience=self.google_audience,
                clock_skew_in_seconds=self._skew,
            )
        except (ValueError, TypeError, google_exceptions.GoogleAuthError) as exc:
            # google-auth's messages can quote the token: log our own wording only.
            raise _TokenRejectedError(
                f"signature, audience or lifetime check failed ({type(exc).__name__})"
            ) from exc
        if not isinstance(claims, Mapping):
            raise _TokenRejectedError("token claims are not an object")
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _TokenRejectedError("token issuer is not Google")
        # google-auth checked the lifetime against the system clock; check it against ours too,
        # so an injected clock (tests, replay tools) is honoured.
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _TokenRejectedError("token has no expiry")
        if self._clock().timestamp() > float(exp) + self._skew:
            raise _TokenRejectedError("token expired")
        email = claims.get("email")
        if not isinstance(email, str) or email.strip().lower() not in self.google_service_accounts:
            raise _TokenRejectedError("token is not from an allowed service account")
        verified = claims.get("email_verified")
        if verified is not True and verified != "true":
            raise _TokenRejectedError("token e-mail is not verified")
        return claims

    @staticmethod
    def _pubsub_envelope(body: bytes) -> tuple[dict[str, Any], str, str] | None:
        try:
            payload = _json_loads(body)
        except ValueError:
            log.warning("Pub/Sub push refused: the body is not JSON")
            return None
        if not isinstance(payload, dict):
            log.warning("Pub/Sub push refused: the body is not a JSON object")
            return None
        message = payload.get("message")
        subscription = payload.get("subscription")
        if not isinstance(message, dict) or not isinstance(subscription, str) or not subscription:
            log.warning("Pub/Sub push refused: no 'message' object or 'subscription' name")
            return None
        pubsub_id = message.get("messageId", message.get("message_id"))
        if isinstance(pubsub_id, int) and not isinstance(pubsub_id, bool):
            pubsub_id = str(pubsub_id)
        if not _valid_id(pubsub_id):
            log.warning("Pub/Sub push refused: the message has no messageId")
            return None
        assert isinstance(pubsub_id, str)
        if len(subscription) > MAX_ID_LENGTH or _has_control_chars(subscription):
            log.warning("Pub/Sub push refused: the 'subscription' name is not valid")
            return None
        data = message.get("data")
        attributes = message.get("attributes")
        if (data is not None and not isinstance(data, str)) or (
            attributes is not None and not isinstance(attributes, dict)
        ):
            log.warning("Pub/Sub push refused: 'data' or 'attributes' has the wrong type")
            return None
        return message, pubsub_id, subscription

    @staticmethod
    def _gmail_notification(message: Mapping[str, Any], pubsub_id: str) -> tuple[str, int] | None:
        data = message.get("data")
        if not isinstance(data, str) or not data:
            log.warning("Pub/Sub message %s has no data; acknowledged", _safe(pubsub_id))
            return None
        decoded = _decode_base64_lenient(data)
        if decoded is None:
            log.warning("Pub/Sub message %s: data is not base64; acknowledged", _safe(pubsub_id))
            return None
        try:
            notification = _json_loads(decoded)
        except ValueError:
            log.warning("Pub/Sub message %s: data is not JSON; acknowledged", _safe(pubsub_id))
            return None
        if not isinstance(notification, dict):
            log.warning("Pub/Sub message %s: data is not a Gmail notification; acknowledged",
                        _safe(pubsub_id))
            return None
        email_address = notification.get("emailAddress")
        history_id = _parse_history_id(notification.get("historyId"))
        if not _valid_id(email_address) or history_id is None:
            log.warning(
                "Pub/Sub message %s: data lacks a valid emailAddress/historyId; acknowledged",
                _safe(pubsub_id),
            )
            return None
        assert isinstance(email_address, str)
        return email_address, history_id

