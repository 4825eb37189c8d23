"""The exception tree of mailparity.

Every error the library raises is a :class:`MailParityError`. Each class is named by its cause,
and carries what the provider sent (``status``, ``code``, ``request_id``) so a host can log and act
on it without parsing messages. Messages never contain tokens, client secrets or clientState values.

::

    MailParityError
    ├── ConfigurationError            the config or environment cannot work (no client id ...)
    ├── StoreError                    a host store failed (raise it from your own stores too)
    ├── PublishError                  the EventPublisher failed; the work stays pending
    ├── AuthError                     anything about credentials
    │   ├── CredentialsMissingError   no tokens anywhere (store, legacy secrets)
    │   └── AuthExpiredError          terminal: the user must consent again (invalid_grant, ...)
    ├── ProviderError                 the provider answered with an error
    │   ├── BadRequestError           400 (and other 4xx not named below)
    │   ├── UnauthorizedError         401 that a token refresh did not cure
    │   ├── PermissionDeniedError     403 that is not throttling
    │   ├── NotFoundError             404 (message, subscription, mailbox)
    │   ├── CursorExpiredError        Graph 410 syncStateNotFound, Gmail history 404
    │   ├── ThrottledError            429 / quota 403, with ``retry_after`` seconds
    │   └── ProviderUnavailableError  5xx, timeouts, connection errors
    ├── SubscriptionError             a subscription or watch could not be created / renewed
    ├── WebhookError                  a webhook request was refused
    │   ├── WebhookValidationError    malformed request (400 / 413)
    │   └── WebhookAuthenticationError  missing or invalid push credentials (401 / 403)
    ├── PermanentMessageError         this message can never be processed (poison message)
    ├── WebConnectError               a web connect step was refused; nothing was stored
    │   ├── ConnectStateError         state missing, unknown, expired, reused, or another owner's
    │   ├── ConnectDeniedError        the provider's redirect carried an error (declined ...)
    │   └── MailboxMismatchError      signed in as another mailbox than the expected one
    └── EventParseError               parse_event: not an event this library knows (also ValueError)

Transient errors are :class:`ThrottledError` and :class:`ProviderUnavailableError`; see
:func:`is_transient`.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "AuthExpiredError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectDeniedError",
    "ConnectStateError",
    "CredentialsMissingError",
    "CursorExpiredError",
    "EventParseError",
    "MailParityError",
    "MailboxMismatchError",
    "MissingExtraError",
    "NotFoundError",
    "PermanentMessageError",
    "PermissionDeniedError",
    "ProviderError",
    "ProviderUnavailableError",
    "PublishError",
    "StoreError",
    "SubscriptionError",
    "ThrottledError",
    "UnauthorizedError",
    "WebConnectError",
    "WebhookAuthenticationError",
    "WebhookError",
    "WebhookValidationError",
    "is_transient",
    "missing_extra",
]


class MailParityError(Exception):
    """Base class of every error raised by mailparity.

    Attributes:
        message: a human-readable description, free of secrets.
        status: the HTTP status the provider answered, when there was one.
        code: the provider's error code (Graph ``error.code``, Google ``error.status`` /
            ``reason``, OAuth ``error``), when there was one.
        request_id: the provider's request id (Graph ``request-id`` / ``client-request-id``,
            Google ``x-guploader-uploadid`` is not used), for support tickets.
        provider: the provider's registry key when the error came from a provider.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.provider = provider

    def __str__(self) -> str:
        details = []
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code:
            details.append(f"code={self.code}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r},"
            f" request_id={self.request_id!r})"
        )


class ConfigurationError(MailParityError):
    """The configuration cannot work: a missing client id, a missing topic, an invalid URL."""


class TLSVerificationError(ConfigurationError):
    """The server's TLS certificate was not trusted (unknown CA, wrong host name, expired).

    Not transient: retrying cannot make a certificate trusted. The message names the cause and
    the fix (trust the right CA; ``REQUESTS_CA_BUNDLE`` overrides a session's ``verify``)."""


class StoreError(MailParityError):
    """A store operation failed. Host stores may raise it; the library treats it as transient."""


class PublishError(MailParityError):
    """The host's EventPublisher raised; the job stays pending and is retried."""


class AuthError(MailParityError):
    """Something is wrong with the credentials of a mailbox."""


class CredentialsMissingError(AuthError):
    """No tokens were found: not in the CredentialStore, not in the legacy tenant secret."""


class AuthExpiredError(AuthError):
    """Terminal: the grant is gone (``invalid_grant``, revoked consent, ``AADSTS700082`` ...).

    The user must connect the mailbox again. Retrying cannot help, so the library stops retrying
    and publishes one ``EMAIL_PROVIDER_AUTH_FAILED`` event.
    """


class ProviderError(MailParityError):
    """The provider answered with an error status."""


class BadRequestError(ProviderError):
    """The provider refused the request as malformed (400, and 4xx not named elsewhere)."""


class UnauthorizedError(ProviderError):
    """401 that one token refresh did not cure."""


class PermissionDeniedError(ProviderError):
    """403 that is not throttling: a missing scope or permission, a disabled API."""


class NotFoundError(ProviderError):
    """404: the message, subscription, attachment or mailbox does not exist (any more)."""


class CursorExpiredError(ProviderError):
    """The sync cursor is too old: Graph delta 410 ``syncStateNotFound``, Gmail history 404.

    The caller must run a full sync and take a new baseline.
    """


class ThrottledError(ProviderError):
    """429 (or a Gmail quota 403) after the retries ran out.

    Attributes:
        retry_after: seconds the provider asked us to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    """5xx, a timeout or a connection error after the retries ran out.

    Attributes:
        retry_after: seconds a 503 asked us to wait (``Retry-After``), when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class SubscriptionError(MailParityError):
    """A Graph subscription or Gmail watch could not be created or renewed.

    Graph answers 400 when its validation request to the notification URL failed.
    """


class WebhookError(MailParityError):
    """A webhook request was refused."""


class WebhookValidationError(WebhookError):
    """The webhook request is malformed: wrong shape, too large, undecodable."""


class WebhookAuthenticationError(WebhookError):
    """The push credentials are missing (401) or invalid (403)."""


class PermanentMessageError(MailParityError):
    """This message can never be processed; it is reported and stops blocking its mailbox."""


class EventParseError(MailParityError, ValueError):
    """:func:`~mailparity.events.parse_event` got no event of this library: not JSON, not an
    object, an unknown ``eventType``, a ``schemaVersion`` newer than this library, or fields that
    do not validate. The message names what is wrong (field locations, never field values)."""


class WebConnectError(MailParityError):
    """A step of the web connect flow (:mod:`mailparity.webconnect`) was refused; nothing was
    stored. ``code`` says why (``invalid_grant``, ``mailbox_taken``, ``scope_not_granted`` ...).
    Messages never carry the ``state``, the authorization code, tokens or secrets; they are
    safe to show to the person who signed in."""


class ConnectStateError(WebConnectError):
    """The callback's ``state`` cannot be trusted: ``code`` is ``state_missing``,
    ``state_unknown``, ``state_expired``, ``state_reused`` or ``owner_mismatch`` (the flow was
    started for another user or tenant of the host)."""


class ConnectDeniedError(WebConnectError):
    """The provider redirected back with an ``error`` (the user declined, an admin's consent is
    missing ...): ``code`` is the OAuth ``error`` (``access_denied`` ...); the provider's own
    code (an Entra ``AADSTS...``) is in :attr:`provider_code` when it sent one."""

    def __init__(self, message: str, *, provider_code: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.provider_code = provider_code


class MailboxMismatchError(WebConnectError):
    """The account that signed in is not the mailbox the host expected (``code``
    ``mailbox_mismatch``); :attr:`expected` and :attr:`observed` name both."""

    def __init__(
        self, message: str, *, expected: str, observed: str | None, **kwargs: object
    ) -> None:
        super().__init__(message, code="mailbox_mismatch", **kwargs)  # type: ignore[arg-type]
        self.expected = expected
        self.observed = observed


def is_transient(error: BaseException) -> bool:
    """True when retrying later may succeed (throttling, outages, store and publisher failures)."""
    transient = (
        ThrottledError, ProviderUnavailableError, StoreError, PublishError, UnauthorizedError
    )
    return isinstance(error, transient)


class MissingExtraError(ImportError):
    """An optional dependency is not installed. The message names the extra that brings it
    and how to install it (:func:`install_hint`). An ``ImportError``, so code that probes for
    an integration with ``try: import ...`` keeps working."""


def install_hint(extra: str) -> str:
    """How to install mailparity with the optional dependencies of ``extra``. mailparity is
    not on the Python Package Index yet: from a checkout, or from a wheel built from one."""
    return (
        f"install mailparity[{extra}] (in a checkout: pip install '.[{extra}]';"
        f" a built wheel: pip install 'mailparity-<version>-py3-none-any.whl[{extra}]')"
    )


def missing_extra(extra: str, feature: str) -> MissingExtraError:
    """The error to raise (``from`` the original ImportError) when ``feature`` needs the
    optional dependencies of ``extra``."""
    return MissingExtraError(f"{feature} needs the {extra!r} extra: {install_hint(extra)}")
