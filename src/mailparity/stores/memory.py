"""``InMemoryStore``: every state protocol in one process-local object.

Meant for tests, demos and single-process hosts that accept losing state on restart. Every method
holds one re-entrant lock, so the store is safe to share between threads. Configs, tokens and jobs
are stored as copies and handed out as copies: a caller mutating its object never changes the store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ..models import Job, OAuthTokens, ProviderConfigBase
from ..protocols import ClaimOutcome, PruneCutoffs
from ._common import (
    LEASE_EXPIRED_ERROR,
    apply_config_changes,
    config_mailbox_key,
    config_subscription_id,
    copy_model,
    cursor_swap,
    dedupe_claim_outcome,
    lease_live,
    meta_key_matches,
    normalize_config,
    to_utc,
)

__all__ = ["InMemoryStore"]

AnyConfig = ProviderConfigBase


@dataclass
class _DedupeRecord:
    published: Literal["complete", "minimal"] | None = None
    event_id: str | None = None
    published_at: datetime | None = None
    owner: str | None = None
    lease_until: datetime | None = None


class InMemoryStore:
    """A thread-safe, process-local implementation of every protocol in ``mailparity.protocols``.

    Semantics shared with :class:`~mailparity.stores.sqlite.SqliteStore`:

    * ``complete_job`` deletes the job, so ``count_jobs(status="done")`` is always 0.
    * ``claim_jobs`` also takes running jobs whose lease expired (their worker died); such a
      re-claim counts as a failed attempt (``attempts`` + 1, ``last_error`` set), so a job that
      crashes its worker every time still reaches the worker's retry cap.
    * ``enqueue_job`` returns False when the job id is already stored.
    * ``retry_job`` / ``bury_job`` / ``complete_job`` of an unknown job id do nothing.
    * ``compare_and_set_history_id`` returns False for an unknown provider.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._providers: dict[str, AnyConfig] = {}
        self._tokens: dict[str, OAuthTokens] = {}
        self._dedupe: dict[tuple[str, str], _DedupeRecord] = {}
        self._jobs: dict[str, Job] = {}
        # unique_key -> ids of the stored jobs carrying it (enqueue checks it without a scan).
        self._unique: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, datetime]] = {}
        self._meta: dict[tuple[str, str], str] = {}
        # When each meta value was last set (what prune's meta cutoff compares).
        self._meta_at: dict[tuple[str, str], datetime] = {}

    def __repr__(self) -> str:
        with self._lock:
            return f"InMemoryStore(providers={len(self._providers)}, jobs={len(self._jobs)})"

    # ---------------------------------------------------------------- CredentialStore

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        with self._lock:
            tokens = self._tokens.get(provider_id)
            return None if tokens is None else copy_model(tokens)

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        with self._lock:
            self._tokens[provider_id] = copy_model(tokens)

    # ---------------------------------------------------------------- ProviderStore

    def get_provider(self, provider_id: str) -> AnyConfig | None:
        with self._lock:
            config = self._providers.get(provider_id)
            return None if config is None else copy_model(config)

    def find_provider_by_subscription(self, subscription_id: str) -> AnyConfig | None:
        with self._lock:
            for provider_id in sorted(self._providers):
                config = self._providers[provider_id]
                if config_subscription_id(config) == subscription_id:
                    return copy_model(config)
            return None

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> AnyConfig | None:
        wanted = config_mailbox_key(mailbox)
        with self._lock:
            for provider_id in sorted(self._providers):
                config = self._providers[provider_id]
                if config.provider == provider and config_mailbox_key(config.mailbox) == wanted:
                    return copy_model(config)
            return None

    def save_provider(self, config: AnyConfig) -> None:
        with self._lock:
            self._providers[config.provider_id] = normalize_config(config)

    # ---------------------------------------------------------------- ProviderRegistry

    def list_providers(self) -> list[AnyConfig]:
        with self._lock:
            return [copy_model(self._providers[key]) for key in sorted(self._providers)]

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> AnyConfig:
        with self._lock:
            current = self._providers.get(provider_id)
            if current is None:
                raise KeyError(provider_id)
            updated = apply_config_changes(current, changes)
            self._providers[provider_id] = updated
            return copy_model(updated)

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        return self._compare_and_set(provider_id, expected, new, legacy=False)

    def compare_and_set_history_id(
        self, provider_id: str, expected: int | None, new: int
    ) -> bool:
        """The former name of :meth:`compare_and_set_cursor` (a Gmail ``history_id`` only)."""
        return self._compare_and_set(provider_id, expected, int(new), legacy=True)

    def _compare_and_set(self, provider_id: str, expected: Any, new: Any, *, legacy: bool) -> bool:
        with self._lock:
            current = self._providers.get(provider_id)
            if current is None:
                return False
            updated = cursor_swap(current, expected, new, legacy=legacy)
            if updated is None:
                return False
            self._providers[provider_id] = updated
            return True

    def delete_provider(self, provider_id: str) -> None:
        with self._lock:
            self._providers.pop(provider_id, None)
            self._tokens.pop(provider_id, None)
            for key in [k for k in self._dedupe if k[0] == provider_id]:
                del self._dedupe[key]
            for key in [k for k in self._meta if k[0] == provider_id]:
                del self._meta[key]
                self._meta_at.pop(key, None)
            for job_id in [j.id for j in self._jobs.values() if j.provider_id == provider_id]:
                self._forget_job(job_id)

    # ---------------------------------------------------------------- DedupeStore

    def claim_keys(
        self, provider_id: str, keys: Sequence[str], owner: str, lease_until: datetime,
        now: datetime,
    ) -> ClaimOutcome:
        unique = list(dict.fromkeys(keys))
        with self._lock:
            existing = [self._dedupe.get((provider_id, key)) for key in unique]
            outcome = dedupe_claim_outcome(
                [(r.published, r.owner, r.lease_until) for r in existing if r is not None],
                owner,
                now,
            )
            if outcome != "claimed":
                return outcome
            until = to_utc(lease_until)
            for key in unique:
                record = self._dedupe.setdefault((provider_id, key), _DedupeRecord())
                record.owner = owner
                record.lease_until = until
            return "claimed"

    def mark_published(
        self, provider_id: str, keys: Sequence[str], *, complete: bool, event_id: str,
        at: datetime,
    ) -> None:
        with self._lock:
            for key in dict.fromkeys(keys):
                record = self._dedupe.setdefault((provider_id, key), _DedupeRecord())
                # Never downgrade: a minimal event after a complete one changes nothing.
                if complete or record.published != "complete":
                    record.published = "complete" if complete else "minimal"
                    record.event_id = event_id
                    record.published_at = to_utc(at)
                record.owner = None
                record.lease_until = None

    def release_keys(self, provider_id: str, keys: Sequence[str], owner: str) -> None:
        with self._lock:
            for key in dict.fromkeys(keys):
                record = self._dedupe.get((provider_id, key))
                if record is None or record.owner != owner or record.published == "complete":
                    continue
                record.owner = None
                record.lease_until = None
                if record.published is None:
                    del self._dedupe[(provider_id, key)]

    def published_state(self, provider_id: str, key: str) -> Literal["complete", "minimal"] | None:
        with self._lock:
            record = self._dedupe.get((provider_id, key))
            return None if record is None else record.published

    # ---------------------------------------------------------------- JobStore

    def enqueue_job(self, job: Job) -> bool:
        with self._lock:
            if job.id in self._jobs:
                return False
            if job.unique_key is not None and any(
                self._jobs[other].status == "pending"
                for other in self._unique.get(job.unique_key, ())
            ):
                return False
            self._jobs[job.id] = copy_model(job)
            if job.unique_key is not None:
                self._unique.setdefault(job.unique_key, set()).add(job.id)
            return True

    def _forget_job(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None and job.unique_key is not None:
            ids = self._unique.get(job.unique_key)
            if ids is not None:
                ids.discard(job_id)
                if not ids:
                    del self._unique[job.unique_key]

    def claim_jobs(
        self, worker_id: str, *, limit: int, now: datetime, lease_until: datetime,
        kinds: Sequence[str] | None = None, provider_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        if limit <= 0:
            return []
        now = to_utc(now)
        kind_set = None if kinds is None else set(kinds)
        provider_set = None if provider_ids is None else set(provider_ids)
        with self._lock:
            candidates = []
            for job in self._jobs.values():
                if kind_set is not None and job.kind not in kind_set:
                    continue
                if provider_set is not None and job.provider_id not in provider_set:
                    continue
                if (job.status == "pending" and job.available_at <= now) or (
                    job.status == "running" and not lease_live(job.lease_until, now)
                ):
                    candidates.append(job)
            candidates.sort(key=lambda j: (j.available_at, j.created_at, j.id))
            claimed = []
            for job in candidates[:limit]:
                if job.status == "running":
                    job.attempts += 1
                    job.last_error = LEASE_EXPIRED_ERROR
                job.status = "running"
                job.worker_id = worker_id
                job.lease_until = to_utc(lease_until)
                claimed.append(copy_model(job))
            return claimed

    def complete_job(self, job_id: str) -> None:
        with self._lock:
            self._forget_job(job_id)

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.status = "pending"
            job.attempts += 1
            job.available_at = to_utc(available_at)
            job.last_error = error
            job.worker_id = None
            job.lease_until = None

    def bury_job(self, job_id: str, *, error: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.status = "dead"
            job.attempts += 1
            job.last_error = error
            job.worker_id = None
            job.lease_until = None

    def list_jobs(
        self, *, status: str | None = None, provider_id: str | None = None, limit: int = 100
    ) -> list[Job]:
        with self._lock:
            jobs = [
                job
                for job in self._jobs.values()
                if (status is None or job.status == status)
                and (provider_id is None or job.provider_id == provider_id)
            ]
            jobs.sort(key=lambda j: (j.available_at, j.created_at, j.id))
            return [copy_model(job) for job in jobs[: max(limit, 0)]]

    def count_jobs(self, *, status: str | None = None) -> int:
        with self._lock:
            return sum(1 for job in self._jobs.values() if status is None or job.status == status)

    def jobs_summary(self) -> dict[str, int]:
        """How many jobs have each status (statuses without jobs are left out)."""
        with self._lock:
            summary: dict[str, int] = {}
            for job in self._jobs.values():
                summary[job.status] = summary.get(job.status, 0) + 1
            return summary

    # ---------------------------------------------------------------- LockStore

    def acquire_lock(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        with self._lock:
            held = self._locks.get(name)
            if held is not None and held[0] != owner and lease_live(held[1], now):
                return False
            self._locks[name] = (owner, to_utc(until))
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._lock:
            held = self._locks.get(name)
            if held is not None and held[0] == owner:
                del self._locks[name]

    # ---------------------------------------------------------------- MetaStore

    def get_meta(self, provider_id: str, key: str) -> str | None:
        with self._lock:
            return self._meta.get((provider_id, key))

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._meta.pop((provider_id, key), None)
                self._meta_at.pop((provider_id, key), None)
            else:
                self._meta[(provider_id, key)] = value
                self._meta_at[(provider_id, key)] = datetime.now(timezone.utc)

    # ---------------------------------------------------------------- RetentionStore

    def prune(self, cutoffs: PruneCutoffs) -> dict[str, int]:
        dedupe_before = to_utc(cutoffs.dedupe_before)
        done_before = to_utc(cutoffs.done_jobs_before)
        dead_before = to_utc(cutoffs.dead_jobs_before)
        meta_before = to_utc(cutoffs.meta_before)
        with self._lock:
            dedupe = [
                key
                for key, record in self._dedupe.items()
                if (
                    record.published is not None
                    and record.published_at is not None
                    and record.published_at < dedupe_before
                )
                or (
                    record.published is None
                    and (record.lease_until is None or record.lease_until < dedupe_before)
                )
            ]
            for key in dedupe:
                del self._dedupe[key]
            done = [
                j.id for j in self._jobs.values()
                if j.status == "done" and to_utc(j.available_at) < done_before
            ]
            dead = [
                j.id for j in self._jobs.values()
                if j.status == "dead" and to_utc(j.available_at) < dead_before
            ]
            for job_id in done + dead:
                self._forget_job(job_id)
            meta = [
                key
                for key, at in self._meta_at.items()
                if at < meta_before and meta_key_matches(key[1], cutoffs.meta_prefixes)
            ]
            for key in meta:
                del self._meta[key]
                del self._meta_at[key]
            return {
                "dedupe": len(dedupe), "done_jobs": len(done), "dead_jobs": len(dead),
                "meta": len(meta),
            }
