"""The host seams: small protocols a host application implements to plug in its own database and
event bus. ``InMemoryStore``, ``SqliteStore`` (and ``SqlStore``) implement every one of them.

The four seams of the public contract are :class:`CredentialStore`, :class:`ProviderStore`,
:class:`SecretStore` and :class:`EventPublisher`. The pipeline also needs durable state of its own
(jobs, dedupe keys, leases, small per-mailbox values); :class:`StateStore` is the union that
``WebhookHandler``, the worker and maintenance expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from .models import (
    Attachment,
    EmailMessage,
    Job,
    MailParityEvent,
    OAuthTokens,
    ProviderConfigBase,
)

__all__ = [
    "AnyProviderConfig",
    "AttachmentStore",
    "ClaimOutcome",
    "CredentialStore",
    "DedupeStore",
    "EventPublisher",
    "JobStore",
    "LockStore",
    "MetaStore",
    "ProviderRegistry",
    "ProviderStore",
    "PruneCutoffs",
    "RetentionStore",
    "SecretStore",
    "StateStore",
    "require_publisher",
]

#: A provider config of any registered provider (each provider subclasses the base).
AnyProviderConfig: TypeAlias = ProviderConfigBase


@runtime_checkable
class CredentialStore(Protocol):
    """Where OAuth tokens live. Implementations must persist ``save_tokens`` durably before
    returning: Microsoft rotates refresh tokens, so a lost save can lock a mailbox out."""

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        """The tokens of ``provider_id``, or None when there are none."""
        ...

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        """Store (replace) the tokens of ``provider_id``."""
        ...


@runtime_checkable
class ProviderStore(Protocol):
    """Where mailbox connections (provider configs) live."""

    def get_provider(self, provider_id: str) -> AnyProviderConfig | None:
        """The config of ``provider_id``, or None."""
        ...

    def find_provider_by_subscription(self, subscription_id: str) -> AnyProviderConfig | None:
        """The provider whose push subscription id is ``subscription_id`` (what its spec's
        ``subscription_id(config)`` returns, e.g. Graph's ``webhook_subscription_id``)."""
        ...

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> AnyProviderConfig | None:
        """The config of provider kind ``provider`` (a registry key) for ``mailbox``,
        case-insensitively."""
        ...

    def save_provider(self, config: AnyProviderConfig) -> None:
        """Insert or replace the config (keyed by ``provider_id``)."""
        ...


@runtime_checkable
class SecretStore(Protocol):
    """Tenant secrets of the host (client ids and secrets, legacy token JSON)."""

    def get_secret(self, tenant: str, name: str) -> str | None:
        """The secret ``name`` of ``tenant``, or None."""
        ...


@runtime_checkable
class EventPublisher(Protocol):
    """The host's event bus. ``publish`` must raise when the event was not accepted: the library
    then keeps the work pending and publishes again later (at-least-once; stable event ids)."""

    def publish(self, event: MailParityEvent) -> None:
        """Publish one event; raise on failure."""
        ...


@runtime_checkable
class AttachmentStore(Protocol):
    """Where a host keeps attachment content (a folder, S3, a database), filled during
    processing: before a message's event is published, each of its attachments within the
    processor's size limit is handed to :meth:`save`, and the reference it returns goes into
    the event (``Attachment.stored_as``). Optional: without a store nothing is downloaded.

    Shipped: :class:`~mailparity.attachments.FilesystemAttachmentStore` and
    :class:`~mailparity.attachments.InMemoryAttachmentStore`.
    """

    def save(
        self, message: EmailMessage, attachment: Attachment, chunks: Iterable[bytes]
    ) -> str:
        """Store the content of ``attachment`` of ``message`` (its bytes, in ``chunks``) and
        return a reference to it (a path, a key, a URL: a string the host can use later).

        The contract:

        * Idempotent: a job that is retried saves the same attachment again; the second save
          replaces the first (key it by ``message.provider_id``, ``message.id`` and
          ``attachment.id``), so nothing is stored twice.
        * All or nothing: iterating ``chunks`` may raise (the provider failed midway, or the
          content grew past the size limit); let the error propagate and keep nothing of it.
        * Raise when the content was not stored: the message's job is retried later and its
          event is not published until every attachment was saved (nothing is lost, no event
          is published twice).
        * Never build a path from ``attachment.name`` without making it safe: it comes from
          the sender.
        """
        ...


def require_publisher(publisher: object, owner: str) -> EventPublisher:
    """``publisher`` when it satisfies :class:`EventPublisher` (a callable ``publish``).

    Checked where a publisher is handed over (``WebhookHandler``, ``Worker``, ``Processor``,
    ``Maintenance``, ``App``), because a wrong object fails only when the first event is
    published, in a worker thread, and its jobs then stay pending forever.

    Raises:
        TypeError: naming ``owner`` and what was given, and how to wrap a function.
    """
    if isinstance(publisher, type):  # its publish is a plain function: one argument short
        given = f"the class {publisher.__qualname__} (pass an instance: {publisher.__name__}())"
    elif callable(getattr(publisher, "publish", None)):
        return publisher  # type: ignore[return-value]
    elif callable(publisher):
        name = getattr(publisher, "__qualname__", None) or type(publisher).__name__
        given = f"the function {name}"
    else:
        given = f"a {type(publisher).__name__}"
    raise TypeError(
        f"{owner}() needs an EventPublisher, an object with a publish(event) method; got {given}."
        " Wrap functions in mailparity.CallbackPublisher(on_email=..., on_auth_failure=...)"
    )


@runtime_checkable
class ProviderRegistry(Protocol):
    """Provider bookkeeping beyond the public ProviderStore: listing and atomic partial updates.

    ``update_provider`` exists because several actors write the same config (the worker moves the
    Gmail cursor while maintenance renews the watch); a whole-object save would roll fields back.
    """

    def list_providers(self) -> list[AnyProviderConfig]:
        """Every stored provider config."""
        ...

    def update_provider(self, provider_id: str, changes: Mapping[str, Any]) -> AnyProviderConfig:
        """Atomically set ``changes`` (field name -> value) on the stored config; return it.

        Raises ``KeyError`` when the provider does not exist."""
        ...

    def compare_and_set_cursor(self, provider_id: str, expected: Any, new: Any) -> bool:
        """Set the provider's catch-up cursor (the config field its spec's ``cursor_field``
        names) to ``new`` only if it is still ``expected``; True if it was set. False for an
        unknown provider. Raises ValueError for a provider without a cursor field, or a value
        its config rejects. Atomic: two racing callers with the same ``expected`` cannot both
        win.

        The shipped stores keep the former, Gmail-only name ``compare_and_set_history_id`` as an
        alias; the library calls it only on a store that lacks this method."""
        ...

    def delete_provider(self, provider_id: str) -> None:
        """Remove the provider, its tokens and its state."""
        ...


ClaimOutcome: TypeAlias = Literal["claimed", "published", "busy"]


@runtime_checkable
class DedupeStore(Protocol):
    """Dedupe keys per (provider, key): at most one complete event per message.

    Keys are ``"id:<provider message id>"`` and ``"mid:<RFC Message-ID>"``. A worker claims keys
    (with a lease) before publishing, marks them published after, and releases them when publishing
    failed; a crashed worker's claim lapses when its lease ends.
    """

    def claim_keys(
        self, provider_id: str, keys: Sequence[str], owner: str, lease_until: datetime,
        now: datetime,
    ) -> ClaimOutcome:
        """Claim every key at once. ``"published"`` if any key was already published complete,
        ``"busy"`` if another live owner holds one, else ``"claimed"`` (all keys now held)."""
        ...

    def mark_published(
        self, provider_id: str, keys: Sequence[str], *, complete: bool, event_id: str,
        at: datetime,
    ) -> None:
        """Record the keys as published (complete or minimal) and drop the claim."""
        ...

    def release_keys(self, provider_id: str, keys: Sequence[str], owner: str) -> None:
        """Drop ``owner``'s claim on the keys that are not published complete."""
        ...

    def published_state(self, provider_id: str, key: str) -> Literal["complete", "minimal"] | None:
        """How the key was published, or None."""
        ...


@runtime_checkable
class JobStore(Protocol):
    """A durable job queue. Claiming leases a job; an expired lease makes it claimable again."""

    def enqueue_job(self, job: Job) -> bool:
        """Store the job. False (and nothing stored) when a *pending* job has the same
        ``unique_key``. Must be durable when it returns."""
        ...

    def claim_jobs(
        self, worker_id: str, *, limit: int, now: datetime, lease_until: datetime,
        kinds: Sequence[str] | None = None, provider_ids: Sequence[str] | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` jobs that are pending and available (or running with an expired
        lease), oldest ``available_at`` first; mark them running for ``worker_id``."""
        ...

    def complete_job(self, job_id: str) -> None:
        """The job is done (it may be deleted)."""
        ...

    def retry_job(self, job_id: str, *, error: str, available_at: datetime) -> None:
        """Put the job back to pending at ``available_at`` with ``attempts`` + 1."""
        ...

    def bury_job(self, job_id: str, *, error: str) -> None:
        """Give up: mark the job dead (kept for inspection, never claimed again)."""
        ...

    def list_jobs(
        self, *, status: str | None = None, provider_id: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs for inspection (CLI, tests)."""
        ...

    def count_jobs(self, *, status: str | None = None) -> int:
        """How many jobs have ``status`` (all when None)."""
        ...

    def jobs_summary(self) -> dict[str, int]:
        """How many jobs have each status; statuses without jobs are left out (``{}`` when
        empty). For ``mailparity`` status output and the health of a queue."""
        ...


@runtime_checkable
class LockStore(Protocol):
    """Lease locks shared by threads and processes (token refresh, renewal sweeps)."""

    def acquire_lock(self, name: str, owner: str, *, until: datetime, now: datetime) -> bool:
        """Take ``name`` for ``owner`` until ``until`` if it is free, expired or already
        ``owner``'s; True when taken."""
        ...

    def release_lock(self, name: str, owner: str) -> None:
        """Release ``name`` if ``owner`` holds it."""
        ...


@runtime_checkable
class MetaStore(Protocol):
    """Small per-provider values (last push time, retry counters, sweep marks)."""

    def get_meta(self, provider_id: str, key: str) -> str | None:
        """The value, or None."""
        ...

    def set_meta(self, provider_id: str, key: str, value: str | None) -> None:
        """Set (None deletes) the value."""
        ...


@dataclass(frozen=True)
class PruneCutoffs:
    """What :meth:`RetentionStore.prune` deletes: everything finished before these instants.

    Attributes:
        dedupe_before: dedupe keys published before it, and claims never published whose lease
            ended before it (their worker died and nobody took the message up again).
        done_jobs_before: jobs with status ``"done"`` due (``available_at``) before it. The
            shipped stores delete a job when it completes, so they never hold one; a host's store
            that keeps finished jobs prunes them here.
        dead_jobs_before: dead (buried) jobs last due (``available_at``) before it. A job is
            buried on its last attempt, which starts at or after that instant.
        meta_before: per-provider meta values whose key starts with one of ``meta_prefixes``,
            last set before it (by the store's own clock).
        meta_prefixes: the meta keys that are per-message bookkeeping (failure counters, give-up
            marks, pending marks). Other meta values (cursors, sweep marks) are never pruned.
    """

    dedupe_before: datetime
    done_jobs_before: datetime
    dead_jobs_before: datetime
    meta_before: datetime
    meta_prefixes: tuple[str, ...] = ()


@runtime_checkable
class RetentionStore(Protocol):
    """Pruning of finished state by age, so a store does not grow forever (two dedupe keys per
    message otherwise stay for good). Called by the maintenance sweep; every shipped store
    implements it. Pending and running jobs, providers, tokens and locks are never touched."""

    def prune(self, cutoffs: PruneCutoffs) -> dict[str, int]:
        """Delete what ``cutoffs`` describes, atomically per kind; return how many rows of each
        kind went: ``{"dedupe": n, "done_jobs": n, "dead_jobs": n, "meta": n}``."""
        ...


@runtime_checkable
class StateStore(
    CredentialStore, ProviderStore, ProviderRegistry, DedupeStore, JobStore, LockStore, MetaStore,
    Protocol,
):
    """Everything the pipeline needs from one store; implemented by every shipped store."""
