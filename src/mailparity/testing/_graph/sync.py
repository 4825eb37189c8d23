"""The Graph fake's delta queries, master categories, subscriptions and JSON $batch."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from .._fakebase import (
    FakeRequest,
    HandlerResult,
    empty_response,
    parse_iso,
)
from .messages import GraphMessages
from .model import (
    _COLORS,
    MAX_BATCH,
    MAX_SUBSCRIPTION_MINUTES,
    GraphFolder,
    GraphSubscription,
    GraphUser,
    _AccessToken,
    _b64,
    _DeltaCursor,
    _DeltaPage,
    _GraphError,
    _page_size,
    _passes,
    _received_filter,
    _wants_immutable,
)


class GraphSync(GraphMessages):
    """The Graph fake's delta queries, master categories, subscriptions and JSON $batch."""

    # ------------------------------------------------------------------ delta

    def _delta(
        self, request: FakeRequest, user: GraphUser, prefix: str, folder: GraphFolder
    ) -> HandlerResult:
        page_size = _page_size(request)
        skip_token = request.param("$skiptoken") or request.param("$skipToken")
        delta_token = request.param("$deltatoken") or request.param("$deltaToken")
        if skip_token is not None:
            page = self._skip_tokens.pop(skip_token, None)
            if page is None:
                raise _GraphError(
                    410, "syncStateNotFound", "The sync state generation is not found."
                )
            page.page_size = page_size or page.page_size
        elif delta_token:
            cursor = self._delta_tokens.get(delta_token)
            if cursor is None or cursor.folder_id != folder.id:
                raise _GraphError(
                    410,
                    "syncStateNotFound",
                    "The sync state generation is not found. Please restart the sync.",
                )
            changed: list[str] = []
            for seq, user_id, folder_id, message_id in self._changes:
                if seq > cursor.seq and user_id == user.id and folder_id == folder.id:
                    if message_id in changed:
                        changed.remove(message_id)
                    changed.append(message_id)
            items = []
            for message_id in changed:
                message = self.messages[message_id]
                removed = message.folder_id != folder.id
                kind = (
                    "deleted" if removed
                    else "created" if message.entered_seq > cursor.seq
                    else "updated"
                )
                if cursor.change_type is None or kind == cursor.change_type:
                    items.append((message_id, removed))
            page = _DeltaPage(
                _DeltaCursor(user.id, folder.id, self._seq, cursor.select, cursor.change_type),
                items,
                prefix,
                page_size or 10,
            )
        else:
            since = _received_filter(request.param("$filter"))
            members = [
                m
                for m in self.messages.values()
                if m.user_id == user.id
                and m.folder_id == folder.id
                and (since is None or _passes(m.received, since))
            ]
            members.sort(key=lambda m: m.received)
            change_type = request.param("changeType")
            if change_type is not None and change_type not in ("created", "updated", "deleted"):
                raise _GraphError(
                    400, "ErrorInvalidParameter", f"Invalid changeType '{change_type}'."
                )
            # The first round lists the folder's messages whatever the changeType; the type
            # filters the rounds that follow (it is kept in the links' state, as in Graph).
            page = _DeltaPage(
                _DeltaCursor(user.id, folder.id, self._seq, self._select(request), change_type),
                [(m.immutable_id, False) for m in members],
                prefix,
                page_size or 10,
            )
        batch, remaining = page.items[: page.page_size], page.items[page.page_size :]
        immutable = _wants_immutable(request)
        value: list[dict[str, Any]] = []
        for message_id, removed in batch:
            message = self.messages[message_id]
            shown_id = message.immutable_id if immutable else message.rest_id
            if removed or message.folder_id != folder.id:
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": shown_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
                continue
            item = self._message_json(message, immutable, page.cursor.select, False, False)
            value.append({"@odata.type": "#microsoft.graph.message", **item})
        link = f"{self.base_url}/{page.prefix}/mailFolders('{folder.id}')/messages/delta"
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#Collection(message)",
        }
        if remaining:
            token = _b64(self.random.randbytes(18))
            self._skip_tokens[token] = _DeltaPage(
                page.cursor, remaining, page.prefix, page.page_size
            )
            payload["@odata.nextLink"] = f"{link}?$skiptoken={token}"
        else:
            token = _b64(self.random.randbytes(18))
            self._delta_tokens[token] = page.cursor
            payload["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
        payload["value"] = value
        result = self._ok(request, payload)
        # Graph confirms that the resource tracks changes.
        result.headers["Preference-Applied"] = "odata.track-changes"
        return result

    # ------------------------------------------------------------------ categories

    def _categories(self, request: FakeRequest, user: GraphUser) -> HandlerResult:
        if request.method == "GET":
            return self._ok(request, {"value": [dict(item) for item in user.categories]})
        if request.method != "POST":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        name = body.get("displayName") if isinstance(body, dict) else None
        color = body.get("color", "none") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _GraphError(400, "ErrorInvalidParameter", "displayName is required.")
        if color not in _COLORS:
            raise _GraphError(400, "ErrorInvalidParameter", f"Invalid color '{color}'.")
        if any(item["displayName"].lower() == name.lower() for item in user.categories):
            raise _GraphError(
                409, "ErrorDuplicateCategory", f"A category named '{name}' already exists."
            )
        category = {"id": self._new_guid(), "displayName": name, "color": str(color)}
        user.categories.append(category)
        return self._ok(request, dict(category), 201)

    # ------------------------------------------------------------------ subscriptions

    def _subscriptions(
        self, request: FakeRequest, grant: _AccessToken, tail: list[str]
    ) -> HandlerResult:
        self._drop_expired()
        method = request.method
        if not tail:
            if method == "POST":
                return self._create_subscription(request, grant)
            if method == "GET":
                return self._ok(
                    request,
                    {
                        "@odata.context": f"{self.base_url}/$metadata#subscriptions",
                        "value": [
                            sub.to_json(with_client_state=False)
                            for sub in self.subscriptions.values()
                            if sub.application_id == grant.client_id
                        ],
                    },
                )
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        sub = self.subscriptions.get(tail[0])
        if sub is None:
            raise _GraphError(404, "ResourceNotFound", f"The object '{tail[0]}' doesn't exist.")
        if len(tail) == 2 and tail[1].lower() == "reauthorize" and method == "POST":
            return empty_response(204, self._headers(request))
        if len(tail) != 1:
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[1]}'.")
        if method == "GET":
            return self._ok(request, sub.to_json(with_client_state=False))
        if method == "DELETE":
            del self.subscriptions[sub.id]
            return empty_response(204, self._headers(request))
        if method == "PATCH":
            try:
                body = request.json()
            except ValueError:
                raise _GraphError(400, "BadRequest", "Invalid JSON in the request body.") from None
            if not isinstance(body, dict) or "expirationDateTime" not in body:
                raise _GraphError(400, "BadRequest", "expirationDateTime is required.")
            self._expires_at(sub, self._expiry(body["expirationDateTime"]))
            return self._ok(request, sub.to_json(with_client_state=True))
        raise _GraphError(405, "Request_BadRequest", "Method not allowed.")

    def _expiry(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise _GraphError(400, "BadRequest", "expirationDateTime must be a string.")
        try:
            expires = parse_iso(value)
        except ValueError:
            raise _GraphError(400, "BadRequest", f"Invalid expirationDateTime '{value}'.") from None
        now = self.now()
        if expires <= now:
            raise _GraphError(
                400, "ExtensionError", "Subscription expiration can only be in the future."
            )
        if expires > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise _GraphError(
                400,
                "ExtensionError",
                f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the "
                "future.",
            )
        return expires

    def _create_subscription(self, request: FakeRequest, grant: _AccessToken) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "BadRequest", "Invalid JSON in the request body.") from None
        if not isinstance(body, dict):
            raise _GraphError(400, "BadRequest", "The request body must be a JSON object.")
        for required in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not isinstance(body.get(required), str) or not body[required]:
                raise _GraphError(400, "BadRequest", f"'{required}' is required.")
        change_types = [item.strip() for item in body["changeType"].split(",") if item.strip()]
        if not change_types or any(
            item not in ("created", "updated", "deleted") for item in change_types
        ):
            raise _GraphError(400, "BadRequest", f"Invalid changeType '{body['changeType']}'.")
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise _GraphError(
                400, "BadRequest", "clientState must be a string of at most 128 characters."
            )
        if body.get("includeResourceData"):
            raise _GraphError(
                400, "BadRequest", "includeResourceData is not supported by this fake."
            )
        expires = self._expiry(body["expirationDateTime"])
        user_id, folder_id = self._subscription_target(grant, body["resource"])
        # One subscription per app, mailbox (and folder) and change types: the same resource
        # text ("me/mailFolders('inbox')/messages") of another user is another combination.
        sub_key = (grant.client_id, user_id, folder_id, tuple(change_types))
        same = self._sub_keys.setdefault(sub_key, set())
        for existing_id in sorted(same):
            existing = self.subscriptions.get(existing_id)
            if existing is None:
                same.discard(existing_id)  # deleted or expired since
                continue
            raise _GraphError(
                409,
                "ExtensionError",
                f"Subscription Id {existing.id} already exists for the requested combination",
            )
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if self.validator is not None:
            for url in [body["notificationUrl"], *([lifecycle_url] if lifecycle_url else [])]:
                token = (
                    "Validation: Testing client application reachability for subscription "
                    f"Request-Id: {self._new_guid()}"
                )
                separator = "&" if "?" in url else "?"
                status, text = self.validator(f"{url}{separator}validationToken={quote(token)}")
                if status != 200 or text != token:
                    raise _GraphError(
                        400,
                        "ValidationError",
                        "Subscription validation request failed. Notification endpoint must "
                        "respond with 200 OK to validation request.",
                    )
        sub = GraphSubscription(
            id=self._new_guid(),
            user_id=user_id,
            folder_id=folder_id,
            resource=body["resource"],
            change_types=change_types,
            notification_url=body["notificationUrl"],
            lifecycle_url=lifecycle_url if isinstance(lifecycle_url, str) else None,
            client_state=client_state,
            expires_at=expires,
            application_id=grant.client_id,
            creator_id=grant.user_id or self._new_guid(),
            immutable_ids=_wants_immutable(request),
            tls_version=str(body.get("latestSupportedTlsVersion") or "v1_2"),
        )
        self.subscriptions[sub.id] = sub
        same.add(sub.id)
        self._expires_at(sub, sub.expires_at)
        payload = {
            "@odata.context": f"{self.base_url}/$metadata#subscriptions/$entity",
            **sub.to_json(with_client_state=True),
        }
        return self._ok(request, payload, 201)

    def _subscription_target(self, grant: _AccessToken, resource: str) -> tuple[str, str | None]:
        match = re.fullmatch(
            r"/?(?:(me)|users/([^/()]+)|users\('([^']+)'\))"
            r"(?:/mailfolders(?:\('([^']+)'\)|/([^/?]+)))?/messages(?:\?.*)?",
            resource.strip(),
            re.IGNORECASE,
        )
        if match is None:
            raise _GraphError(
                400, "ExtensionError", f"Resource '{resource}' is not a supported message resource."
            )
        if match.group(1):
            if grant.user_id is None:
                raise _GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            user = self.users[grant.user_id]
        else:
            ref = match.group(2) or match.group(3)
            found = self._find_user(ref)
            if found is None:
                raise _GraphError(
                    404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid."
                )
            user = found
        folder_ref = match.group(4) or match.group(5)
        if folder_ref is None:
            return user.id, None
        folder = user.folder(folder_ref)
        if folder is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return user.id, folder.id

    # ------------------------------------------------------------------ $batch

    def _batch(self, request: FakeRequest) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "BadRequest", "Invalid JSON in the batch request.") from None
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _GraphError(400, "BadRequest", "The batch must hold a 'requests' array.")
        if len(items) > MAX_BATCH:
            raise _GraphError(
                400, "BadRequest", f"Too many requests in the batch. Limit is {MAX_BATCH}."
            )
        ids: list[str] = []
        for item in items:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(key), str) for key in ("id", "method", "url")
            ):
                raise _GraphError(400, "BadRequest", "Each batch request needs id, method and url.")
            if item["id"] in ids:
                raise _GraphError(400, "BadRequest", f"Duplicate request id '{item['id']}'.")
            ids.append(item["id"])
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for item in items:
            depends = item.get("dependsOn") or []
            if any(dep not in ids for dep in depends):
                raise _GraphError(400, "BadRequest", "dependsOn names an unknown request id.")
            if any(statuses.get(dep, 0) >= 400 or dep not in statuses for dep in depends):
                statuses[item["id"]] = 424
                responses.append(
                    {
                        "id": item["id"],
                        "status": 424,
                        "headers": {"Content-Type": "application/json"},
                        "body": {
                            "error": {
                                "code": "FailedDependency",
                                "message": "The dependent request failed.",
                            }
                        },
                    }
                )
                continue
            # Members run with the batch's token, but no other outer header reaches them:
            # Graph documents that each member carries its own headers (a ``Prefer:
            # IdType="ImmutableId"`` on the POST does not apply to them).
            inner_headers = {"Authorization": request.headers.get("Authorization", "")}
            inner_headers.update({k: str(v) for k, v in (item.get("headers") or {}).items()})
            inner_body = item.get("body")
            raw_body: bytes | None
            if inner_body is None:
                raw_body = None
            elif isinstance(inner_body, str):
                raw_body = inner_body.encode("utf-8")
            else:
                raw_body = json.dumps(inner_body).encode("utf-8")
                if not any(k.lower() == "content-type" for k in inner_headers):
                    raise _GraphError(
                        400, "BadRequest", "A batch request with a body needs a Content-Type."
                    )
            url = item["url"]
            if url.startswith(self.base_url + "/"):
                # msgraph-sdk's batch sends members' absolute URLs; Graph takes them as well.
                url = url[len(self.base_url) :]
            if not url.startswith("/"):
                url = "/" + url
            inner = FakeRequest.parse(
                item["method"], f"{self.base_url}{url}", inner_headers, raw_body, in_batch=True
            )
            result = self._handle_parsed(inner)
            statuses[item["id"]] = result.status
            entry: dict[str, Any] = {
                "id": item["id"],
                "status": result.status,
                "headers": {
                    k: v
                    for k, v in result.headers.items()
                    if k.lower() in ("content-type", "retry-after", "location")
                },
            }
            if result.body:
                if result.headers.get("Content-Type", "").startswith("application/json"):
                    entry["body"] = json.loads(result.body.decode("utf-8"))
                else:
                    entry["body"] = base64.b64encode(result.body).decode("ascii")
            responses.append(entry)
        return self._ok(request, {"responses": responses})
