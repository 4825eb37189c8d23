"""The IMAP provider against a real Dovecot (``scripts/services.sh`` starts it).

Listener (IDLE) and worker run on threads, as in ``mailparity listen --worker``; waits are
bounded waits for an outcome (an event, a job), never assertions on timing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from conftest import FakeClock
from imap_support import CuttingProxy, Dovecot, dovecot, make_mail, wait_for
from mailparity.models import EmailProviderAuthFailed, InboundEmailReceived
from mailparity.processing import Processor
from mailparity.providers import create_adapter
from mailparity.providers.imap.adapter import ImapAdapter
from mailparity.providers.imap.client import ConnectionLimiter
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.providers.imap.listener import ImapListener
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.worker import Worker

__all__ = ["dovecot"]  # the fixture, imported for pytest


def inbound(publisher: InMemoryPublisher) -> list[InboundEmailReceived]:
    return [e for e in publisher.events if isinstance(e, InboundEmailReceived)]


def subjects(publisher: InMemoryPublisher) -> Counter[str]:
    return Counter(e.email_data.subject for e in inbound(publisher))


class Running:
    """A listener and a worker on threads over one store (``mailparity listen --worker``)."""

    def __init__(self, store: InMemoryStore, publisher: InMemoryPublisher, **listener: Any):
        self.stop = threading.Event()
        options: dict[str, Any] = {"check_interval": 0.1, "refresh_interval": 0.1,
                                   "backoff_base": 0.01, "backoff_max": 0.05,
                                   "limiter": ConnectionLimiter(50)}
        options.update(listener)
        self.listener = ImapListener(store, stop_event=self.stop, **options)
        self.worker = Worker(store, publisher, stop_event=self.stop, poll_interval=0.02,
                             threads=2, backoff_base=0.01)
        self.threads = [threading.Thread(target=self.listener.run, daemon=True),
                        threading.Thread(target=self.worker.run, daemon=True)]
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        item.close()


def baseline(store: InMemoryStore, config: ImapProviderConfig) -> None:
    """Save the mailbox and take its cursor baseline (what is there now is not new mail)."""
    store.save_provider(config)
    adapter = create_adapter(config, store=store)
    assert isinstance(adapter, ImapAdapter)
    batch = adapter.fetch_changes()
    assert batch.baseline
    assert adapter.commit_cursor(batch)
    adapter.close()


def test_a_message_delivered_while_listening_is_one_event(
    dovecot: Dovecot, running: list[Running]
) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = dovecot.config()
    dovecot.deliver(config, make_mail("before baseline"))
    baseline(store, config)
    run = Running(store, publisher)
    running.append(run)
    # The connection's own catch-up job runs first (nothing new): then the push path is live.
    assert wait_for(
        lambda: bool(run.listener.watching()) and store.count_jobs(status="pending") == 0
    )
    dovecot.deliver(config, make_mail("pushed"))
    assert wait_for(lambda: len(inbound(publisher)) >= 1, timeout=10)
    wait_for(lambda: store.count_jobs(status="pending") == 0, timeout=2)
    assert subjects(publisher) == Counter({"pushed": 1})
    message = inbound(publisher)[0].email_data
    assert message.provider == "imap"
    assert message.mailbox == config.mailbox
    assert message.body.text.strip() == "hello"


def test_messages_delivered_while_down_are_caught_up(
    dovecot: Dovecot, running: list[Running]
) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = dovecot.config()
    baseline(store, config)
    dovecot.deliver(config, *(make_mail(f"offline {n}") for n in range(3)))
    running.append(Running(store, publisher))
    assert wait_for(lambda: len(inbound(publisher)) >= 3)
    assert subjects(publisher) == Counter({f"offline {n}": 1 for n in range(3)})
    stored = store.get_provider(config.provider_id)
    assert isinstance(stored, ImapProviderConfig)
    assert stored.imap_cursor is not None
    assert stored.imap_cursor["uid"] == 3


def test_connection_killed_mid_fetch_loses_and_duplicates_nothing(dovecot: Dovecot) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    clock = FakeClock()
    proxy = CuttingProxy(dovecot.host, dovecot.port, cuts=3)
    try:
        config = dovecot.config(port=proxy.port)
        baseline(store, config)
        dovecot.deliver(config, *(make_mail(f"cut {n}") for n in range(4)))
        processor = Processor(store, publisher, clock=clock, sleep=lambda s: None,
                              backoff_base=1.0)
        store.enqueue_job(_sync_job(config.provider_id, clock))
        for _ in range(20):
            processor.run_pending()
            if store.count_jobs(status="pending") == 0:
                break
            clock.sleep(300)
        assert proxy.cut_done == 3  # the cuts did happen, in the middle of message bodies
    finally:
        proxy.close()
    assert subjects(publisher) == Counter({f"cut {n}": 1 for n in range(4)})
    assert store.count_jobs(status="pending") == 0
    assert store.count_jobs(status="dead") == 0


def _sync_job(provider_id: str, clock: FakeClock) -> Any:
    from mailparity.models import Job

    return Job(kind="sync", provider_id=provider_id, payload={"reason": "test"},
               unique_key=f"sync:{provider_id}", available_at=clock())


def run_sync(store: InMemoryStore, publisher: InMemoryPublisher, config: ImapProviderConfig,
             clock: FakeClock | None = None) -> Processor:
    clock = clock or FakeClock()
    processor = Processor(store, publisher, clock=clock, sleep=lambda s: None)
    store.enqueue_job(_sync_job(config.provider_id, clock))
    for _ in range(10):
        processor.run_pending()
        if store.count_jobs(status="pending") == 0:
            break
        clock.sleep(600)
    return processor


def test_uidvalidity_change_duplicates_nothing(dovecot: Dovecot) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = dovecot.config(folder="Support")
    dovecot.deliver(config, make_mail("old", "<old@example.com>"))
    baseline(store, config)
    first = [make_mail(f"kept {n}", f"<kept-{n}@example.com>") for n in range(2)]
    dovecot.deliver(config, *first)
    run_sync(store, publisher, config)
    assert subjects(publisher) == Counter({"kept 0": 1, "kept 1": 1})
    before = store.get_provider(config.provider_id).imap_cursor  # type: ignore[union-attr]

    # The folder is deleted and recreated: new UIDVALIDITY, the same mail appended again.
    client = dovecot.client(config)
    client.delete_folder("Support")
    client.create_folder("Support")
    client.logout()
    dovecot.deliver(config, make_mail("old", "<old@example.com>"), *first,
                    make_mail("new", "<new@example.com>"))
    run_sync(store, publisher, config)
    after = store.get_provider(config.provider_id).imap_cursor  # type: ignore[union-attr]
    assert before is not None
    assert after is not None
    assert after["uidvalidity"] != before["uidvalidity"]
    # The resync read the four messages again; only the one never delivered is new. ("old"
    # predates the baseline: after a renumbering nothing tells it apart from new mail.)
    assert subjects(publisher) == Counter({"kept 0": 1, "kept 1": 1, "new": 1, "old": 1})


def test_wrong_password_is_one_auth_failed_event_and_no_retry_loop(
    dovecot: Dovecot, running: list[Running]
) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    attempts: list[str] = []

    def counting_factory(config: ImapProviderConfig) -> Any:
        import imapclient

        attempts.append(config.provider_id)
        return imapclient.IMAPClient(config.host, port=config.effective_port, ssl=False,
                                     timeout=20)

    config = dovecot.config(password=SecretStr("not the password"))
    store.save_provider(config)
    run = Running(store, publisher, client_factory=counting_factory)
    running.append(run)
    assert wait_for(lambda: any(isinstance(e, EmailProviderAuthFailed)
                                for e in publisher.events), timeout=20)
    stored = store.get_provider(config.provider_id)
    assert stored is not None
    assert stored.needs_consent
    # The listener tried once; the Processor's catch-up met the refusal once. Both stop there:
    # more refreshes of the listener and more worker polls try nothing more.
    seen = len(attempts)
    for _ in range(5):
        run.listener.refresh()
        run.worker.processor.run_pending()
    assert len(attempts) == seen
    assert seen == 1  # the processor's adapter signs in with the default factory
    failures = [e for e in publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert len(failures) == 1
    assert failures[0].error_code == "imap_login_failed"
    assert "not the password" not in failures[0].model_dump_json()
    assert inbound(publisher) == []

    # Reconnected (as `mailparity connect imap` does): listening resumes at once, and the job
    # parked while consent was missing does not hold back the new connection's pushes.
    store.update_provider(config.provider_id, {
        "password": SecretStr(dovecot.password), "needs_consent": False, "auth_error_code": None,
    })
    assert wait_for(lambda: _cursor(store, config) is not None)  # the first sync: a baseline
    dovecot.deliver(config, make_mail("after reconnect"))
    assert wait_for(lambda: len(inbound(publisher)) >= 1)
    assert subjects(publisher) == Counter({"after reconnect": 1})
    assert len([e for e in publisher.events if isinstance(e, EmailProviderAuthFailed)]) == 1


def _cursor(store: InMemoryStore, config: ImapProviderConfig) -> Any:
    stored = store.get_provider(config.provider_id)
    assert isinstance(stored, ImapProviderConfig)
    return stored.imap_cursor


def flags_of(dovecot: Dovecot, config: ImapProviderConfig, folder: str) -> list[tuple[bytes, ...]]:
    client = dovecot.client(config)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        flags = client.get_flags(uids).values() if uids else []
        return [tuple(f for f in v if f != b"\\Recent") for v in flags]
    finally:
        client.logout()


@pytest.mark.parametrize(
    ("strategy", "extra"),
    [("none", {}), ("seen", {}), ("keyword", {"processed_keyword": "$Handled"}),
     ("move", {"processed_folder": "Done"}), ("copy-expunge", {"processed_folder": "Done"})],
)
def test_processed_strategies(dovecot: Dovecot, strategy: str, extra: dict[str, Any]) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    without_move = strategy == "copy-expunge"
    config = dovecot.config(processed_strategy="move" if without_move else strategy, **extra)
    baseline(store, config)
    dovecot.deliver(config, make_mail("to mark"))
    client = dovecot.client(config)
    client.create_folder("Done")
    client.logout()
    if without_move:
        import imapclient

        class NoMove(imapclient.IMAPClient):  # type: ignore[misc]
            def has_capability(self, capability: str) -> bool:
                return capability.upper() != "MOVE" and super().has_capability(capability)

        def factory(cfg: ImapProviderConfig) -> Any:
            return NoMove(cfg.host, port=cfg.effective_port, ssl=False, timeout=20)

        processor = Processor(
            store, publisher, sleep=lambda s: None,
            adapter_factory=lambda c, **kw: ImapAdapter(c, client_factory=factory, **kw),
        )
        store.enqueue_job(_sync_job(config.provider_id, FakeClock()))
        processor.run_pending()
    else:
        run_sync(store, publisher, config)
    assert subjects(publisher) == Counter({"to mark": 1})
    inbox = flags_of(dovecot, config, "INBOX")
    if strategy == "none":
        assert inbox == [()]  # BODY.PEEK[]: reading never marked it read
    elif strategy == "seen":
        assert inbox == [(b"\\Seen",)]
    elif strategy == "keyword":
        assert inbox == [(b"$Handled",)]
    else:
        assert inbox == []
        assert flags_of(dovecot, config, "Done") == [()]


def test_idle_is_reissued_and_a_dropped_connection_reconnects(
    dovecot: Dovecot, running: list[Running]
) -> None:
    import imapclient

    store, publisher = InMemoryStore(), InMemoryPublisher()
    clients: list[Any] = []
    idles: list[int] = []

    class Counting(imapclient.IMAPClient):  # type: ignore[misc]
        def idle(self) -> Any:
            idles.append(1)
            return super().idle()

    def factory(cfg: ImapProviderConfig) -> Any:
        client = Counting(cfg.host, port=cfg.effective_port, ssl=False, timeout=20)
        clients.append(client)
        return client

    config = dovecot.config()
    baseline(store, config)
    run = Running(store, publisher, client_factory=factory, idle_timeout=0.2)
    running.append(run)
    assert wait_for(lambda: len(idles) >= 3)  # IDLE ended with DONE and issued again
    clients[0].socket().shutdown(2)  # the server side is gone: the watcher reconnects
    assert wait_for(lambda: len(clients) >= 2)
    dovecot.deliver(config, make_mail("after reconnect"))
    assert wait_for(lambda: len(inbound(publisher)) >= 1)
    assert subjects(publisher) == Counter({"after reconnect": 1})


def test_connection_test_tls_and_mailbox_mismatch(dovecot: Dovecot) -> None:
    store = InMemoryStore()
    tls = dovecot.config(security="ssl", port=dovecot.imaps_port, host="localhost",
                         ca_file=dovecot.ca_file)
    assert ImapAdapter(tls, store=store).test_connection().success
    starttls = dovecot.config(security="starttls", host="localhost", ca_file=dovecot.ca_file)
    assert ImapAdapter(starttls, store=store).test_connection().success
    unverified = dovecot.config(security="ssl", port=dovecot.imaps_port, host="localhost")
    result = ImapAdapter(unverified, store=store).test_connection()
    assert not result.success
    assert result.code == "tls_verification"
    other = dovecot.config(username="someone-else@example.com")
    result = ImapAdapter(other, store=store).test_connection()
    assert not result.success
    assert result.code == "mailbox_mismatch"
    wrong = dovecot.config(password=SecretStr("nope"))
    result = ImapAdapter(wrong, store=store).test_connection()
    assert not result.success
    assert result.code == "imap_login_failed"


def test_size_limit_delivers_the_headers_only(dovecot: Dovecot) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    config = dovecot.config(max_message_bytes=2048)
    baseline(store, config)
    dovecot.deliver(config, make_mail("big", size=10_000), make_mail("small"))
    run_sync(store, publisher, config)
    by_subject = {e.email_data.subject: e.email_data for e in inbound(publisher)}
    assert by_subject["big"].body.text == ""
    assert any("max_message_bytes" in d for d in by_subject["big"].defects)
    assert by_subject["small"].body.text.strip() == "hello"
    assert by_subject["small"].defects == []


def test_mailboxes_beyond_the_connection_bound_are_polled(
    dovecot: Dovecot, running: list[Running]
) -> None:
    store, publisher = InMemoryStore(), InMemoryPublisher()
    first, second = dovecot.config(provider_id="a-first"), dovecot.config(provider_id="b-second")
    baseline(store, first)
    baseline(store, second)
    limiter = ConnectionLimiter(1)
    run = Running(store, publisher, limiter=limiter, poll_interval=0.1)
    running.append(run)
    assert wait_for(lambda: len(run.listener.watching()) == 2)
    dovecot.deliver(first, make_mail("to first"))
    dovecot.deliver(second, make_mail("to second"))
    # One mailbox holds the server's only listener connection; the other is polled: both arrive.
    assert wait_for(lambda: len(inbound(publisher)) >= 2)
    assert subjects(publisher) == Counter({"to first": 1, "to second": 1})
    assert limiter.in_use(first.server_key()) <= 1
