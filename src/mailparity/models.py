"""Pydantic models: messages, events, configs, tokens and the library's own records.

Every model dumps to the event JSON with ``model_dump(mode="json", by_alias=True)`` using camelCase
keys; constructors accept snake_case and camelCase (``populate_by_name=True``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
)

__all__ = [
    "EVENT_NAMESPACE",
    "EVENT_SCHEMA_VERSION",
    "GRAPH_MAX_SUBSCRIPTION_MINUTES",
    "Attachment",
    "ConnectionTestResult",
    "EmailAddress",
    "EmailBody",
    "EmailMessage",
    "EmailProviderAuthFailed",
    "EmailProviderConnected",
    "EmailProviderReauthorized",
    "EmailProviderSubscriptionLost",
    "EventLimits",
    "GmailProviderConfig",
    "Header",
    "InboundEmailReceived",
    "Job",
    "MailParityEvent",
    "MicrosoftProviderConfig",
    "OAuthTokens",
    "ProviderConfig",
    "ProviderConfigBase",
    "WebhookSubscription",
    "event_id_for",
    "provider_config_from_dict",
    "provider_config_to_storage",
    "utcnow",
]

#: Namespace of the deterministic event ids (uuid5). Never change it: consumers dedupe on event ids.
EVENT_NAMESPACE = uuid.UUID("6f0c7a52-4c1e-5d8e-9a57-1f2d3c4b5a69")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default clock of the library)."""
    return datetime.now(timezone.utc)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        # Naive datetimes are taken as UTC: both providers speak UTC.
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def event_id_for(provider_id: str, message_id: str, *, complete: bool = True) -> str:
    """The deterministic event id of a message's complete (or minimal) event.

    The same message always gets the same id, so a republished event can be dropped by consumers;
    the minimal fallback event and the complete event differ, so the complete one is not dropped.
    """
    kind = "complete" if complete else "minimal"
    return _uuid5_text(f"{provider_id}\x00{message_id}\x00{kind}")


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(EVENT_NAMESPACE, name))`` computed straight from the SHA-1 digest (one
    per published event; the UUID object in between was most of the cost)."""
    data = _NAMESPACE_BYTES + name.encode("utf-8")
    digest = bytearray(hashlib.sha1(data, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def to_camel(name: str) -> str:
    """``snake_case`` -> ``camelCase`` for the field names of these models: what pydantic's
    ``alias_generators.to_camel`` gives for them (a test checks every field), without its
    regular expressions, which cost several milliseconds of every process's start."""
    letters = name.replace("_", "")
    if (
        not (letters.isascii() and letters.isalpha() and letters.islower())
        or name.startswith("_")
        or name.endswith("_")
        or "__" in name
    ):
        from pydantic.alias_generators import to_camel as general

        return general(name)  # digits, doubled or outer underscores: pydantic's own rules
    first, *rest = name.split("_")
    return first + "".join(part[0].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=False,
        defer_build=True,
        # Every key is always in the JSON (None included), so the serialization schema (the
        # shipped event schema) says so: a consumer may rely on each key being present.
        json_schema_serialization_defaults_required=True,
    )


class EmailAddress(_Model):
    """One mailbox: the addr-spec as sent (case kept) and the decoded display name."""

    email: str
    """The addr-spec as sent, case kept (``""`` when the message had no address)."""
    name: str | None = None
    """The decoded display name; None when absent or empty."""

    @field_validator("name")
    @classmethod
    def _empty_name_is_none(cls, value: str | None) -> str | None:
        return value or None


class EmailBody(_Model):
    """The bodies: ``text`` is never None (derived from the HTML when there is no text part)."""

    text: str = ""
    """The text/plain part, or text derived from the HTML when there is none (never None)."""
    html: str | None = None
    """The text/html part, or None."""


class Attachment(_Model):
    """An attachment or inline part. ``id`` is accepted by ``get_attachment_content``."""

    id: str
    """Accepted by the adapter's ``get_attachment_content(message_id, id)`` for the same message."""
    name: str
    """The file name: decoded, folders and control characters dropped; ``attachment-N.ext``
    when the part has none."""
    content_type: str
    """The MIME type, e.g. ``application/pdf``."""
    size: int = 0
    """Bytes as the provider reports them (Gmail: decoded part; Graph: ``size``); 0 if unknown."""
    content_id: str | None = None
    """The Content-ID without angle brackets (what ``cid:`` URLs of the HTML name), or None."""
    is_inline: bool = False
    """True for inline parts (images the HTML shows), False for attachments."""
    stored_as: str | None = None
    """Where the host's attachment store saved the content (the reference its ``save``
    returned: a path, a key, a URL); None when no store is configured or it was not saved."""
    not_stored: Literal["too_large", "unavailable"] | None = None
    """Why a configured attachment store did not get this attachment: ``"too_large"`` (above
    the store's size limit) or ``"unavailable"`` (the provider has no content for it, e.g. an
    Outlook link to a cloud file); None otherwise."""


class Header(_Model):
    """One header, unfolded and with RFC 2047 encoded-words decoded."""

    name: str
    """The header name as sent."""
    value: str
    """The value, unfolded, with RFC 2047 encoded-words decoded."""


#: A provider's registry key (see :mod:`mailparity.providers`); the built-in ones are listed
#: in API.md. Any registered key is valid.
ProviderName: TypeAlias = str


class EmailMessage(_Model):
    """The normalized message: the ``emailData`` of ``INBOUND_EMAIL_RECEIVED``."""

    id: str
    """The provider message id (Graph immutable id, Gmail message id)."""
    provider: ProviderName
    """The provider's registry key (see :mod:`mailparity.providers`)."""
    provider_id: str
    """The host's id of this mailbox connection."""
    tenant: str
    """The host's tenant of the mailbox."""
    mailbox: str
    """The mailbox address the message arrived in."""
    received_at: datetime
    """When the mailbox received it, UTC (Graph ``receivedDateTime``, Gmail ``internalDate``)."""
    subject: str = ""
    """The subject, encoded-words decoded; ``""`` when absent."""
    from_: EmailAddress = Field(default_factory=lambda: EmailAddress(email=""), alias="from")
    """The sender (JSON key ``from``)."""
    to: list[EmailAddress] = Field(default_factory=list)
    """The To recipients; ``[]`` when absent."""
    cc: list[EmailAddress] = Field(default_factory=list)
    """The Cc recipients; ``[]`` when absent."""
    bcc: list[EmailAddress] = Field(default_factory=list)
    """The Bcc recipients the provider shows (usually only on sent mail); ``[]`` when absent."""
    reply_to: list[EmailAddress] = Field(default_factory=list)
    """The Reply-To addresses (JSON ``replyTo``); ``[]`` when absent."""
    body: EmailBody = Field(default_factory=EmailBody)
    """The text and HTML bodies."""
    attachments: list[Attachment] = Field(default_factory=list)
    """Attachments and inline parts (``is_inline`` True), metadata only."""
    thread_id: str | None = None
    """The conversation: Graph ``conversationId``, Gmail ``threadId``; None when unknown."""
    message_id: str | None = None
    """The RFC 5322 Message-ID with angle brackets, e.g. ``<abc@example.com>``."""
    in_reply_to: str | None = None
    """The msg-id of In-Reply-To, angle brackets kept."""
    references: list[str] = Field(default_factory=list)
    """Every msg-id of References, in order, angle brackets kept."""
    headers: list[Header] = Field(default_factory=list)
    """All headers in their original order, duplicates kept."""
    complete: bool = True
    """False only for the minimal fallback event (the details could not be fetched)."""
    truncated: list[str] = Field(default_factory=list)
    """Fields cut to the event's size limits (:class:`EventLimits`), e.g. ``["body.html"]``: the
    full message is still there, through the adapter's ``get_message_details``."""
    defects: list[str] = Field(default_factory=list)
    """Problems the normalizer met and worked around in the MIME (a boundary recovered, a
    nesting deeper than it walks, text after a base64 body): the content read is kept, and this
    says it was not well-formed. Empty for well-formed mail."""

    @field_validator("received_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _to_utc(value)

    @field_validator("provider")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _registered_provider(value)

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for item in self.headers:
            if item.name.lower() == wanted:
                return item.value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of the headers called ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [item.value for item in self.headers if item.name.lower() == wanted]


def _registered_provider(value: str) -> str:
    """``value`` if a provider is registered under it (ValueError otherwise)."""
    from .providers import is_registered

    if not is_registered(value):
        raise ValueError(f"{value!r} is not a registered provider")
    return value


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    if len(text) * 4 <= limit:  # cannot exceed the limit: no need to encode
        return text
    head = text[:limit]
    encoded = head.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return head
    return encoded[:limit].decode("utf-8", "ignore")


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


#: What the last guard of :meth:`EventLimits.apply` halves, in turn, while the event is too big.
_SHRINKABLE = (
    "references", "attachments", "bcc", "cc", "to", "reply_to", "headers", "body.html",
    "body.text",
)


class EventLimits(_Model):
    """Caps on what one ``INBOUND_EMAIL_RECEIVED`` event carries (UTF-8 bytes, or counts).

    The defaults keep the JSON of one event's ``emailData`` under 250,000 bytes (most event
    buses take 256 KB: SNS, SQS, Event Grid; a bus is not a file store), whatever the mail. A
    field that was cut is named in ``EmailMessage.truncated``; the whole message stays
    reachable with the adapter's ``get_message_details(message_id)``, and attachments (which
    never travel in the event) with ``get_attachment_content``. ``None`` lifts a cap.

    The per-field caps come first (a prefix of each body, headers in order until their budget,
    the first mailboxes and attachments); then, when the JSON is still larger than
    ``message_bytes`` (a hostile message: huge lists, long ids), the lists and bodies are halved
    in turn, references first and the text body last, until it fits."""

    text_bytes: int | None = 48_000
    html_bytes: int | None = 96_000
    subject_bytes: int | None = 2_000
    #: Each header value, then all headers together (in order; later headers are dropped).
    header_value_bytes: int | None = 2_000
    headers_bytes: int | None = 32_000
    #: Mailboxes kept over to, cc, bcc and reply_to together.
    addresses: int | None = 250
    attachments: int | None = 100
    #: The JSON of ``emailData``, after the caps above.
    message_bytes: int | None = 250_000

    def apply(self, message: EmailMessage) -> EmailMessage:
        """``message`` within the limits (itself when nothing exceeds them, else a copy with
        the cut fields named in ``truncated``)."""
        update: dict[str, Any] = {}
        cut: list[str] = []
        body = message.body
        text = body.text if self.text_bytes is None else _cut(body.text, self.text_bytes)
        html = body.html
        if html is not None and self.html_bytes is not None:
            html = _cut(html, self.html_bytes)
        if text != body.text:
            cut.append("body.text")
        if html != body.html:
            cut.append("body.html")
        if cut:
            update["body"] = EmailBody(text=text, html=html)
        if self.subject_bytes is not None:
            subject = _cut(message.subject, self.subject_bytes)
            if subject != message.subject:
                update["subject"] = subject
                cut.append("subject")
        headers = self._headers(message.headers)
        if headers is not None:
            update["headers"] = headers
            cut.append("headers")
        self._addresses(message, update, cut)
        if self.attachments is not None and len(message.attachments) > self.attachments:
            update["attachments"] = message.attachments[: self.attachments]
            cut.append("attachments")
        result = message.model_copy(update=update) if update else message
        if self.message_bytes is not None:
            result = self._fit(result, cut)
        if not cut:
            return message
        truncated = [*message.truncated, *(c for c in cut if c not in message.truncated)]
        if result is message:
            result = message.model_copy()
        result.truncated = truncated
        return result

    def _fit(self, message: EmailMessage, cut: list[str]) -> EmailMessage:
        """Halve lists and bodies, in :data:`_SHRINKABLE` order, until the JSON fits."""
        limit = self.message_bytes or 0
        if _json_bound(message) <= limit:
            return message  # the usual mail: provably small, no need to serialize it
        for _ in range(64):  # each round halves something: 64 rounds empty anything
            if len(message.model_dump_json(by_alias=True)) <= limit:
                return message
            for field in _SHRINKABLE:
                shrunk = _halve(message, field)
                if shrunk is not None:
                    message = shrunk
                    if field not in cut:
                        cut.append(field)
                    break
            else:
                return message  # nothing left to cut (the fixed fields alone are this big)
        return message

    def _headers(self, headers: list[Header]) -> list[Header] | None:
        """The headers within the limits, or None when they all fit as they are."""
        kept: list[Header] = []
        total = 0
        changed = False
        for header in headers:
            value = header.value
            if self.header_value_bytes is not None:
                value = _cut(value, self.header_value_bytes)
            size = _size(header.name) + _size(value)
            if self.headers_bytes is not None and total + size > self.headers_bytes:
                changed = True
                break
            total += size
            if value != header.value:
                changed = True
                kept.append(Header(name=header.name, value=value))
            else:
                kept.append(header)
        return kept if changed else None

    def _addresses(self, message: EmailMessage, update: dict[str, Any], cut: list[str]) -> None:
        if self.addresses is None:
            return
        budget = self.addresses
        for name in ("to", "cc", "bcc", "reply_to"):
            items: list[EmailAddress] = getattr(message, name)
            kept = items[: max(budget, 0)]
            budget -= len(kept)
            if len(kept) != len(items):
                update[name] = kept
                cut.append(name)


def _json_bound(message: EmailMessage) -> int:
    """An upper bound of the JSON size of ``message`` (every character escaped at 6 bytes,
    generous room for keys and punctuation), computed without serializing it."""
    chars = len(message.body.text) + len(message.body.html or "") + len(message.subject)
    chars += sum(len(h.name) + len(h.value) for h in message.headers)
    mailboxes = [message.from_, *message.to, *message.cc, *message.bcc, *message.reply_to]
    chars += sum(len(a.email) + len(a.name or "") for a in mailboxes)
    chars += sum(len(a.id) + len(a.name) + len(a.content_type) + len(a.content_id or "")
                 for a in message.attachments)
    chars += sum(len(r) for r in message.references) + sum(len(t) for t in message.truncated)
    chars += sum(len(d) for d in message.defects)
    for value in (message.id, message.provider_id, message.tenant, message.mailbox,
                  message.thread_id, message.message_id, message.in_reply_to):
        chars += len(value or "")
    items = (len(message.headers) + len(mailboxes) + len(message.attachments)
             + len(message.references) + len(message.defects) + len(message.truncated))
    return 6 * chars + 120 * items + 1_000


def _halve(message: EmailMessage, field: str) -> EmailMessage | None:
    """``message`` with ``field`` halved (a list: its first half; a body: its first half), or
    None when the field is empty already."""
    if field in ("body.text", "body.html"):
        body = message.body
        value = body.text if field == "body.text" else body.html
        if not value:
            return None
        half = value[: len(value) // 2]
        new_body = (
            EmailBody(text=half, html=body.html) if field == "body.text"
            else EmailBody(text=body.text, html=half or None)
        )
        return message.model_copy(update={"body": new_body})
    attribute = "reply_to" if field == "reply_to" else field
    items = getattr(message, attribute)
    if not items:
        return None
    return message.model_copy(update={attribute: items[: len(items) // 2]})


#: The version of the events' JSON shape, sent as ``schemaVersion`` in every event. Adding a key
#: keeps it; it goes up only when a key is removed or changes meaning, so a consumer can refuse an
#: event newer than it understands (:func:`mailparity.events.parse_event` does).
EVENT_SCHEMA_VERSION = 1


class _Event(_Model):
    event_id: str
    """A UUID, the same whenever the same message's event is published again (drop repeats)."""
    event_type: str
    """Which event this is (the class); see :data:`mailparity.events.EVENT_TYPES`."""
    schema_version: int = EVENT_SCHEMA_VERSION
    """The version of the JSON shape: :data:`EVENT_SCHEMA_VERSION`."""
    occurred_at: datetime = Field(default_factory=utcnow)
    """When the event was made, UTC."""
    tenant_id: str
    """The host's tenant of the mailbox."""
    provider_id: str
    """The host's id of the mailbox connection."""

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _to_utc(value)


class InboundEmailReceived(_Event):
    """The ``INBOUND_EMAIL_RECEIVED`` event: one per new email, complete or (fallback) minimal."""

    event_type: Literal["INBOUND_EMAIL_RECEIVED"] = "INBOUND_EMAIL_RECEIVED"
    """Always ``INBOUND_EMAIL_RECEIVED``."""
    email_data: EmailMessage
    """The message (JSON ``emailData``)."""

    @classmethod
    def for_message(
        cls,
        message: EmailMessage,
        *,
        occurred_at: datetime | None = None,
        limits: EventLimits | None = None,
    ) -> InboundEmailReceived:
        """Build the event of ``message`` with its deterministic ``event_id``, within
        ``limits`` (:class:`EventLimits` defaults: one event stays under 256 KB)."""
        return cls(
            event_id=event_id_for(message.provider_id, message.id, complete=message.complete),
            occurred_at=occurred_at or utcnow(),
            tenant_id=message.tenant,
            provider_id=message.provider_id,
            email_data=(limits if limits is not None else _DEFAULT_LIMITS).apply(message),
        )


_DEFAULT_LIMITS = EventLimits()


class EmailProviderAuthFailed(_Event):
    """``EMAIL_PROVIDER_AUTH_FAILED``: a mailbox needs consent again; published once per failure."""

    event_type: Literal["EMAIL_PROVIDER_AUTH_FAILED"] = "EMAIL_PROVIDER_AUTH_FAILED"
    """Always ``EMAIL_PROVIDER_AUTH_FAILED``."""
    provider: ProviderName
    """The provider's registry key."""
    mailbox: str
    """The mailbox that needs consent again."""
    error_code: str | None = None
    """The provider's error code (``invalid_grant``, ``AADSTS700082`` ...), when it sent one."""
    error: str = ""
    """What failed, free of secrets."""


class EmailProviderConnected(_Event):
    """``EMAIL_PROVIDER_CONNECTED``: a new mailbox connection was stored (a connect flow ended)."""

    event_type: Literal["EMAIL_PROVIDER_CONNECTED"] = "EMAIL_PROVIDER_CONNECTED"
    """Always ``EMAIL_PROVIDER_CONNECTED``."""
    provider: ProviderName
    """The provider's registry key."""
    mailbox: str
    """The mailbox that was connected."""


class EmailProviderReauthorized(_Event):
    """``EMAIL_PROVIDER_REAUTHORIZED``: an existing mailbox connection signed in again (new
    consent, new tokens); when it needed consent, its auth failure is over."""

    event_type: Literal["EMAIL_PROVIDER_REAUTHORIZED"] = "EMAIL_PROVIDER_REAUTHORIZED"
    """Always ``EMAIL_PROVIDER_REAUTHORIZED``."""
    provider: ProviderName
    """The provider's registry key."""
    mailbox: str
    """The mailbox that signed in again."""
    needed_consent: bool = False
    """The connection needed consent before (an ``EMAIL_PROVIDER_AUTH_FAILED`` ends here)."""


class EmailProviderSubscriptionLost(_Event):
    """``EMAIL_PROVIDER_SUBSCRIPTION_LOST``: the mailbox has no working subscription or watch
    (none was made, or the last one expired or was removed) and it could not be created again.
    Pushes stop; the maintenance sweep's catch-up still delivers the mail, later. Once per
    occurrence; a subscription created or renewed again ends it."""

    event_type: Literal["EMAIL_PROVIDER_SUBSCRIPTION_LOST"] = "EMAIL_PROVIDER_SUBSCRIPTION_LOST"
    """Always ``EMAIL_PROVIDER_SUBSCRIPTION_LOST``."""
    provider: ProviderName
    """The provider's registry key."""
    mailbox: str
    """The mailbox whose pushes stopped."""
    subscription_id: str | None = None
    """The lost subscription's id (Graph), None for a Gmail watch or when there was none."""
    expired_at: datetime | None = None
    """When the lost subscription or watch expired, when known."""
    error_code: str | None = None
    """The provider's error code of the last attempt to create it, when it sent one."""
    error: str = ""
    """Why it could not be created, free of secrets."""


MailParityEvent: TypeAlias = (
    InboundEmailReceived
    | EmailProviderAuthFailed
    | EmailProviderConnected
    | EmailProviderReauthorized
    | EmailProviderSubscriptionLost
)


class OAuthTokens(_Model):
    """OAuth tokens of one mailbox connection. Secrets stay ``SecretStr``."""

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime
    scope: str | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _to_utc(value)

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token expires within ``seconds`` of ``now``."""
        return self.expires_at <= (now or utcnow()) + timedelta(seconds=seconds)

    def to_storage(self) -> dict[str, Any]:
        """Plain dict with the secrets revealed, for stores only (never log it)."""
        return {
            "access_token": self.access_token.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value() if self.refresh_token else None,
            "expires_at": self.expires_at.isoformat(),
            "scope": self.scope,
        }


class ConnectionTestResult(_Model):
    """The outcome of ``test_connection``; errors are reported, never raised."""

    success: bool
    error: str | None = None
    mailbox: str | None = None
    code: str | None = None
    status: int | None = None
    request_id: str | None = None


class WebhookSubscription(_Model):
    """A Graph subscription (``id``) or a Gmail watch (``id`` None, ``resource`` = topic)."""

    id: str | None = None
    expires_at: datetime
    resource: str | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _to_utc(value)


# --------------------------------------------------------------------------------------------
# Provider configuration


class ProviderConfigBase(_Model):
    """What every provider's config carries; a provider package subclasses it with a
    ``provider: Literal["<key>"]`` field (its registry key) and its own settings.

    The core reads only these fields; anything provider-specific goes through the provider's
    :class:`~mailparity.providers.base.ProviderSpec`.
    """

    #: The registry key of the provider (``EmailMessage.provider``); set by each subclass.
    provider: str
    provider_id: str
    tenant: str
    mailbox: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: Set when an auth failure was terminal: the mailbox needs consent again; nothing is retried.
    needs_consent: bool = False
    auth_error_code: str | None = None
    #: Whether the mailbox is processed at all (paused: skipped by workers and maintenance).
    active: bool = True

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-able data with every secret masked (for CLIs and logs)."""
        return self.model_dump(mode="json")

    @field_serializer("client_secret", when_used="json")
    def _mask_client_secret(self, value: SecretStr | None) -> str | None:
        return None if value is None else "**********"


#: The former private name of :class:`ProviderConfigBase`.
_ProviderConfigBase = ProviderConfigBase


def provider_config_from_dict(data: Mapping[str, Any]) -> ProviderConfigBase:
    """Rebuild a config stored with :func:`provider_config_to_storage` (secrets revealed), with
    the config model the provider registry holds for ``data["provider"]``.

    Raises:
        ConfigurationError: ``provider`` is missing or names no registered provider.
    """
    from .providers import config_from_dict

    return config_from_dict(data)

def provider_config_to_storage(config: ProviderConfigBase) -> dict[str, Any]:
    """The config as a JSON-able dict with secrets revealed: for stores only, never for logs."""
    data = config.model_dump(mode="python")
    for key, value in list(data.items()):
        if isinstance(value, SecretStr):
            data[key] = value.get_secret_value()
        elif isinstance(value, datetime):
            data[key] = value.isoformat()
    return data


# --------------------------------------------------------------------------------------------
# Library records


JobKind: TypeAlias = Literal[
    "message",  # payload {"message_id"}: fetch, dedupe, publish, mark processed
    "cursor",  # a push moved the provider's cursor: catch up from the stored one, then each message
    # The former, provider-named kinds of "message" and "cursor": still run (jobs stored before).
    "graph_message",
    "gmail_history",
    # payload {"event", "subscription_id"}: act on a push registration's lifecycle event
    "lifecycle",
    "sync",  # payload {"reason"}: catch-up sync of one provider
    "message_retry",  # payload {"message_id"}: a message whose minimal event went out
]


class Job(_Model):
    """A durable unit of work stored by a :class:`~mailparity.protocols.JobStore`.

    ``unique_key``: while a job with this key is pending (not yet claimed), enqueuing another one
    with the same key is a no-op; this coalesces duplicate notifications and bursts of pushes.
    """

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    kind: JobKind
    provider_id: str
    payload: dict[str, Any] = Field(default_factory=dict)
    unique_key: str | None = None
    attempts: int = 0
    available_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    status: Literal["pending", "running", "done", "dead"] = "pending"
    lease_until: datetime | None = None
    worker_id: str | None = None

    @field_validator("available_at", "created_at", "lease_until", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _to_utc(value)


# --------------------------------------------------------------------------------------------
# Re-exports: each provider's config lives in its provider package (kept importable from here).

from .providers.gmail.config import GmailProviderConfig  # noqa: E402
from .providers.graph.config import (  # noqa: E402
    GRAPH_MAX_SUBSCRIPTION_MINUTES,
    MicrosoftProviderConfig,
)

#: The configs of the built-in providers, discriminated by ``provider``.
ProviderConfig: TypeAlias = Annotated[
    MicrosoftProviderConfig | GmailProviderConfig, Field(discriminator="provider")
]
