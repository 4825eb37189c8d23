"""The generic push-listener and CLI-connect hooks of the provider seam.

A provider whose spec names a ``listener`` is run by ``ListenerGroup`` (``mailparity listen``,
``Worker(listen=True)``); one whose spec has a ``cli_connect`` hook gets ``mailparity connect
<key>``. A throwaway provider registered here proves both without naming a real provider.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from mailparity import providers
from mailparity.cli import ConnectContext, main
from mailparity.listeners import ListenerGroup
from mailparity.models import Job, ProviderConfigBase
from mailparity.providers.base import ProviderSpec, PushListener
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.worker import Worker


class HookConfig(ProviderConfigBase):
    provider: Literal["hooktest"] = "hooktest"
    secret_word: str = ""


class HookListener:
    """Enqueues one sync job per stored mailbox of its provider, then waits for the stop."""

    started: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, store: Any, *, stop_event: threading.Event, **options: Any) -> None:
        assert callable(options["clock"])
        self.store = store
        self.stop_event = stop_event
        HookListener.started.append({k: v for k, v in options.items() if k != "clock"})

    def run(self) -> None:
        for config in self.store.list_providers():
            if config.provider == "hooktest":
                self.store.enqueue_job(
                    Job(kind="sync", provider_id=config.provider_id, payload={"reason": "hook"},
                        unique_key=f"sync:{config.provider_id}")
                )
        self.stop_event.wait(30)


class HookConnect:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mailbox", required=True)
        parser.add_argument("--tenant", default="default")
        parser.add_argument("--id")
        parser.add_argument("--word", default="")

    @staticmethod
    def run(args: argparse.Namespace, ctx: ConnectContext) -> int:
        if args.word == "bad":
            ctx.fail("the word is bad")
        return ctx.save("hooktest", args.mailbox, {"secret_word": args.word})


@pytest.fixture
def hook_provider() -> Iterator[ProviderSpec]:
    spec = ProviderSpec(
        key="hooktest",
        config_model=HookConfig,
        adapter="tests.fake_adapter:FakeAdapter",
        listener=HookListener,
        cli_connect=HookConnect,
    )
    providers.register(spec, replace=True)
    HookListener.started.clear()
    yield spec
    providers.unregister("hooktest")


def test_listener_group_runs_every_listener_and_stops_them(hook_provider: ProviderSpec) -> None:
    store = InMemoryStore()
    store.save_provider(HookConfig(provider_id="h1", tenant="t", mailbox="a@example.com"))
    group = ListenerGroup(store, idle_timeout=5.0)
    assert group
    assert isinstance(group.listeners[0], PushListener)
    group.start()
    done = threading.Event()
    for _ in range(200):
        if store.count_jobs(status="pending"):
            done.set()
            break
        threading.Event().wait(0.01)
    group.stop()
    assert done.is_set()
    assert HookListener.started == [{"idle_timeout": 5.0}]
    assert [job.unique_key for job in store.list_jobs(status="pending")] == ["sync:h1"]


def test_listener_group_is_empty_without_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailparity import listeners

    without = [spec for spec in providers.specs() if spec.listener is None]
    monkeypatch.setattr(listeners, "specs", lambda: without)
    assert not ListenerGroup(InMemoryStore())


def test_worker_runs_the_listeners_when_asked(hook_provider: ProviderSpec) -> None:
    store = InMemoryStore()
    stop = threading.Event()
    worker = Worker(store, publisher=InMemoryPublisher(), stop_event=stop, listen=True,
                    listener_options={"idle_timeout": 1.0}, poll_interval=0.01)
    stop.set()  # the listeners start, see the stop, and are joined on the way out
    worker.run()
    assert HookListener.started == [{"idle_timeout": 1.0}]


def test_worker_does_not_listen_unless_asked(hook_provider: ProviderSpec) -> None:
    stop = threading.Event()
    stop.set()
    Worker(InMemoryStore(), publisher=InMemoryPublisher(), stop_event=stop).run()
    assert HookListener.started == []


def test_cli_connect_hook_saves_and_reconnects(hook_provider: ProviderSpec, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "s.sqlite3")
    events = str(tmp_path / "events.jsonl")
    assert main(["--store", db, "--events", events, "connect", "hooktest", "--mailbox",
                 "a@example.com", "--word", "one"]) == 0
    assert main(["--store", db, "--events", events, "connect", "hooktest", "--mailbox",
                 "a@example.com", "--word", "two"]) == 0
    out = capsys.readouterr().out
    assert "connected a@example.com" in out
    assert "reconnected a@example.com" in out
    [config] = SqliteStore(db).list_providers()
    assert isinstance(config, HookConfig)
    assert config.secret_word == "two"
    assert main(["--store", db, "--events", events, "connect", "hooktest", "--mailbox",
                 "b@example.com", "--word", "bad"]) == 2
    assert "the word is bad" in capsys.readouterr().err
