"""An attachment store during processing: attachments saved before the event goes out, the
size limit, a failing store (retried, nothing lost, one event), hostile names, and the
provider failing midway. Both fakes, and IMAP on the real Dovecot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imap_support import Dovecot, dovecot
from mailparity import (
    App,
    Attachment,
    BadRequestError,
    FilesystemAttachmentStore,
    InboundEmailReceived,
    InMemoryAttachmentStore,
    InMemoryPublisher,
    InMemoryStore,
    NotFoundError,
    ThrottledError,
    stream_attachment,
)
from mailparity.attachments import save_attachments
from mailparity.errors import ConfigurationError
from mailparity.models import EmailAddress, EmailBody, EmailMessage, Job, utcnow
from mailparity.processing import Processor
from mailparity.protocols import AttachmentStore
from mailparity.testing import (
    PUSH_SERVICE_ACCOUNT,
    TEST_AUDIENCE,
    FakeGmail,
    FakeGraph,
    build_message,
    connect_google,
    connect_microsoft,
    gmail_push_request,
    graph_notification_request,
)

__all__ = ["dovecot"]  # the fixture, imported for pytest

PDF = bytes(range(256)) * 40  # 10,240 bytes
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 300
RAW = build_message(
    from_="customer@example.com",
    to=["support@contoso.test", "help@example.test"],
    subject="Invoice attached",
    html='<p>See <img src="cid:logo@x"></p>',
    attachments=[("invoice.pdf", PDF, "application/pdf")],
    inline_images=[("logo@x", PNG)],
)
HOSTILE = build_message(
    from_="mallory@example.com",
    to=["support@contoso.test", "help@example.test"],
    subject="names",
    text="see attached",
    attachments=[
        ("../../../../tmp/evil.sh", b"#!/bin/sh\n"),
        ("C:\\Windows\\System32\\evil.bat", b"@echo off\r\n"),
        ("..", b"dots"),
        ('q?*<>|:"x.txt', b"q"),
    ],
)


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _no_sleep(seconds: float) -> None:
    """Retries in tests do not wait."""


class Host:
    """One App over both fakes, with an attachment store."""

    def __init__(self, fake_graph: FakeGraph, fake_gmail: FakeGmail,
                 attachments: AttachmentStore, **options: Any) -> None:
        self.store = InMemoryStore()
        self.publisher = InMemoryPublisher()
        self.clock = Clock()
        self.graph, self.gmail = fake_graph, fake_gmail
        self.microsoft = connect_microsoft(self.store, fake_graph)
        self.google = connect_google(self.store, fake_gmail)
        self.app = App(
            self.store, self.publisher, clock=self.clock, sleep=_no_sleep,
            push={"google_audience": TEST_AUDIENCE,
                  "google_service_accounts": [PUSH_SERVICE_ACCOUNT],
                  "google_certs_url": fake_gmail.certs_url},
            attachment_store=attachments, **options,
        )

    def receive(self, provider: str, raw: bytes = RAW) -> None:
        if provider == "microsoft":
            message_id = self.graph.deliver(self.microsoft.mailbox, raw)
            response = self.app.webhooks.handle_microsoft(
                graph_notification_request(self.graph, message_id))
        else:
            self.gmail.deliver(self.google.mailbox, raw)
            response = self.app.webhooks.handle_google(
                gmail_push_request(self.gmail, self.google.mailbox))
        assert response.status in (202, 204)
        self.app.webhooks.run_pending()

    def run_later(self, seconds: float = 7200) -> None:
        self.clock.advance(seconds)
        self.app.webhooks.run_pending()


@pytest.fixture(params=["microsoft", "google"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _by_name(event: InboundEmailReceived, name: str) -> Attachment:
    return next(a for a in event.email_data.attachments if a.name == name)


def test_attachments_are_saved_before_the_event(
    provider: str, fake_graph: FakeGraph, fake_gmail: FakeGmail
) -> None:
    saved = InMemoryAttachmentStore()
    host = Host(fake_graph, fake_gmail, saved)
    host.receive(provider)

    [event] = host.publisher.emails
    pdf = _by_name(event, "invoice.pdf")
    [logo] = [a for a in event.email_data.attachments if a.is_inline]
    assert pdf.stored_as is not None
    assert pdf.not_stored is None
    assert saved.content(pdf.stored_as) == PDF
    assert logo.stored_as is not None
    assert saved.content(logo.stored_as) == PNG
    assert saved.saves == 2
    assert host.app.stream_attachment(event, pdf.id).read_all() == PDF  # on demand as well
    # The event's JSON says where, for a consumer on another process.
    dumped = event.model_dump(mode="json", by_alias=True)
    assert dumped["emailData"]["attachments"][0]["storedAs"].startswith("memory://")
    assert "notStored" in dumped["emailData"]["attachments"][0]


def test_without_a_store_nothing_is_downloaded(
    fake_graph: FakeGraph, microsoft_mailbox: Any, mailparity_handler: Any,
    mailparity_publisher: InMemoryPublisher,
) -> None:
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    mailparity_handler.handle_microsoft(graph_notification_request(fake_graph, message_id))
    mailparity_handler.run_pending()
    [event] = mailparity_publisher.emails
    assert all(a.stored_as is None and a.not_stored is None for a in event.email_data.attachments)
    assert fake_graph.count("/$value") == 0


def test_oversized_attachment_is_not_saved_and_the_event_says_so(
    provider: str, fake_graph: FakeGraph, fake_gmail: FakeGmail
) -> None:
    saved = InMemoryAttachmentStore()
    host = Host(fake_graph, fake_gmail, saved, attachment_max_bytes=5000)
    host.receive(provider)

    [event] = host.publisher.emails
    pdf = _by_name(event, "invoice.pdf")
    assert pdf.stored_as is None
    assert pdf.not_stored == "too_large"
    [logo] = [a for a in event.email_data.attachments if a.is_inline]
    assert logo.stored_as is not None  # the small one is saved all the same
    assert [s.attachment.name for s in saved.saved.values()] == [logo.name]
    # Nothing else is lost: the oversized attachment can still be streamed on demand.
    content = stream_attachment(event, pdf.id, store=host.store).read_all()
    assert content == PDF


def test_a_failing_store_retries_the_job_and_publishes_once(
    provider: str, fake_graph: FakeGraph, fake_gmail: FakeGmail
) -> None:
    saved = InMemoryAttachmentStore()
    saved.fail_next = 1
    host = Host(fake_graph, fake_gmail, saved)
    host.receive(provider)

    assert host.publisher.emails == []  # not published while an attachment is not saved
    [job] = host.store.list_jobs(status="pending")
    assert job.attempts == 1
    assert "attachment store" in (job.last_error or "")

    host.run_later()
    [event] = host.publisher.emails
    assert all(a.stored_as for a in event.email_data.attachments)
    assert host.store.count_jobs(status="pending") == 0
    host.run_later()
    assert len(host.publisher.emails) == 1  # exactly one event
    assert len(saved.saved) == 2  # the retry replaced, never duplicated


def test_provider_failing_midway_retries_and_loses_nothing(
    provider: str, fake_graph: FakeGraph, fake_gmail: FakeGmail
) -> None:
    saved = InMemoryAttachmentStore()
    host = Host(fake_graph, fake_gmail, saved)
    fake = fake_graph if provider == "microsoft" else fake_gmail
    fake.fail_next(20, status=503, retry_after=None, path="/attachments/")
    host.receive(provider)
    assert host.publisher.emails == []
    assert host.store.count_jobs(status="pending") == 1

    for _ in range(5):
        host.run_later()
    [event] = host.publisher.emails
    assert saved.content(_by_name(event, "invoice.pdf").stored_as or "") == PDF


def test_hostile_names_stay_inside_the_folder(
    provider: str, tmp_path: Path, fake_graph: FakeGraph, fake_gmail: FakeGmail
) -> None:
    root = tmp_path / "files"
    store = FilesystemAttachmentStore(root)
    host = Host(fake_graph, fake_gmail, store)
    host.receive(provider, HOSTILE)

    [event] = host.publisher.emails
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 4
    assert all(p.resolve().is_relative_to(root.resolve()) for p in files)
    contents = {}
    for attachment in event.email_data.attachments:
        assert attachment.stored_as is not None
        with store.open(attachment.stored_as) as handle:
            contents[store.path(attachment.stored_as).name.split("-", 1)[1]] = handle.read()
    # The normalizer already drops folders of sent paths; the store makes the rest safe.
    assert contents == {"evil.sh": b"#!/bin/sh\n", "evil.bat": b"@echo off\r\n",
                        "attachment-3.bin": b"dots", "q_______x.txt": b"q"}
    assert not (tmp_path / "tmp").exists()


# ---------------------------------------------------------------------- save_attachments itself


def _message(*attachments: Attachment) -> EmailMessage:
    return EmailMessage(
        id="m1", provider="microsoft", provider_id="p1", tenant="t", mailbox="a@b.test",
        received_at=utcnow(), from_=EmailAddress(email="x@y.test"),  # type: ignore[call-arg]
        body=EmailBody(text=""), attachments=list(attachments),
    )


class _Adapter:
    """Answers each attachment id with bytes, or raises the error given for it."""

    def __init__(self, answers: dict[str, bytes | BaseException]) -> None:
        self.answers = answers

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        answer = self.answers[attachment_id]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_a_size_the_provider_under_reports_is_caught_while_streaming() -> None:
    store = InMemoryAttachmentStore()
    lying = Attachment(id="a", name="big.bin", content_type="x/y", size=0)
    adapter = _Adapter({"a": b"x" * 200_000})
    result = save_attachments(adapter, _message(lying), store, max_bytes=100_000)  # type: ignore[arg-type]
    assert result.attachments[0].not_stored == "too_large"
    assert store.saved == {}


def test_attachments_without_content_are_marked_unavailable() -> None:
    store = InMemoryAttachmentStore()
    link = Attachment(id="ref", name="cloud.docx", content_type="x/y")
    gone = Attachment(id="gone", name="gone.txt", content_type="text/plain")
    ok = Attachment(id="ok", name="ok.txt", content_type="text/plain")
    adapter = _Adapter({
        "ref": BadRequestError("405: reference attachments have no $value"),
        "gone": NotFoundError("gone"),
        "ok": b"fine",
    })
    result = save_attachments(adapter, _message(link, gone, ok), store, max_bytes=10)  # type: ignore[arg-type]
    assert [a.not_stored for a in result.attachments] == ["unavailable", "unavailable", None]
    assert store.content(result.attachments[2].stored_as or "") == b"fine"


def test_transient_errors_propagate_for_a_retry() -> None:
    store = InMemoryAttachmentStore()
    adapter = _Adapter({"a": ThrottledError("slow down", retry_after=30)})
    with pytest.raises(ThrottledError):
        save_attachments(adapter, _message(Attachment(id="a", name="a", content_type="x/y")),  # type: ignore[arg-type]
                         store, max_bytes=10)


def test_a_store_returning_no_reference_is_an_error() -> None:
    class Broken:
        def save(self, message: EmailMessage, attachment: Attachment,
                 chunks: Iterable[bytes]) -> str:
            return ""

    with pytest.raises(TypeError, match="reference"):
        save_attachments(_Adapter({"a": b"x"}),  # type: ignore[arg-type]
                         _message(Attachment(id="a", name="a", content_type="x/y")),
                         Broken(), max_bytes=10)


def test_processor_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="attachment_max_bytes"):
        Processor(InMemoryStore(), InMemoryPublisher(), attachment_store=InMemoryAttachmentStore(),
                  attachment_max_bytes=-1)
    with pytest.raises(TypeError, match="AttachmentStore"):
        Processor(InMemoryStore(), InMemoryPublisher(), attachment_store=object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- IMAP (real Dovecot)


def test_imap_attachments_are_saved_and_streamed(dovecot: Dovecot, tmp_path: Path) -> None:
    from mailparity.providers import create_adapter

    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = dovecot.config()
    store.save_provider(config)
    adapter = create_adapter(config, store=store)
    batch = adapter.fetch_changes()
    assert adapter.commit_cursor(batch)
    dovecot.deliver(config, RAW)

    files = FilesystemAttachmentStore(tmp_path)
    processor = Processor(store, publisher, attachment_store=files, attachment_max_bytes=5000)
    store.enqueue_job(Job(kind="sync", provider_id=config.provider_id, payload={},
                          unique_key=f"sync:{config.provider_id}", available_at=utcnow()))
    processor.run_pending()

    [event] = publisher.emails
    pdf = _by_name(event, "invoice.pdf")
    [logo] = [a for a in event.email_data.attachments if a.is_inline]
    assert pdf.not_stored == "too_large"
    assert logo.stored_as is not None
    assert files.path(logo.stored_as).read_bytes() == PNG
    chunks = list(stream_attachment(event, pdf.id, store=store, chunk_size=4096))
    assert b"".join(chunks) == PDF
    assert len(chunks) == 3
