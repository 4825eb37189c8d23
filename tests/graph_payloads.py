"""Builders of Microsoft Graph / Entra payloads and fixtures for the Graph adapter tests.

Shapes follow the Graph and identity-platform documentation (see the shared notes); the real
payloads of the corpus are loaded through the ``corpus_dir`` fixture by the tests themselves.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import responses
from pydantic import SecretStr

from mailparity.models import MicrosoftProviderConfig, OAuthTokens
from mailparity.stores.memory import InMemoryStore

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
TENANT_DIR = "11111111-2222-3333-4444-555555555555"
MAILBOX = "support@contoso.com"
ACCESS_TOKEN = "at-SECRET-0001"
REFRESH_TOKEN = "rt-SECRET-0001"
CLIENT_SECRET = "cs-SECRET-0001"
CLIENT_STATE = "state-SECRET-0001"
IMMUTABLE = 'IdType="ImmutableId"'


class DictSecrets:
    """A SecretStore over a dict keyed by (tenant, name)."""

    def __init__(self, values: dict[tuple[str, str], str] | None = None) -> None:
        self.values = dict(values or {})

    def get_secret(self, tenant: str, name: str) -> str | None:
        return self.values.get((tenant, name))


def config(**overrides: Any) -> MicrosoftProviderConfig:
    """A delegated Graph config with a client id and secret (override anything)."""
    data: dict[str, Any] = {
        "provider_id": "prov-1",
        "tenant": "tenant-a",
        "mailbox": MAILBOX,
        "client_id": "client-123",
        "client_secret": SecretStr(CLIENT_SECRET),
        "webhook_notification_url": "https://hooks.example.com/graph",
    }
    data.update(overrides)
    return MicrosoftProviderConfig(**data)


def tokens(now: datetime, *, valid_for: float = 3600, refresh: str | None = REFRESH_TOKEN,
           access: str = ACCESS_TOKEN) -> OAuthTokens:
    return OAuthTokens(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh) if refresh else None,
        expires_at=now + timedelta(seconds=valid_for),
    )


def store_with(cfg: MicrosoftProviderConfig, toks: OAuthTokens | None) -> InMemoryStore:
    store = InMemoryStore()
    store.save_provider(cfg)
    if toks is not None:
        store.save_tokens(cfg.provider_id, toks)
    return store


def add_openid(rsps: responses.RequestsMock, tenant: str = "common",
               login: str = LOGIN) -> str:
    """Register the authority's OpenID configuration msal fetches; return the token endpoint."""
    token_endpoint = f"{login}/{tenant}/oauth2/v2.0/token"
    rsps.get(
        f"{login}/{tenant}/v2.0/.well-known/openid-configuration",
        json={
            "authorization_endpoint": f"{login}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": token_endpoint,
            "issuer": f"{login}/{{tenantid}}/v2.0",
        },
    )
    return token_endpoint


def token_ok(access: str = "at-SECRET-0002", refresh: str | None = "rt-SECRET-0002",
             expires_in: int = 3599) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": "https://graph.microsoft.com/Mail.ReadWrite",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access,
    }
    if refresh:
        body["refresh_token"] = refresh
    return body


def token_error(error: str, description: str, codes: list[int] | None = None) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": description,
        "error_codes": codes or [],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "trace-1",
        "correlation_id": "corr-1",
    }


def graph_error(code: str, message: str = "failed", request_id: str = "req-1") -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": request_id, "date": "2026-01-01T00:00:00"},
        }
    }


def recipient(address: str, name: str | None = None) -> dict[str, Any]:
    return {"emailAddress": {"name": name or address, "address": address}}


def message(message_id: str = "AAMkMSG1=", **overrides: Any) -> dict[str, Any]:
    """A Graph message as the adapter's $select/$expand GET returns it."""
    data: dict[str, Any] = {
        "id": message_id,
        "receivedDateTime": "2026-01-01T10:00:00Z",
        "subject": "Printer on fire",
        "bodyPreview": "The printer is on fire.",
        "body": {
            "contentType": "html",
            "content": "<html><body><p>The printer is <b>on fire</b>.</p></body></html>",
        },
        "from": recipient("alice@example.com", "Alice Example"),
        "sender": recipient("alice@example.com", "Alice Example"),
        "toRecipients": [recipient(MAILBOX, "Support")],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "conversationId": "conv-1",
        "internetMessageId": "<abc@example.com>",
        "hasAttachments": False,
        "internetMessageHeaders": [
            {"name": "Message-ID", "value": "<abc@example.com>"},
            {"name": "In-Reply-To", "value": "<parent@example.com>"},
            {"name": "References", "value": "<root@example.com>\r\n <parent@example.com>"},
            {"name": "Subject", "value": "=?utf-8?q?Printer_on_fire?="},
            {"name": "X-Ticket", "value": "42"},
        ],
        "attachments": [],
    }
    data.update(overrides)
    return data


def subscription(sub_id: str = "sub-1", expires: str = "2026-01-03T22:20:00Z",
                 resource: str = "me/mailFolders('inbox')/messages") -> dict[str, Any]:
    return {
        "@odata.context": f"{GRAPH}/$metadata#subscriptions/$entity",
        "id": sub_id,
        "resource": resource,
        "applicationId": "app-1",
        "changeType": "created",
        "clientState": None,
        "notificationUrl": "https://hooks.example.com/graph",
        "expirationDateTime": expires,
        "creatorId": "creator-1",
    }


def load(corpus_dir: Path, name: str) -> Any:
    """A corpus JSON file (some start with white space)."""
    return json.loads((corpus_dir / "graph_api" / name).read_text(encoding="utf-8").strip())


def graph_calls(rsps: responses.RequestsMock) -> list[Any]:
    return [c for c in rsps.calls if c.request.url.startswith(GRAPH)]


def assert_immutable_everywhere(rsps: responses.RequestsMock) -> None:
    """Every Graph request carried Prefer: IdType="ImmutableId"."""
    for call in graph_calls(rsps):
        assert IMMUTABLE in call.request.headers.get("Prefer", ""), call.request.url
