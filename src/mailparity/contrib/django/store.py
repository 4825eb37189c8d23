"""``DjangoStore``: every state protocol of :mod:`mailparity.protocols` on the Django ORM.

The tables are the app's models (:mod:`mailparity.contrib.django.models`), created by its
migrations: add ``"mailparity.contrib.django"`` to ``INSTALLED_APPS`` and run
``python manage.py migrate``. Tested on PostgreSQL and SQLite; the semantics are the ones of the
other shipped stores (:mod:`mailparity.stores.semantics`), checked by the shipped
:class:`~mailparity.testing.store_contract.StoreContract` suite.

Concurrency is the database's:

* every read-modify-write runs in ``transaction.atomic()``. On PostgreSQL the rows it decides on
  are locked first (``select_for_update()``); jobs are claimed with
  ``select_for_update(skip_locked=True)``, so workers skip each other's rows instead of waiting or
  claiming the same job twice;
* SQLite has no row locks: there the transaction's first statement is a write, which takes the
  database's write lock before anything is read (what ``BEGIN IMMEDIATE`` does), so two threads or
  processes never act on the same snapshot;
* "at most one pending job per ``unique_key``" is a partial unique constraint, and dedupe keys,
  locks and meta values are unique rows: the database decides races between inserts.

Work done inside the host's own ``transaction.atomic()`` joins it (a savepoint): jobs enqueued
there appear when the host commits. ``save_tokens`` outside a transaction is durable when it
returns, as :class:`~mailparity.protocols.CredentialStore` requires.

Configs and tokens are stored with their secrets revealed, as in every shipped store (the library
needs them back). Database errors are raised as :class:`~mailparity.errors.StoreError` carrying the
driver's error class and first line only, never the statement's parameters (tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Case, Count, F, Q, TextField, Value, When

from ...errors import StoreError
from ...models import (
    Job,
    OAuthTokens,
    ProviderConfigBase,
    provider_config_from_dict,
    provider_config_to_storage,
)
from ...protocols import ClaimOutcome, PruneCutoffs
from ...stores._common import (
    LEASE_EXPIRED_ERROR,
    apply_config_changes,
    config_mailbox_key,
    config_subscription_id,
    cursor_swap,
    dedupe_claim_outcome,
    from_micros,
    meta_key_matches,
    to_micros,
    utc_now_micros,
)
from . import models as m

__all__ = ["DjangoStore"]

AnyConfig = ProviderConfigBase
_T = TypeVar("_T")

#: The epoch, as the "free" lease of a placeholder lock row.
_FREE = 0
#: Ids per ``IN (...)`` of a bulk delete.
_CHUNK = 500


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _config_row(config: AnyConfig) -> dict[str, Any]:
    return {
        "provider": config.provider,
        "tenant": config.tenant,
        "mailbox": config.mailbox,
        "mailbox_key": config_mailbox_key(config.mailbox),
        "subscription_id": config_subscription_id(config),
        "config": _dumps(provider_config_to_storage(config)),
        "updated_at_us": utc_now_micros(),
    }


def _config(text: str | None) -> AnyConfig | None:
    return None if text is None else provider_config_from_dict(json.loads(text))


def _job(row: m.Job) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        provider_id=row.provider_id,
        payload=json.loads(row.payload),
        unique_key=row.unique_key,
        attempts=row.attempts,
        available_at=from_micros(row.available_at_us),
        created_at=from_micros(row.created_at_us),
        last_error=row.last_error,
        status=row.status,
        lease_until=None if row.lease_until_us is None else from_micros(row.lease_until_us),
        worker_id=row.worker_id,
    )


def _store_error(operation: str, exc: DatabaseError) -> StoreError:
    # The driver's message may quote parameters in its detail lines: keep the first line only.
    cause = exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc
    lines = str(cause).strip().splitlines()
    message = f"Django store: {operation} failed: {type(cause).__name__}"
    if lines:
        message += f": {lines[0][:300]}"
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return StoreError(message, code=code if isinstance(code, str) else None)


class DjangoStore:
    """Every protocol of :mod:`mailparity.protocols` on the Django ORM (the ``mailparity`` app's
    models), safe across threads (Django gives each thread its own connection) and processes.

    Args:
        using: the database alias of ``settings.DATABASES`` the tables live in.

    Semantics shared with the other shipped stores: ``complete_job`` deletes the job; re-claiming
    a running job whose lease expired counts as a failed attempt; ``enqueue_job`` returns False
    for a job id already stored; unknown job ids are ignored; ``retry_job`` of a job whose
    ``unique_key`` is meanwhile held by another pending job drops the key from the retried job.
    """

    def __init__(self, using: str = "default") -> None:
        if using not in connections.settings:
            raise StoreError(f"no database {using!r} in settings.DATABASES")
        self.using = using

    def __repr__(self) -> str:
        return f"DjangoStore(using={self.using!r})"

    # ---------------------------------------------------------------- plumbing

    @property
    def _sqlite(self) -> bool:
        return bool(connections[self.using].vendor == "sqlite")

    def _skip_locked(self) -> bool:
        return bool(connections[self.using].features.has_select_for_update_skip_locked)

    def _q(self, model: Any) -> Any:
        return model.objects.using(self.using)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise _store_error(operation, exc) from None
        except DatabaseError as exc:
            connection = connections[self.using]
            if not connection.in_atomic_block:
                # A dropped connection is replaced on the next call (long-running workers have
                # no request cycle to do it for them).
                connection.close_if_unusable_or_obsolete()
            raise _store_error(operation, exc) from None

    @contextmanager
    def _write(self, operation: str) -> Iterator[None]:
        """An atomic read-modify-write; on SQLite, holding the write lock from its start."""
        with self._errors(operation), transaction.atomic(using=self.using):
            if self._sqlite:
                # Deferred transactions take the write lock at their first write: a first read
                # would let two connections decide on the same snapshot. This write touches no
                # row but takes the lock (and waits for it, with the busy timeout).
                with connections[self.using].cursor() as cursor:
                    cursor.execute("UPDATE mailparity_lock SET name = name WHERE 1 = 0")
            yield

    def _run(self, operation: str, work: Callable[[], _T]) -> _T:
        with self._errors(operation):
            return work()

    def _locked(self, queryset: Any) -> Any:
        return queryset.select_for_update()

    # ---------------------------------------------------------------- CredentialStore

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        """The tokens of ``provider_id``, or None."""
        text = self._run(
            "load_tokens",
            lambda: self._q(m.Credential)
            .filter(provider_id=provider_id)
            .values_list("data", flat=True)
            .first(),
        )
        return None if text is None else OAuthTokens.model_validate(json.loads(text))

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        """Store (replace) the tokens; committed when it returns (outside a host transaction)."""
        data = json.dumps(tokens.to_storage())
        with self._write("save_tokens"):
            self._q(m.Credential).update_or_create(
                provider_id=provider_id,
                defaults={"data": data, "updated_at_us": utc_now_micros()},
            )

    # ---------------------------------------------------------------- ProviderStore

    def get_provider(self, provider_id: str) -> AnyConfig | None:
        """The config of ``provider_id``, or None."""
        return _config(
            self._run(
                "get_provider",
                lambda: self._q(m.Mailbox)
                .filter(provider_id=provider_id)
                .values_list("config", flat=True)
                .first(),
            )
        )

    def find_provider_by_subscription(self, subscription_id: str) -> AnyConfig | None:
        """The provider whose push subscription id is ``subscription_id``."""
        return _config(
            self._run(
                "find_provider_by_subscription",
                lambda: self._q(m.Mailbox)
                .filter(subscription_id=subscription_id)
                .order_by("provider_id")
                .values_list("config", flat=True)
                .first(),
            )
        )

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> AnyConfig | None:
        """The ``provider`` connection of ``mailbox`` (case-insensitive), or None."""
        return _config(
            self._run(
                "find_provider_by_mailbox",
                lambda: self._q(m.Mailbox)
                .filter(provider=provider, mailbox_key=config_mailbox_key(mailbox))
                .order_by("provider_id")
                .values_list("config", flat=True)
                .first(),
            )
        )

    def save_provider(self, config: AnyConfig) -> None:
        """Insert or replace the config (keyed by ``provider_id``)."""
        row = _config_row(config)
        with self._write("save_provider"):
            self._q(m.Mailbox).update_or_create(provider_id=config.provider_id, defaults=row)

    # ---------------------------------------------------------------- ProviderRegistry

    def list_providers(self) -> list[AnyConfig]:
        """Every stored config, ordered by ``provider_id``."""
        texts = self._run(
            "list_providers",
            lambda: list(
                self._q(m.Mailbox).order_by("provider_id").values_list("config", flat=True)
            ),
        )
        return [provider_config_from_dict(json.loads(text)) for text in texts]

    def _locked_config(self, provider_id: str) -> AnyConfig | None:
        return _config(
            self._locked(self._q(m.Mailbox).filter(provider_id=provider_id))
            .values_list("config", flat=True)
            .first()
        )

    def _store_config(self, config: AnyConfig) -> None:
        self._q(m.Mailbox).filter(provider_id=config.provider_id).update(**_config_row(config))

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> AnyConfig:
        """Atomically set ``changes`` on the stored config (row-locked read-modify-write).

        Raises ``KeyError`` for an unknown provider and ``ValueError`` for unknown fields."""
        with self._write("update_provider"):
            current = self._locked_config(provider_id)
            if current is None:
                raise KeyError(provider_id)
            updated = apply_config_changes(current, changes)
            self._store_config(updated)
        return updated

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        """Set the provider's cursor to ``new`` only if it is still ``expected`` (row-locked)."""
        return self._compare_and_set("compare_and_set_cursor", provider_id, expected, new)

    def compare_and_set_history_id(
        self, provider_id: str, expected: int | None, new: int
    ) -> bool:
        """The former name of :meth:`compare_and_set_cursor` (a Gmail ``history_id`` only)."""
        return self._compare_and_set(
            "compare_and_set_history_id", provider_id, expected, int(new), legacy=True
        )

    def _compare_and_set(
        self, operation: str, provider_id: str, expected: Any, new: Any, *, legacy: bool = False
    ) -> bool:
        with self._write(operation):
            current = self._locked_config(provider_id)
            if current is None:
                return False
            updated = cursor_swap(current, expected, new, legacy=legacy)
            if updated is None:
                return False
            self._store_config(updated)
        return True

    def delete_provider(self, provider_id: str) -> None:
        """Remove the provider, its tokens, jobs, dedupe keys and meta values."""
        with self._write("delete_provider"):
            for model in (m.Mailbox, m.Credential, m.Job, m.DedupeKey, m.MetaValue):
                self._q(model).filter(provider_id=provider_id).delete()

    # ---------------------------------------------------------------- DedupeStore

    def claim_keys(
        self, provider_id: str, keys: Sequence[str], owner: str, lease_until: datetime,
        now: datetime,
    ) -> ClaimOutcome:
        """Claim every key at once (see :class:`~mailparity.protocols.DedupeStore`)."""
        # Sorted: concurrent claimers lock the same rows in the same order (no deadlock).
        unique = sorted(set(keys))
        if not unique:
            return "claimed"
        keyed = self._q(m.DedupeKey).filter(provider_id=provider_id, key__in=unique)
        with self._write("claim_keys"):
            # Every key becomes a row first, so that rows (not gaps) are locked; a row without
            # claim nor publication means the same as no row.
            self._q(m.DedupeKey).bulk_create(
                [m.DedupeKey(provider_id=provider_id, key=key) for key in unique],
                ignore_conflicts=True,
            )
            rows = list(
                self._locked(keyed)
                .order_by("key")
                .values_list("published", "owner", "lease_until_us")
            )
            outcome = dedupe_claim_outcome(
                [
                    (published, holder, None if until is None else from_micros(until))
                    for published, holder, until in rows
                ],
                owner,
                now,
            )
            if outcome == "claimed":
                keyed.update(owner=owner, lease_until_us=to_micros(lease_until))
            else:
                # Leave no placeholder rows behind for keys nobody holds.
                keyed.filter(published__isnull=True, owner__isnull=True).delete()
        return outcome

    def mark_published(
        self, provider_id: str, keys: Sequence[str], *, complete: bool, event_id: str,
        at: datetime,
    ) -> None:
        """Record the keys as published (never downgrading complete to minimal)."""
        unique = sorted(set(keys))
        if not unique:
            return
        keyed = self._q(m.DedupeKey).filter(provider_id=provider_id, key__in=unique)
        published = {
            "published": "complete" if complete else "minimal",
            "event_id": event_id,
            "published_at_us": to_micros(at),
            "owner": None,
            "lease_until_us": None,
        }
        with self._write("mark_published"):
            self._q(m.DedupeKey).bulk_create(
                [m.DedupeKey(provider_id=provider_id, key=key) for key in unique],
                ignore_conflicts=True,
            )
            list(self._locked(keyed).order_by("key").values_list("key", flat=True))
            if complete:
                keyed.update(**published)
            else:
                # A late minimal event keeps a complete record; either way the claim goes.
                keyed.exclude(published="complete").update(**published)
                keyed.filter(published="complete").update(owner=None, lease_until_us=None)

    def release_keys(self, provider_id: str, keys: Sequence[str], owner: str) -> None:
        """Drop ``owner``'s claim on the keys that are not published complete."""
        unique = sorted(set(keys))
        if not unique:
            return
        held = (
            self._q(m.DedupeKey)
            .filter(provider_id=provider_id, key__in=unique, owner=owner)
            .filter(Q(published__isnull=True) | ~Q(published="complete"))
        )
        with self._write("release_keys"):
            held.filter(published__isnull=True).delete()
            held.update(owner=None, lease_until_us=None)

    def published_state(self, provider_id: str, key: str) -> Literal["complete", "minimal"] | None:
        """How the key was published, or None."""
        value = self._run(
            "published_state",
            lambda: self._q(m.DedupeKey)
            .filter(provider_id=provider_id, key=key)
            .values_list("published", flat=True)
            .first(),
        )
        if value == "complete":
            return "complete"
        if value == "minimal":
            return "minimal"
        return None

    # ---------------------------------------------------------------- JobStore

    def enqueue_job(self, job: Job) -> bool:
        """Store the job; False when its id exists or a pending job has its ``unique_key``."""
        row = m.Job(
            id=job.id,
            kind=job.kind,
            provider_id=job.provider_id,
            payload=_dumps(job.payload),
            unique_key=job.unique_key,
            attempts=job.attempts,
            available_at_us=to_micros(job.available_at),
            created_at_us=to_micros(job.created_at),
            last_error=job.last_error,
            status=job.status,
            lease_until_us=None if job.lease_until is None else to_micros(job.lease_until),
            worker_id=job.worker_id,
        )
        with self._errors("enqueue_job"):
            try:
                # The primary key and the partial unique constraint decide, also under
                # concurrency; the savepoint keeps a host's transaction usable after a refusal.
                with transaction.atomic(using=self.using):
                    row.save(using=self.using, force_insert=True)
            except IntegrityError:
                return False
        return True

    def claim_jobs(
        self, worker_id: str, *, limit: int, now: datetime, lease_until: datetime,
        kinds: Sequence[str] | None = None, provider_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` claimable jobs, oldest ``available_at`` first.

        On PostgreSQL the candidates are selected ``FOR UPDATE SKIP LOCKED``: concurrent workers
        skip each other's rows instead of waiting, and a row is never claimed twice."""
        if limit <= 0 or (kinds is not None and not kinds):
            return []
        if provider_ids is not None and not provider_ids:
            return []
        now_us = to_micros(now)
        claimable = self._q(m.Job).filter(
            Q(status="pending", available_at_us__lte=now_us)
            | Q(status="running", lease_until_us__lt=now_us)
        )
        if kinds is not None:
            claimable = claimable.filter(kind__in=list(kinds))
        if provider_ids is not None:
            claimable = claimable.filter(provider_id__in=list(provider_ids))
        order = ("available_at_us", "created_at_us", "id")
        with self._write("claim_jobs"):
            picked = claimable.order_by(*order).select_for_update(
                skip_locked=self._skip_locked()
            )
            ids = list(picked.values_list("id", flat=True)[:limit])
            if not ids:
                return []
            self._q(m.Job).filter(id__in=ids).update(
                # An expired lease means the worker died mid-job: that counts as an attempt.
                attempts=Case(
                    When(status="running", then=F("attempts") + 1), default=F("attempts")
                ),
                last_error=Case(
                    When(status="running", then=Value(LEASE_EXPIRED_ERROR)),
                    default=F("last_error"),
                    output_field=TextField(),
                ),
                status="running",
                worker_id=worker_id,
                lease_until_us=to_micros(lease_until),
            )
            rows = list(self._q(m.Job).filter(id__in=ids).order_by(*order))
        return [_job(row) for row in rows]

    def complete_job(self, job_id: str) -> None:
        """The job is done: delete it."""
        self._run("complete_job", lambda: self._q(m.Job).filter(id=job_id).delete())

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        """Put the job back to pending at ``available_at`` with ``attempts`` + 1."""
        changes: dict[str, Any] = {
            "status": "pending",
            "attempts": F("attempts") + 1,
            "available_at_us": to_micros(available_at),
            "last_error": error,
            "worker_id": None,
            "lease_until_us": None,
        }
        with self._write("retry_job"):
            try:
                with transaction.atomic(using=self.using):
                    self._q(m.Job).filter(id=job_id).update(**changes)
            except IntegrityError:
                # Another pending job took the unique_key meanwhile: keep both jobs, the retried
                # one without the key (the pipeline is idempotent).
                self._q(m.Job).filter(id=job_id).update(unique_key=None, **changes)

    def bury_job(self, job_id: str, *, error: str) -> None:
        """Mark the job dead (kept for inspection, never claimed again)."""
        self._run(
            "bury_job",
            lambda: self._q(m.Job)
            .filter(id=job_id)
            .update(
                status="dead",
                attempts=F("attempts") + 1,
                last_error=error,
                worker_id=None,
                lease_until_us=None,
            ),
        )

    def list_jobs(
        self, *, status: str | None = None, provider_id: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs for inspection, oldest ``available_at`` first."""
        rows = self._q(m.Job).order_by("available_at_us", "created_at_us", "id")
        if status is not None:
            rows = rows.filter(status=status)
        if provider_id is not None:
            rows = rows.filter(provider_id=provider_id)
        found = self._run("list_jobs", lambda: list(rows[: max(limit, 0)]))
        return [_job(row) for row in found]

    def count_jobs(self, *, status: str | None = None) -> int:
        """How many jobs have ``status`` (all when None)."""
        rows = self._q(m.Job)
        if status is not None:
            rows = rows.filter(status=status)
        return int(self._run("count_jobs", rows.count))

    def jobs_summary(self) -> dict[str, int]:
        """How many jobs have each status (statuses without jobs are left out)."""
        counted = self._run(
            "jobs_summary",
            lambda: list(
                self._q(m.Job).order_by().values_list("status").annotate(n=Count("id"))
            ),
        )
        return {str(status): int(count) for status, count in counted}

    # ---------------------------------------------------------------- LockStore

    def acquire_lock(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        """Take ``name`` for ``owner`` until ``until`` if free, expired or already ``owner``'s.

        A free placeholder row is inserted first (a conflict means the row exists); then one
        conditional UPDATE takes it. The database serializes the UPDATEs of one row and each
        re-checks the condition on the row as the previous one left it: one winner."""
        with self._write("acquire_lock"):
            self._q(m.Lock).bulk_create(
                [m.Lock(name=name, owner="", until_us=_FREE)], ignore_conflicts=True
            )
            taken = (
                self._q(m.Lock)
                .filter(name=name)
                .filter(Q(until_us__lt=to_micros(now)) | Q(owner=owner))
                .update(owner=owner, until_us=to_micros(until))
            )
        return bool(taken)

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it."""
        self._run(
            "release_lock", lambda: self._q(m.Lock).filter(name=name, owner=owner).delete()
        )

    # ---------------------------------------------------------------- MetaStore

    def get_meta(self, provider_id: str, key: str) -> str | None:
        """The value, or None."""
        value = self._run(
            "get_meta",
            lambda: self._q(m.MetaValue)
            .filter(provider_id=provider_id, key=key)
            .values_list("value", flat=True)
            .first(),
        )
        return None if value is None else str(value)

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        """Set the value; None deletes it."""
        with self._write("set_meta"):
            if value is None:
                self._q(m.MetaValue).filter(provider_id=provider_id, key=key).delete()
                return
            self._q(m.MetaValue).update_or_create(
                provider_id=provider_id,
                key=key,
                defaults={"value": value, "updated_at_us": utc_now_micros()},
            )

    # ---------------------------------------------------------------- RetentionStore

    def prune(self, cutoffs: PruneCutoffs) -> dict[str, int]:
        """Delete finished state older than ``cutoffs`` (see ``RetentionStore``)."""
        dedupe_before = to_micros(cutoffs.dedupe_before)
        meta_before = to_micros(cutoffs.meta_before)
        counts: dict[str, int] = {}
        with self._write("prune"):
            counts["dedupe"] = self._delete(
                self._q(m.DedupeKey).filter(
                    Q(published__isnull=False, published_at_us__lt=dedupe_before)
                    | Q(published__isnull=True, lease_until_us__isnull=True)
                    | Q(published__isnull=True, lease_until_us__lt=dedupe_before)
                )
            )
            for name, status, before in (
                ("done_jobs", "done", cutoffs.done_jobs_before),
                ("dead_jobs", "dead", cutoffs.dead_jobs_before),
            ):
                counts[name] = self._delete(
                    self._q(m.Job).filter(status=status, available_at_us__lt=to_micros(before))
                )
            # The prefixes are few; matching them in Python keeps LIKE's wildcards out of it.
            stale = [
                pk
                for pk, key in self._q(m.MetaValue)
                .filter(updated_at_us__lt=meta_before)
                .values_list("pk", "key")
                if meta_key_matches(key, cutoffs.meta_prefixes)
            ]
            counts["meta"] = 0
            # In slices: SQLite caps the parameters of one statement.
            for start in range(0, len(stale), _CHUNK):
                counts["meta"] += self._delete(
                    self._q(m.MetaValue).filter(
                        pk__in=stale[start : start + _CHUNK], updated_at_us__lt=meta_before
                    )
                )
        return counts

    @staticmethod
    def _delete(queryset: Any) -> int:
        # The models have no relations nor delete signals: Django deletes in one statement.
        return int(queryset.delete()[0])
