"""Stuck work: see, retry and give up on jobs (``mailparity jobs list|show|retry|bury``).

Only the :class:`~mailparity.protocols.JobStore` and
:class:`~mailparity.protocols.MetaStore` methods are used, so this works on any store.

* ``retry`` of a dead job stores a fresh copy (new id, no attempts, due now) and removes the
  dead one; the per-message give-up mark and failure counter of its message are cleared, or the
  worker would skip the message again. A pending job is moved forward to now (that counts as an
  attempt, as every ``retry_job`` does). A running job belongs to a worker: refused.
* ``bury`` marks a pending job dead with the operator's reason. Running jobs are refused for the
  same reason; dead ones are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .models import Job, utcnow
from .protocols import JobStore, MetaStore

__all__ = [
    "STUCK_STATUSES",
    "JobAdminError",
    "RetryOutcome",
    "bury",
    "find_job",
    "job_summary",
    "retry",
]

#: Job statuses an operator lists by default (the stuck ones).
STUCK_STATUSES = ("pending", "running", "dead")
#: How many jobs are scanned to find one by id (the JobStore protocol has no lookup by id).
_SCAN_LIMIT = 1_000_000


class JobAdminError(Exception):
    """The operation cannot be done (unknown or ambiguous id, a job in the wrong state)."""


@dataclass(frozen=True)
class RetryOutcome:
    """What :func:`retry` did: ``"requeued"`` (a fresh copy of a dead job, ``new_id``),
    ``"coalesced"`` (a pending job with the same unique key exists; the dead one was removed) or
    ``"advanced"`` (a pending job is due now)."""

    action: str
    job_id: str
    new_id: str | None = None


def find_job(store: JobStore, job_id: str) -> Job:
    """The job whose id is ``job_id``, or the only one starting with it (ids are long)."""
    jobs = store.list_jobs(limit=_SCAN_LIMIT)
    exact = [job for job in jobs if job.id == job_id]
    if exact:
        return exact[0]
    matches = [job for job in jobs if job_id and job.id.startswith(job_id)]
    if not matches:
        raise JobAdminError(f"no job {job_id!r} in this store; see `mailparity jobs list`")
    if len(matches) > 1:
        raise JobAdminError(f"{job_id!r} is the start of {len(matches)} job ids; give more of it")
    return matches[0]


def job_summary(job: Job) -> dict[str, Any]:
    """What an operator needs to judge a job: status, attempts, the last error, when it is due."""
    return {
        "id": job.id,
        "kind": job.kind,
        "provider_id": job.provider_id,
        "status": job.status,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "available_at": job.available_at.isoformat(),
        "created_at": job.created_at.isoformat(),
        "lease_until": None if job.lease_until is None else job.lease_until.isoformat(),
        "worker_id": job.worker_id,
        "unique_key": job.unique_key,
        "payload": job.payload,
    }


def _clear_message_marks(store: MetaStore, job: Job) -> None:
    from .processing import MESSAGE_META_PREFIXES

    message_id = job.payload.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        return
    for prefix in MESSAGE_META_PREFIXES:
        store.set_meta(job.provider_id, prefix + message_id, None)


def retry(
    store: Any, job_id: str, *, clock: Callable[[], datetime] = utcnow
) -> RetryOutcome:
    """Run the job again now (see the module docstring). ``store``: a JobStore and MetaStore."""
    job = find_job(store, job_id)
    now = clock()
    if job.status == "running":
        raise JobAdminError(
            f"job {job.id} is running on {job.worker_id or 'a worker'}; wait for it to finish"
            " or for its lease to end"
        )
    if job.status == "pending":
        store.retry_job(job.id, error=job.last_error or "retried by an operator", available_at=now)
        return RetryOutcome("advanced", job.id)
    if job.status != "dead":
        raise JobAdminError(f"job {job.id} is {job.status}; only pending and dead jobs are retried")
    _clear_message_marks(store, job)
    fresh = Job(
        kind=job.kind,
        provider_id=job.provider_id,
        payload=job.payload,
        unique_key=job.unique_key,
        available_at=now,
        created_at=now,
    )
    stored = store.enqueue_job(fresh)
    store.complete_job(job.id)  # the dead copy goes: the fresh one (or the pending twin) runs
    if not stored:
        return RetryOutcome("coalesced", job.id)
    return RetryOutcome("requeued", job.id, fresh.id)


def bury(store: JobStore, job_id: str, *, reason: str) -> Job:
    """Give up on a pending job: it becomes dead with ``reason`` as its error. Returns it."""
    job = find_job(store, job_id)
    if job.status == "running":
        raise JobAdminError(
            f"job {job.id} is running on {job.worker_id or 'a worker'}; bury it once it is"
            " pending again"
        )
    if job.status != "pending":
        raise JobAdminError(f"job {job.id} is {job.status}; only pending jobs are buried")
    text = f"buried by an operator: {reason}" if reason else "buried by an operator"
    store.bury_job(job.id, error=text)
    return find_job(store, job.id)
