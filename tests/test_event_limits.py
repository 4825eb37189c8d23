"""Event size limits: one event stays small whatever the mail; what was cut is named, and the
whole message is still there through the adapter."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from mailparity import EventLimits, InboundEmailReceived
from mailparity.models import Attachment, EmailAddress, EmailBody, EmailMessage, Header

RECEIVED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _message(**update: object) -> EmailMessage:
    message = EmailMessage(
        id="m1", provider="google", provider_id="p", tenant="t", mailbox="box@example.com",
        received_at=RECEIVED, subject="hello", body=EmailBody(text="hi", html="<p>hi</p>"),
        headers=[Header(name="Subject", value="hello")],
    )
    return message.model_copy(update=update)


def _event_bytes(message: EmailMessage, limits: EventLimits | None = None) -> int:
    event = InboundEmailReceived.for_message(message, occurred_at=RECEIVED, limits=limits)
    return len(event.model_dump_json(by_alias=True).encode())


def test_small_mail_is_untouched() -> None:
    message = _message()
    event = InboundEmailReceived.for_message(message, occurred_at=RECEIVED)
    assert event.email_data is message
    assert event.email_data.truncated == []


def test_the_worst_mail_still_fits_in_256_kb() -> None:
    many = [EmailAddress(email=f"user{i}@example.com", name="N" * 2000) for i in range(2000)]
    huge = _message(
        subject="S" * 100_000,
        body=EmailBody(text="ü\"" * 5_000_000, html='<a href="x">' * 1_000_000),
        headers=[Header(name=f"X-H{i}", value="v\\" * 50_000) for i in range(500)],
        to=many, cc=many, bcc=many, reply_to=many,
        attachments=[
            Attachment(id=f"a{i}", name="n" * 200, content_type="application/pdf", size=1)
            for i in range(10_000)
        ],
    )
    event = InboundEmailReceived.for_message(huge, occurred_at=RECEIVED)
    assert _event_bytes(huge) < 256 * 1024
    assert event.email_data.truncated == [
        "body.text", "body.html", "subject", "headers", "to", "cc", "bcc", "reply_to",
        "attachments",
    ]
    assert event.email_data.to == many[: len(event.email_data.to)]  # the first, in order
    assert huge.body.text.startswith(event.email_data.body.text)  # a prefix, never altered
    assert len(huge.body.text) == 10_000_000  # the message itself is not changed


def test_cuts_never_split_a_character() -> None:
    message = _message(body=EmailBody(text="日本語" * 100))
    cut = EventLimits(text_bytes=100).apply(message)
    assert cut.body.text == "日本語" * 11  # 33 characters of 3 bytes: 99 <= 100
    assert len(cut.body.text.encode()) <= 100
    assert cut.truncated == ["body.text"]


def test_limits_are_configurable_and_can_be_lifted() -> None:
    message = _message(body=EmailBody(text="x" * 100_000))
    assert EventLimits(text_bytes=None).apply(message) is message
    assert _event_bytes(message, EventLimits(text_bytes=10)) < 2000
    assert json.loads(
        InboundEmailReceived.for_message(
            message, occurred_at=RECEIVED, limits=EventLimits(text_bytes=10)
        ).model_dump_json(by_alias=True)
    )["emailData"]["truncated"] == ["body.text"]


@pytest.mark.parametrize("field", ["headers"])
def test_headers_keep_their_order_until_the_budget(field: str) -> None:
    headers = [Header(name=f"H{i}", value="v" * 100) for i in range(10)]
    cut = EventLimits(headers_bytes=350).apply(_message(headers=headers))
    assert [h.name for h in cut.headers] == ["H0", "H1", "H2"]
    assert cut.truncated == [field]


def test_hostile_fields_outside_the_caps_are_halved_until_the_event_fits() -> None:
    message = _message(
        references=[f"<{'r' * 900}{i}@x>" for i in range(2000)],
        message_id="<" + "m" * 100 + "@x>",
    )
    limited = EventLimits().apply(message)
    assert _event_bytes(message) < 256 * 1024
    assert limited.truncated == ["references"]
    assert limited.references == message.references[: len(limited.references)]


def test_recipients_and_attachments_are_counted_over_the_lists() -> None:
    many = [EmailAddress(email=f"user{i}@example.com", name=f"User {i}") for i in range(200)]
    files = [
        Attachment(id=f"a{i}", name=f"f{i}.pdf", content_type="application/pdf", size=1)
        for i in range(150)
    ]
    limited = EventLimits().apply(_message(to=many, cc=many, attachments=files))
    assert (len(limited.to), len(limited.cc), len(limited.attachments)) == (200, 50, 100)
    assert limited.truncated == ["cc", "attachments"]
