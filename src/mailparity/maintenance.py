"""Maintenance: keep subscriptions and watches alive, and catch up on whatever a push missed.

A push is a hint. Graph drops notifications for slow endpoints and subscriptions expire after at
most 4230 minutes; Gmail watches expire after 7 days. :class:`Maintenance` runs, on a schedule
(``mailparity maintain``, a cron job, the Celery beat schedule):

* a renewal sweep over every provider in the store: Graph subscriptions renewed well before
  expiry (never asking more than the cap), recreated when missing or gone (the adapter recreates on
  404); Gmail watches renewed daily. Each provider is renewed under a lease lock and re-checked
  after taking it, so several processes running the sweep at once renew each provider once;
* silence detection: a mailbox without a push (and without a catch-up) for longer than
  ``silence_after`` gets a catch-up ``sync`` job;
* retention: dedupe keys, finished and dead jobs and per-message bookkeeping older than the ages
  of a :class:`RetentionPolicy` are deleted (stores implementing
  :class:`~mailparity.protocols.RetentionStore`, every shipped one does);
* the lifecycle and sync jobs themselves are run by the :class:`~mailparity.processing.Processor`
  (``run_jobs=True``), through the same dedupe and publish path as pushed messages.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from . import mailbox_events, telemetry
from .errors import AuthExpiredError, CredentialsMissingError, MailParityError
from .models import Job, utcnow
from .protocols import (
    AnyProviderConfig,
    EventPublisher,
    PruneCutoffs,
    RetentionStore,
    SecretStore,
    StateStore,
    require_publisher,
)
from .providers import create_adapter, spec_for, specs

__all__ = ["Maintenance", "MaintenanceReport", "RetentionPolicy", "last_heard"]

log = logging.getLogger("mailparity.maintenance")

LAST_PUSH_META = "last_push_at"
LAST_SYNC_META = "last_sync_at"


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished state is kept before the maintenance sweep deletes it.

    Every default is longer than any window in which the same message can come back: Pub/Sub
    keeps an unacknowledged push for at most 31 days, Gmail history records live about a week
    (often longer), Graph retries a notification for up to 4 hours, and the catch-up syncs replay
    at most what those cursors still cover. A dedupe key pruned before a redelivery could let the
    same message publish twice, so keep ``dedupe`` above the longest of them.

    Attributes:
        dedupe: dedupe keys, counted from their publish (45 days).
        done_jobs: finished jobs a store keeps (the shipped stores delete them at once; 7 days).
        dead_jobs: buried jobs, kept for ``mailparity jobs`` and inspection (30 days).
        message_meta: per-message bookkeeping (failure counters, give-up marks; 45 days: a
            give-up mark stops a catch-up from fetching a poison message again, as a dedupe key
            does for a published one), and the web connect flow's states.
    """

    dedupe: timedelta = timedelta(days=45)
    done_jobs: timedelta = timedelta(days=7)
    dead_jobs: timedelta = timedelta(days=30)
    message_meta: timedelta = timedelta(days=45)

    def cutoffs(self, now: datetime) -> PruneCutoffs:
        """The instants before which a store prunes, as of ``now``."""
        from .processing import MESSAGE_META_PREFIXES
        from .webconnect import STATE_META_PREFIX

        return PruneCutoffs(
            dedupe_before=now - self.dedupe,
            done_jobs_before=now - self.done_jobs,
            dead_jobs_before=now - self.dead_jobs,
            meta_before=now - self.message_meta,
            # Web connect states nobody came back for, and the marks of used ones, go too.
            meta_prefixes=(*MESSAGE_META_PREFIXES, STATE_META_PREFIX),
        )


@dataclass
class MaintenanceReport:
    """What one maintenance pass did (counts, and the providers involved)."""

    renewed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    syncs_enqueued: list[str] = field(default_factory=list)
    jobs_run: int = 0
    #: Rows deleted by the retention pass, by kind (empty when it did not run).
    pruned: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for logs and the command line."""
        return (
            f"renewed={len(self.renewed)} created={len(self.created)} skipped={len(self.skipped)}"
            f" failed={len(self.failed)} syncs={len(self.syncs_enqueued)} jobs={self.jobs_run}"
            f" pruned={sum(self.pruned.values())}"
        )


def _aware(value: datetime) -> datetime:
    """``value`` as timezone-aware UTC: a naive datetime (a host's own store, an old row) is taken
    as UTC, as both providers speak UTC; comparing naive with aware would raise TypeError."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        # Python 3.10's fromisoformat does not take the "Z" suffix.
        return _aware(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        return None


def last_heard(store: StateStore, provider_id: str) -> datetime | None:
    """When the mailbox was last heard of: its last push or catch-up sync (None: never).
    Silence detection and the ``mailparity.mailboxes.silent`` gauge both read it."""
    times = [
        t
        for t in (
            _parse_time(store.get_meta(provider_id, LAST_PUSH_META)),
            _parse_time(store.get_meta(provider_id, LAST_SYNC_META)),
        )
        if t is not None
    ]
    return max(times) if times else None


class Maintenance:
    """The renewal sweep, silence detection and catch-up for every provider in a store.

    Args:
        store: the StateStore holding providers, tokens, jobs and locks.
        publisher: the host's EventPublisher (catch-up publishes through it).
        secrets: passed to the adapters.
        session: passed to the adapters.
        renewal_settings: the tunables of the providers' renewal rules, by name (each spec's
            ``renewal.settings`` lists its own and their defaults). The built-in ones:
            ``graph_renew_before`` (renew a Graph subscription that expires within this window;
            36 h by default, about half of the 4230-minute maximum, so an hourly or daily sweep
            renews every subscription with a day to spare) and ``gmail_renew_after`` (renew a
            Gmail watch this long after it was last registered; Google recommends daily, a
            watch lives 7 days).
        silence_after: a mailbox with no push and no catch-up for this long gets a sync job.
        lock_seconds: lease of the per-provider renewal lock; longer than one renewal can take
            (the HTTP layer gives up retrying after five minutes), so it cannot lapse mid-renewal.
        clock: injectable for tests (UTC now).
        sleep: injectable for tests (no real waiting).
        adapter_factory: builds an adapter from a config (``create_adapter`` by default).
        processor: the Processor that runs the jobs (one is made on first use when None).
        retention: the ages after which finished state is pruned (:class:`RetentionPolicy`'s
            defaults); None turns pruning off.
    """

    def __init__(
        self,
        store: StateStore,
        publisher: EventPublisher,
        *,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        silence_after: timedelta = timedelta(hours=6),
        lock_seconds: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        adapter_factory: Callable[..., Any] = create_adapter,
        processor: Any = None,
        retention: RetentionPolicy | None = RetentionPolicy(),
        **renewal_settings: timedelta,
    ) -> None:
        known = {name for spec in specs() for name in spec.renewal_settings()}
        unknown = sorted(set(renewal_settings) - known)
        if unknown:
            raise TypeError(f"Maintenance() got unexpected keyword arguments: {unknown}")
        self._renewal_overrides = dict(renewal_settings)
        self.store = store
        self.publisher = require_publisher(publisher, "Maintenance")
        self.secrets = secrets
        self.session = session
        self.silence_after = silence_after
        self.lock_seconds = float(lock_seconds)
        self.clock = clock
        self.sleep = sleep
        self.adapter_factory = adapter_factory
        self._processor = processor
        self.retention = retention
        self.owner = f"maintenance-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @property
    def renewal_settings(self) -> dict[str, timedelta]:
        """Every registered renewal rule's settings: the defaults, updated with this sweep's."""
        settings: dict[str, timedelta] = {}
        for spec in specs():
            settings.update(spec.renewal_settings())
        settings.update(self._renewal_overrides)
        return settings

    def __getattr__(self, name: str) -> timedelta:
        # The renewal settings read as attributes (``maintenance.graph_renew_before``), as before
        # they moved into the provider specs.
        if not name.startswith("_"):
            settings = self.renewal_settings
            if name in settings:
                return settings[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ helpers

    def _adapter(self, config: AnyProviderConfig) -> Any:
        return self.adapter_factory(
            config,
            store=self.store,
            secrets=self.secrets,
            session=self.session,
            clock=self.clock,
            sleep=self.sleep,
        )

    @property
    def processor(self) -> Any:
        """The Processor that runs lifecycle and sync jobs (created on first use)."""
        if self._processor is None:
            from .processing import Processor

            self._processor = Processor(
                self.store,
                self.publisher,
                secrets=self.secrets,
                session=self.session,
                clock=self.clock,
                sleep=self.sleep,
                adapter_factory=self.adapter_factory,
            )
        return self._processor

    def needs_renewal(self, config: AnyProviderConfig, now: datetime | None = None) -> bool:
        """True when the provider's subscription or watch must be created or renewed now: its
        spec's renewal rule decides, with this sweep's settings. Never for a provider without a
        renewal rule (nothing is registered for it)."""
        rule = spec_for(config).renewal
        if rule is None:
            return False
        return rule.needs_renewal(config, now or self.clock(), self.renewal_settings)

    # ------------------------------------------------------------------ sweeps

    def renew_subscriptions(self, report: MaintenanceReport | None = None) -> MaintenanceReport:
        """Create or renew every subscription / watch that needs it (see :meth:`needs_renewal`).

        Safe to run from several processes at once: each provider is handled under a lease lock,
        and its config is re-read after the lock is taken."""
        report = report or MaintenanceReport()
        for config in self.store.list_providers():
            pid = config.provider_id
            fresh: AnyProviderConfig | None = None
            if not config.active or config.needs_consent or not self.needs_renewal(config):
                report.skipped.append(pid)
                continue
            now = self.clock()
            lock = f"renew:{pid}"
            until = now + timedelta(seconds=self.lock_seconds)
            if not self.store.acquire_lock(lock, self.owner, until=until, now=now):
                report.skipped.append(pid)  # another process is renewing it right now
                continue
            try:
                fresh = self.store.get_provider(pid)
                if fresh is None or not fresh.active or fresh.needs_consent:
                    report.skipped.append(pid)  # deleted, paused or failed meanwhile
                    continue
                if not self.needs_renewal(fresh, now):
                    report.skipped.append(pid)  # renewed meanwhile by another sweep
                    continue
                self._renew_one(fresh, now, report)
            except (AuthExpiredError, CredentialsMissingError) as exc:
                # One EMAIL_PROVIDER_AUTH_FAILED event and needs_consent, as for a failed job.
                self.processor.handle_auth_failure(fresh or config, exc)
                report.failed[pid] = str(exc)
            except MailParityError as exc:
                log.warning("renewal of provider %s failed: %s", pid, exc)
                report.failed[pid] = str(exc)
                self._lost_if_gone(fresh or config, exc, now)
            except Exception as exc:  # one broken provider must not stop the sweep
                log.error(
                    "renewal of provider %s failed: %s", pid, type(exc).__name__, exc_info=True
                )
                # Only the type: a foreign exception's text may quote a request and its token.
                report.failed[pid] = f"unexpected error: {type(exc).__name__}"
                self._lost_if_gone(fresh or config, exc, now)
            finally:
                self.store.release_lock(lock, self.owner)
        return report

    def _lost_if_gone(self, config: AnyProviderConfig, error: BaseException, now: datetime) -> None:
        """A create / renew failed: when the mailbox has no working subscription left (none
        recorded, or the recorded one expired), publish EMAIL_PROVIDER_SUBSCRIPTION_LOST (once per
        occurrence). A subscription that still lives is only retried by the next sweep."""
        rule = spec_for(config).renewal
        sub_id, expires = rule.state(config) if rule is not None else (None, None)
        if expires is not None and _aware(expires) > now:
            return
        mailbox_events.subscription_lost(
            self.store, self.publisher, config, error, subscription_id=sub_id,
            expired_at=None if expires is None else _aware(expires), clock=self.clock,
        )

    def _renew_one(
        self, config: AnyProviderConfig, now: datetime, report: MaintenanceReport
    ) -> None:
        """Create or renew one provider's subscription / watch (the caller holds its lock), and
        enqueue a catch-up sync whenever pushes may have been lost: a new subscription, one that
        Graph had dropped (recreated on 404), or one that had already expired."""
        pid = config.provider_id
        adapter = self._adapter(config)
        rule = spec_for(config).renewal
        previous_id, expires = rule.state(config) if rule is not None else (None, None)
        existed = previous_id is not None or expires is not None
        if not existed:
            adapter.register_webhook_subscription()
            mailbox_events.subscription_restored(self.store, pid)
            report.created.append(pid)
            # A new subscription cannot tell what arrived while there was none.
            self.enqueue_sync(pid, "subscription created", report)
            return
        subscription = adapter.renew_webhook_subscription()
        mailbox_events.subscription_restored(self.store, pid)
        if previous_id is not None and subscription.id not in (None, previous_id):
            # The adapter recreated it (Graph no longer knew the old one): a gap in pushes.
            report.created.append(pid)
            self.enqueue_sync(pid, "subscription recreated", report)
            return
        report.renewed.append(pid)
        if expires is not None and _aware(expires) <= now:
            self.enqueue_sync(pid, "subscription had expired", report)

    def enqueue_sync(
        self, provider_id: str, reason: str, report: MaintenanceReport | None = None
    ) -> bool:
        """Enqueue a catch-up sync for the provider (coalesced with a pending one)."""
        payload: dict[str, Any] = {"reason": reason}
        telemetry.inject(payload)
        stored = self.store.enqueue_job(
            Job(
                kind="sync",
                provider_id=provider_id,
                payload=payload,
                unique_key=f"sync:{provider_id}",
                available_at=self.clock(),
                created_at=self.clock(),
            )
        )
        self.store.set_meta(provider_id, LAST_SYNC_META, self.clock().isoformat())
        if stored and report is not None:
            report.syncs_enqueued.append(provider_id)
        return stored

    def detect_silence(self, report: MaintenanceReport | None = None) -> MaintenanceReport:
        """Enqueue a sync for every active mailbox silent for longer than ``silence_after``."""
        report = report or MaintenanceReport()
        now = self.clock()
        for config in self.store.list_providers():
            if not config.active or config.needs_consent:
                continue
            pid = config.provider_id
            last = last_heard(self.store, pid)
            if last is None or now - last > self.silence_after:
                self.enqueue_sync(pid, "silence", report)
        return report

    def sync_all(self, report: MaintenanceReport | None = None) -> MaintenanceReport:
        """Enqueue a catch-up sync for every active provider."""
        report = report or MaintenanceReport()
        for config in self.store.list_providers():
            if config.active and not config.needs_consent:
                self.enqueue_sync(config.provider_id, "requested", report)
        return report

    def prune(self, report: MaintenanceReport | None = None) -> MaintenanceReport:
        """Delete finished state older than the retention policy's ages (nothing when retention
        is off or the store does not implement ``RetentionStore``, which is logged)."""
        report = report or MaintenanceReport()
        if self.retention is None:
            return report
        if not isinstance(self.store, RetentionStore):
            log.warning(
                "maintenance: %s has no prune(); finished state is kept forever",
                type(self.store).__name__,
            )
            return report
        counts = self.store.prune(self.retention.cutoffs(self.clock()))
        for kind, count in counts.items():
            report.pruned[kind] = report.pruned.get(kind, 0) + int(count)
        return report

    def run_once(self, *, run_jobs: bool = True) -> MaintenanceReport:
        """One maintenance pass: renewal sweep, silence detection, retention, then (``run_jobs``)
        every due job, lifecycle and sync jobs included."""
        report = MaintenanceReport()
        self.renew_subscriptions(report)
        self.detect_silence(report)
        self.prune(report)
        if run_jobs:
            report.jobs_run = int(self.processor.run_pending())
        log.info("maintenance: %s", report.summary())
        return report

