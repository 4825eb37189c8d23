"""The Graph fake's API entry (authentication, users) and mail folders."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from .._fakebase import (
    FakeRequest,
    HandlerResult,
    split_path,
)
from .model import (
    _FOLDER_PROPERTIES,
    GraphFolder,
    GraphUser,
    _AccessToken,
    _GraphError,
    _int_param,
    _property_names,
    _segment,
)
from .sync import GraphSync


class GraphApi(GraphSync):
    """The Graph fake's API entry (authentication, users) and mail folders."""

    # ------------------------------------------------------------------ API

    def _authenticate(self, request: FakeRequest) -> _AccessToken:
        token = request.bearer()
        if token is None:
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        grant = self._access.get(token)
        if grant is None:
            raise _GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            )
        if grant.expires_at <= self.now():
            raise _GraphError(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        return grant

    def _api(self, request: FakeRequest) -> HandlerResult:
        grant = self._authenticate(request)
        rest = request.url[len(self.base_url) :].split("?", 1)[0].split("#", 1)[0]
        segments = split_path(rest)
        if not segments:
            raise _GraphError(400, "BadRequest", "Invalid request.")
        head = segments[0].lower()
        if head == "$batch":
            if request.method != "POST":
                raise _GraphError(405, "Request_BadRequest", "Batch requests must be POSTed.")
            if request.in_batch:
                raise _GraphError(400, "BadRequest", "Nested batch requests are not supported.")
            return self._batch(request)
        if head == "subscriptions":
            return self._subscriptions(request, grant, segments[1:])
        user, prefix, tail = self._resolve_user(grant, segments)
        return self._user_api(request, grant, user, prefix, tail)

    def _resolve_user(
        self, grant: _AccessToken, segments: list[str]
    ) -> tuple[GraphUser, str, list[str]]:
        head = segments[0]
        if head.lower() == "me":
            if grant.user_id is None:
                raise _GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            return self.users[grant.user_id], "me", segments[1:]
        match = re.fullmatch(r"users(?:\('([^']*)'\))?", head, re.IGNORECASE)
        if match is None:
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")
        if match.group(1) is not None:
            ref, tail = match.group(1), segments[1:]
        elif len(segments) >= 2:
            ref, tail = segments[1], segments[2:]
        else:
            raise _GraphError(405, "Request_BadRequest", "Listing users is not supported here.")
        user = self._find_user(ref)
        if user is None:
            raise _GraphError(404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid.")
        return user, f"users/{quote(ref, safe='@')}", tail

    def _user_api(
        self,
        request: FakeRequest,
        grant: _AccessToken,
        user: GraphUser,
        prefix: str,
        tail: list[str],
    ) -> HandlerResult:
        method = request.method
        if not tail:
            if method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._ok(request, self._user_json(user))
        keyword, arg = _segment(tail[0])
        if keyword == "messages":
            if arg is not None:
                return self._message_api(request, user, [arg, *tail[1:]])
            return self._message_api(request, user, tail[1:])
        if keyword == "mailfolders":
            return self._folder_api(request, user, prefix, arg, tail[1:])
        if keyword == "outlook" and len(tail) == 2 and tail[1].lower() == "mastercategories":
            return self._categories(request, user)
        raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")

    def _user_json(self, user: GraphUser) -> dict[str, Any]:
        given, _, surname = user.display_name.partition(" ")
        return {
            "@odata.context": f"{self.base_url}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": given or None,
            "jobTitle": None,
            "mail": user.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": user.mail,
            "id": user.id,
        }

    # ------------------------------------------------------------------ folders

    def _folder_api(
        self,
        request: FakeRequest,
        user: GraphUser,
        prefix: str,
        folder_ref: str | None,
        tail: list[str],
    ) -> HandlerResult:
        if folder_ref is None and tail:
            folder_ref, tail = tail[0], tail[1:]
        if folder_ref is None:
            # ``mailFolders`` lists the top-level folders (children of msgfolderroot).
            root = user.folder("msgfolderroot")
            assert root is not None
            return self._folder_children(request, user, prefix, root, "mailFolders")
        folder = user.folder(folder_ref)
        if folder is None:
            raise _GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        while len(tail) >= 2 and tail[0].lower() == "childfolders":
            # childFolders/{id}: a folder addressed below its parent.
            child = user.folder(tail[1])
            if child is None or child.parent_id != folder.id:
                raise _GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            folder, tail = child, tail[2:]
        if not tail:
            if request.method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._ok(request, self._folder_json(user, folder, self._folder_select(request)))
        if tail[0].lower() == "childfolders" and len(tail) == 1:
            return self._folder_children(
                request, user, prefix, folder, f"mailFolders('{folder.id}')/childFolders"
            )
        if tail[0].lower() != "messages":
            raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")
        rest = tail[1:]
        if rest and rest[0].lower() in ("delta", "delta()") and len(rest) == 1:
            # ``delta`` is an OData function: ``messages/delta()`` (what the SDKs send) and
            # ``messages/delta`` both call it.
            if request.method != "GET":
                raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
            return self._delta(request, user, prefix, folder)
        if rest:
            return self._message_api(request, user, rest, folder=folder)
        if request.method != "GET":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        return self._list_messages(request, user, prefix, folder)

    def _folder_children(
        self, request: FakeRequest, user: GraphUser, prefix: str, parent: GraphFolder, where: str
    ) -> HandlerResult:
        """GET: one page of ``parent``'s child folders (``$top`` default 10, ``$skip``,
        ``$select``, ``@odata.nextLink``); POST: create one (``displayName``; 409 when a sibling
        has that name)."""
        if request.method == "POST":
            return self._create_folder(request, user, parent)
        if request.method != "GET":
            raise _GraphError(405, "Request_BadRequest", "Method not allowed.")
        select = self._folder_select(request)
        top = _int_param(request, "$top", 10, 1, 1000)
        skip = _int_param(request, "$skip", 0, 0, 10**9)
        children = [
            f
            for f in user.folders.values()
            if f.parent_id == parent.id
            and (not f.hidden or request.param("includeHiddenFolders") == "true")
        ]
        page = children[skip : skip + top]
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#users('{user.id}')/{where}",
            "value": [self._folder_json(user, f, select) for f in page],
        }
        if skip + top < len(children):
            query = f"$top={top}&$skip={skip + top}"
            if select is not None:
                query += "&$select=" + ",".join(select)
            payload["@odata.nextLink"] = f"{self.base_url}/{prefix}/{where}?{query}"
        return self._ok(request, payload)

    def _create_folder(
        self, request: FakeRequest, user: GraphUser, parent: GraphFolder
    ) -> HandlerResult:
        try:
            body = request.json()
        except ValueError:
            raise _GraphError(400, "RequestBodyRead", "Invalid JSON in the request body.") from None
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _GraphError(400, "ErrorInvalidParameter", "displayName is required.")
        if any(
            f.parent_id == parent.id and f.display_name.casefold() == name.casefold()
            for f in user.folders.values()
        ):
            raise _GraphError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            )
        folder = GraphFolder(
            self._new_id("AAMkAG", 30), name, parent.id, hidden=body.get("isHidden") is True
        )
        user.folders[folder.id] = folder
        return self._ok(request, self._folder_json(user, folder, None), 201)

    def _folder_select(self, request: FakeRequest) -> list[str] | None:
        raw = request.param("$select")
        if raw is None:
            return None
        known = {name.lower(): name for name in _FOLDER_PROPERTIES}
        return _property_names(raw, known, "MailFolder")

    def _folder_json(
        self, user: GraphUser, folder: GraphFolder, select: list[str] | None = None
    ) -> dict[str, Any]:
        inside = [
            m for m in self.messages.values() if m.user_id == user.id and m.folder_id == folder.id
        ]
        data: dict[str, Any] = {
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent_id,
            "childFolderCount": sum(1 for f in user.folders.values() if f.parent_id == folder.id),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
            "totalItemCount": len(inside),
            # (sizeInBytes exists only in the beta API; this fake serves v1.0.)
            "isHidden": folder.hidden,
        }
        if select is not None:
            data = {key: value for key, value in data.items() if key == "id" or key in select}
        return data

