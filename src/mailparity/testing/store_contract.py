"""The store contract suite: what every :class:`~mailparity.protocols.StateStore` must do.

Every store the library ships runs this suite; a host that writes its own store (Django ORM,
Redis, ...) runs the same one by subclassing :class:`StoreContract` with a ``store`` fixture that
yields a fresh, empty store::

    import pytest
    from mailparity.testing.store_contract import StoreContract

    class TestRedisStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = RedisStore(...)
            yield store
            store.close()

The semantics the suite checks are written once in :mod:`mailparity.stores.semantics` (lease
liveness, dedupe claim outcomes, validated config changes, the cursor compare-and-set), which a
store may use. Times are explicit (``now`` is passed in), so lease expiry is tested without
sleeping; the thread tests race real threads against one store.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from ..models import Job, OAuthTokens
from ..protocols import (
    CredentialStore,
    DedupeStore,
    JobStore,
    LockStore,
    MetaStore,
    ProviderRegistry,
    ProviderStore,
    PruneCutoffs,
    RetentionStore,
    StateStore,
)
from ..providers import get_spec, specs
from ..providers.base import ProviderTestKit
from ..providers.gmail.testing import sample_config as gmail_config
from ..providers.graph.testing import sample_config as graph_config

__all__ = ["StoreContract", "gmail_config", "graph_config", "provider_kits", "tokens"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def provider_kits() -> list[tuple[str, ProviderTestKit]]:
    """``(key, kit)`` of every registered provider whose spec has a testing kit, in registry
    order (``graph_config`` / ``gmail_config`` above are two of these kits' sample configs)."""
    kits = []
    for spec in specs():
        kit = spec.testing_kit()
        if kit is not None:
            kits.append((spec.key, kit))
    return kits


def tokens(access: str = "access-1", refresh: str | None = "refresh-1") -> OAuthTokens:
    return OAuthTokens(
        access_token=SecretStr(access),
        refresh_token=None if refresh is None else SecretStr(refresh),
        expires_at=datetime(2026, 1, 1, 13, 0, 0, 123456, tzinfo=timezone.utc),
        scope="Mail.Read offline_access",
    )


def job(job_id: str, available: float = 0, **overrides: Any) -> Job:
    values: dict[str, Any] = {
        "id": job_id,
        "kind": "graph_message",
        "provider_id": "ms-1",
        "payload": {"message_id": f"m-{job_id}", "nested": {"n": [1, 2]}},
        "available_at": at(available),
        "created_at": at(available),
    }
    values.update(overrides)
    return Job(**values)


def claim(store: Any, worker: str, now: float, lease: float = 60, **kwargs: Any) -> list[Job]:
    kwargs.setdefault("limit", 10)
    jobs: list[Job] = store.claim_jobs(
        worker, now=at(now), lease_until=at(now + lease), **kwargs
    )
    return jobs


def _run_threads(count: int, target: Any) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


#: The per-message meta prefixes the retention tests prune.
MESSAGE_PREFIXES = ("msg-dead:", "msg-failures:")


def cutoffs(seconds: float, *, meta_before: datetime | None = None) -> PruneCutoffs:
    """Cutoffs at ``at(seconds)`` for dedupe keys and jobs; meta only with ``meta_before``."""
    before = at(seconds)
    return PruneCutoffs(
        dedupe_before=before,
        done_jobs_before=before,
        dead_jobs_before=before,
        meta_before=meta_before or T0 - timedelta(days=3650),
        meta_prefixes=MESSAGE_PREFIXES,
    )




class StoreContract:
    """The contract suite as pytest tests; subclass it with a ``store`` fixture (see the module
    docstring). Every test gets a fresh, empty store."""

    @pytest.fixture
    def store(self) -> Any:
        """Override: yield a fresh, empty store of the class under test."""
        pytest.fail("define a `store` fixture on your StoreContract subclass")

    # ------------------------------------------------------------------------------ protocols


    def test_store_implements_every_protocol(self, store: Any) -> None:
        for protocol in (
            CredentialStore, ProviderStore, ProviderRegistry, DedupeStore, JobStore, LockStore,
            MetaStore, StateStore, RetentionStore,
        ):
            assert isinstance(store, protocol), protocol.__name__
        summary = store.jobs_summary()
        assert summary == {}


    # ------------------------------------------------------------------------------ tokens


    def test_tokens_roundtrip_keeps_secrets(self, store: Any) -> None:
        assert store.load_tokens("ms-1") is None
        store.save_tokens("ms-1", tokens())
        loaded = store.load_tokens("ms-1")
        assert loaded is not None
        assert loaded.access_token.get_secret_value() == "access-1"
        assert loaded.refresh_token is not None
        assert loaded.refresh_token.get_secret_value() == "refresh-1"
        assert loaded.expires_at == tokens().expires_at
        assert loaded.expires_at.tzinfo is not None
        assert loaded.scope == "Mail.Read offline_access"
        assert "access-1" not in repr(store)


    def test_tokens_are_replaced_and_kept_per_provider(self, store: Any) -> None:
        store.save_tokens("ms-1", tokens())
        store.save_tokens("g-1", tokens("g-access", None))
        store.save_tokens("ms-1", tokens("access-2", "refresh-2"))
        loaded = store.load_tokens("ms-1")
        assert loaded is not None
        assert loaded.access_token.get_secret_value() == "access-2"
        assert loaded.refresh_token is not None
        assert loaded.refresh_token.get_secret_value() == "refresh-2"
        other = store.load_tokens("g-1")
        assert other is not None
        assert other.refresh_token is None
        assert other.access_token.get_secret_value() == "g-access"


    def test_tokens_are_stored_as_copies(self, store: Any) -> None:
        original = tokens()
        store.save_tokens("ms-1", original)
        original.access_token = SecretStr("mutated")
        loaded = store.load_tokens("ms-1")
        assert loaded is not None
        assert loaded.access_token.get_secret_value() == "access-1"


    # ------------------------------------------------------------------------------ providers
    # Each registered provider with a testing kit (every built-in one) is checked with its kit's
    # sample config: a store keeps any provider's config, not only the ones it was written for.


    def test_every_providers_config_roundtrips(self, store: Any) -> None:
        kits = provider_kits()
        assert kits, "no registered provider has a testing kit"
        for key, kit in kits:
            config = kit.sample_config()
            store.save_provider(config)
            loaded = store.get_provider(config.provider_id)
            assert type(loaded) is type(config), key
            assert loaded == config, key
            assert loaded.provider == key
            for name in type(config).model_fields:
                original, kept = getattr(config, name), getattr(loaded, name)
                if isinstance(original, SecretStr):
                    assert isinstance(kept, SecretStr), (key, name)
                    assert kept.get_secret_value() == original.get_secret_value(), (key, name)
                elif isinstance(original, datetime):
                    # The same instant (a sample gives one in another zone than UTC), aware.
                    assert kept == original, (key, name)
                    assert kept.utcoffset() is not None, (key, name)
            spec = get_spec(key)
            if kit.cursor_values is not None and spec.cursor_field is not None:
                moved = kit.sample_config(**{spec.cursor_field: kit.cursor_values[1]})
                store.save_provider(moved)
                kept_cursor = getattr(store.get_provider(config.provider_id), spec.cursor_field)
                assert kept_cursor == kit.cursor_values[1], key


    def test_configs_are_stored_and_returned_as_copies(self, store: Any) -> None:
        for key, kit in provider_kits():
            config = kit.sample_config()
            snapshot = config.model_copy(deep=True)
            store.save_provider(config)
            config.mailbox = "changed@example.com"
            for name in type(config).model_fields:
                value = getattr(config, name)
                if isinstance(value, dict):
                    value["changed"] = "changed"
                elif isinstance(value, list):
                    value.append("changed")
            loaded = store.get_provider(config.provider_id)
            assert loaded == snapshot, key
            loaded.tenant = "other"
            again = store.get_provider(config.provider_id)
            assert again == snapshot, key


    def test_missing_provider_lookups_return_none(self, store: Any) -> None:
        assert store.get_provider("nope") is None
        assert store.find_provider_by_subscription("nope") is None
        for key, _kit in provider_kits():
            assert store.find_provider_by_mailbox(key, "nobody@example.com") is None
        assert store.list_providers() == []


    def test_find_provider_by_mailbox_is_case_insensitive_and_per_provider(
        self, store: Any
    ) -> None:
        configs = [kit.sample_config() for _key, kit in provider_kits()]
        assert len({c.mailbox.lower() for c in configs}) == len(configs)
        for config in configs:
            store.save_provider(config)
        for config in configs:
            found = store.find_provider_by_mailbox(config.provider, config.mailbox.swapcase())
            assert found is not None, config.provider
            assert found.provider_id == config.provider_id
            for other in configs:
                if other.provider != config.provider:
                    assert store.find_provider_by_mailbox(other.provider, config.mailbox) is None


    def test_find_provider_by_subscription_follows_updates(self, store: Any) -> None:
        subscribed = [(k, kit) for k, kit in provider_kits() if kit.subscription_field]
        if not subscribed:
            pytest.skip("no registered provider's kit has a subscription")
        _key, kit = subscribed[0]
        field = kit.subscription_field
        assert field is not None
        first = kit.sample_config(provider_id="s-1", **{field: "sub-1"})
        second = kit.sample_config(provider_id="s-2", mailbox="b@example.com", **{field: "sub-2"})
        store.save_provider(first)
        store.save_provider(second)
        for _other_key, other_kit in provider_kits():
            if other_kit is not kit:
                store.save_provider(other_kit.sample_config())
        found = store.find_provider_by_subscription("sub-2")
        assert found is not None
        assert found.provider_id == "s-2"
        store.update_provider("s-1", {field: "sub-renewed"})
        assert store.find_provider_by_subscription("sub-1") is None
        renewed = store.find_provider_by_subscription("sub-renewed")
        assert renewed is not None
        assert renewed.provider_id == "s-1"
        store.save_provider(second.model_copy(update={field: None}))
        assert store.find_provider_by_subscription("sub-2") is None


    def test_save_provider_replaces_and_list_providers_is_sorted(self, store: Any) -> None:
        configs = [kit.sample_config() for _key, kit in provider_kits()]
        for config in reversed(configs):
            store.save_provider(config)
        first = configs[0]
        store.save_provider(first.model_copy(update={"mailbox": "new@example.com"}))
        listed = store.list_providers()
        assert [c.provider_id for c in listed] == sorted(c.provider_id for c in configs)
        replaced = next(c for c in listed if c.provider_id == first.provider_id)
        assert replaced.mailbox == "new@example.com"
        assert store.find_provider_by_mailbox(first.provider, first.mailbox) is None
        assert store.find_provider_by_mailbox(first.provider, "NEW@example.com") is not None


    def test_update_provider_sets_fields_atomically(self, store: Any) -> None:
        for key, kit in provider_kits():
            config = kit.sample_config()
            store.save_provider(config)
            changes: dict[str, Any] = {
                "client_secret": "rotated-secret",  # a plain str becomes a SecretStr
                "needs_consent": True,
                "auth_error_code": "invalid_grant",
            }
            spec = get_spec(key)
            if kit.cursor_values is not None and spec.cursor_field is not None:
                changes[spec.cursor_field] = kit.cursor_values[0]
            updated = store.update_provider(config.provider_id, changes)
            assert isinstance(updated.client_secret, SecretStr), key
            assert updated.client_secret.get_secret_value() == "rotated-secret"
            assert updated.needs_consent is True
            if spec.cursor_field is not None and spec.cursor_field in changes:
                assert getattr(updated, spec.cursor_field) == changes[spec.cursor_field]
            loaded = store.get_provider(config.provider_id)
            assert loaded == updated, key
            # Every other field is what was saved.
            untouched = set(type(config).model_fields) - set(changes)
            for name in untouched:
                assert getattr(loaded, name) == getattr(config, name), (key, name)


    def test_update_provider_validates_values(self, store: Any) -> None:
        for key, kit in provider_kits():
            config = kit.sample_config()
            store.save_provider(config)
            paused = store.update_provider(config.provider_id, {"active": "false"})
            assert paused.active is False, key
            for name, (given, expected) in kit.coercions.items():
                updated = store.update_provider(config.provider_id, {name: given})
                assert getattr(updated, name) == expected, (key, name)
                assert getattr(store.get_provider(config.provider_id), name) == expected


    def test_update_provider_rejects_bad_changes(self, store: Any) -> None:
        for key, kit in provider_kits():
            config = kit.sample_config()
            store.save_provider(config)
            with pytest.raises(KeyError):
                store.update_provider("missing", {"tenant": "x"})
            with pytest.raises(ValueError, match="unknown config fields"):
                store.update_provider(config.provider_id, {"no_such_field": 1})
            with pytest.raises(ValueError, match="provider_id"):
                store.update_provider(config.provider_id, {"provider_id": "other-id"})
            bad: dict[str, Any] = {"active": "not-a-bool", **kit.invalid_values}
            for name, value in bad.items():
                with pytest.raises(ValidationError):
                    store.update_provider(config.provider_id, {name: value})
            assert store.get_provider(config.provider_id) == config, key


    def test_delete_provider_removes_its_state_only(self, store: Any) -> None:
        configs = [kit.sample_config() for _key, kit in provider_kits()]
        assert len(configs) >= 2, "needs two registered providers with a testing kit"
        for config in configs:
            store.save_provider(config)
            store.save_tokens(config.provider_id, tokens())
            store.set_meta(config.provider_id, "last_push", "x")
            store.enqueue_job(job(f"j-{config.provider_id}", provider_id=config.provider_id))
            store.mark_published(config.provider_id, ["id:m"], complete=True, event_id="e",
                                 at=at(0))
        gone, kept = configs[0], configs[1:]
        subscription = get_spec(gone.provider).subscription_id(gone)
        store.delete_provider(gone.provider_id)
        pid = gone.provider_id
        assert store.get_provider(pid) is None
        if subscription is not None:
            assert store.find_provider_by_subscription(subscription) is None
        assert store.load_tokens(pid) is None
        assert store.get_meta(pid, "last_push") is None
        assert store.list_jobs(provider_id=pid) == []
        assert store.published_state(pid, "id:m") is None
        for config in kept:
            other = config.provider_id
            assert store.get_provider(other) is not None
            assert store.load_tokens(other) is not None
            assert store.get_meta(other, "last_push") == "x"
            assert [j.id for j in store.list_jobs(provider_id=other)] == [f"j-{other}"]
            assert store.published_state(other, "id:m") == "complete"
        store.delete_provider(pid)  # deleting again is harmless


    def test_compare_and_set_cursor(self, store: Any) -> None:
        checked = 0
        for key, kit in provider_kits():
            spec = get_spec(key)
            if kit.cursor_values is None or spec.cursor_field is None:
                continue
            checked += 1
            field = spec.cursor_field
            config = kit.sample_config()
            pid = config.provider_id
            store.save_provider(config)
            start = getattr(config, field)
            first, second = kit.cursor_values
            assert store.compare_and_set_cursor(pid, second, first) is False, key
            assert getattr(store.get_provider(pid), field) == start
            assert store.compare_and_set_cursor(pid, start, first) is True, key
            assert getattr(store.get_provider(pid), field) == first
            assert store.compare_and_set_cursor(pid, start, second) is False, key
            assert store.compare_and_set_cursor(pid, first, second) is True, key
            assert getattr(store.get_provider(pid), field) == second
            # The rest of the config is untouched by the cursor move.
            moved = store.get_provider(pid)
            assert moved == config.model_copy(update={field: second}), key
        assert checked, "no registered provider's kit has cursor values"
        assert store.compare_and_set_cursor("missing", None, 1) is False


    def test_compare_and_set_cursor_from_no_cursor(self, store: Any) -> None:
        checked = 0
        for key, kit in provider_kits():
            spec = get_spec(key)
            if kit.cursor_values is None or spec.cursor_field is None:
                continue
            field = spec.cursor_field
            try:
                config = kit.sample_config(**{field: None})
            except ValidationError:
                continue  # this provider's cursor is never None (an empty mapping, say)
            pid = config.provider_id
            store.save_provider(config)
            first, second = kit.cursor_values
            assert store.compare_and_set_cursor(pid, first, second) is False, key
            assert store.compare_and_set_cursor(pid, None, first) is True, key
            assert store.compare_and_set_cursor(pid, None, second) is False, key
            assert getattr(store.get_provider(pid), field) == first
            checked += 1
        assert checked, "no registered provider's cursor can be None"


    # ------------------------------------------------------------------------------ dedupe


    def test_claim_publish_and_published_state(self, store: Any) -> None:
        keys = ["id:m1", "mid:<a@x>"]
        assert store.published_state("p", "id:m1") is None
        assert store.claim_keys("p", keys, "w1", at(60), at(0)) == "claimed"
        assert store.published_state("p", "id:m1") is None
        assert store.claim_keys("p", keys, "w2", at(60), at(1)) == "busy"
        assert store.claim_keys("p", keys, "w1", at(120), at(1)) == "claimed"  # same owner
        store.mark_published("p", keys, complete=True, event_id="ev-1", at=at(2))
        assert store.published_state("p", "id:m1") == "complete"
        assert store.published_state("p", "mid:<a@x>") == "complete"
        assert store.claim_keys("p", keys, "w2", at(60), at(3)) == "published"
        assert store.claim_keys("p", keys, "w1", at(60), at(3)) == "published"
        # Another message sharing only the Message-ID is a duplicate too.
        assert store.claim_keys("p", ["id:m9", "mid:<a@x>"], "w3", at(60), at(3)) == "published"
        # Keys are per provider.
        assert store.claim_keys("q", keys, "w2", at(60), at(3)) == "claimed"


    def test_claim_is_all_or_nothing(self, store: Any) -> None:
        assert store.claim_keys("p", ["id:a"], "w1", at(60), at(0)) == "claimed"
        assert store.claim_keys("p", ["id:b", "id:a"], "w2", at(60), at(0)) == "busy"
        # id:b was not taken by the failed claim.
        assert store.claim_keys("p", ["id:b"], "w3", at(60), at(0)) == "claimed"


    def test_published_wins_over_busy(self, store: Any) -> None:
        store.claim_keys("p", ["id:a"], "w1", at(60), at(0))
        store.mark_published("p", ["mid:<z@x>"], complete=True, event_id="e", at=at(0))
        assert store.claim_keys("p", ["id:a", "mid:<z@x>"], "w2", at(60), at(1)) == "published"


    def test_expired_claim_is_free(self, store: Any) -> None:
        assert store.claim_keys("p", ["id:a"], "w1", at(10), at(0)) == "claimed"
        assert store.claim_keys("p", ["id:a"], "w2", at(70), at(10)) == "busy"  # lease_until == now
        assert store.claim_keys("p", ["id:a"], "w2", at(70), at(10.001)) == "claimed"
        assert store.claim_keys("p", ["id:a"], "w1", at(80), at(20)) == "busy"


    def test_release_keys(self, store: Any) -> None:
        store.claim_keys("p", ["id:a", "id:b"], "w1", at(60), at(0))
        store.release_keys("p", ["id:a", "id:b"], "intruder")
        assert store.claim_keys("p", ["id:a"], "w2", at(60), at(1)) == "busy"
        store.release_keys("p", ["id:a", "id:b"], "w1")
        assert store.published_state("p", "id:a") is None
        assert store.claim_keys("p", ["id:a", "id:b"], "w2", at(60), at(1)) == "claimed"
        store.mark_published("p", ["id:a", "id:b"], complete=True, event_id="e", at=at(2))
        store.release_keys("p", ["id:a", "id:b"], "w2")
        assert store.published_state("p", "id:a") == "complete"
        assert store.claim_keys("p", ["id:a"], "w3", at(60), at(3)) == "published"


    def test_minimal_publish_can_be_followed_by_complete(self, store: Any) -> None:
        keys = ["id:m1", "mid:<m@x>"]
        store.claim_keys("p", keys, "w1", at(60), at(0))
        store.mark_published("p", keys, complete=False, event_id="ev-min", at=at(1))
        assert store.published_state("p", "id:m1") == "minimal"
        # The minimal record drops the claim, and can be claimed again for the complete event.
        assert store.claim_keys("p", keys, "w2", at(60), at(2)) == "claimed"
        assert store.claim_keys("p", keys, "w3", at(60), at(3)) == "busy"
        store.release_keys("p", keys, "w2")
        assert store.published_state("p", "id:m1") == "minimal"  # release keeps the minimal mark
        assert store.claim_keys("p", keys, "w3", at(60), at(3)) == "claimed"
        store.mark_published("p", keys, complete=True, event_id="ev-full", at=at(4))
        assert store.published_state("p", "id:m1") == "complete"
        # A late minimal event never downgrades a complete one.
        store.mark_published("p", keys, complete=False, event_id="ev-min", at=at(5))
        assert store.published_state("p", "id:m1") == "complete"
        assert store.claim_keys("p", keys, "w4", at(60), at(6)) == "published"


    def test_mark_published_without_claim_and_duplicate_keys(self, store: Any) -> None:
        store.mark_published("p", ["id:x", "id:x"], complete=True, event_id="e", at=at(0))
        assert store.published_state("p", "id:x") == "complete"
        assert store.claim_keys("p", ["id:y", "id:y"], "w", at(60), at(0)) == "claimed"
        assert store.claim_keys("p", [], "w", at(60), at(0)) == "claimed"


    # ------------------------------------------------------------------------------ jobs


    def test_enqueue_coalesces_pending_unique_keys(self, store: Any) -> None:
        assert store.enqueue_job(job("a", unique_key="hist:g-1")) is True
        assert store.enqueue_job(job("b", unique_key="hist:g-1")) is False
        assert store.enqueue_job(job("a")) is False  # same id
        assert store.count_jobs() == 1
        # A running job does not block a new one: it may have read its input already.
        assert [j.id for j in claim(store, "w1", now=0)] == ["a"]
        assert store.enqueue_job(job("c", unique_key="hist:g-1")) is True
        assert store.enqueue_job(job("d", unique_key="hist:g-1")) is False
        assert store.enqueue_job(job("e", unique_key=None)) is True
        assert store.enqueue_job(job("f", unique_key=None)) is True
        assert store.count_jobs() == 4


    def test_claim_order_availability_and_fields(self, store: Any) -> None:
        store.enqueue_job(job("late", available=30))
        store.enqueue_job(job("first", available=-20))
        store.enqueue_job(job("second", available=-10))
        store.enqueue_job(job("future", available=3600))
        claimed = claim(store, "w1", now=40, lease=7200, limit=2)
        assert [j.id for j in claimed] == ["first", "second"]
        for item in claimed:
            assert item.status == "running"
            assert item.worker_id == "w1"
            assert item.lease_until == at(7240)
            assert item.payload["nested"] == {"n": [1, 2]}
            assert item.available_at.tzinfo is not None
        assert [j.id for j in claim(store, "w2", now=40, lease=7200)] == ["late"]
        assert claim(store, "w3", now=40) == []
        assert [j.id for j in claim(store, "w3", now=3600)] == ["future"]
        assert store.count_jobs(status="running") == 4
        assert claim(store, "w1", now=0, limit=0) == []


    def test_expired_job_lease_is_claimed_again(self, store: Any) -> None:
        store.enqueue_job(job("a"))
        assert [j.id for j in claim(store, "w1", now=0, lease=30)] == ["a"]
        assert claim(store, "w2", now=30) == []  # lease_until == now: still held
        again = claim(store, "w2", now=31)
        assert [j.id for j in again] == ["a"]
        assert again[0].worker_id == "w2"
        assert again[0].attempts == 1  # the lapsed lease counts as a failed attempt
        assert again[0].last_error


    def test_retry_job(self, store: Any) -> None:
        store.enqueue_job(job("a"))
        claim(store, "w1", now=0)
        store.retry_job("a", error="throttled", available_at=at(120))
        (listed,) = store.list_jobs(status="pending")
        assert listed.attempts == 1
        assert listed.last_error == "throttled"
        assert listed.available_at == at(120)
        assert listed.worker_id is None
        assert listed.lease_until is None
        assert claim(store, "w1", now=119) == []
        assert [j.attempts for j in claim(store, "w1", now=120)] == [1]
        store.retry_job("a", error="again", available_at=at(200))
        assert store.list_jobs()[0].attempts == 2
        store.retry_job("missing", error="x", available_at=at(0))  # unknown id: no-op


    def test_bury_and_complete_job(self, store: Any) -> None:
        store.enqueue_job(job("a", unique_key="k"))
        store.enqueue_job(job("b"))
        claim(store, "w1", now=0)
        store.bury_job("a", error="poison message")
        store.complete_job("b")
        assert claim(store, "w2", now=10_000) == []
        (dead,) = store.list_jobs(status="dead")
        assert dead.id == "a"
        assert dead.last_error == "poison message"
        assert store.count_jobs(status="dead") == 1
        assert store.count_jobs(status="done") == 0  # completed jobs are deleted
        assert store.count_jobs() == 1
        assert store.jobs_summary() == {"dead": 1}
        # A dead job does not block its unique key.
        assert store.enqueue_job(job("c", unique_key="k")) is True
        store.complete_job("missing")
        store.bury_job("missing", error="x")


    def test_claim_filters(self, store: Any) -> None:
        store.enqueue_job(job("m1", available=1))
        store.enqueue_job(job("g1", available=2, kind="gmail_history", provider_id="g-1"))
        store.enqueue_job(job("s1", available=3, kind="sync", provider_id="g-1"))
        store.enqueue_job(job("s2", available=4, kind="sync", provider_id="ms-1"))
        assert [j.id for j in claim(store, "w", now=10, kinds=["sync"], provider_ids=["g-1"])] == [
            "s1"
        ]
        assert [j.id for j in claim(store, "w", now=10, provider_ids=["ms-1"])] == ["m1", "s2"]
        assert claim(store, "w", now=10, kinds=[]) == []
        assert [j.id for j in claim(store, "w", now=10, kinds=["gmail_history", "sync"])] == ["g1"]


    def test_list_and_count_jobs(self, store: Any) -> None:
        for index in range(5):
            store.enqueue_job(job(f"j{index}", available=index,
                                  provider_id="g-1" if index % 2 else "ms-1"))
        claim(store, "w", now=1, limit=1)
        assert store.count_jobs() == 5
        assert store.count_jobs(status="pending") == 4
        assert store.count_jobs(status="running") == 1
        assert [j.id for j in store.list_jobs(provider_id="g-1")] == ["j1", "j3"]
        assert [j.id for j in store.list_jobs(status="pending", limit=2)] == ["j1", "j2"]
        assert store.jobs_summary() == {"pending": 4, "running": 1}


    # ------------------------------------------------------------------------------ locks, meta


    def test_locks(self, store: Any) -> None:
        assert store.acquire_lock("refresh:ms-1", "a", until=at(30), now=at(0)) is True
        assert store.acquire_lock("refresh:ms-1", "b", until=at(60), now=at(10)) is False
        assert store.acquire_lock("refresh:ms-1", "a", until=at(90), now=at(10)) is True  # extend
        assert store.acquire_lock("refresh:ms-1", "b", until=at(120), now=at(90)) is False
        assert store.acquire_lock("other", "b", until=at(60), now=at(10)) is True
        store.release_lock("refresh:ms-1", "b")  # not b's: ignored
        assert store.acquire_lock("refresh:ms-1", "b", until=at(120), now=at(50)) is False
        store.release_lock("refresh:ms-1", "a")
        assert store.acquire_lock("refresh:ms-1", "b", until=at(120), now=at(50)) is True


    def test_expired_lock_is_taken(self, store: Any) -> None:
        assert store.acquire_lock("sweep", "a", until=at(30), now=at(0)) is True
        assert store.acquire_lock("sweep", "b", until=at(90), now=at(31)) is True
        assert store.acquire_lock("sweep", "a", until=at(90), now=at(32)) is False


    def test_meta(self, store: Any) -> None:
        assert store.get_meta("p", "k") is None
        store.set_meta("p", "k", "v1")
        store.set_meta("q", "k", "other")
        assert store.get_meta("p", "k") == "v1"
        store.set_meta("p", "k", "v2")
        assert store.get_meta("p", "k") == "v2"
        store.set_meta("p", "k", None)
        assert store.get_meta("p", "k") is None
        assert store.get_meta("q", "k") == "other"
        store.set_meta("p", "missing", None)
        store.set_meta("p", "empty", "")
        assert store.get_meta("p", "empty") == ""


    # ------------------------------------------------------------------------------ threads


    def test_threads_never_double_claim_jobs(self, store: Any) -> None:
        total = 120
        for index in range(total):
            store.enqueue_job(job(f"j{index:03d}", available=index % 7))
        claimed: list[tuple[int, str]] = []
        lock = threading.Lock()

        def worker(index: int) -> None:
            while True:
                batch = claim(store, f"w{index}", now=100, limit=3)
                if not batch:
                    return
                with lock:
                    claimed.extend((index, j.id) for j in batch)

        _run_threads(8, worker)
        counts = Counter(job_id for _, job_id in claimed)
        assert len(counts) == total
        assert set(counts.values()) == {1}
        assert store.count_jobs(status="running") == total


    def test_threads_never_double_claim_keys(self, store: Any) -> None:
        messages = 40
        outcomes: list[tuple[int, str]] = []
        lock = threading.Lock()

        def worker(index: int) -> None:
            for message in range(messages):
                keys = [f"id:{message}", f"mid:<{message}@x>"]
                outcome = store.claim_keys("p", keys, f"w{index}", at(60), at(0))
                with lock:
                    outcomes.append((message, outcome))

        _run_threads(6, worker)
        winners = Counter(message for message, outcome in outcomes if outcome == "claimed")
        assert winners == Counter(range(messages))
        assert Counter(outcome for _, outcome in outcomes)["busy"] == messages * 5


    def test_threads_single_lock_winner(self, store: Any) -> None:
        results: list[bool] = []
        lock = threading.Lock()

        def worker(index: int) -> None:
            taken = store.acquire_lock("renewal", f"w{index}", until=at(60), now=at(0))
            with lock:
                results.append(taken)

        _run_threads(8, worker)
        assert results.count(True) == 1


    # ------------------------------------------------------------------------------ retention


    def test_prune_deletes_dedupe_keys_published_before_the_cutoff(self, store: Any) -> None:
        store.mark_published(
            "p", ["id:old", "mid:<old@x>"], complete=True, event_id="e1", at=at(10)
        )
        store.mark_published("p", ["id:min"], complete=False, event_id="e2", at=at(20))
        store.mark_published("p", ["id:new"], complete=True, event_id="e3", at=at(100))
        assert store.prune(cutoffs(50)) == {
            "dedupe": 3, "done_jobs": 0, "dead_jobs": 0, "meta": 0,
        }
        assert store.published_state("p", "id:old") is None
        assert store.published_state("p", "mid:<old@x>") is None
        assert store.published_state("p", "id:min") is None
        assert store.published_state("p", "id:new") == "complete"
        # A pruned key is a new key: the message could be claimed again (hence long defaults).
        assert store.claim_keys("p", ["id:old"], "w", at(200), at(100)) == "claimed"


    def test_prune_keeps_live_claims_and_drops_abandoned_ones(self, store: Any) -> None:
        assert store.claim_keys("p", ["id:dead-worker"], "w1", at(30), at(0)) == "claimed"
        assert store.claim_keys("p", ["id:live"], "w2", at(500), at(0)) == "claimed"
        assert store.prune(cutoffs(100))["dedupe"] == 1
        # The live claim still holds: another owner is told the message is busy.
        assert store.claim_keys("p", ["id:live"], "w3", at(600), at(101)) == "busy"
        assert store.claim_keys("p", ["id:dead-worker"], "w3", at(600), at(101)) == "claimed"


    def test_prune_deletes_old_dead_jobs_and_never_pending_or_running(self, store: Any) -> None:
        store.enqueue_job(job("dead-old", available=0))
        store.enqueue_job(job("dead-new", available=500))
        store.enqueue_job(job("pending-old", available=0, kind="sync"))
        store.enqueue_job(job("running-old", available=0, kind="sync", provider_id="other"))
        claim(store, "w", now=1000, kinds=["graph_message"])
        store.bury_job("dead-old", error="poison")
        store.bury_job("dead-new", error="poison")
        claim(store, "w", now=1000, provider_ids=["other"])
        counts = store.prune(cutoffs(100))
        assert counts["dead_jobs"] == 1
        assert counts["done_jobs"] == 0
        assert [j.id for j in store.list_jobs(status="dead")] == ["dead-new"]
        assert [j.id for j in store.list_jobs(status="pending")] == ["pending-old"]
        assert [j.id for j in store.list_jobs(status="running")] == ["running-old"]
        assert store.prune(cutoffs(100))["dead_jobs"] == 0  # idempotent


    def test_prune_deletes_finished_jobs_a_store_kept(self, store: Any) -> None:
        store.enqueue_job(job("done-old", available=0, status="done"))
        store.enqueue_job(job("done-new", available=500, status="done"))
        assert store.prune(cutoffs(100))["done_jobs"] == 1
        assert [j.id for j in store.list_jobs(status="done")] == ["done-new"]


    def test_prune_deletes_only_old_per_message_meta(self, store: Any) -> None:
        store.set_meta("p", "msg-dead:m1", "gave up")
        store.set_meta("p", "msg-failures:m2", "2")
        store.set_meta("p", "last_push_at", "2026-01-01T00:00:00+00:00")
        store.set_meta("q", "msg-dead:m3", "gave up")
        # Values are stamped by the store when set: a cutoff in the far past keeps them all...
        assert store.prune(cutoffs(0))["meta"] == 0
        assert store.get_meta("p", "msg-dead:m1") == "gave up"
        # ...and one after they were set prunes the per-message ones, nothing else.
        after = datetime.now(timezone.utc) + timedelta(days=1)
        assert store.prune(cutoffs(0, meta_before=after))["meta"] == 3
        assert store.get_meta("p", "msg-dead:m1") is None
        assert store.get_meta("p", "msg-failures:m2") is None
        assert store.get_meta("q", "msg-dead:m3") is None
        assert store.get_meta("p", "last_push_at") == "2026-01-01T00:00:00+00:00"
        # Setting a value again restamps it: it is young again.
        store.set_meta("p", "msg-dead:m1", "again")
        assert store.prune(cutoffs(0))["meta"] == 0
        assert store.get_meta("p", "msg-dead:m1") == "again"


    def test_prune_without_prefixes_keeps_every_meta_value(self, store: Any) -> None:
        store.set_meta("p", "msg-dead:m1", "gave up")
        after = datetime.now(timezone.utc) + timedelta(days=1)
        nothing = PruneCutoffs(
            dedupe_before=at(0), done_jobs_before=at(0), dead_jobs_before=at(0),
            meta_before=after,
        )
        assert store.prune(nothing) == {"dedupe": 0, "done_jobs": 0, "dead_jobs": 0, "meta": 0}
        assert store.get_meta("p", "msg-dead:m1") == "gave up"
