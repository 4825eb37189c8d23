"""The model of the Graph fake: its limits, property lists, state records and the request
helpers every part of :class:`~mailparity.testing.FakeGraph` uses."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._fakebase import (
    FakeRequest,
    isoformat_z,
    parse_iso,
)
from .._render import ParsedRaw

#: Graph's cap on Outlook message subscriptions.
MAX_SUBSCRIPTION_MINUTES = 4230
#: Members of one JSON batch.
MAX_BATCH = 20

WELL_KNOWN_FOLDERS: dict[str, str] = {
    "msgfolderroot": "Top of Information Store",
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "conversationhistory": "Conversation History",
}

_MESSAGE_PROPERTIES = [
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
]
#: Returned only when asked for with $select.
_SELECT_ONLY = ["internetMessageHeaders", "uniqueBody"]
_SELECTABLE = {name.lower(): name for name in ["id", *_MESSAGE_PROPERTIES, *_SELECT_ONLY]}
_ATTACHMENT_PROPERTIES = [
    "id",
    "lastModifiedDateTime",
    "name",
    "contentType",
    "size",
    "isInline",
    "contentId",
    "contentLocation",
    "contentBytes",
]
_FOLDER_PROPERTIES = [
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
]
_PATCHABLE = {"isRead", "categories", "flag", "importance", "inferenceClassification"}
_COLORS = {"none"} | {f"preset{i}" for i in range(25)}

Validator = Callable[[str], "tuple[int, str]"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass
class GraphAttachment:
    """One attachment of a stored message."""

    id: str
    name: str
    content_type: str
    content_id: str | None
    is_inline: bool
    payload: bytes
    is_item: bool = False


@dataclass
class GraphMessage:
    """A stored message: the raw MIME and the mutable Outlook state."""

    immutable_id: str
    rest_id: str
    user_id: str
    folder_id: str
    raw: bytes
    parsed: ParsedRaw
    received: datetime
    modified: datetime
    conversation_id: str
    attachments: list[GraphAttachment]
    is_read: bool = False
    categories: list[str] = field(default_factory=list)
    flag: dict[str, Any] = field(default_factory=lambda: {"flagStatus": "notFlagged"})
    importance: str = "normal"
    inference: str = "focused"
    version: int = 1
    #: The change sequence number at which the message entered its current folder (delta's
    #: ``changeType=created`` versus ``updated``).
    entered_seq: int = 0

    @property
    def change_key(self) -> str:
        digest = hashlib.sha256(f"{self.immutable_id}:{self.version}".encode()).digest()
        return "CQAAABYAAA" + _b64(digest[:18])

    @property
    def internet_message_id(self) -> str:
        ids = self.parsed.msg_ids("Message-ID")
        return ids[0] if ids else f"<{self.immutable_id[-16:]}@fake.prod.outlook.com>"


@dataclass
class GraphFolder:
    """A mail folder."""

    id: str
    display_name: str
    parent_id: str | None
    well_known: str | None = None
    hidden: bool = False


@dataclass
class GraphUser:
    """A mailbox."""

    id: str
    mail: str
    display_name: str
    folders: dict[str, GraphFolder] = field(default_factory=dict)
    categories: list[dict[str, str]] = field(default_factory=list)

    def folder(self, ref: str) -> GraphFolder | None:
        """A folder by id or well-known name (case-insensitive)."""
        if ref in self.folders:
            return self.folders[ref]
        lowered = ref.lower()
        for folder in self.folders.values():
            if folder.well_known == lowered:
                return folder
        return None


@dataclass
class GraphSubscription:
    """A change-notification subscription."""

    id: str
    user_id: str
    folder_id: str | None
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: datetime
    application_id: str
    creator_id: str
    immutable_ids: bool
    tls_version: str = "v1_2"

    def to_json(self, *, with_client_state: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state if with_client_state else None,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": isoformat_z(self.expires_at),
            "creatorId": self.creator_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


@dataclass
class _AccessToken:
    user_id: str | None
    client_id: str
    expires_at: datetime


@dataclass
class _RefreshToken:
    user_id: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class _DeltaCursor:
    user_id: str
    folder_id: str
    seq: int
    select: list[str] | None
    #: The ``changeType`` of the round's first request (None: every kind of change).
    change_type: str | None = None


@dataclass
class _DeltaPage:
    cursor: _DeltaCursor
    items: list[tuple[str, bool]]
    prefix: str
    page_size: int


class _GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ====================================================================== helpers


def _property_names(raw: str, known: Mapping[str, str], type_name: str) -> list[str]:
    """The canonical names of a ``$select`` list (``known``: lower-cased name -> name); an
    unknown property answers 400 as Graph does."""
    chosen: list[str] = []
    for name in (item.strip() for item in raw.split(",")):
        if not name:
            continue
        canonical = known.get(name.lower())
        if canonical is None:
            raise _GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type "
                f"'Microsoft.OutlookServices.{type_name}'.",
            )
        chosen.append(canonical)
    return chosen


def _segment(value: str) -> tuple[str, str | None]:
    """``mailFolders('Inbox')`` -> ("mailfolders", "Inbox"); ``messages`` -> ("messages", None)."""
    match = re.fullmatch(r"([A-Za-z$]+)\('([^']*)'\)", value)
    if match:
        return match.group(1).lower(), match.group(2)
    return value.lower(), None


def _recipient(item: tuple[str, str]) -> dict[str, Any]:
    name, address = item
    # Exchange fills the display name with the address when the header has none.
    return {"emailAddress": {"name": name or address, "address": address}}


def _prefer(request: FakeRequest) -> str:
    return (
        ",".join(value for key, value in request.headers.items() if key.lower() == "prefer")
        .lower()
        .replace(" ", "")
    )


def _wants_immutable(request: FakeRequest) -> bool:
    return 'idtype="immutableid"' in _prefer(request)


def _wants_text(request: FakeRequest) -> bool:
    return 'outlook.body-content-type="text"' in _prefer(request)


def _page_size(request: FakeRequest) -> int | None:
    match = re.search(r"odata\.maxpagesize=(\d+)", _prefer(request))
    if match:
        return max(1, int(match.group(1)))
    top = request.param("$top")
    if top is not None and top.isdigit() and int(top) > 0:
        return int(top)
    return None


def _int_param(request: FakeRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.param(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _GraphError(400, "BadRequest", f"Invalid value '{raw}' for {name}.")
    return int(raw)


def _newest_first(raw: str | None) -> bool:
    """The order of a message list: ``receivedDateTime desc`` (also without ``$orderby``) or
    ``asc``; other expressions answer 400 rather than being ignored."""
    if raw is None:
        return True
    match = re.fullmatch(r"\s*receivedDateTime(?:\s+(asc|desc))?\s*", raw, re.IGNORECASE)
    if match is None:
        raise _GraphError(
            400, "BadRequest", "This fake supports only '$orderby=receivedDateTime [asc|desc]'."
        )
    return (match.group(1) or "asc").lower() == "desc"


def _received_filter(raw: str | None) -> tuple[str, datetime] | None:
    if raw is None:
        return None
    match = re.fullmatch(r"\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*", raw, re.IGNORECASE)
    if match is None:
        raise _GraphError(
            400,
            "BadRequest",
            "This fake supports only '$filter=receivedDateTime ge|gt {timestamp}'.",
        )
    try:
        moment = parse_iso(match.group(2).strip("'"))
    except ValueError:
        raise _GraphError(400, "BadRequest", f"Invalid timestamp '{match.group(2)}'.") from None
    return match.group(1).lower(), moment


def _passes(received: datetime, condition: tuple[str, datetime]) -> bool:
    operator, moment = condition
    return received >= moment if operator == "ge" else received > moment
