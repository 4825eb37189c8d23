"""MicrosoftGraphAdapter: one Microsoft 365 mailbox through Microsoft Graph.

Every Graph request carries ``Prefer: IdType="ImmutableId"`` (set on the HTTP client), so message
and attachment ids survive folder moves, and subscriptions created here notify with immutable ids.
Paths: delegated mode reads the signed-in user's mailbox (``/me``); application mode, or a shared
mailbox (``shared_mailbox=True``), reads ``/users/{mailbox}``.
"""

from __future__ import annotations

import json as json_lib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlencode, urlparse

import requests

from ... import mime
from ...errors import (
    BadRequestError,
    ConfigurationError,
    MailParityError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderUnavailableError,
)
from ...http import BatchAnswer, RetryPolicy, run_batch
from ...models import (
    Attachment,
    ConnectionTestResult,
    EmailMessage,
    Header,
    MicrosoftProviderConfig,
    OAuthTokens,
    utcnow,
)
from .auth import (
    build_msal_app,
    missing_refresh_token,
    no_tokens,
    run_token_call,
    tokens_from_result,
)
from .delta import (
    BASELINE_MARGIN,
    DELTA_PAGE_SIZE,
    MAX_DELTA_PAGES,
    RESYNC_MARGIN,
)
from .errors import graph_map_error
from .messages import (
    ATTACHMENT_EXPAND,
    MESSAGE_SELECT,
    graph_attachment,
    graph_headers,
    graph_message_to_email,
)
from .paths import segment as _q
from .subscriptions import GraphSubscriptions

__all__ = [
    "BASELINE_MARGIN",
    "DELTA_PAGE_SIZE",
    "IMMUTABLE_ID_PREFER",
    "MAX_DELTA_PAGES",
    "RESYNC_MARGIN",
    "MicrosoftGraphAdapter",
]

log = logging.getLogger("mailparity.graph")

#: Sent on every Graph request (ids then survive moves between folders).
IMMUTABLE_ID_PREFER = 'IdType="ImmutableId"'
#: Requests in one JSON $batch (Graph refuses more).
GRAPH_BATCH_LIMIT = 20
#: Chunk size of streamed attachment downloads.
ATTACHMENT_CHUNK = 64 * 1024
#: MSAL adds these itself and refuses them in ``scopes``.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
#: Well-known folder names, usable as destinationId as they are (locale-independent).
WELL_KNOWN_FOLDERS = frozenset(
    {
        "archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts",
        "inbox", "junkemail", "localfailures", "msgfolderroot", "outbox",
        "recoverableitemsdeletions", "scheduled", "searchfolders", "sentitems",
        "serverfailures", "syncissues",
    }
)
_GLOBAL_GRAPH = "https://graph.microsoft.com"


_CID_REFERENCE = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)


def _html_body(data: Mapping[str, Any]) -> str | None:
    """The message's HTML body (Graph returns one body, as stored), or None."""
    body = data.get("body")
    if not isinstance(body, Mapping) or str(body.get("contentType") or "").lower() != "html":
        return None
    content = body.get("content")
    return content if isinstance(content, str) and content.strip() else None


def _cid_references(html: str | None) -> set[str]:
    """The Content-IDs the HTML refers to (``cid:`` URLs, RFC 2392: percent-decoded), lower case."""
    if not html or "cid:" not in html.lower():
        return set()
    found = (mime.normalize_content_id(unquote(match)) for match in _CID_REFERENCE.findall(html))
    return {value.lower() for value in found if value}


#: ``$select`` / ``$expand`` of a message GET, URL-encoded as requests encodes ``params``.
_MESSAGE_QUERY = urlencode({"$select": MESSAGE_SELECT, "$expand": ATTACHMENT_EXPAND})


def _mid(message_id: str) -> str:
    return _q(message_id, "Graph message id")


def _aid(attachment_id: str) -> str:
    return _q(attachment_id, "Graph attachment id")


class MicrosoftGraphAdapter(GraphSubscriptions):
    """The Microsoft Graph adapter (see API.md section 3).

    Args:
        config: the mailbox connection.
        store: a CredentialStore + ProviderStore (a MetaStore too lets a restarted delta sync
            look back from the last commit instead of taking a new baseline).
        secrets: tenant secrets (client id/secret, legacy tokens).
        session: the ``requests.Session`` every call goes through (msal's included).
        sleep, clock, retry, timeout: transport settings (inject fakes in tests).
        shared_mailbox: the configured mailbox is not the signed-in user's own (delegated mode):
            read it through ``/users/{mailbox}``. Delegated subscriptions cannot watch a shared
            mailbox (Graph accepts them and never delivers), so registering one is refused.
    """

    provider = "microsoft"
    env_client_id = "MICROSOFT_CLIENT_ID"
    env_client_secret = "MICROSOFT_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
    secret_client_id = "microsoft_client_id"  # noqa: S105
    secret_client_secret = "microsoft_client_secret"  # noqa: S105

    def __init__(
        self,
        config: MicrosoftProviderConfig,
        *,
        store: Any,
        secrets: Any = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        shared_mailbox: bool | None = None,
    ) -> None:
        if not isinstance(config, MicrosoftProviderConfig):
            raise ConfigurationError("MicrosoftGraphAdapter needs a MicrosoftProviderConfig")
        super().__init__(
            config, store=store, secrets=secrets, session=session, sleep=sleep, clock=clock,
            retry=retry, timeout=timeout,
        )
        self.shared_mailbox = (
            config.shared_mailbox if shared_mailbox is None else shared_mailbox
        )
        self.http.headers = {"Prefer": IMMUTABLE_ID_PREFER}
        self.http.map_error = graph_map_error
        self._msal_app: Any = None
        self._category_ready = False
        self._folder_ids: dict[str, str] = {}

    # ------------------------------------------------------------------ paths and requests

    @property
    def base_url(self) -> str:
        """The Graph root of the config's cloud, e.g. ``https://graph.microsoft.com/v1.0``."""
        return self.config.graph_base_url.rstrip("/")

    @property
    def mailbox_root(self) -> str:
        """``/me`` (delegated, own mailbox) or ``/users/{mailbox}``."""
        if self.config.auth_mode == "application" or self.shared_mailbox:
            mailbox = self.config.mailbox
            if mailbox.startswith("$"):
                # Graph's documented form for a UPN that starts with "$".
                return f"/users('{quote(mailbox, safe='@$.')}')"
            return f"/users/{quote(mailbox, safe='@.')}"
        return "/me"

    def _url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            self._check_link(path)
            return path
        return f"{self.base_url}{self.mailbox_root}{path}"

    def _check_link(self, link: str) -> None:
        """Links Graph hands back (nextLink, deltaLink) must stay on the Graph host: the bearer
        token goes with them."""
        base = urlparse(self.base_url)
        target = urlparse(link)
        if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
            raise ProviderError(
                f"Graph returned a link to another host ({target.netloc}); refused",
                provider=self.provider,
            )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        allow_status: frozenset[int] = frozenset(),
        absolute: bool = False,
    ) -> requests.Response:
        url = f"{self.base_url}{path}" if absolute else self._url(path)
        return self.http.request(
            method, url, params=params, json=json, headers=headers, auth=self, stream=stream,
            allow_status=allow_status,
        )

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ProviderUnavailableError(
                f"Graph answered {response.status_code} with a body that is not JSON",
                status=response.status_code, provider="microsoft",
            ) from None
        if not isinstance(data, dict):
            raise ProviderUnavailableError(
                "Graph answered with JSON that is not an object", status=response.status_code,
                provider="microsoft",
            )
        return data

    # ------------------------------------------------------------------ tokens (msal)

    def _msal(self) -> Any:
        if self._msal_app is None:
            self._msal_app = build_msal_app(
                self.config,
                client_id=self.require_client_id(),
                client_secret=self.client_secret(),
                session=self.session,
                timeout=self.http.timeout,
            )
        return self._msal_app

    def _scopes(self) -> list[str]:
        root = urlparse(self.base_url)
        origin = f"{root.scheme}://{root.netloc}"
        # Tokens are per cloud: the global Graph resource in a scope means this cloud's Graph
        # (graph.microsoft.us for US Gov, ...), so the default scopes work in every cloud.
        scopes = [
            origin + s[len(_GLOBAL_GRAPH):] if s.lower().startswith(_GLOBAL_GRAPH) else s
            for s in self.config.scopes
            if s.lower() not in _RESERVED_SCOPES
        ]
        if self.config.auth_mode == "application":
            if scopes and all(s.endswith("/.default") for s in scopes):
                return scopes
            # Client credentials only accept "<resource>/.default".
            return [f"{origin}/.default"]
        return scopes or [f"{origin}/.default"]

    def _client_credentials(self) -> OAuthTokens:
        app = self._msal()
        # msal answers acquire_token_for_client from its cache first; a refresh (after a 401 or
        # at expiry) must reach the token endpoint, so drop what it cached.
        app.remove_tokens_for_client()
        result = run_token_call(
            lambda: app.acquire_token_for_client(scopes=self._scopes()),
            self.config.login_base_url,
        )
        return tokens_from_result(result, now=self.clock(), previous=None)

    def _initial_tokens(self) -> OAuthTokens | None:
        """Application mode gets a token with the client credentials (and stores it)."""
        if self.config.auth_mode != "application":
            return None
        tokens = self._client_credentials()
        self.store.save_tokens(self.config.provider_id, tokens)
        return tokens

    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        """Refresh through msal: the refresh-token grant (delegated) or client credentials.

        Terminal refusals raise AuthExpiredError; outages raise ProviderUnavailableError. The
        base class saves the result (with Microsoft's rotated refresh token) to the store."""
        if self.config.auth_mode == "application":
            return self._client_credentials()
        if tokens is None:
            raise no_tokens(self.config.provider_id)
        if tokens.refresh_token is None:
            raise missing_refresh_token(self.config.provider_id)
        app = self._msal()
        refresh_token = tokens.refresh_token.get_secret_value()
        scopes = self._scopes()
        result = run_token_call(
            lambda: app.acquire_token_by_refresh_token(refresh_token, scopes=scopes),
            self.config.login_base_url,
        )
        return tokens_from_result(result, now=self.clock(), previous=tokens)

    # ------------------------------------------------------------------ messages

    def get_message_details(self, message_id: str) -> EmailMessage:
        """One GET with the properties, headers and attachment metadata (never the bytes).

        When Graph omits ``internetMessageHeaders`` the headers come from the MIME (``/$value``).
        """
        if not message_id:
            raise NotFoundError("empty message id", provider=self.provider)
        # The query encoded once, exactly as requests would encode these params on every call.
        path = f"/messages/{_mid(message_id)}?{_MESSAGE_QUERY}"
        data = self._json(self._call("GET", path))
        return self._message_from_json(message_id, data)

    def _message_from_json(self, message_id: str, data: dict[str, Any]) -> EmailMessage:
        headers = graph_headers(data.get("internetMessageHeaders"))
        if not headers:
            headers = self._mime_headers(message_id)
        attachments = self._attachments(message_id, data.get("attachments"), _html_body(data))
        data.setdefault("id", message_id)
        return graph_message_to_email(
            data,
            provider_id=self.config.provider_id,
            tenant=self.config.tenant,
            mailbox=self.config.mailbox,
            headers=headers,
            attachments=attachments,
            fallback_received_at=self.clock(),
        )

    def get_messages_details(
        self, message_ids: Sequence[str]
    ) -> dict[str, EmailMessage | MailParityError]:
        """Many messages through JSON ``$batch`` (at most 20 requests per batch, Graph's limit).

        Each id maps to its message or to the error of its own request, exactly as
        :meth:`get_message_details` would have raised it. Members answered 429/503/504 are sent
        again (Graph throttles each member on its own) after the longest ``Retry-After``; members
        answered 401 are sent again once after a token refresh. Authentication failures of the
        batch request itself are raised (nothing can succeed without a token)."""
        results: dict[str, EmailMessage | MailParityError] = {}
        unique: list[str] = []
        seen: set[str] = set()
        for mid in message_ids:
            if mid in seen:
                continue
            seen.add(mid)
            if not isinstance(mid, str) or not mid:
                results[str(mid)] = NotFoundError("empty message id", provider=self.provider)
                continue
            try:
                _mid(mid)
            except BadRequestError as exc:
                results[mid] = exc  # this id only: the others are still fetched
                continue
            unique.append(mid)
        for start in range(0, len(unique), GRAPH_BATCH_LIMIT):
            self._batch_chunk(unique[start : start + GRAPH_BATCH_LIMIT], results)
        return results

    def _batch_chunk(
        self, ids: list[str], results: dict[str, EmailMessage | MailParityError]
    ) -> None:
        """One ``$batch`` of ``ids`` through the shared batch loop (:func:`run_batch`)."""
        run_batch(
            ids,
            results,
            send=self._send_batch,
            read=self._read_member,
            error=self._member_error,
            refresh=self.force_refresh,
            sleep=self.sleep,
            policy=self.http.retry,
            provider=self.provider,
        )

    def _send_batch(self, ids: list[str]) -> dict[str, BatchAnswer]:
        """POST one JSON ``$batch`` reading ``ids``; the answers by message id."""
        query = urlencode(
            {"$select": MESSAGE_SELECT, "$expand": ATTACHMENT_EXPAND}, safe="$,()=", quote_via=quote
        )
        requests_body = [
            {
                "id": str(index),
                "method": "GET",
                "url": f"{self.mailbox_root}/messages/{_mid(mid)}?{query}",
                # Graph applies a header only to the request it is on: the $batch POST's
                # Prefer does not reach its members, so each member asks for immutable ids
                # itself (else catch-up would publish other ids than push does).
                "headers": {"Prefer": IMMUTABLE_ID_PREFER},
            }
            for index, mid in enumerate(ids)
        ]
        data = self._json(
            self._call("POST", "/$batch", json={"requests": requests_body}, absolute=True)
        )
        answers: dict[str, BatchAnswer] = {}
        for item in data.get("responses") or []:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                continue
            index = item["id"]
            if not index.isdigit() or int(index) >= len(ids):
                continue
            raw_status = item.get("status")
            raw_headers = item.get("headers")
            answers[ids[int(index)]] = BatchAnswer(
                status=raw_status if isinstance(raw_status, int) else 502,
                headers=(
                    {str(k): str(v) for k, v in raw_headers.items()}
                    if isinstance(raw_headers, Mapping)
                    else {}
                ),
                body=item.get("body"),
            )
        return answers

    def _read_member(self, message_id: str, answer: BatchAnswer) -> EmailMessage:
        """A 200 member's message (a body that is no JSON object is that member's error)."""
        if not isinstance(answer.body, dict):
            raise self._member_error(answer)
        return self._message_from_json(message_id, answer.body)

    def _member_error(self, answer: BatchAnswer) -> MailParityError:
        """The exception one ``$batch`` member's error answer maps to (same as a single GET)."""
        headers = dict(answer.headers)
        body = answer.body
        if isinstance(body, (dict, list)):
            content = json_lib.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            content = body.encode("utf-8")
        else:
            content = b""
        response = requests.Response()
        response.status_code = answer.status
        response._content = content
        response.headers.update(headers)
        response.encoding = "utf-8"
        return graph_map_error(response)

    def _mime_headers(self, message_id: str) -> list[Header]:
        response = self._call("GET", f"/messages/{_mid(message_id)}/$value")
        return list(mime.parse_mime(response.content).headers)

    def _attachments(
        self, message_id: str, items: Any, html: str | None = None
    ) -> list[Attachment]:
        """The attachments' metadata, with the shared inline rule applied.

        ``contentId`` cannot be selected in the message fetch, so it costs one GET per
        attachment: it is read for the attachments Graph marks inline and, when the HTML shows
        ``cid:`` references no known Content-ID answers, for the other file attachments (images
        first) until every reference is resolved. A message without ``cid:`` references and
        without inline attachments thus stays at one GET.
        """
        found: list[Attachment] = []
        lookups: list[int] = []  # positions in ``found`` whose contentId Graph did not send
        if not isinstance(items, list):
            return found
        for index, item in enumerate(items, start=1):
            if not isinstance(item, Mapping):
                continue
            attachment = graph_attachment(item, index)
            if attachment is None:
                continue
            odata_type = str(item.get("@odata.type") or "").lower()
            if (
                attachment.content_id is None
                and "contentId" not in item
                and odata_type in ("", "#microsoft.graph.fileattachment")
            ):
                lookups.append(len(found))
            found.append(attachment)
        for position in [p for p in lookups if found[p].is_inline]:
            found[position].content_id = self._content_id(message_id, found[position].id)
        unresolved = _cid_references(html) - {
            item.content_id.lower() for item in found if item.content_id
        }
        rest = [p for p in lookups if not found[p].is_inline]
        rest.sort(key=lambda p: not found[p].content_type.startswith("image/"))
        for position in rest:
            if not unresolved:
                break
            cid = self._content_id(message_id, found[position].id)
            found[position].content_id = cid
            unresolved.discard((cid or "").lower())
        if not found:
            return found  # nothing to ask the HTML about: do not scan it
        references = mime.HtmlReferences(html)  # read once, asked per attachment
        for attachment in found:
            attachment.is_inline = mime.is_inline_part(
                declared_inline=attachment.is_inline,
                content_id=attachment.content_id,
                html=html,
                references=references,
            )
        return found

    def _content_id(self, message_id: str, attachment_id: str) -> str | None:
        """contentId of one inline file attachment (the message fetch cannot select it)."""
        try:
            data = self._json(
                self._call("GET", f"/messages/{_mid(message_id)}/attachments/{_aid(attachment_id)}")
            )
        except NotFoundError:
            return None
        value = data.get("contentId")
        return mime.normalize_content_id(value) if isinstance(value, str) else None

    def get_attachment_content(
        self, message_id: str, attachment_id: str, *, into: BinaryIO | None = None
    ) -> bytes:
        """The raw bytes of one attachment (``/attachments/{id}/$value``).

        With ``into`` (a binary file-like object) the bytes are streamed into it in chunks and
        ``b""`` is returned, so a large attachment never sits in memory. Item attachments give
        their MIME; reference attachments have no bytes (Graph answers 405: BadRequestError).
        """
        if into is None:
            return self._call("GET", self._attachment_value(message_id, attachment_id)).content
        for chunk in self.iter_attachment_content(message_id, attachment_id):
            into.write(chunk)
        return b""

    def iter_attachment_content(
        self, message_id: str, attachment_id: str, *, chunk_size: int = ATTACHMENT_CHUNK
    ) -> Iterator[bytes]:
        """The bytes of ``/attachments/{id}/$value`` as they arrive, in chunks of at most
        ``chunk_size``. The request is made on the first ``next()``; a dropped connection
        midway raises ProviderUnavailableError."""
        path = self._attachment_value(message_id, attachment_id)
        response = self._call("GET", path, stream=True)
        try:
            for chunk in response.iter_content(chunk_size=chunk_size):
                if chunk:
                    yield chunk
        except requests.RequestException as exc:
            raise ProviderUnavailableError(
                f"attachment download interrupted: {type(exc).__name__}", provider=self.provider
            ) from None
        finally:
            response.close()

    @staticmethod
    def _attachment_value(message_id: str, attachment_id: str) -> str:
        return f"/messages/{_mid(message_id)}/attachments/{_aid(attachment_id)}/$value"

    # ------------------------------------------------------------------ processed marking

    def mark_message_processed(self, message_id: str) -> None:
        """Apply ``config.processed_strategy``: none, mark_read, category or move."""
        strategy = self.config.processed_strategy
        if strategy == "none":
            return
        path = f"/messages/{_mid(message_id)}"
        if strategy == "mark_read":
            self._call("PATCH", path, json={"isRead": True})
        elif strategy == "category":
            name = self.config.processed_category
            self._ensure_category(name)
            data = self._json(self._call("GET", path, params={"$select": "categories"}))
            current = [c for c in data.get("categories") or [] if isinstance(c, str)]
            if name.casefold() not in {c.casefold() for c in current}:
                self._call("PATCH", path, json={"categories": [*current, name]})
        elif strategy == "move":
            destination = self._resolve_folder()
            self._call("POST", f"{path}/move", json={"destinationId": destination})
        else:  # pragma: no cover - the config's Literal forbids it
            raise ConfigurationError(f"unknown processed_strategy {strategy!r}")

    def _ensure_category(self, name: str) -> None:
        """Create the master category once per adapter (it gives the category its colour).

        Without MailboxSettings.ReadWrite the master list is out of reach; the message still gets
        the category name (Outlook shows it uncoloured), so a 403 here is only logged."""
        if self._category_ready:
            return
        try:
            data = self._json(self._call("GET", "/outlook/masterCategories"))
            names = {
                str(c.get("displayName", "")).casefold()
                for c in data.get("value") or []
                if isinstance(c, Mapping)
            }
            if name.casefold() not in names:
                # 409: created meanwhile by another worker; that is what we wanted.
                self._call(
                    "POST", "/outlook/masterCategories",
                    json={"displayName": name, "color": "preset7"},
                    allow_status=frozenset({409}),
                )
        except PermissionDeniedError as exc:
            log.warning(
                "provider %s: cannot manage master categories (%s); tagging messages anyway",
                self.config.provider_id, exc.code or exc.status,
            )
        self._category_ready = True

    def _resolve_folder(self) -> str:
        """The destination folder id of the move strategy (resolved once per adapter).

        A well-known name (``archive``, ``deleteditems``...) or a folder id is used as is; a display
        name is looked up among the top-level folders and the Inbox's children, and created at
        the top level when it does not exist."""
        name = (self.config.processed_folder or "").strip()
        if not name:
            raise ConfigurationError(
                "processed_strategy 'move' needs processed_folder", provider=self.provider
            )
        if name.lower() in WELL_KNOWN_FOLDERS:
            return name.lower()
        if name in self._folder_ids:
            return self._folder_ids[name]
        if len(name) >= 60 and " " not in name and "/" not in name:
            return name  # already a folder id (they are long base64 strings)
        folder_id = self._find_folder(name, "/mailFolders") or self._find_folder(
            name, "/mailFolders/inbox/childFolders"
        )
        if folder_id is None:
            created = self._json(self._call("POST", "/mailFolders", json={"displayName": name}))
            folder_id = str(created.get("id") or "")
            if not folder_id:
                raise ProviderUnavailableError(
                    "Graph created a folder without an id", provider=self.provider
                )
        self._folder_ids[name] = folder_id
        return folder_id

    def _find_folder(self, name: str, path: str) -> str | None:
        url: str | None = self._url(path)
        params: Mapping[str, str] | None = {"$select": "id,displayName", "$top": "100"}
        pages = 0
        while url and pages < MAX_DELTA_PAGES:
            pages += 1
            data = self._json(self._call("GET", url, params=params))
            for folder in data.get("value") or []:
                if not isinstance(folder, Mapping):
                    continue
                if str(folder.get("displayName", "")).casefold() == name.casefold():
                    found = folder.get("id")
                    if isinstance(found, str) and found:
                        return found
            link = data.get("@odata.nextLink")
            url, params = (link, None) if isinstance(link, str) and link else (None, None)
        return None

    # ------------------------------------------------------------------ connection test

    def test_connection(self) -> ConnectionTestResult:
        """Check the token, the mailbox identity and read access to the folder. Never raises.

        Delegated: ``GET /me`` must name the configured mailbox (``mail`` or
        ``userPrincipalName``, case-insensitively) unless it is a shared mailbox; application:
        ``GET /users/{mailbox}``. Then one message of the folder is listed."""
        mailbox = self.config.mailbox
        try:
            if self.config.auth_mode == "delegated":
                me = self._json(
                    self._call(
                        "GET", "/me", params={"$select": "mail,userPrincipalName"}, absolute=True
                    )
                )
                names = [
                    str(me.get(key)) for key in ("mail", "userPrincipalName") if me.get(key)
                ]
                mismatch = None if self.shared_mailbox else self.mailbox_mismatch(names)
                if mismatch is not None:
                    return mismatch
            else:
                self._call("GET", "", params={"$select": "id,mail,userPrincipalName"})
            self._call(
                "GET", f"/mailFolders/{_q(self.config.folder)}/messages",
                params={"$top": "1", "$select": "id"},
            )
        except Exception as exc:  # never raise from a connection test
            return self.connection_failed(exc, mailbox=mailbox)
        return ConnectionTestResult(success=True, mailbox=mailbox)
