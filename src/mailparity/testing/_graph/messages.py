"""The Graph fake's messages: listing, reading, patching, moving, attachments."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import quote, urlencode

from .._fakebase import (
    FakeRequest,
    HandlerResult,
    bytes_response,
    empty_response,
    isoformat_z,
)
from .._render import preview
from .model import (
    _ATTACHMENT_PROPERTIES,
    _PATCHABLE,
    _SELECT_ONLY,
    _SELECTABLE,
    GraphAttachment,
    GraphFolder,
    GraphMessage,
    GraphUser,
    _GraphError,
    _int_param,
    _newest_first,
    _passes,
    _property_names,
    _received_filter,
    _recipient,
    _wants_immutable,
    _wants_text,
)
from .signin import GraphSignIn


class GraphMessages(GraphSignIn):
    """The Graph fake's messages: listing, reading, patching, moving, attachments."""

    # ------------------------------------------------------------------ messages

    def _select(self, request: FakeRequest) -> list[str] | None:
        raw = request.param("$select")
        return None if raw is None else _property_names(raw, _SELECTABLE, "Message")

    def _expand(self, request: FakeRequest) -> list[str] | bool | None:
        """False: no expansion; None: attachments with every property; list: selected ones."""
        raw = request.param("$expand")
        if raw is None:
            return False
        match = re.fullmatch(r"\s*attachments\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*", raw, re.I)
        if match is None:
            raise _GraphError(
                400, "BadRequest", f"Parsing OData Select and Expand failed: '{raw}'."
            )
        if match.group(1) is None:
            return None
        known = {name.lower(): name for name in _ATTACHMENT_PROPERTIES}
        return _property_names(match.group(1), known, "Attachment")

    def _lookup(self, user: GraphUser, message_id: str, folder: GraphFolder | None) -> GraphMessage:
        message = self._find_message(message_id)
        if (
            message is None
            or message.user_id != user.id
            or (folder is not None and message.folder_id != folder.id)
        ):
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return message

    def _message_api(
        self,
        request: FakeRequest,
        user: GraphUser,
        tail: list[str],
        *,
        folder: GraphFolder | None = None,
    ) -> HandlerResult:
        method = request.method
        if not tail:
            if method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._list_messages(request, user, "me", folder)
        message = self._lookup(user, tail[0], folder)
        rest = [segment.lower() for segment in tail[1:]]
        immutable = _wants_immutable(request)
        if not rest:
            if method == "GET":
                payload = self._message_json(
                    message,
                    immutable,
                    self._select(request),
                    self._expand(request),
                    _wants_text(request),
                )
                context = f"{self.base_url}/$metadata#users('{user.id}')/messages/$entity"
                payload = {"@odata.context": context, **payload}
                result = self._ok(request, payload)
                if _wants_text(request):
                    result.headers["Preference-Applied"] = 'outlook.body-content-type="text"'
                return result
            if method == "PATCH":
                return self._patch(request, message, immutable)
            if method == "DELETE":
                deleted = user.folder("deleteditems")
                assert deleted is not None
                self._move(message, deleted)
                return empty_response(204, self._headers(request))
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        if rest == ["$value"] and method == "GET":
            return bytes_response(200, message.raw, "text/plain", self._headers(request))
        if rest == ["move"] and method == "POST":
            return self._move_request(request, user, message, immutable)
        if rest[0] == "attachments" and method == "GET":
            return self._attachments(request, message, tail[2:])
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")

    def _patch(self, request: FakeRequest, message: GraphMessage, immutable: bool) -> HandlerResult:
        try:
            changes = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        if not isinstance(changes, dict):
            raise _GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
        # OData annotations (msgraph-sdk sends "@odata.type") are not properties.
        changes = {k: v for k, v in changes.items() if not k.startswith("@odata.")}
        for key, value in changes.items():
            if key not in _PATCHABLE:
                raise _GraphError(
                    400,
                    "ErrorInvalidPropertyUpdateSentMessage",
                    "Update operation is not allowed on a property of a received message.",
                )
            if key == "isRead" and not isinstance(value, bool):
                raise _GraphError(400, "RequestBodyRead", "isRead must be a boolean.")
            if key == "categories" and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                raise _GraphError(400, "RequestBodyRead", "categories must be a list of strings.")
            if key == "importance" and value not in ("low", "normal", "high"):
                raise _GraphError(400, "RequestBodyRead", "importance must be low, normal or high.")
            if key == "flag" and not isinstance(value, dict):
                raise _GraphError(400, "RequestBodyRead", "flag must be an object.")
        if "isRead" in changes:
            message.is_read = changes["isRead"]
        if "categories" in changes:
            message.categories = list(changes["categories"])
        if "flag" in changes:
            message.flag = dict(changes["flag"])
        if "importance" in changes:
            message.importance = changes["importance"]
        if "inferenceClassification" in changes:
            message.inference = str(changes["inferenceClassification"])
        self._touch(message)
        self._record_change(message, message.folder_id)
        self._emit(message, "updated", message.folder_id)
        return self._ok(request, self._message_json(message, immutable, None, False, False))

    def _move(self, message: GraphMessage, target: GraphFolder) -> None:
        source = message.folder_id
        if source == target.id:
            return
        message.folder_id = target.id
        # Without immutable ids a moved item is a new item: the old REST id stops working.
        del self._rest_index[message.rest_id]
        message.rest_id = self._new_id("AAMkAD", 36)
        self._rest_index[message.rest_id] = message.immutable_id
        self._touch(message)
        self._record_change(message, source)
        self._record_change(message, target.id)
        message.entered_seq = self._seq
        for sub in self._active_subscriptions():
            if sub.user_id != message.user_id:
                continue
            if sub.folder_id is None:
                kinds = [("updated", sub)]
            elif sub.folder_id == target.id:
                kinds = [("created", sub)]
            elif sub.folder_id == source:
                kinds = [("deleted", sub)]
            else:
                kinds = []
            for kind, target_sub in kinds:
                if kind in target_sub.change_types:
                    self.pending.append(
                        (target_sub.notification_url, self._notification(target_sub, message, kind))
                    )

    def _move_request(
        self, request: FakeRequest, user: GraphUser, message: GraphMessage, immutable: bool
    ) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        # Action parameters match case-insensitively (msgraph-sdk sends "DestinationId").
        params = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        destination = params.get("destinationid")
        if not isinstance(destination, str) or not destination:
            raise _GraphError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
        target = user.folder(destination)
        if target is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        self._move(message, target)
        return self._ok(request, self._message_json(message, immutable, None, False, False), 201)

    def _attachments(
        self, request: FakeRequest, message: GraphMessage, tail: list[str]
    ) -> HandlerResult:
        if not tail:
            return self._ok(
                request,
                {"value": [self._attachment_json(a, message, None) for a in message.attachments]},
            )
        found = next((a for a in message.attachments if a.id == tail[0]), None)
        if found is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(tail) == 1:
            return self._ok(request, self._attachment_json(found, message, None))
        if [segment.lower() for segment in tail[1:]] == ["$value"]:
            content_type = "message/rfc822" if found.is_item else found.content_type
            return bytes_response(200, found.payload, content_type, self._headers(request))
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")

    def _attachment_json(
        self, attachment: GraphAttachment, message: GraphMessage, select: list[str] | None
    ) -> dict[str, Any]:
        if attachment.is_item:
            data: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.itemAttachment",
                "id": attachment.id,
                "lastModifiedDateTime": isoformat_z(message.received),
                "name": attachment.name,
                "contentType": None,
                "size": len(attachment.payload),
                "isInline": False,
            }
        else:
            data = {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "@odata.mediaContentType": attachment.content_type,
                "id": attachment.id,
                "lastModifiedDateTime": isoformat_z(message.received),
                "name": attachment.name,
                "contentType": attachment.content_type,
                "size": len(attachment.payload),
                "isInline": attachment.is_inline,
                "contentId": attachment.content_id,
                "contentLocation": None,
                "contentBytes": base64.b64encode(attachment.payload).decode("ascii"),
            }
        if select is not None:
            keep = {"@odata.type", "id", *select}
            data = {key: value for key, value in data.items() if key in keep}
        return data

    def _message_json(
        self,
        message: GraphMessage,
        immutable: bool,
        select: list[str] | None,
        expand: list[str] | bool | None,
        body_text: bool,
    ) -> dict[str, Any]:
        full = self._full_message(message, immutable, body_text)
        if select is None:
            data = {key: value for key, value in full.items() if key not in _SELECT_ONLY}
        else:
            data = {"@odata.etag": full["@odata.etag"], "id": full["id"]}
            for name in select:
                data[name] = full[name]
        if expand is not False:
            chosen = None if expand is None or expand is True else list(expand)
            data["attachments@odata.context"] = (
                f"{self.base_url}/$metadata#users('{message.user_id}')/messages('{full['id']}')"
                "/attachments"
            )
            data["attachments"] = [
                self._attachment_json(a, message, chosen) for a in message.attachments
            ]
        return data

    def _full_message(
        self, message: GraphMessage, immutable: bool, body_text: bool
    ) -> dict[str, Any]:
        parsed = message.parsed
        if parsed.html is not None and not body_text:
            body = {"contentType": "html", "content": parsed.html}
        else:
            body = {"contentType": "text", "content": parsed.preview_text}
        from_list = parsed.addresses("From")
        sender_list = parsed.addresses("Sender") or from_list
        message_id = message.immutable_id if immutable else message.rest_id
        sent = parsed.sent_at() or message.received
        return {
            "@odata.etag": f'W/"{message.change_key}"',
            "id": message_id,
            "createdDateTime": isoformat_z(message.received),
            "lastModifiedDateTime": isoformat_z(message.modified),
            "changeKey": message.change_key,
            "categories": list(message.categories),
            "receivedDateTime": isoformat_z(message.received),
            "sentDateTime": isoformat_z(sent),
            "hasAttachments": any(not a.is_inline for a in message.attachments),
            "internetMessageId": message.internet_message_id,
            "subject": parsed.decoded("Subject") or "",
            "bodyPreview": preview(parsed.preview_text, 255),
            "importance": message.importance,
            "parentFolderId": message.folder_id,
            "conversationId": message.conversation_id,
            # Edm.Binary: standard base64 (SDKs decode it; the URL-safe alphabet breaks them).
            "conversationIndex": base64.b64encode(
                hashlib.sha256(message.conversation_id.encode()).digest()[:22]
            ).decode("ascii"),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": parsed.first("Disposition-Notification-To") is not None,
            "isRead": message.is_read,
            "isDraft": False,
            "webLink": (
                "https://outlook.office365.com/owa/?ItemID="
                + quote(message_id, safe="")
                + "&exvsurl=1&viewmodel=ReadMessageItem"
            ),
            "inferenceClassification": message.inference,
            "body": body,
            "sender": _recipient(sender_list[0]) if sender_list else None,
            "from": _recipient(from_list[0]) if from_list else None,
            "toRecipients": [_recipient(item) for item in parsed.addresses("To")],
            "ccRecipients": [_recipient(item) for item in parsed.addresses("Cc")],
            "bccRecipients": [_recipient(item) for item in parsed.addresses("Bcc")],
            "replyTo": [_recipient(item) for item in parsed.addresses("Reply-To")],
            "flag": dict(message.flag),
            "internetMessageHeaders": [
                {"name": name, "value": value} for name, value in parsed.headers
            ],
            "uniqueBody": dict(body),
        }

    def _list_messages(
        self, request: FakeRequest, user: GraphUser, prefix: str, folder: GraphFolder | None
    ) -> HandlerResult:
        select = self._select(request)
        since = _received_filter(request.param("$filter"))
        top = _int_param(request, "$top", 10, 1, 1000)
        skip = _int_param(request, "$skip", 0, 0, 10**9)
        items = [
            m
            for m in self.messages.values()
            if m.user_id == user.id
            and (folder is None or m.folder_id == folder.id)
            and (since is None or _passes(m.received, since))
        ]
        items.sort(key=lambda m: m.received, reverse=_newest_first(request.param("$orderby")))
        page = items[skip : skip + top]
        immutable = _wants_immutable(request)
        body_text = _wants_text(request)
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#users('{user.id}')/messages",
            "value": [self._message_json(m, immutable, select, None, body_text) for m in page],
        }
        if skip + top < len(items):
            where = f"mailFolders('{folder.id}')/messages" if folder else "messages"
            # The next page keeps every option of this one, as Graph's nextLink does.
            options = {"$top": str(top), "$skip": str(skip + top)}
            if select is not None:
                options["$select"] = ",".join(select)
            for name in ("$filter", "$orderby"):
                value = request.param(name)
                if value is not None:
                    options[name] = value
            query = urlencode(options, safe="$,()'", quote_via=quote)
            payload["@odata.nextLink"] = f"{self.base_url}/{prefix}/{where}?{query}"
        return self._ok(request, payload)
