"""The IMAP provider over the in-process FakeImap (the testing kit's stand-in for a server):
the same pipeline as against Dovecot, without one, so a host's tests can run it anywhere."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from conftest import FakeClock
from imap_support import make_mail, wait_for
from mailparity.models import EmailProviderAuthFailed, InboundEmailReceived, Job
from mailparity.processing import Processor
from mailparity.providers.imap.adapter import ImapAdapter
from mailparity.providers.imap.client import ConnectionLimiter
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.providers.imap.listener import ImapListener
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.fake_imap import FakeImap

pytest.importorskip("imapclient")

USER = "support@example.com"


def setup(**changes: Any) -> tuple[FakeImap, InMemoryStore, InMemoryPublisher, Processor,
                                   ImapProviderConfig]:
    imap = FakeImap(**{k: changes.pop(k) for k in ("capabilities",) if k in changes})
    imap.add_account(USER, "app-password")
    fields: dict[str, Any] = {"provider_id": "imap-1", "tenant": "t", "mailbox": USER,
                              "host": "imap.example.com", "password": SecretStr("app-password")}
    fields.update(changes)
    config = ImapProviderConfig(**fields)
    imap.create_folder(USER, config.folder)
    store, publisher = InMemoryStore(), InMemoryPublisher()
    store.save_provider(config)
    processor = Processor(
        store, publisher, clock=FakeClock(), sleep=lambda s: None,
        adapter_factory=lambda c, **kw: ImapAdapter(
            c, client_factory=imap.client_factory, limiter=ConnectionLimiter(), **kw),
    )
    sync(store, processor)  # the baseline
    return imap, store, publisher, processor, config


def sync(store: InMemoryStore, processor: Processor) -> None:
    store.enqueue_job(Job(kind="sync", provider_id="imap-1", payload={}, unique_key="sync:imap-1",
                          available_at=processor.clock()))
    processor.run_pending()


def subjects(publisher: InMemoryPublisher) -> Counter[str]:
    return Counter(e.email_data.subject for e in publisher.events
                   if isinstance(e, InboundEmailReceived))


def test_catch_up_delivers_each_new_message_once_and_never_marks_it_read() -> None:
    imap, store, publisher, processor, _ = setup()
    imap.deliver(USER, make_mail("one"))
    imap.deliver(USER, make_mail("two"))
    sync(store, processor)
    sync(store, processor)  # nothing new: nothing more
    assert subjects(publisher) == Counter({"one": 1, "two": 1})
    assert imap.flags(USER, "INBOX", 1) == set()


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"processed_strategy": "seen"}, lambda imap: imap.flags(USER, "INBOX", 1) == {b"\\Seen"}),
        ({"processed_strategy": "keyword"},
         lambda imap: imap.flags(USER, "INBOX", 1) == {b"$MailParityProcessed"}),
        ({"processed_strategy": "move", "processed_folder": "Done"},
         lambda imap: imap.uids(USER) == [] and imap.uids(USER, "Done") == [1]),
        ({"processed_strategy": "move", "processed_folder": "Done",
          "capabilities": (b"IMAP4REV1", b"IDLE", b"UIDPLUS")},
         lambda imap: imap.uids(USER) == [] and imap.uids(USER, "Done") == [1]),
    ],
    ids=["seen", "keyword", "move", "copy-expunge"],
)
def test_processed_strategies(changes: dict[str, Any], check: Any) -> None:
    imap, store, publisher, processor, _ = setup(**changes)
    imap.deliver(USER, make_mail("mark me"))
    sync(store, processor)
    assert subjects(publisher) == Counter({"mark me": 1})
    assert check(imap)


def test_uidvalidity_change_is_resynced_without_duplicates() -> None:
    imap, store, publisher, processor, _ = setup(folder="Support")
    mails = [make_mail(f"m{n}", f"<m{n}@example.com>") for n in range(3)]
    for raw in mails[:2]:
        imap.deliver(USER, raw, folder="Support")
    sync(store, processor)
    imap.recreate_folder(USER, "Support")
    for raw in mails:
        imap.deliver(USER, raw, folder="Support")
    sync(store, processor)
    assert subjects(publisher) == Counter({"m0": 1, "m1": 1, "m2": 1})


def test_wrong_password_is_one_auth_failed_event() -> None:
    _, store, publisher, processor, _ = setup()
    store.update_provider("imap-1", {"password": SecretStr("wrong"), "imap_cursor": None})
    sync(store, processor)
    sync(store, processor)
    failures = [e for e in publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert len(failures) == 1
    assert store.get_provider("imap-1").needs_consent  # type: ignore[union-attr]


def test_listener_turns_idle_exists_into_a_delivered_event() -> None:
    imap, store, publisher, processor, _ = setup()
    stop = threading.Event()
    listener = ImapListener(store, stop_event=stop, client_factory=imap.client_factory,
                            clock=processor.clock,
                            check_interval=0.05, refresh_interval=0.05,
                            limiter=ConnectionLimiter())
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: bool(listener.watching()))
        imap.deliver(USER, make_mail("pushed"))

        def delivered() -> bool:
            processor.run_pending()
            return bool(subjects(publisher))

        assert wait_for(delivered)
    finally:
        stop.set()
        thread.join(10)
    assert subjects(publisher) == Counter({"pushed": 1})
