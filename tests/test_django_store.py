"""The Django ORM store (``mailparity.contrib.django.store.DjangoStore``) against the shipped store
contract suite, on SQLite and on PostgreSQL, plus what is specific to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailparity.errors import StoreError
from mailparity.testing.store_contract import (
    StoreContract,
    at,
    gmail_config,
    graph_config,
    job,
    tokens,
)

django_support = pytest.importorskip("django_support")

DATABASES = ["default", "postgres"]
IDS = ["sqlite", "postgres"]


def _store(alias: str) -> Iterator[Any]:
    django_support.migrated(alias)
    from django.db import connections

    from mailparity.contrib.django.store import DjangoStore

    django_support.clear_tables(alias)
    yield DjangoStore(using=alias)
    django_support.clear_tables(alias)
    connections.close_all()


class TestDjangoStore(StoreContract):
    @pytest.fixture(params=DATABASES, ids=IDS)
    def store(self, request: pytest.FixtureRequest) -> Iterator[Any]:
        yield from _store(request.param)

    def test_compare_and_set_history_id(self, store: Any) -> None:
        store.save_provider(gmail_config())
        assert store.compare_and_set_history_id("g-1", 5, 10) is False
        assert store.compare_and_set_history_id("g-1", None, 100) is True
        assert store.get_provider("g-1").history_id == 100
        assert store.compare_and_set_history_id("g-1", 100, 150) is True
        assert store.compare_and_set_history_id("missing", None, 1) is False

    def test_compare_and_set_history_id_refuses_microsoft(self, store: Any) -> None:
        store.save_provider(graph_config())
        with pytest.raises(ValueError, match="not a Gmail provider"):
            store.compare_and_set_history_id("ms-1", None, 1)

    def test_secrets_never_in_repr_nor_in_model_reprs(self, store: Any) -> None:
        from mailparity.contrib.django import models as m

        store.save_provider(graph_config())
        store.save_tokens("ms-1", tokens())
        for text in (
            repr(store),
            repr(m.Mailbox.objects.using(store.using).get()),
            str(m.Mailbox.objects.using(store.using).get()),
            repr(m.Credential.objects.using(store.using).get()),
        ):
            assert "ms-client-secret" not in text
            assert "access-1" not in text
            assert "client-state-value" not in text

    def test_work_inside_a_host_transaction_is_rolled_back_with_it(self, store: Any) -> None:
        from django.db import transaction

        class AbortError(Exception):
            pass

        def host_work() -> None:
            with transaction.atomic(using=store.using):
                assert store.enqueue_job(job("a", unique_key="k")) is True
                # A refused enqueue leaves the host's transaction usable (a savepoint).
                assert store.enqueue_job(job("b", unique_key="k")) is False
                assert store.count_jobs() == 1
                raise AbortError

        with pytest.raises(AbortError):
            host_work()
        assert store.count_jobs() == 0
        with transaction.atomic(using=store.using):
            assert store.enqueue_job(job("a", unique_key="k")) is True
        assert [j.id for j in store.list_jobs()] == ["a"]

    def test_retry_keeps_both_jobs_when_the_unique_key_was_taken(self, store: Any) -> None:
        assert store.enqueue_job(job("a", unique_key="hist:g-1")) is True
        store.claim_jobs("w", limit=1, now=at(0), lease_until=at(60))
        assert store.enqueue_job(job("b", unique_key="hist:g-1")) is True
        store.retry_job("a", error="throttled", available_at=at(5))
        pending = {j.id: j for j in store.list_jobs(status="pending")}
        assert set(pending) == {"a", "b"}
        assert pending["a"].unique_key is None
        assert pending["a"].attempts == 1
        assert pending["b"].unique_key == "hist:g-1"

    def test_database_errors_are_store_errors_without_values(self, store: Any) -> None:
        from django.db import connections

        from mailparity.contrib.django.store import DjangoStore

        with connections[store.using].cursor() as cursor:
            cursor.execute("DROP TABLE mailparity_credential")
        try:
            with pytest.raises(StoreError) as caught:
                store.save_tokens("ms-1", tokens("very-secret-token"))
            assert "save_tokens" in str(caught.value)
            assert "very-secret-token" not in str(caught.value)
            with pytest.raises(StoreError):
                DjangoStore(using="no-such-alias")
        finally:
            _recreate_credential_table(store.using)


def _recreate_credential_table(alias: str) -> None:
    from django.db import connections

    from mailparity.contrib.django.models import Credential

    with connections[alias].schema_editor() as editor:
        editor.create_model(Credential)


def test_prune_deletes_more_meta_values_than_one_statement_takes() -> None:
    from datetime import datetime, timedelta, timezone

    from mailparity.protocols import PruneCutoffs

    for store in _store("default"):
        from mailparity.contrib.django import models as m

        m.MetaValue.objects.using(store.using).bulk_create(
            m.MetaValue(provider_id="p", key=f"msg-dead:{n}", value="x", updated_at_us=n)
            for n in range(1200)
        )
        store.set_meta("p", "last_push_at", "kept")
        later = datetime.now(timezone.utc) + timedelta(days=1)
        counts = store.prune(
            PruneCutoffs(
                dedupe_before=later, done_jobs_before=later, dead_jobs_before=later,
                meta_before=later, meta_prefixes=("msg-dead:",),
            )
        )
        assert counts["meta"] == 1200
        assert store.get_meta("p", "last_push_at") == "kept"
        assert m.MetaValue.objects.using(store.using).count() == 1
