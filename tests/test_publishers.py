"""The shipped publishers and the dict secret store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailparity.errors import PublishError, StoreError
from mailparity.models import (
    EmailAddress,
    EmailMessage,
    EmailProviderAuthFailed,
    InboundEmailReceived,
    MailParityEvent,
)
from mailparity.protocols import EventPublisher, SecretStore
from mailparity.publishers import (
    CallbackPublisher,
    DictSecretStore,
    InMemoryPublisher,
    JsonlFilePublisher,
    event_to_json,
)

WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def inbound(message_id: str = "m1", subject: str = "Größe ✓") -> InboundEmailReceived:
    message = EmailMessage(
        id=message_id,
        provider="google",
        provider_id="g-1",
        tenant="t1",
        mailbox="help@example.org",
        received_at=WHEN,
        subject=subject,
        from_=EmailAddress(email="a@example.com", name="Ann"),  # type: ignore[call-arg]
        reply_to=[EmailAddress(email="r@example.com")],
        in_reply_to="<x@y>",
    )
    return InboundEmailReceived.for_message(message, occurred_at=WHEN)


def auth_failed() -> EmailProviderAuthFailed:
    return EmailProviderAuthFailed(
        event_id="ev-auth", tenant_id="t1", provider_id="ms-1", provider="microsoft",
        mailbox="s@contoso.com", error_code="invalid_grant", occurred_at=WHEN,
    )


def test_publishers_satisfy_the_protocols(tmp_path: Path) -> None:
    for publisher in (
        InMemoryPublisher(), CallbackPublisher(lambda e: None),
        JsonlFilePublisher(tmp_path / "e.jsonl"),
    ):
        assert isinstance(publisher, EventPublisher)
    assert isinstance(DictSecretStore({}), SecretStore)


# ------------------------------------------------------------------------------ in memory


def test_in_memory_publisher_records_in_order() -> None:
    publisher = InMemoryPublisher()
    first, second, third = inbound("m1"), auth_failed(), inbound("m2")
    for event in (first, second, third):
        publisher.publish(event)
    assert publisher.events == [first, second, third]
    assert publisher.event_ids() == [first.event_id, "ev-auth", third.event_id]
    assert publisher.events_of_type("EMAIL_PROVIDER_AUTH_FAILED") == [second]
    assert repr(publisher) == "InMemoryPublisher(events=3)"
    publisher.clear()
    assert publisher.events == []
    assert publisher.attempts == 3


def test_fail_next_raises_publish_error_then_recovers() -> None:
    publisher = InMemoryPublisher()
    publisher.fail_next(2)
    for _ in range(2):
        with pytest.raises(PublishError, match="simulated"):
            publisher.publish(inbound())
    assert publisher.events == []
    publisher.publish(inbound())
    assert len(publisher.events) == 1
    assert publisher.attempts == 3


def test_fail_next_with_custom_exception() -> None:
    publisher = InMemoryPublisher()
    boom = ConnectionError("bus down")
    publisher.fail_next(1, exc=boom)
    with pytest.raises(ConnectionError, match="bus down"):
        publisher.publish(inbound())
    publisher.publish(inbound())  # the custom failure was used up
    assert len(publisher.events) == 1
    publisher.fail_next(0)
    publisher.publish(inbound())
    assert len(publisher.events) == 2
    with pytest.raises(ValueError, match="n must be"):
        publisher.fail_next(-1)


def test_in_memory_publisher_is_thread_safe() -> None:
    publisher = InMemoryPublisher()
    publisher.fail_next(10)
    failures: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for n in range(50):
            try:
                publisher.publish(inbound(f"m{index}-{n}"))
            except PublishError:
                with lock:
                    failures.append(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failures) == 10
    assert len(publisher.events) == 8 * 50 - 10
    assert len(set(publisher.event_ids())) == len(publisher.events)


# ------------------------------------------------------------------------------ callback


def test_callback_publisher_calls_the_function() -> None:
    seen: list[MailParityEvent] = []
    publisher = CallbackPublisher(seen.append)
    event = inbound()
    publisher.publish(event)
    assert seen == [event]
    assert "append" in repr(publisher)


def test_callback_publisher_wraps_failures_without_their_message() -> None:
    def failing(event: MailParityEvent) -> None:
        raise RuntimeError("password=hunter2")

    with pytest.raises(PublishError) as caught:
        CallbackPublisher(failing).publish(inbound())
    assert "RuntimeError" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_callback_publisher_passes_library_errors_through() -> None:
    def failing(event: MailParityEvent) -> None:
        raise StoreError("outbox table unavailable")

    with pytest.raises(StoreError, match="outbox"):
        CallbackPublisher(failing).publish(inbound())


def test_callback_publisher_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        CallbackPublisher("not callable")  # type: ignore[arg-type]


def test_callback_publisher_per_event_kind_gets_each_event_typed() -> None:
    emails: list[InboundEmailReceived] = []
    failures: list[EmailProviderAuthFailed] = []
    publisher = CallbackPublisher(on_email=emails.append, on_auth_failure=failures.append)
    email, failure = inbound(), auth_failed()
    publisher.publish(email)
    publisher.publish(failure)
    assert emails == [email]
    assert failures == [failure]
    assert repr(publisher) == (
        "CallbackPublisher(on_email=list.append, on_auth_failure=list.append)"
    )


def test_callback_publisher_with_on_email_only_accepts_auth_failures_without_a_call() -> None:
    subjects: list[str] = []
    publisher = CallbackPublisher(on_email=lambda event: subjects.append(event.email_data.subject))
    publisher.publish(auth_failed())  # the README's publisher: no AttributeError, no retry loop
    publisher.publish(inbound(subject="Hi"))
    assert subjects == ["Hi"]


def test_callback_publisher_positional_function_takes_what_no_typed_one_takes() -> None:
    rest: list[MailParityEvent] = []
    emails: list[InboundEmailReceived] = []
    publisher = CallbackPublisher(rest.append, on_email=emails.append)
    email, failure = inbound(), auth_failed()
    publisher.publish(email)
    publisher.publish(failure)
    assert emails == [email]
    assert rest == [failure]


def test_callback_publisher_typed_function_failures_become_publish_errors() -> None:
    def failing(event: EmailProviderAuthFailed) -> None:
        raise KeyError("hunter2")

    with pytest.raises(PublishError, match="KeyError") as caught:
        CallbackPublisher(on_auth_failure=failing).publish(auth_failed())
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a function: fn, on_email, on_auth_failure, on_connected"),
        ({"on_email": "print"}, "on_email must be callable, not str"),
        ({"on_auth_failure": 3}, "on_auth_failure must be callable, not int"),
    ],
)
def test_callback_publisher_refuses_what_it_cannot_call(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        CallbackPublisher(**kwargs)  # type: ignore[arg-type]


def test_in_memory_publisher_lists_each_kind_typed() -> None:
    publisher = InMemoryPublisher()
    email, failure = inbound(), auth_failed()
    publisher.publish(failure)
    publisher.publish(email)
    assert publisher.emails == [email]
    assert publisher.auth_failures == [failure]
    assert publisher.events == [failure, email]


# ---------------------------------------------------------- a publisher is checked when given


def _owners() -> list[tuple[str, Callable[[object], object]]]:
    from mailparity import App, Maintenance, Processor, WebhookHandler, Worker
    from mailparity.stores.memory import InMemoryStore

    store = InMemoryStore()
    return [
        ("WebhookHandler", lambda p: WebhookHandler(store=store, publisher=p)),  # type: ignore[arg-type]
        ("Worker", lambda p: Worker(store, p)),  # type: ignore[arg-type]
        ("Processor", lambda p: Processor(store, p)),  # type: ignore[arg-type]
        ("Maintenance", lambda p: Maintenance(store, p)),  # type: ignore[arg-type]
        ("App", lambda p: App(store, p)),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize(
    ("publisher", "given"),
    [
        (print, "got the function print"),
        (lambda event: None, "got the function <lambda>"),
        (None, "got a NoneType"),
        (InMemoryPublisher, "the class InMemoryPublisher (pass an instance: InMemoryPublisher())"),
        (type("NoPublish", (), {"publish": "not callable"})(), "got a NoPublish"),
    ],
)
def test_what_is_not_a_publisher_is_refused_at_construction(publisher: object, given: str) -> None:
    for owner, build in _owners():
        with pytest.raises(TypeError) as caught:
            build(publisher)
        text = str(caught.value)
        assert text.startswith(f"{owner}() needs an EventPublisher"), text
        assert given in text
        assert "CallbackPublisher(on_email=" in text


def test_publishers_are_accepted_at_construction(tmp_path: Path) -> None:
    class Duck:  # satisfies the protocol without inheriting anything
        def publish(self, event: MailParityEvent) -> None:
            pass

    for publisher in (InMemoryPublisher(), CallbackPublisher(on_email=print), Duck(),
                      JsonlFilePublisher(tmp_path / "e.jsonl")):
        for owner, build in _owners():
            built = build(publisher)
            assert getattr(built, "publisher", publisher) is publisher, owner


# ------------------------------------------------------------------------------ jsonl file


def test_jsonl_publisher_appends_camel_case_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    publisher = JsonlFilePublisher(path)
    event = inbound()
    publisher.publish(event)
    publisher.publish(auth_failed())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == event_to_json(event)
    assert first["eventType"] == "INBOUND_EMAIL_RECEIVED"
    assert first["emailData"]["from"] == {"email": "a@example.com", "name": "Ann"}
    assert first["emailData"]["replyTo"] == [{"email": "r@example.com", "name": None}]
    assert first["emailData"]["inReplyTo"] == "<x@y>"
    assert first["emailData"]["subject"] == "Größe ✓"
    assert first["occurredAt"].startswith("2026-01-01T12:00:00")
    assert json.loads(lines[1])["errorCode"] == "invalid_grant"
    assert JsonlFilePublisher.read(path) == [first, json.loads(lines[1])]
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_jsonl_read_of_missing_file_is_empty(tmp_path: Path) -> None:
    assert JsonlFilePublisher.read(tmp_path / "absent.jsonl") == []


def test_jsonl_publisher_isolates_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"eventId": "torn", "emailDa')  # a writer crashed mid-line
    publisher = JsonlFilePublisher(path)
    publisher.publish(inbound("m1"))
    events = JsonlFilePublisher.read(path)
    assert [e["emailData"]["id"] for e in events] == ["m1"]
    assert path.read_bytes().count(b"\n") == 2


def test_jsonl_publisher_failure_raises_publish_error(tmp_path: Path) -> None:
    publisher = JsonlFilePublisher(tmp_path / "no-such-dir" / "events.jsonl")
    with pytest.raises(PublishError, match="cannot open"):
        publisher.publish(inbound())


_CHILD = r"""
import sys
from datetime import datetime, timezone
from mailparity.models import EmailMessage, InboundEmailReceived
from mailparity.publishers import JsonlFilePublisher

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
publisher = JsonlFilePublisher(path)
print("ready", flush=True)
sys.stdin.readline()
for n in range(count):
    message = EmailMessage(id=f"{name}-{n}", provider="google", provider_id="g", tenant="t",
                           mailbox="m@x", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                           subject="x" * 5000)
    publisher.publish(InboundEmailReceived.for_message(message))
"""


def test_jsonl_publisher_is_safe_across_processes_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    per_writer = 40
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), f"p{n}", str(per_writer)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        publisher = JsonlFilePublisher(path)

        def local(index: int) -> None:
            for n in range(per_writer):
                publisher.publish(inbound(f"t{index}-{n}", subject="y" * 5000))

        threads = [threading.Thread(target=local, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for child in children:
            _, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    lines = path.read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["emailData"]["id"] for line in lines]  # every line is whole JSON
    expected = {f"p{p}-{n}" for p in range(3) for n in range(per_writer)}
    expected |= {f"t{t}-{n}" for t in range(2) for n in range(per_writer)}
    assert len(ids) == len(expected)
    assert set(ids) == expected


# ------------------------------------------------------------------------------ secrets


def test_dict_secret_store() -> None:
    source = {"t1": {"microsoft_client_secret": "s3cr3t"}, "t2": {}}
    secrets = DictSecretStore(source)
    source["t1"]["microsoft_client_secret"] = "changed"  # copied on construction
    assert secrets.get_secret("t1", "microsoft_client_secret") == "s3cr3t"
    assert secrets.get_secret("t1", "google_client_id") is None
    assert secrets.get_secret("unknown", "x") is None
    assert "s3cr3t" not in repr(secrets)
    secrets.set_secret("t2", "google_client_id", "gid")
    assert secrets.get_secret("t2", "google_client_id") == "gid"
    secrets.set_secret("t2", "google_client_id", None)
    assert secrets.get_secret("t2", "google_client_id") is None
    secrets.set_secret("t3", "absent", None)
    assert DictSecretStore().get_secret("t", "n") is None
