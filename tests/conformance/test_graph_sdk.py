"""FakeGraph driven by Microsoft's own ``msgraph-sdk`` over real HTTP on 127.0.0.1.

Every endpoint the library calls, or the testing kit documents, gets at least one call from the
SDK: the SDK forms the requests (its URL templates, ``delta()`` function syntax, body
serialization, absolute member URLs in ``$batch``) and parses the answers into its typed models,
whose schema reports any property the fake invented (``unknown_properties``). Where the SDK and the
fake disagree, the fake was wrong and was fixed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mailparity.providers.graph.adapter import ATTACHMENT_EXPAND, MESSAGE_SELECT
from mailparity.testing.builder import build_message
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import FakeServer, serve

from ._clients import IMMUTABLE, graph_client, immutable, raw_get, unknown_properties

pytest.importorskip("msgraph", reason="msgraph-sdk is a dev dependency (pip install -e '.[dev]')")

from kiota_abstractions.api_error import APIError
from msgraph.generated.models.category_color import CategoryColor
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.mail_folder import MailFolder
from msgraph.generated.models.message import Message
from msgraph.generated.models.outlook_category import OutlookCategory
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.mail_folders.mail_folders_request_builder import (
    MailFoldersRequestBuilder,
)
from msgraph.generated.users.item.messages.item.message_item_request_builder import (
    MessageItemRequestBuilder,
)
from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
    MovePostRequestBody,
)
from msgraph.generated.users.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)

BOX = "alex@contoso.test"
# The generated request builders warn about their own deprecated configuration classes.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def served() -> Iterator[tuple[FakeGraph, FakeServer]]:
    graph = FakeGraph(seed=12)
    with serve(graph) as server:
        graph.add_mailbox(BOX, "Alex Wilber")
        yield graph, server


def _raw(n: int = 1, **extra: Any) -> bytes:
    values: dict[str, Any] = {
        "from_": ("Zoë Müller", "zoe@example.org"),
        "to": [("Alex Wilber", BOX)],
        "subject": f"Grüße {n}",
        "text": f"Hello {n}",
        "html": f"<p>Hello <b>{n}</b></p><img src=\"cid:logo{n}\">",
        "inline_images": [(f"logo{n}", b"\x89PNG-bytes", "image/png")],
        "attachments": [("résumé.pdf", b"%PDF-1.4 data", "application/pdf")],
        "message_id": f"<m{n}@example.org>",
    }
    values.update(extra)
    return build_message(**values)


def _run(graph: FakeGraph, body: Callable[[Any], Awaitable[Any]]) -> Any:
    token = graph.issue_tokens(BOX)["access_token"]

    async def main() -> Any:
        return await body(graph_client(graph, token))

    return asyncio.run(main())


def _status(error: BaseException) -> int | None:
    return getattr(error, "response_status_code", None)


# ------------------------------------------------------------------------ users, messages


def test_me_and_users_by_address(served: Any) -> None:
    graph, _ = served

    async def body(client: Any) -> tuple[Any, Any]:
        return await client.me.get(), await client.users.by_user_id(BOX).get()

    me, user = _run(graph, body)
    assert me.mail == user.mail == BOX
    assert me.display_name == "Alex Wilber"
    assert me.id == user.id == graph.user(BOX).id
    assert unknown_properties(me) == {}


def test_message_with_the_librarys_select_and_expand(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw())
    query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
        select=MESSAGE_SELECT.split(","), expand=[ATTACHMENT_EXPAND]
    )

    async def body(client: Any) -> Any:
        return await client.me.messages.by_message_id(message_id).get(
            request_configuration=immutable(query)
        )

    message = _run(graph, body)
    assert isinstance(message, Message)
    assert message.id == message_id  # the immutable id, asked for with Prefer
    assert message.subject == "Grüße 1"
    assert message.from_.email_address.address == "zoe@example.org"
    assert message.from_.email_address.name == "Zoë Müller"
    assert message.to_recipients[0].email_address.address == BOX
    assert isinstance(message.received_date_time, datetime)
    assert message.internet_message_id == "<m1@example.org>"
    assert message.body.content_type.value == "html"
    assert {h.name for h in message.internet_message_headers} >= {"From", "To", "Subject"}
    names = {a.name: a for a in message.attachments}
    assert set(names) == {"résumé.pdf", "logo1"} or set(names) >= {"résumé.pdf"}
    pdf = names["résumé.pdf"]
    assert isinstance(pdf, FileAttachment)
    assert pdf.is_inline is False
    assert pdf.size == len(b"%PDF-1.4 data")
    inline = [a for a in message.attachments if a.is_inline]
    assert [a.name for a in inline] == ["logo1"]
    assert inline[0].content_id is None  # not among the library's selected properties
    assert unknown_properties(message) == {}
    assert all(unknown_properties(a) == {} for a in message.attachments)


def test_message_without_select_parses_every_default_property(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw(2))

    async def body(client: Any) -> Any:
        return await client.me.messages.by_message_id(message_id).get(
            request_configuration=immutable()
        )

    message = _run(graph, body)
    assert unknown_properties(message) == {}
    assert isinstance(message.conversation_index, bytes)  # Edm.Binary: standard base64
    assert message.conversation_id
    assert message.change_key
    assert message.is_read is False
    assert message.has_attachments is True
    assert message.parent_folder_id == graph.user(BOX).folder("inbox").id


def test_users_key_syntax_for_a_upn_starting_with_dollar(served: Any) -> None:
    """The library addresses such mailboxes as ``/users('$...')`` (Graph's documented form)."""
    graph, _ = served
    box = "$support@contoso.test"
    graph.add_mailbox(box)
    message_id = graph.deliver(box, _raw(to=[("Support", box)]))
    token = graph.issue_tokens(box)["access_token"]

    async def main() -> bytes:
        client = graph_client(graph, token)
        url = f"{graph.base_url}/users('{box}')/messages/{message_id}?$select=subject"
        return await raw_get(client, url)

    assert json.loads(asyncio.run(main()))["subject"] == "Grüße 1"


def test_rest_id_without_the_immutable_prefer(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw())

    async def body(client: Any) -> Any:
        return await client.me.messages.by_message_id(message_id).get()

    assert _run(graph, body).id == graph.rest_id(message_id) != message_id


def test_list_messages_top_select_filter_orderby_and_next_link(served: Any) -> None:
    graph, _ = served
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    ids = [
        graph.deliver(BOX, _raw(n), received_at=start + timedelta(minutes=n)) for n in range(5)
    ]

    async def body(client: Any) -> tuple[Any, Any, Any]:
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            top=2, select=["id", "receivedDateTime", "subject"],
            orderby=["receivedDateTime desc"],
        )
        first = await client.me.messages.get(request_configuration=immutable(query))
        second = await client.me.messages.with_url(first.odata_next_link).get(
            request_configuration=immutable()
        )
        since = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=f"receivedDateTime ge {(start + timedelta(minutes=3)).isoformat()}",
        )
        recent = await client.me.mail_folders.by_mail_folder_id("inbox").messages.get(
            request_configuration=immutable(since)
        )
        return first, second, recent

    first, second, recent = _run(graph, body)
    assert [m.id for m in first.value] == [ids[4], ids[3]]
    assert [m.id for m in second.value] == [ids[2], ids[1]]
    assert first.value[0].body is None  # not selected
    assert {m.id for m in recent.value} == {ids[3], ids[4]}


def test_next_link_keeps_filter_and_order(served: Any) -> None:
    graph, _ = served
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    ids = [
        graph.deliver(BOX, _raw(n), received_at=start + timedelta(minutes=n)) for n in range(5)
    ]

    async def body(client: Any) -> list[str]:
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            top=2, orderby=["receivedDateTime asc"],
            filter=f"receivedDateTime ge {(start + timedelta(minutes=1)).isoformat()}",
        )
        page = await client.me.messages.get(request_configuration=immutable(query))
        seen = [m.id for m in page.value]
        while page.odata_next_link:
            page = await client.me.messages.with_url(page.odata_next_link).get(
                request_configuration=immutable()
            )
            seen += [m.id for m in page.value]
        try:
            await client.me.messages.get(request_configuration=immutable(
                MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
                    orderby=["subject"]
                )
            ))
        except APIError as exc:
            seen.append(f"status {_status(exc)}")
        return seen

    assert _run(graph, body) == [*ids[1:], "status 400"]


def test_mime_value_attachments_and_attachment_value(served: Any) -> None:
    graph, _ = served
    raw = _raw()
    message_id = graph.deliver(BOX, raw)

    async def body(client: Any) -> tuple[bytes, Any, Any, bytes]:
        item = client.me.messages.by_message_id(message_id)
        mime = await item.content.get()
        listed = await item.attachments.get()
        pdf = next(a for a in listed.value if a.name == "résumé.pdf")
        one = await item.attachments.by_attachment_id(pdf.id).get()
        url = f"{graph.base_url}/me/messages/{message_id}/attachments/{pdf.id}/$value"
        return mime, listed, one, await raw_get(client, url)

    mime, listed, one, content = _run(graph, body)
    assert mime == raw
    assert [a.content_id for a in listed.value if a.is_inline] == ["logo1"]
    assert all(unknown_properties(a) == {} for a in listed.value)
    assert isinstance(one, FileAttachment)
    assert one.content_bytes == b"%PDF-1.4 data"
    assert content == b"%PDF-1.4 data"


def test_patch_read_and_categories_then_move(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw())
    folder = graph.add_folder(BOX, "Processed")

    async def body(client: Any) -> tuple[Any, Any]:
        item = client.me.messages.by_message_id(message_id)
        patched = await item.patch(
            Message(is_read=True, categories=["PSA/Processed"]),
            request_configuration=immutable(),
        )
        moved = await item.move.post(
            MovePostRequestBody(destination_id=folder), request_configuration=immutable()
        )
        return patched, moved

    patched, moved = _run(graph, body)
    assert patched.is_read is True
    assert patched.categories == ["PSA/Processed"]
    assert moved.id == message_id  # immutable ids survive a move
    assert moved.parent_folder_id == folder
    assert graph.message(message_id).folder_id == folder


def test_delete_moves_the_message_to_deleted_items(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw())

    async def body(client: Any) -> Any:
        await client.me.messages.by_message_id(message_id).delete()
        return await client.me.mail_folders.by_mail_folder_id("deleteditems").messages.get(
            request_configuration=immutable()
        )

    deleted = _run(graph, body)
    assert [m.id for m in deleted.value] == [message_id]


def test_a_received_message_refuses_other_updates(served: Any) -> None:
    graph, _ = served
    message_id = graph.deliver(BOX, _raw())

    async def body(client: Any) -> None:
        await client.me.messages.by_message_id(message_id).patch(Message(subject="changed"))

    with pytest.raises(APIError) as info:
        _run(graph, body)
    assert _status(info.value) == 400


def test_unknown_message_is_404_item_not_found(served: Any) -> None:
    graph, _ = served

    async def body(client: Any) -> None:
        await client.me.messages.by_message_id("AAkALgAAAAAAmissing").get()

    with pytest.raises(APIError) as info:
        _run(graph, body)
    assert _status(info.value) == 404
    error = info.value.error
    assert error.code == "ErrorItemNotFound"
    assert error.inner_error.request_id  # Graph's innerError, parsed by the SDK's model
    assert isinstance(error.inner_error.date, datetime)
    assert unknown_properties(error) == {}


# ------------------------------------------------------------------------ folders, categories


def test_mail_folders_top_level_child_folders_and_create(served: Any) -> None:
    graph, _ = served

    async def body(client: Any) -> tuple[Any, ...]:
        query = MailFoldersRequestBuilder.MailFoldersRequestBuilderGetQueryParameters(
            select=["id", "displayName"], top=100
        )
        created = await client.me.mail_folders.post(MailFolder(display_name="PSA Processed"))
        child = await client.me.mail_folders.by_mail_folder_id("inbox").child_folders.post(
            MailFolder(display_name="Tickets")
        )
        top = await client.me.mail_folders.get(
            request_configuration=immutable(query)
        )
        children = await client.me.mail_folders.by_mail_folder_id("inbox").child_folders.get()
        inbox = await client.me.mail_folders.by_mail_folder_id("inbox").get()
        try:
            await client.me.mail_folders.post(MailFolder(display_name="PSA Processed"))
        except APIError as exc:
            duplicate = exc
        else:  # pragma: no cover - the assertion below reports it
            duplicate = None
        return created, child, top, children, inbox, duplicate

    created, child, top, children, inbox, duplicate = _run(graph, body)
    names = [f.display_name for f in top.value]
    assert "Inbox" in names
    assert "PSA Processed" in names
    assert "Tickets" not in names  # a child folder is not top-level
    assert top.value[0].total_item_count is None  # not selected
    assert [f.display_name for f in children.value] == ["Tickets"]
    assert child.parent_folder_id == inbox.id
    assert inbox.child_folder_count == 1
    assert created.id
    assert unknown_properties(created) == {}
    assert duplicate is not None
    assert _status(duplicate) == 409


def test_master_categories_list_and_create(served: Any) -> None:
    graph, _ = served

    async def body(client: Any) -> tuple[Any, Any]:
        created = await client.me.outlook.master_categories.post(
            OutlookCategory(display_name="PSA/Processed", color=CategoryColor.Preset9)
        )
        return created, await client.me.outlook.master_categories.get()

    created, listed = _run(graph, body)
    assert created.color == CategoryColor.Preset9
    assert [c.display_name for c in listed.value] == ["PSA/Processed"]
    assert unknown_properties(created) == {}


# ------------------------------------------------------------------------ subscriptions


def test_subscription_lifecycle_with_validation(served: Any) -> None:
    graph, _ = served
    seen: list[str] = []

    def validator(url: str) -> tuple[int, str]:
        # Graph POSTs ?validationToken=...; the endpoint echoes the decoded token.
        from urllib.parse import parse_qs, urlsplit

        seen.append(url)
        return 200, parse_qs(urlsplit(url).query)["validationToken"][0]

    graph.validator = validator
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)

    async def body(client: Any) -> tuple[Any, ...]:
        created = await client.subscriptions.post(
            Subscription(
                change_type="created",
                notification_url="https://hooks.example/graph",
                lifecycle_notification_url="https://hooks.example/graph",
                resource="me/mailFolders('inbox')/messages",
                expiration_date_time=expiry,
                client_state="s3cret-state",
            ),
            request_configuration=immutable(),
        )
        renewed = await client.subscriptions.by_subscription_id(created.id).patch(
            Subscription(expiration_date_time=expiry + timedelta(hours=1))
        )
        await client.subscriptions.by_subscription_id(created.id).reauthorize.post()
        listed = await client.subscriptions.get()
        fetched = await client.subscriptions.by_subscription_id(created.id).get()
        await client.subscriptions.by_subscription_id(created.id).delete()
        try:
            await client.subscriptions.by_subscription_id(created.id).get()
        except APIError as exc:
            gone = exc
        return created, renewed, listed, fetched, gone

    created, renewed, listed, fetched, gone = _run(graph, body)
    assert len(seen) == 2  # notification URL and lifecycle URL, each validated
    assert created.client_state == "s3cret-state"
    assert created.resource == "me/mailFolders('inbox')/messages"
    assert renewed.expiration_date_time > created.expiration_date_time
    assert [s.id for s in listed.value] == [created.id]
    assert listed.value[0].client_state is None  # Graph never lists clientState
    assert fetched.id == created.id
    assert _status(gone) == 404
    assert unknown_properties(created) == {}


def test_subscription_refusals(served: Any) -> None:
    graph, _ = served
    now = datetime.now(timezone.utc)

    def sub(minutes: int) -> Subscription:
        return Subscription(
            change_type="created", notification_url="https://hooks.example/graph",
            resource="me/mailFolders('inbox')/messages",
            expiration_date_time=now + timedelta(minutes=minutes), client_state="x",
        )

    async def body(client: Any) -> list[int | None]:
        statuses: list[int | None] = []
        for minutes in (5000, 60, 60):  # beyond 4230 minutes, then a duplicate
            try:
                await client.subscriptions.post(sub(minutes))
                statuses.append(201)
            except APIError as exc:
                statuses.append(_status(exc))
        return statuses

    assert _run(graph, body) == [400, 201, 409]


# ------------------------------------------------------------------------ delta


def test_delta_function_pages_changes_removals_and_410(served: Any) -> None:
    graph, _ = served
    ids = [graph.deliver(BOX, _raw(n)) for n in range(3)]
    archive = graph.add_folder(BOX, "Archive 2026")

    async def round_(client: Any, url: str | None, **query: Any) -> tuple[list[Any], str]:
        config = immutable(
            DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(**query) if query else None
        )
        config.headers.add("Prefer", "odata.maxpagesize=2")
        delta = client.me.mail_folders.by_mail_folder_id("inbox").messages.delta
        builder = delta if url is None else DeltaRequestBuilder(client.request_adapter, url)
        items: list[Any] = []
        while True:
            page = await builder.get(request_configuration=config)
            items += page.value
            if page.odata_next_link:
                builder = DeltaRequestBuilder(client.request_adapter, page.odata_next_link)
                continue
            return items, page.odata_delta_link

    async def body(client: Any) -> tuple[Any, ...]:
        first, link = await round_(client, None, select=["id", "subject", "isRead"])
        created_only, created_link = await round_(client, None, change_type="created")
        graph.deliver(BOX, _raw(9))
        await client.me.messages.by_message_id(ids[0]).patch(Message(is_read=True))
        await client.me.messages.by_message_id(ids[1]).move.post(
            MovePostRequestBody(destination_id=archive)
        )
        second, _ = await round_(client, link)
        only_new, _ = await round_(client, created_link)
        graph.expire_delta_tokens()
        try:
            await round_(client, link)
        except APIError as exc:
            expired = exc
        return first, created_only, second, only_new, expired

    first, created_only, second, only_new, expired = _run(graph, body)
    assert [m.id for m in first] == ids
    assert first[0].subject == "Grüße 0"
    assert first[0].body is None  # $select is kept in the links
    assert len(created_only) == 3  # the first round lists the folder whatever the changeType
    by_id = {m.id: m for m in second}
    assert by_id[ids[1]].additional_data["@removed"] == {"reason": "deleted"}
    assert by_id[ids[0]].is_read is True
    assert len(second) == 3  # the update, the removal, the new message
    assert len(only_new) == 1  # changeType=created: the new message only
    assert only_new[0].subject == "Grüße 9"
    assert _status(expired) == 410
    assert expired.error.code == "syncStateNotFound"


# ------------------------------------------------------------------------ $batch, faults


def test_batch_through_the_sdk_with_member_headers_and_member_faults(served: Any) -> None:
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    graph, _ = served
    first, second = graph.deliver(BOX, _raw(1)), graph.deliver(BOX, _raw(2))

    def content(client: Any) -> Any:
        batch = BatchRequestContent()
        for message_id in (first, second):
            info = client.me.messages.by_message_id(message_id).to_get_request_information(
                request_configuration=immutable()
            )
            item = BatchRequestItem(request_information=info)
            item.id = message_id
            batch.add_request(None, item)
        return batch

    async def body(client: Any) -> tuple[Any, Any]:
        answer = await client.batch.post(batch_request_content=content(client))
        # msgraph-core's typed reading of a member's body (get_response_by_id(id, Message))
        # expects base64 where Graph sends a JSON object, so the bodies are read from the same
        # request sent through the SDK's adapter as bytes.
        info = await client.batch.to_post_request_information(content(client))
        raw = await client.request_adapter.send_primitive_async(info, "bytes", {})
        return answer, json.loads(raw)

    graph.fail_next(1, status=429, retry_after=7, path=f"/messages/{second}")
    answer, again = _run(graph, body)
    statuses = answer.get_response_status_codes()
    assert statuses == {first: 200, second: 429}
    assert answer.responses[second].headers["Retry-After"] == "7"
    bodies = {item["id"]: item for item in again["responses"]}
    # The member's own Prefer asked for the immutable id (the outer one would not reach it).
    assert bodies[first]["body"]["id"] == first
    assert bodies[second]["body"]["id"] == second
    members = [r for r in graph.requests if r.in_batch]
    assert len(members) == 4
    assert all(
        IMMUTABLE in {k.lower(): v for k, v in r.headers.items()}.get("prefer", "")
        for r in members
    )


def test_throttling_and_expired_tokens_reach_the_sdk_as_graph_errors(served: Any) -> None:
    from kiota_http.middleware.options import RetryHandlerOption

    graph, _ = served
    message_id = graph.deliver(BOX, _raw())

    async def body(client: Any) -> list[tuple[int | None, str | None, str | None]]:
        out: list[tuple[int | None, str | None, str | None]] = []
        for prepare in (
            lambda: graph.fail_next(1, status=429, retry_after=30, path="/messages/"),
            lambda: graph.fail_next(1, status=503, retry_after=None, path="/messages/"),
            graph.expire_tokens,
        ):
            prepare()
            config = immutable()
            # The SDK's retry handler would wait for real; one attempt shows the answer.
            config.options = [RetryHandlerOption(max_retries=0)]
            try:
                await client.me.messages.by_message_id(message_id).get(
                    request_configuration=config
                )
            except APIError as exc:
                headers = exc.response_headers or {}
                retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
                out.append((_status(exc), exc.error.code if exc.error else None, retry_after))
        return out

    throttled, unavailable, expired = _run(graph, body)
    assert throttled[0] == 429
    assert throttled[1] == "TooManyRequests"
    assert throttled[2] in ("30", ["30"])
    assert unavailable[0] == 503
    assert expired[:2] == (401, "InvalidAuthenticationToken")


def test_app_only_token_from_msal_then_users_path_with_the_sdk() -> None:
    """Application permissions end to end with Microsoft's own clients: msal's client
    credentials flow against the fake's Entra endpoints (msal wants https: TLS mode), then the
    SDK on ``/users/{address}`` (``/me`` is refused for an app token, as in Graph)."""
    import msal

    graph = FakeGraph(seed=21)
    with serve(graph, tls=True) as server:
        graph.add_mailbox(BOX)
        graph.add_client("daemon-app", "daemon-secret")
        message_id = graph.deliver(BOX, _raw())
        app = msal.ConfidentialClientApplication(
            "daemon-app", client_credential="daemon-secret",
            authority=f"{graph.login_url}/{graph.tenant_id}",
            http_client=server.session(), instance_discovery=False,
        )
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert "access_token" in result, result.get("error_description")

        async def body() -> tuple[Any, int | None]:
            client = graph_client(graph, result["access_token"], verify=server.ca_path)
            message = await client.users.by_user_id(BOX).messages.by_message_id(
                message_id
            ).get(request_configuration=immutable())
            try:
                await client.me.get()
            except APIError as exc:
                return message, _status(exc)
            return message, None

        message, me_status = asyncio.run(body())
    assert message.id == message_id
    assert me_status == 400
