"""Maintenance: the renewal sweep (fake adapters, and the real Graph adapter over ``responses``),
idempotency across objects, threads and processes, auth failures, silence detection, lifecycle and
sync jobs through ``run_once``, and ``mailparity maintain``. No network, no real sleeps.

The provider-generic tests (those taking ``provider_kind``) run over Microsoft Graph and over the
third, test-only provider of ``third_provider.py``, which maintenance knows only through the
registry. Provider-specific on purpose: the renewal-window tests (Graph's and Gmail's own rules
and settings; the third provider's rule is checked in ``test_provider_seam.py``), the tests of
the real Graph adapter over ``responses``, the two-process test (forks; one provider shows the
cross-process lock), silence detection and ``sync_all``'s catch-up on Gmail configs beside a
subscribing one, and ``mailparity maintain`` against Graph over ``responses``."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import responses
from pydantic import SecretStr

from fake_adapter import FakeGraphAdapter, FakeMailbox
from mailparity.cli import main
from mailparity.errors import AuthExpiredError, ProviderUnavailableError
from mailparity.maintenance import LAST_PUSH_META, LAST_SYNC_META, Maintenance
from mailparity.models import (
    GRAPH_MAX_SUBSCRIPTION_MINUTES,
    EmailProviderAuthFailed,
    GmailProviderConfig,
    InboundEmailReceived,
    Job,
    MicrosoftProviderConfig,
    OAuthTokens,
    WebhookSubscription,
)
from mailparity.providers import spec_for
from mailparity.providers.graph.messages import parse_graph_datetime
from mailparity.publishers import InMemoryPublisher, JsonlFilePublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from third_provider import FakeProviderConfig, make_config

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
SUBS = f"{GRAPH}/subscriptions"
ACCESS = "at-SECRET-maint-0001"
REFRESH = "rt-SECRET-maint-0001"
CLIENT_SECRET = "cs-SECRET-maint-0001"
STATE = "state-SECRET-maint-0001"

AnyConfig = MicrosoftProviderConfig | GmailProviderConfig


# ---------------------------------------------------------------------------- helpers


def graph_config(pid: str, **overrides: Any) -> MicrosoftProviderConfig:
    data: dict[str, Any] = {
        "provider_id": pid,
        "tenant": "t1",
        "mailbox": f"{pid}@contoso.com",
        "client_id": "client-1",
        "client_secret": SecretStr(CLIENT_SECRET),
        "webhook_notification_url": "https://hooks.example.com/graph",
        "webhook_verification_token": SecretStr(STATE),
    }
    data.update(overrides)
    return MicrosoftProviderConfig(**data)


def sub_config(
    kind: str,
    pid: str,
    *,
    subscription: str | None = None,
    expires: datetime | None = None,
    **overrides: Any,
) -> Any:
    """A subscribing provider's config of ``kind`` (Graph, or the third, test-only provider of
    ``third_provider.py``): the subscription id and expiry land in that provider's own fields."""
    if kind == "microsoft":
        return graph_config(pid, webhook_subscription_id=subscription,
                            webhook_expires_at=expires, **overrides)
    return make_config(kind, pid, subscription_id=subscription, expires_at=expires,
                       client_id="client-1", client_secret=SecretStr(CLIENT_SECRET), **overrides)


def subscription_of(config: Any) -> str | None:
    """The stored subscription id, whatever the provider (asked of its spec)."""
    return spec_for(config).subscription_id(config)


def gmail_config(pid: str, **overrides: Any) -> GmailProviderConfig:
    data: dict[str, Any] = {
        "provider_id": pid,
        "tenant": "t1",
        "mailbox": f"{pid}@example.com",
        "project_id": "proj",
        "pubsub_topic_name": "mail",
        "history_id": 100,
    }
    data.update(overrides)
    return GmailProviderConfig(**data)


def tokens(now: datetime, *, valid_for: float = 3600) -> OAuthTokens:
    return OAuthTokens(
        access_token=SecretStr(ACCESS),
        refresh_token=SecretStr(REFRESH),
        expires_at=now + timedelta(seconds=valid_for),
    )


class PersistingAdapter(FakeGraphAdapter):
    """The fake adapter, persisting id / expiry like the real adapters do (the sweep's re-check
    after taking the lock reads them), and calling ``box.on_get`` with the call name as a hook."""

    def _hook(self, call: str) -> None:
        hook = self.box.on_get
        if hook is not None:
            hook(call)

    def register_webhook_subscription(self) -> WebhookSubscription:
        self._hook("register")
        self.box.hit("register")
        return self._save(f"sub-{self.box.count('register')}")

    def renew_webhook_subscription(self) -> WebhookSubscription:
        self._hook("renew")
        self.box.hit("renew")
        return self._save(subscription_of(self.config))

    def _save(self, sub_id: str | None) -> WebhookSubscription:
        now = self.clock()
        if isinstance(self.config, FakeProviderConfig):
            expires = now + timedelta(days=2)
            self.save_config_changes({"subscription": sub_id, "subscription_expires_at": expires})
            return WebhookSubscription(id=sub_id, expires_at=expires)
        if isinstance(self.config, MicrosoftProviderConfig):
            expires = now + timedelta(minutes=4220)
            self.save_config_changes(
                {"webhook_subscription_id": sub_id, "webhook_expires_at": expires}
            )
            return WebhookSubscription(id=sub_id, expires_at=expires)
        expires = now + timedelta(days=7)
        self.save_config_changes({"watch_expiration": expires})
        topic = "projects/proj/topics/mail"
        return WebhookSubscription(id=None, expires_at=expires, resource=topic)


class Factory:
    """``adapter_factory``: one FakeMailbox per provider id, PersistingAdapter for all."""

    def __init__(self, *boxes: FakeMailbox) -> None:
        self.boxes = {box.config.provider_id: box for box in boxes}

    def add(self, config: AnyConfig) -> FakeMailbox:
        box = FakeMailbox(config)
        self.boxes[config.provider_id] = box
        return box

    def __call__(self, config: AnyConfig, **kwargs: Any) -> PersistingAdapter:
        box = self.boxes[config.provider_id]
        box.adapters_built += 1
        return PersistingAdapter(config, mailbox=box, **kwargs)


STORES: dict[str, Callable[[Path], Any]] = {
    "memory": lambda tmp: InMemoryStore(),
    "sqlite": lambda tmp: SqliteStore(tmp / "maint.sqlite3"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = STORES[request.param](tmp_path)
    yield made
    close = getattr(made, "close", None)
    if callable(close):
        close()


class Env:
    def __init__(self, store: Any, clock: Any) -> None:
        self.store = store
        self.clock = clock
        self.publisher = InMemoryPublisher()
        self.factory = Factory()

    def add(self, config: AnyConfig, *, with_tokens: bool = True) -> FakeMailbox:
        self.store.save_provider(config)
        if with_tokens:
            self.store.save_tokens(config.provider_id, tokens(self.clock()))
        return self.factory.add(config)

    def maintenance(self, **kwargs: Any) -> Maintenance:
        return Maintenance(
            self.store, self.publisher, clock=self.clock, sleep=self.clock.sleep,
            adapter_factory=self.factory, **kwargs,
        )

    def jobs(self, kind: str = "sync", status: str = "pending") -> list[Job]:
        return [j for j in self.store.list_jobs(status=status) if j.kind == kind]


@pytest.fixture
def env(store: Any, clock: Any) -> Env:
    return Env(store, clock)


# ---------------------------------------------------------------------------- renewal sweep


def test_sweep_renews_what_expires_within_the_window_and_creates_what_is_missing(
    env: Env,
) -> None:
    now = env.clock()
    soon = env.add(graph_config("ms-soon", webhook_subscription_id="s-soon",
                                webhook_expires_at=now + timedelta(hours=10)))
    later = env.add(graph_config("ms-later", webhook_subscription_id="s-later",
                                 webhook_expires_at=now + timedelta(hours=50)))
    missing = env.add(graph_config("ms-missing"))
    no_url = env.add(graph_config("ms-nourl", webhook_notification_url=None))
    g_old = env.add(gmail_config("g-old", watch_expiration=now + timedelta(days=5)))
    g_fresh = env.add(gmail_config("g-fresh", watch_expiration=now + timedelta(days=6, hours=20)))
    g_missing = env.add(gmail_config("g-missing"))
    g_notopic = env.add(gmail_config("g-notopic", pubsub_topic_name=None))

    report = env.maintenance().renew_subscriptions()

    assert sorted(report.renewed) == ["g-old", "ms-soon"]
    assert sorted(report.created) == ["g-missing", "ms-missing"]
    assert sorted(report.skipped) == ["g-fresh", "g-notopic", "ms-later", "ms-nourl"]
    assert report.failed == {}
    assert (soon.count("renew"), soon.count("register")) == (1, 0)
    assert (g_old.count("renew"), g_old.count("register")) == (1, 0)
    assert (missing.count("register"), g_missing.count("register")) == (1, 1)
    for box in (later, no_url, g_fresh, g_notopic):
        assert box.count("renew") + box.count("register") == 0
        assert box.adapters_built == 0  # not even an adapter for providers left alone
    renewed = env.store.get_provider("ms-soon")
    assert renewed.webhook_expires_at == now + timedelta(minutes=4220)
    # New subscriptions cannot see what arrived before them: each gets a catch-up sync.
    assert sorted(report.syncs_enqueued) == ["g-missing", "ms-missing"]
    assert sorted(j.provider_id for j in env.jobs()) == ["g-missing", "ms-missing"]
    # Everything is fresh now: a second sweep does nothing.
    again = env.maintenance().renew_subscriptions()
    assert again.renewed == again.created == []
    assert soon.count("renew") == 1
    assert missing.count("register") == 1


def test_window_boundaries_are_configurable(env: Env) -> None:
    now = env.clock()
    box = env.add(graph_config("ms", webhook_subscription_id="s1",
                               webhook_expires_at=now + timedelta(hours=40)))
    gbox = env.add(gmail_config("g", watch_expiration=now + timedelta(days=6, hours=12)))
    # Graph: 40 h left is outside the default 36 h window; Gmail: the watch is 12 h old.
    assert env.maintenance().renew_subscriptions().renewed == []
    report = env.maintenance(
        graph_renew_before=timedelta(hours=41), gmail_renew_after=timedelta(hours=12)
    ).renew_subscriptions()
    assert sorted(report.renewed) == ["g", "ms"]
    assert box.count("renew") == gbox.count("renew") == 1


def test_paused_and_consent_needing_providers_are_left_alone(env: Env, provider_kind: str) -> None:
    paused = env.add(sub_config(provider_kind, "paused", active=False))
    consent = env.add(gmail_config("consent", needs_consent=True))
    report = env.maintenance().run_once()
    assert sorted(report.skipped) == ["consent", "paused"]
    assert paused.count("register") == consent.count("register") == 0
    assert report.syncs_enqueued == []


def test_expired_subscription_is_renewed_and_caught_up(env: Env, provider_kind: str) -> None:
    now = env.clock()
    box = env.add(sub_config(provider_kind, "ms", subscription="s1",
                             expires=now - timedelta(hours=2)))
    report = env.maintenance().renew_subscriptions()
    assert report.renewed == ["ms"]
    assert box.count("renew") == 1
    assert report.syncs_enqueued == ["ms"]  # pushes stopped while it was expired
    assert [j.payload["reason"] for j in env.jobs()] == ["subscription had expired"]


def test_naive_stored_expiry_is_taken_as_utc(clock: Any) -> None:
    env = Env(InMemoryStore(), clock)
    naive = (clock() + timedelta(hours=1)).replace(tzinfo=None)
    box = env.add(graph_config("ms", webhook_subscription_id="s1", webhook_expires_at=naive))
    gbox = env.add(gmail_config("g", watch_expiration=naive))
    report = env.maintenance().renew_subscriptions()
    assert sorted(report.renewed) == ["g", "ms"]
    assert box.count("renew") == gbox.count("renew") == 1


def test_a_failing_provider_does_not_stop_the_sweep(env: Env, provider_kind: str) -> None:
    now = env.clock()
    bad = env.add(sub_config(provider_kind, "a-bad", subscription="s1",
                             expires=now + timedelta(hours=1)))
    odd = env.add(sub_config(provider_kind, "b-odd", subscription="s2",
                             expires=now + timedelta(hours=1)))
    good = env.add(sub_config(provider_kind, "c-good", subscription="s3",
                              expires=now + timedelta(hours=1)))
    bad.fail("renew", "*", ProviderUnavailableError("Graph is down", status=503))
    odd.fail("renew", "*", RuntimeError(f"boom with {ACCESS}"))
    report = env.maintenance().renew_subscriptions()
    assert report.renewed == ["c-good"]
    assert good.count("renew") == 1
    assert "Graph is down" in report.failed["a-bad"]
    assert report.failed["b-odd"] == "unexpected error: RuntimeError"  # no foreign text
    assert "failed=2" in report.summary()
    # The locks were released: the next sweep retries the failed ones.
    again = env.maintenance().renew_subscriptions()
    assert sorted(again.renewed) == ["a-bad", "b-odd"]


# ---------------------------------------------------------------------------- auth failures


def test_auth_failure_marks_needs_consent_and_publishes_one_event(
    env: Env, provider_kind: str
) -> None:
    now = env.clock()
    box = env.add(sub_config(provider_kind, "ms", subscription="s1",
                             expires=now + timedelta(hours=1)))
    box.fail_always("renew", "*", AuthExpiredError("grant revoked", code="invalid_grant"))
    env.store.set_meta("ms", LAST_PUSH_META, now.isoformat())

    report = env.maintenance().run_once()

    assert "grant revoked" in report.failed["ms"]
    saved = env.store.get_provider("ms")
    assert saved.needs_consent is True
    assert saved.auth_error_code == "invalid_grant"
    events = [e for e in env.publisher.events if isinstance(e, EmailProviderAuthFailed)]
    assert len(events) == 1
    assert (events[0].provider_id, events[0].error_code, events[0].mailbox) == (
        "ms", "invalid_grant", "ms@contoso.com")
    # Later sweeps leave it alone and publish nothing more.
    env.clock.sleep(3600)
    later = env.maintenance().run_once()
    assert "ms" in later.skipped
    assert box.count("renew") == 1
    assert len(env.publisher.events) == 1


def test_auth_failure_of_the_real_graph_adapter(store: Any, clock: Any) -> None:
    """Expired access token, and Entra refuses the refresh token (AADSTS700082)."""
    cfg = graph_config("ms", webhook_subscription_id="s1",
                       webhook_expires_at=clock() + timedelta(hours=1))
    store.save_provider(cfg)
    store.save_tokens("ms", tokens(clock(), valid_for=-60))
    publisher = InMemoryPublisher()
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{LOGIN}/common/v2.0/.well-known/openid-configuration",
            json={
                "authorization_endpoint": f"{LOGIN}/common/oauth2/v2.0/authorize",
                "token_endpoint": f"{LOGIN}/common/oauth2/v2.0/token",
                "issuer": f"{LOGIN}/{{tenantid}}/v2.0",
            },
        )
        rsps.post(
            f"{LOGIN}/common/oauth2/v2.0/token", status=400,
            json={"error": "invalid_grant", "error_codes": [700082],
                  "error_description": "AADSTS700082: The refresh token has expired."},
        )
        report = Maintenance(store, publisher, clock=clock, sleep=clock.sleep).run_once()
        assert not any(c.request.url.startswith(GRAPH) for c in rsps.calls)
    assert "ms" in report.failed
    saved = store.get_provider("ms")
    assert saved.needs_consent
    assert saved.auth_error_code == "AADSTS700082"
    assert [e.event_type for e in publisher.events] == ["EMAIL_PROVIDER_AUTH_FAILED"]
    dumped = json.dumps([e.model_dump(mode="json") for e in publisher.events])
    for secret in (ACCESS, REFRESH, CLIENT_SECRET, STATE):
        assert secret not in dumped
        assert secret not in json.dumps(report.failed)


# ---------------------------------------------------------------------------- real Graph adapter


def _graph_env(store: Any, clock: Any, **overrides: Any) -> Maintenance:
    # The folder already has its delta baseline (registering would take one first).
    overrides.setdefault(
        "delta_links", {"inbox": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=t0"}
    )
    store.save_provider(graph_config("ms", **overrides))
    store.save_tokens("ms", tokens(clock()))
    return Maintenance(store, InMemoryPublisher(), clock=clock, sleep=clock.sleep)


def test_real_graph_renewal_never_asks_more_than_the_cap(store: Any, clock: Any) -> None:
    maintenance = _graph_env(store, clock, webhook_subscription_id="sub-1",
                             webhook_expires_at=clock() + timedelta(hours=3),
                             subscription_lifetime_minutes=100_000)
    granted = (clock() + timedelta(minutes=4200)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    with responses.RequestsMock() as rsps:
        rsps.patch(f"{SUBS}/sub-1", json={"id": "sub-1", "expirationDateTime": granted})
        report = maintenance.renew_subscriptions()
        body = json.loads(rsps.calls[0].request.body)
    assert report.renewed == ["ms"]
    asked = parse_graph_datetime(body["expirationDateTime"])
    assert asked is not None
    assert asked <= clock() + timedelta(minutes=GRAPH_MAX_SUBSCRIPTION_MINUTES)
    assert asked >= clock() + timedelta(minutes=4000)  # but close to it: few renewals
    assert store.get_provider("ms").webhook_expires_at == parse_graph_datetime(granted)


def test_real_graph_create_never_asks_more_than_the_cap(store: Any, clock: Any) -> None:
    maintenance = _graph_env(store, clock, subscription_lifetime_minutes=100_000)
    with responses.RequestsMock() as rsps:
        rsps.post(SUBS, status=201, json={
            "id": "sub-new", "expirationDateTime": "2026-01-03T22:00:00Z",
            "resource": "me/mailFolders('inbox')/messages",
        })
        report = maintenance.renew_subscriptions()
        body = json.loads(rsps.calls[0].request.body)
    assert report.created == ["ms"]
    assert report.syncs_enqueued == ["ms"]
    asked = parse_graph_datetime(body["expirationDateTime"])
    assert asked is not None
    assert asked <= clock() + timedelta(minutes=GRAPH_MAX_SUBSCRIPTION_MINUTES)
    assert body["clientState"] == STATE
    assert store.get_provider("ms").webhook_subscription_id == "sub-new"


def test_real_graph_recreates_on_404_and_catches_up(store: Any, clock: Any) -> None:
    maintenance = _graph_env(store, clock, webhook_subscription_id="sub-gone",
                             webhook_expires_at=clock() + timedelta(hours=2))
    with responses.RequestsMock() as rsps:
        rsps.patch(f"{SUBS}/sub-gone", status=404, json={
            "error": {"code": "ResourceNotFound", "message": "The object was not found."}})
        rsps.post(SUBS, status=201, json={
            "id": "sub-fresh", "expirationDateTime": "2026-01-03T22:00:00Z"})
        report = maintenance.renew_subscriptions()
        assert [c.request.method for c in rsps.calls] == ["PATCH", "POST"]
    assert report.created == ["ms"]
    assert report.renewed == []
    saved = store.get_provider("ms")
    assert saved.webhook_subscription_id == "sub-fresh"
    assert store.find_provider_by_subscription("sub-fresh").provider_id == "ms"
    # Notifications were lost while the subscription was gone: a catch-up sync is queued.
    assert report.syncs_enqueued == ["ms"]
    assert [j.payload["reason"] for j in store.list_jobs(status="pending")] == [
        "subscription recreated"]


def test_real_graph_validation_failure_is_reported_not_raised(store: Any, clock: Any) -> None:
    maintenance = _graph_env(store, clock)
    with responses.RequestsMock() as rsps:
        rsps.post(SUBS, status=400, json={"error": {
            "code": "InvalidRequest", "message": "Subscription validation request failed."}})
        report = maintenance.renew_subscriptions()
    assert "validation" in report.failed["ms"]
    assert store.get_provider("ms").needs_consent is False
    assert report.syncs_enqueued == []


# ---------------------------------------------------------------------------- idempotency


def _due_env(env: Env, kind: str) -> list[FakeMailbox]:
    now = env.clock()
    return [
        env.add(sub_config(kind, "ms-1", subscription="s1", expires=now + timedelta(hours=1))),
        env.add(sub_config(kind, "ms-2")),
        env.add(gmail_config("g-1", watch_expiration=now + timedelta(days=2))),
        env.add(gmail_config("g-2")),
    ]


def _calls(box: FakeMailbox) -> int:
    return box.count("renew") + box.count("register")


def test_two_maintenance_objects_renew_each_provider_once(env: Env, provider_kind: str) -> None:
    boxes = _due_env(env, provider_kind)
    first, second = env.maintenance(), env.maintenance()
    assert first.owner != second.owner
    r1 = first.renew_subscriptions()
    r2 = second.renew_subscriptions()
    assert [_calls(b) for b in boxes] == [1, 1, 1, 1]
    assert len(r1.renewed + r1.created) == 4
    assert r2.renewed == r2.created == []


def test_sweep_skips_a_provider_whose_lock_another_holds(env: Env, provider_kind: str) -> None:
    boxes = _due_env(env, provider_kind)
    now = env.clock()
    assert env.store.acquire_lock("renew:ms-1", "someone-else", until=now + timedelta(minutes=5),
                                  now=now)
    report = env.maintenance().renew_subscriptions()
    assert "ms-1" in report.skipped
    assert _calls(boxes[0]) == 0
    # The holder died: its lease lapses and the next sweep renews.
    env.clock.sleep(601)
    assert env.maintenance().renew_subscriptions().renewed == ["ms-1"]


def test_concurrent_threads_renew_each_provider_once(env: Env, provider_kind: str) -> None:
    boxes = _due_env(env, provider_kind)
    sweepers = [env.maintenance() for _ in range(6)]
    barrier = threading.Barrier(len(sweepers))
    errors: list[BaseException] = []

    def sweep(m: Maintenance) -> None:
        try:
            barrier.wait(timeout=10)
            m.renew_subscriptions()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(m,)) for m in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert [_calls(b) for b in boxes] == [1, 1, 1, 1]
    assert len(env.jobs()) == 2  # one sync per created subscription, not one per thread


def test_overlapping_threads_renew_once(env: Env, provider_kind: str) -> None:
    """One sweeper is inside renew while the other sweeps: the second must not renew."""
    now = env.clock()
    box = env.add(sub_config(provider_kind, "ms", subscription="s1",
                             expires=now + timedelta(hours=1)))
    inside, other_done = threading.Event(), threading.Event()

    def hold(call: str) -> None:
        inside.set()
        assert other_done.wait(timeout=10)

    box.on_get = hold
    first = threading.Thread(target=env.maintenance().renew_subscriptions)
    first.start()
    assert inside.wait(timeout=10)
    second = env.maintenance().renew_subscriptions()
    other_done.set()
    first.join(timeout=10)
    assert second.skipped == ["ms"]
    assert box.count("renew") == 1


def _process_sweep(path: str, log_path: str, start: Any, mine: Any, other: Any) -> None:
    """Child process: sweep one SqliteStore file; renew calls are appended to ``log_path``."""
    store = SqliteStore(path)
    config = store.get_provider("ms")
    assert config is not None
    box = FakeMailbox(config)

    def record(call: str) -> None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {call}\n")
        # Hold the lock until the other process has swept (it must skip, not renew).
        other.wait(timeout=10)

    box.on_get = record
    factory = Factory(box)
    start.wait(timeout=10)
    report = Maintenance(store, InMemoryPublisher(), adapter_factory=factory).renew_subscriptions()
    mine.set()
    store.close()
    os._exit(0 if report.failed == {} else 3)


def test_two_processes_on_one_sqlite_file_renew_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    log_path = str(tmp_path / "calls.log")
    with SqliteStore(path) as store:
        store.save_provider(graph_config(
            "ms", webhook_subscription_id="s1",
            webhook_expires_at=datetime.now(timezone.utc) + timedelta(hours=1)))
        store.save_tokens("ms", tokens(datetime.now(timezone.utc)))
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    done = [ctx.Event(), ctx.Event()]
    procs = [
        ctx.Process(target=_process_sweep, args=(path, log_path, start, done[i], done[1 - i]))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" renew")
    with SqliteStore(path) as store:
        saved = store.get_provider("ms")
        assert saved.webhook_expires_at > datetime.now(timezone.utc) + timedelta(hours=60)


# ---------------------------------------------------------------------------- silence detection


def test_silence_detection_enqueues_syncs_for_silent_mailboxes_only(env: Env) -> None:
    now = env.clock()
    for pid in ("recent", "silent", "never", "paused", "consent", "synced", "zulu"):
        cfg = gmail_config(pid, watch_expiration=now + timedelta(days=7),
                           active=pid != "paused", needs_consent=pid == "consent")
        env.add(cfg)
    env.store.set_meta("recent", LAST_PUSH_META, (now - timedelta(hours=1)).isoformat())
    env.store.set_meta("silent", LAST_PUSH_META, (now - timedelta(hours=7)).isoformat())
    env.store.set_meta("synced", LAST_PUSH_META, (now - timedelta(hours=9)).isoformat())
    env.store.set_meta("synced", LAST_SYNC_META, (now - timedelta(hours=2)).isoformat())
    env.store.set_meta("zulu", LAST_PUSH_META, "2025-12-31T23:00:00Z")  # "Z" form, 1 h ago
    env.store.set_meta("paused", LAST_PUSH_META, (now - timedelta(days=3)).isoformat())

    report = env.maintenance().detect_silence()

    assert sorted(report.syncs_enqueued) == ["never", "silent"]
    assert sorted(j.provider_id for j in env.jobs()) == ["never", "silent"]
    assert env.jobs()[0].payload["reason"] == "silence"
    # The catch-up counts as activity: an hour later nobody is silent...
    env.clock.sleep(3600)
    assert env.maintenance().detect_silence().syncs_enqueued == []
    # ...until the silence lasts again; a sync still pending is not enqueued twice.
    env.clock.sleep(6 * 3600)
    later = env.maintenance().detect_silence()
    assert sorted(later.syncs_enqueued) == ["recent", "synced", "zulu"]
    assert sorted(j.provider_id for j in env.jobs()) == [
        "never", "recent", "silent", "synced", "zulu"]


def test_silence_threshold_is_configurable(env: Env) -> None:
    now = env.clock()
    env.add(gmail_config("g", watch_expiration=now + timedelta(days=7)))
    env.store.set_meta("g", LAST_PUSH_META, (now - timedelta(minutes=20)).isoformat())
    assert env.maintenance().detect_silence().syncs_enqueued == []
    quick = env.maintenance(silence_after=timedelta(minutes=15))
    assert quick.detect_silence().syncs_enqueued == ["g"]


# ---------------------------------------------------------------------------- run_once and jobs


def test_run_once_runs_lifecycle_and_sync_jobs(env: Env, provider_kind: str) -> None:
    now = env.clock()
    box = env.add(sub_config(provider_kind, "ms", subscription="s1",
                             expires=now + timedelta(days=2)))
    env.store.set_meta("ms", LAST_PUSH_META, now.isoformat())
    box.add("m-1")
    box.changes = ["m-1"]
    box.next_cursor = 101
    env.store.enqueue_job(Job(kind="lifecycle", provider_id="ms", available_at=now,
                              payload={"event": "reauthorization_required",
                                       "subscription_id": "s1"}))

    report = env.maintenance().run_once()

    assert box.count("reauthorize") == 1
    assert box.count("fetch_changes") == 1  # the lifecycle event queued a catch-up, run too
    assert report.jobs_run == 2
    assert [e.email_data.id for e in env.publisher.events
            if isinstance(e, InboundEmailReceived)] == ["m-1"]
    assert box.cursor == 101
    assert env.store.count_jobs(status="pending") == 0


def test_run_once_handles_subscription_removed(env: Env, provider_kind: str) -> None:
    now = env.clock()
    box = env.add(sub_config(provider_kind, "ms", subscription="s1",
                             expires=now + timedelta(days=2)))
    env.store.set_meta("ms", LAST_PUSH_META, now.isoformat())
    env.store.enqueue_job(Job(kind="lifecycle", provider_id="ms", available_at=now,
                              payload={"event": "subscription_removed", "subscription_id": "s1"}))
    report = env.maintenance().run_once()
    assert box.count("register") == 1
    assert report.jobs_run == 2
    assert subscription_of(env.store.get_provider("ms")) == "sub-1"


def test_run_once_without_jobs_leaves_them_queued(env: Env) -> None:
    env.add(gmail_config("g", watch_expiration=env.clock() + timedelta(days=7)))
    report = env.maintenance().run_once(run_jobs=False)
    assert report.syncs_enqueued == ["g"]
    assert report.jobs_run == 0
    assert len(env.jobs()) == 1


def test_sync_all_skips_inactive(env: Env, provider_kind: str) -> None:
    env.add(gmail_config("a"))
    env.add(gmail_config("b", active=False))
    env.add(sub_config(provider_kind, "c", needs_consent=True))
    assert env.maintenance().sync_all().syncs_enqueued == ["a"]


# ---------------------------------------------------------------------------- mailparity maintain


def _cli_store(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "cli.sqlite3"
    with SqliteStore(path) as store:
        store.save_provider(graph_config("ms", webhook_notification_url=None))
        store.save_tokens("ms", tokens(datetime.now(timezone.utc)))
    return str(path), str(tmp_path / "events.jsonl")


def test_maintain_command_runs_a_pass_against_a_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, events = _cli_store(tmp_path)
    delta = f"{GRAPH}/me/mailFolders/inbox/messages/delta"
    link = f"{delta}?$deltatoken=tok-1"
    with responses.RequestsMock() as rsps:
        rsps.get(delta, json={"value": [], "@odata.deltaLink": link})
        code = main(["--store", path, "--events", events, "maintain"])
        assert len(rsps.calls) == 1
    out = capsys.readouterr().out
    assert code == 0
    assert "syncs=1" in out
    assert "jobs=1" in out
    assert "failed=0" in out
    with SqliteStore(path) as store:
        assert store.get_provider("ms").delta_links == {"inbox": link}  # baseline taken
        assert store.count_jobs(status="pending") == 0
    assert JsonlFilePublisher.read(events) == []


def test_maintain_command_in_a_subprocess(tmp_path: Path) -> None:
    path, events = _cli_store(tmp_path)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-m", "mailparity.cli", "--store", path, "--events", events,
         "maintain", "--no-jobs"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syncs=1" in result.stdout
    assert "jobs=0" in result.stdout
    with SqliteStore(path) as store:
        assert [j.kind for j in store.list_jobs(status="pending")] == ["sync"]


def test_maintain_loop_repeats_until_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, events = _cli_store(tmp_path)
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("mailparity.cli.time.sleep", fake_sleep)
    code = main(["--store", path, "--events", events, "maintain", "--loop", "--no-jobs",
                 "--interval", "30"])
    assert code == 130
    assert waits == [30.0, 30.0]
    assert capsys.readouterr().out.count("renewed=") == 2


# ---------------------------------------------------------------------------- subscription lost


def _down() -> ProviderUnavailableError:
    return ProviderUnavailableError("Graph is down", status=503)


def test_an_expired_subscription_that_cannot_be_recreated_is_lost_once(env: Env) -> None:
    now = env.clock()
    box = env.add(graph_config("ms", webhook_subscription_id="s1",
                               webhook_expires_at=now - timedelta(hours=1)))
    box.fail("renew", "*", _down(), _down())
    env.maintenance().renew_subscriptions()
    (lost,) = env.publisher.subscriptions_lost
    assert (lost.provider_id, lost.provider, lost.subscription_id) == ("ms", "microsoft", "s1")
    assert lost.expired_at == now - timedelta(hours=1)
    assert lost.error.startswith("ProviderUnavailableError: Graph is down")
    # The next failing sweep: the same occurrence, no second event.
    env.maintenance().renew_subscriptions()
    assert len(env.publisher.subscriptions_lost) == 1
    # Renewed again: the occurrence is over; a later loss is a new event with a new id.
    report = env.maintenance().renew_subscriptions()
    assert report.renewed == ["ms"]
    env.store.update_provider("ms", {"webhook_expires_at": env.clock() - timedelta(minutes=1)})
    box.fail("renew", "*", _down())
    env.maintenance().renew_subscriptions()
    first, second = env.publisher.subscriptions_lost
    assert first.event_id != second.event_id


def test_a_failed_renewal_of_a_live_subscription_is_not_a_loss(env: Env) -> None:
    now = env.clock()
    box = env.add(graph_config("ms", webhook_subscription_id="s1",
                               webhook_expires_at=now + timedelta(hours=2)))
    box.fail("renew", "*", _down())
    report = env.maintenance().renew_subscriptions()
    assert "ms" in report.failed
    assert env.publisher.subscriptions_lost == []


def test_a_watch_that_cannot_be_created_is_lost(env: Env) -> None:
    box = env.add(gmail_config("gm"))
    box.fail("register", "*", RuntimeError(f"boom with {ACCESS}"))
    env.maintenance().renew_subscriptions()
    (lost,) = env.publisher.subscriptions_lost
    assert (lost.provider, lost.subscription_id, lost.expired_at) == ("google", None, None)
    assert lost.error == "RuntimeError"  # a foreign exception's text is never published
    assert ACCESS not in lost.model_dump_json()


def test_a_failing_publisher_retries_the_lost_event_next_sweep(env: Env) -> None:
    box = env.add(gmail_config("gm"))
    box.fail("register", "*", _down(), _down())
    env.publisher.fail_next(1)
    env.maintenance().renew_subscriptions()
    assert env.publisher.subscriptions_lost == []
    env.maintenance().renew_subscriptions()
    assert len(env.publisher.subscriptions_lost) == 1
