"""mailparity: one normalized INBOUND_EMAIL_RECEIVED event per new email, pushed from Gmail and
Microsoft 365 alike.

The public API (``../API.md`` of the project) is re-exported here. Names are loaded on first access
so that ``import mailparity`` stays cheap: provider libraries (msal, google-auth, the Google API
client) are imported only when an adapter is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # models
    "EmailAddress": "models",
    "EmailBody": "models",
    "Attachment": "models",
    "Header": "models",
    "EmailMessage": "models",
    "InboundEmailReceived": "models",
    "EventLimits": "models",
    "EmailProviderAuthFailed": "models",
    "EmailProviderConnected": "models",
    "EmailProviderReauthorized": "models",
    "EmailProviderSubscriptionLost": "models",
    "MailParityEvent": "models",
    "OAuthTokens": "models",
    "ConnectionTestResult": "models",
    "WebhookSubscription": "models",
    "MicrosoftProviderConfig": "models",
    "GmailProviderConfig": "models",
    "ProviderConfig": "models",
    "Job": "models",
    "event_id_for": "models",
    "EVENT_SCHEMA_VERSION": "models",
    # events on the wire
    "parse_event": "events",
    "load_event_schema": "events",
    # errors
    "MailParityError": "errors",
    "ConfigurationError": "errors",
    "StoreError": "errors",
    "PublishError": "errors",
    "AuthError": "errors",
    "CredentialsMissingError": "errors",
    "AuthExpiredError": "errors",
    "ProviderError": "errors",
    "BadRequestError": "errors",
    "UnauthorizedError": "errors",
    "PermissionDeniedError": "errors",
    "NotFoundError": "errors",
    "CursorExpiredError": "errors",
    "ThrottledError": "errors",
    "ProviderUnavailableError": "errors",
    "SubscriptionError": "errors",
    "WebhookError": "errors",
    "WebhookValidationError": "errors",
    "WebhookAuthenticationError": "errors",
    "PermanentMessageError": "errors",
    "EventParseError": "errors",
    "TLSVerificationError": "errors",
    "WebConnectError": "errors",
    "ConnectStateError": "errors",
    "ConnectDeniedError": "errors",
    "MailboxMismatchError": "errors",
    # protocols
    "CredentialStore": "protocols",
    "ProviderStore": "protocols",
    "SecretStore": "protocols",
    "EventPublisher": "protocols",
    "StateStore": "protocols",
    "JobStore": "protocols",
    "DedupeStore": "protocols",
    "LockStore": "protocols",
    "MetaStore": "protocols",
    "ProviderRegistry": "protocols",
    "AttachmentStore": "protocols",
    # attachment content
    "stream_attachment": "attachments",
    "AttachmentStream": "attachments",
    "FilesystemAttachmentStore": "attachments",
    "InMemoryAttachmentStore": "attachments",
    # stores and publishers
    "InMemoryStore": "stores.memory",
    "SqliteStore": "stores.sqlite",
    "InMemoryPublisher": "publishers",
    "DictSecretStore": "publishers",
    "CallbackPublisher": "publishers",
    "JsonlFilePublisher": "publishers",
    "SqlStore": "stores.sql",
    # adapters
    "EmailProviderAdapter": "adapter",
    "SyncBatch": "adapter",
    "MicrosoftGraphAdapter": "providers.graph",
    "GmailAdapter": "providers.gmail",
    "create_adapter": "providers",
    "RetryPolicy": "http",
    # webhooks and processing
    "WebhookRequest": "webhooks",
    "WebhookResponse": "webhooks",
    "WebhookHandler": "webhooks",
    "Processor": "processing",
    "App": "app",
    "Worker": "worker",
    "Maintenance": "maintenance",
    "MaintenanceReport": "maintenance",
    "RetentionPolicy": "maintenance",
    # connecting mailboxes from a web app
    "WebConnect": "webconnect",
    "ConnectStart": "webconnect",
    "ConnectResult": "webconnect",
    "DisconnectResult": "webconnect",
}

__all__ = [
    "EVENT_SCHEMA_VERSION",
    "App",
    "Attachment",
    "AttachmentStore",
    "AttachmentStream",
    "AuthError",
    "AuthExpiredError",
    "BadRequestError",
    "CallbackPublisher",
    "ConfigurationError",
    "ConnectDeniedError",
    "ConnectResult",
    "ConnectStart",
    "ConnectStateError",
    "ConnectionTestResult",
    "CredentialStore",
    "CredentialsMissingError",
    "CursorExpiredError",
    "DedupeStore",
    "DictSecretStore",
    "DisconnectResult",
    "EmailAddress",
    "EmailBody",
    "EmailMessage",
    "EmailProviderAdapter",
    "EmailProviderAuthFailed",
    "EmailProviderConnected",
    "EmailProviderReauthorized",
    "EmailProviderSubscriptionLost",
    "EventLimits",
    "EventParseError",
    "EventPublisher",
    "FilesystemAttachmentStore",
    "GmailAdapter",
    "GmailProviderConfig",
    "Header",
    "InMemoryAttachmentStore",
    "InMemoryPublisher",
    "InMemoryStore",
    "InboundEmailReceived",
    "Job",
    "JobStore",
    "JsonlFilePublisher",
    "LockStore",
    "MailParityError",
    "MailParityEvent",
    "MailboxMismatchError",
    "Maintenance",
    "MaintenanceReport",
    "MetaStore",
    "MicrosoftGraphAdapter",
    "MicrosoftProviderConfig",
    "NotFoundError",
    "OAuthTokens",
    "PermanentMessageError",
    "PermissionDeniedError",
    "Processor",
    "ProviderConfig",
    "ProviderError",
    "ProviderRegistry",
    "ProviderStore",
    "ProviderUnavailableError",
    "PublishError",
    "RetentionPolicy",
    "RetryPolicy",
    "SecretStore",
    "SqlStore",
    "SqliteStore",
    "StateStore",
    "StoreError",
    "SubscriptionError",
    "SyncBatch",
    "TLSVerificationError",
    "ThrottledError",
    "UnauthorizedError",
    "WebConnect",
    "WebConnectError",
    "WebhookAuthenticationError",
    "WebhookError",
    "WebhookHandler",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookSubscription",
    "WebhookValidationError",
    "Worker",
    "__version__",
    "create_adapter",
    "event_id_for",
    "load_event_schema",
    "parse_event",
    "stream_attachment",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mailparity' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .adapter import EmailProviderAdapter, SyncBatch
    from .app import App
    from .attachments import (
        AttachmentStream,
        FilesystemAttachmentStore,
        InMemoryAttachmentStore,
        stream_attachment,
    )
    from .errors import (
        AuthError,
        AuthExpiredError,
        BadRequestError,
        ConfigurationError,
        ConnectDeniedError,
        ConnectStateError,
        CredentialsMissingError,
        CursorExpiredError,
        EventParseError,
        MailboxMismatchError,
        MailParityError,
        NotFoundError,
        PermanentMessageError,
        PermissionDeniedError,
        ProviderError,
        ProviderUnavailableError,
        PublishError,
        StoreError,
        SubscriptionError,
        ThrottledError,
        TLSVerificationError,
        UnauthorizedError,
        WebConnectError,
        WebhookAuthenticationError,
        WebhookError,
        WebhookValidationError,
    )
    from .events import load_event_schema, parse_event
    from .http import RetryPolicy
    from .maintenance import Maintenance, MaintenanceReport, RetentionPolicy
    from .models import (
        EVENT_SCHEMA_VERSION,
        Attachment,
        ConnectionTestResult,
        EmailAddress,
        EmailBody,
        EmailMessage,
        EmailProviderAuthFailed,
        EmailProviderConnected,
        EmailProviderReauthorized,
        EmailProviderSubscriptionLost,
        EventLimits,
        GmailProviderConfig,
        Header,
        InboundEmailReceived,
        Job,
        MailParityEvent,
        MicrosoftProviderConfig,
        OAuthTokens,
        ProviderConfig,
        WebhookSubscription,
        event_id_for,
    )
    from .processing import Processor
    from .protocols import (
        AttachmentStore,
        CredentialStore,
        DedupeStore,
        EventPublisher,
        JobStore,
        LockStore,
        MetaStore,
        ProviderRegistry,
        ProviderStore,
        SecretStore,
        StateStore,
    )
    from .providers import create_adapter
    from .providers.gmail import GmailAdapter
    from .providers.graph import MicrosoftGraphAdapter
    from .publishers import (
        CallbackPublisher,
        DictSecretStore,
        InMemoryPublisher,
        JsonlFilePublisher,
    )
    from .stores.memory import InMemoryStore
    from .stores.sql import SqlStore
    from .stores.sqlite import SqliteStore
    from .webconnect import ConnectResult, ConnectStart, DisconnectResult, WebConnect
    from .webhooks import WebhookHandler, WebhookRequest, WebhookResponse
    from .worker import Worker
