"""Attachment content: stream_attachment on both fakes and IMAP-less adapters, the shipped
attachment stores (safe names, all or nothing, idempotent saves)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mailparity
from mailparity import (
    Attachment,
    ConfigurationError,
    FilesystemAttachmentStore,
    GmailProviderConfig,
    InboundEmailReceived,
    InMemoryAttachmentStore,
    InMemoryPublisher,
    InMemoryStore,
    MicrosoftProviderConfig,
    NotFoundError,
    WebhookHandler,
    stream_attachment,
)
from mailparity.attachments import AttachmentTooLargeError, attachment_chunks
from mailparity.mime import safe_file_name
from mailparity.models import EmailAddress, EmailBody, EmailMessage
from mailparity.testing import (
    FakeGmail,
    FakeGraph,
    build_message,
    gmail_push_request,
    graph_notification_request,
)

PDF = bytes(range(256)) * 40  # 10,240 bytes, every byte value
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300

RAW = build_message(
    from_="customer@example.com",
    to="support@contoso.test",
    subject="Invoice attached",
    html='<p>See <img src="cid:logo@x"></p>',
    attachments=[("invoice.pdf", PDF, "application/pdf")],
    inline_images=[("logo@x", PNG)],
)


@pytest.fixture
def graph_event(
    fake_graph: FakeGraph, microsoft_mailbox: MicrosoftProviderConfig,
    mailparity_handler: WebhookHandler, mailparity_publisher: InMemoryPublisher,
) -> InboundEmailReceived:
    """The event of RAW delivered to the Outlook mailbox."""
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    mailparity_handler.handle_microsoft(graph_notification_request(fake_graph, message_id))
    mailparity_handler.run_pending()
    return mailparity_publisher.emails[-1]


@pytest.fixture
def gmail_event(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig,
    mailparity_handler: WebhookHandler, mailparity_publisher: InMemoryPublisher,
) -> InboundEmailReceived:
    """The event of RAW delivered to the Gmail mailbox."""
    fake_gmail.deliver(google_mailbox.mailbox, RAW)
    mailparity_handler.handle_google(gmail_push_request(fake_gmail, google_mailbox.mailbox))
    mailparity_handler.run_pending()
    return mailparity_publisher.emails[-1]


def _by_name(event: InboundEmailReceived, name: str) -> Attachment:
    return next(a for a in event.email_data.attachments if a.name == name)


# ---------------------------------------------------------------------- stream_attachment


def test_graph_attachment_streams_in_chunks(
    fake_graph: FakeGraph, graph_event: InboundEmailReceived, mailparity_store: InMemoryStore,
) -> None:
    event = graph_event
    pdf = _by_name(event, "invoice.pdf")

    stream = stream_attachment(event, pdf.id, store=mailparity_store, chunk_size=1000)
    assert stream.attachment == pdf  # the metadata comes along (for Content-Type, a file name)
    chunks = list(stream)

    assert b"".join(chunks) == PDF
    assert len(chunks) == 11
    assert all(0 < len(c) <= 1000 for c in chunks)
    assert fake_graph.count("/$value") == 1  # the download, not the message, was asked


def test_graph_stream_makes_no_request_until_iterated(
    fake_graph: FakeGraph, graph_event: InboundEmailReceived, mailparity_store: InMemoryStore,
) -> None:
    event = graph_event
    fake_graph.clear_requests()
    with stream_attachment(event, _by_name(event, "invoice.pdf").id, store=mailparity_store):
        pass
    assert fake_graph.count("/attachments") == 0


def test_gmail_attachment_and_inline_part_stream(
    google_mailbox: GmailProviderConfig, gmail_event: InboundEmailReceived,
    mailparity_store: InMemoryStore,
) -> None:
    event = gmail_event
    pdf = _by_name(event, "invoice.pdf")
    [logo] = [a for a in event.email_data.attachments if a.is_inline]
    assert not pdf.id.startswith("part:")
    assert logo.id.startswith("part:")

    chunks = list(stream_attachment(event, pdf.id, store=mailparity_store, chunk_size=999))
    assert b"".join(chunks) == PDF
    assert len(chunks) > 10
    assert all(0 < len(c) <= 999 for c in chunks)
    logo_chunks = list(stream_attachment(event, logo.id, store=mailparity_store, chunk_size=64))
    assert b"".join(logo_chunks) == PNG
    assert max(len(c) for c in logo_chunks) <= 64


def test_stream_by_provider_and_message_id(
    google_mailbox: GmailProviderConfig, gmail_event: InboundEmailReceived,
    mailparity_store: InMemoryStore,
) -> None:
    event = gmail_event
    pdf = _by_name(event, "invoice.pdf")
    stream = mailparity.stream_attachment(
        google_mailbox.provider_id, pdf.id, message_id=event.email_data.id,
        store=mailparity_store,
    )
    assert stream.attachment is None
    assert stream.read_all() == PDF


def test_stream_copy_to_a_file(
    tmp_path: Path, graph_event: InboundEmailReceived, mailparity_store: InMemoryStore,
) -> None:
    event = graph_event
    target = tmp_path / "copy.pdf"
    with target.open("wb") as out:
        written = stream_attachment(
            event.email_data, _by_name(event, "invoice.pdf").id, store=mailparity_store
        ).copy_to(out)
    assert written == len(PDF)
    assert target.read_bytes() == PDF


def test_stream_bad_input_is_refused_at_once(
    fake_graph: FakeGraph, graph_event: InboundEmailReceived, mailparity_store: InMemoryStore,
) -> None:
    event = graph_event
    with pytest.raises(NotFoundError, match="lists no attachment"):
        stream_attachment(event, "not-an-attachment-of-it", store=mailparity_store)
    with pytest.raises(ConfigurationError, match="message_id is required"):
        stream_attachment(event.provider_id, "x", store=mailparity_store)
    with pytest.raises(ConfigurationError, match="no provider"):
        stream_attachment("nobody", "x", message_id="m", store=mailparity_store)
    with pytest.raises(ConfigurationError, match="attachment_id"):
        stream_attachment(event, "", store=mailparity_store)
    with pytest.raises(ConfigurationError, match="chunk_size"):
        stream_attachment(event, "x", store=mailparity_store, chunk_size=0)


def test_stream_of_a_deleted_message_raises_not_found_when_read(
    fake_graph: FakeGraph, graph_event: InboundEmailReceived, mailparity_store: InMemoryStore,
) -> None:
    event = graph_event
    stream = stream_attachment(event, _by_name(event, "invoice.pdf").id, store=mailparity_store)
    fake_graph.fail_next(
        status=404, retry_after=None, path="/attachments/", reason="ErrorItemNotFound"
    )
    with pytest.raises(NotFoundError):
        next(stream)


class _WholeBytesAdapter:
    """An adapter without streaming of its own (as IMAP): the bytes are handed out in slices."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.calls = 0

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        self.calls += 1
        return self.content


def test_adapters_without_streaming_are_sliced() -> None:
    adapter = _WholeBytesAdapter(b"x" * 2500)
    chunks = list(attachment_chunks(adapter, "m", "a", chunk_size=1000))  # type: ignore[arg-type]
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert adapter.calls == 1


# ---------------------------------------------------------------------- the stores


def _message(
    message_id: str = "AAMk/with+odd=chars", provider_id: str = "acme-m365"
) -> EmailMessage:
    return EmailMessage(
        id=message_id, provider="microsoft", provider_id=provider_id, tenant="acme",
        mailbox="support@acme.test", received_at="2026-01-01T09:00:00Z",  # type: ignore[arg-type]
        from_=EmailAddress(email="x@example.com"), body=EmailBody(text=""),  # type: ignore[call-arg]
    )


def _attachment(name: str, attachment_id: str = "att-1") -> Attachment:
    return Attachment(id=attachment_id, name=name, content_type="application/octet-stream")


HOSTILE_NAMES = [
    "../../../etc/passwd",
    "..",
    ".",
    "",
    "C:\\Windows\\System32\\evil.dll",
    "/absolute/path.txt",
    "sub/dir/file.txt",
    "null\x00byte\x1f.txt",
    "CON",
    'what?<>:*|".txt',
    "  .hidden.  ",
    "é" * 300 + ".pdf",
    "x" * 1000,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_filesystem_store_keeps_hostile_names_inside_root(tmp_path: Path, name: str) -> None:
    root = tmp_path / "attachments"
    store = FilesystemAttachmentStore(root)
    reference = store.save(_message(), _attachment(name), iter([b"data"]))

    path = store.path(reference)
    assert path.resolve().is_relative_to(root.resolve())
    assert path.read_bytes() == b"data"
    assert len(path.name.encode("utf-8")) <= 200
    assert "/" not in path.name
    assert "\\" not in path.name
    assert "\x00" not in path.name
    assert path.parent.parent.parent == root  # exactly <root>/<mailbox>/<message>/<file>
    with store.open(reference) as saved:
        assert saved.read() == b"data"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files == [path]  # no temporary file left, nothing outside the message's folder


def test_filesystem_store_name_keeps_the_extension_when_cut(tmp_path: Path) -> None:
    store = FilesystemAttachmentStore(tmp_path)
    reference = store.save(_message(), _attachment("é" * 300 + ".pdf"), iter([b"x"]))
    assert reference.endswith(".pdf")


def test_safe_file_name_rule() -> None:
    assert safe_file_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_file_name(" .. ") == ""
    assert safe_file_name("a\x07b.txt") == "ab.txt"
    assert safe_file_name("x" * 400, limit=10) == "x" * 10


def test_filesystem_store_save_again_replaces(tmp_path: Path) -> None:
    store = FilesystemAttachmentStore(tmp_path)
    first = store.save(_message(), _attachment("a.txt"), iter([b"one"]))
    second = store.save(_message(), _attachment("a.txt"), iter([b"two"]))
    assert first == second
    assert store.path(first).read_bytes() == b"two"
    other = store.save(_message(), _attachment("a.txt", attachment_id="att-2"), iter([b"3"]))
    assert other != first  # two attachments with the same name do not collide
    other_mailbox = store.save(_message(provider_id="other"), _attachment("a.txt"), iter([b"4"]))
    assert other_mailbox != first


def test_filesystem_store_failed_save_leaves_nothing(tmp_path: Path) -> None:
    store = FilesystemAttachmentStore(tmp_path)
    previous = store.save(_message(), _attachment("a.txt"), iter([b"kept"]))

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise AttachmentTooLargeError(4)

    with pytest.raises(AttachmentTooLargeError):
        store.save(_message(), _attachment("a.txt"), broken())
    assert store.path(previous).read_bytes() == b"kept"  # the earlier save is untouched
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [Path(previous).name]


@pytest.mark.parametrize(
    "reference", ["", "../x/y", "/etc/passwd", "a/b", "a/../b", "a\\b/c/d", "a/b/c/d", "a//b"]
)
def test_filesystem_store_refuses_foreign_references(tmp_path: Path, reference: str) -> None:
    with pytest.raises(ValueError, match="not a reference"):
        FilesystemAttachmentStore(tmp_path).path(reference)


def test_filesystem_store_is_an_attachment_store(tmp_path: Path) -> None:
    assert isinstance(FilesystemAttachmentStore(tmp_path), mailparity.AttachmentStore)
    assert isinstance(InMemoryAttachmentStore(), mailparity.AttachmentStore)
    assert str(tmp_path) in repr(FilesystemAttachmentStore(tmp_path))


def test_in_memory_store_records_and_fails_on_demand() -> None:
    store = InMemoryAttachmentStore()
    store.fail_next = 1
    with pytest.raises(OSError, match="unavailable"):
        store.save(_message(), _attachment("a.txt"), iter([b"x"]))
    reference = store.save(_message(), _attachment("a.txt"), iter([b"x", b"y"]))
    assert store.content(reference) == b"xy"
    assert store.saves == 2
    assert store.saved[reference].attachment.name == "a.txt"
    assert os.sep not in reference or reference.startswith("memory://")
