"""The IMAP push listener: IDLE on the folder of every stored IMAP mailbox.

One thread and one connection per mailbox (IDLE needs its own connection), within the
per-server connection bound; a mailbox that finds no free slot is polled instead (a catch-up job
every ``poll_interval``). What IDLE reports is not read here: a new message (``EXISTS``) becomes a
durable ``sync`` job, exactly like a webhook push, and the Processor reads the folder from the
stored cursor with ``UID SEARCH``. Every (re)connection enqueues that job too, so what arrived
while the listener was down or disconnected is caught up.

IDLE is re-issued every ``idle_timeout`` seconds (RFC 2177: servers may log a client out after
30 minutes; clients re-issue at least every 29), failures reconnect with exponential backoff, and
a refused sign-in stops the mailbox's listening (no retry loop): the catch-up job it enqueues
meets the same refusal in the Processor, which publishes the one ``EMAIL_PROVIDER_AUTH_FAILED``
event and marks the mailbox ``needs_consent``. Listening resumes when the mailbox is reconnected.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ...errors import AuthError, ConfigurationError, MailParityError
from ...models import Job, utcnow
from . import client as imap
from .config import ImapProviderConfig

__all__ = ["DEFAULT_IDLE_TIMEOUT", "ImapListener"]

log = logging.getLogger("mailparity.providers.imap.listener")

#: Re-issue IDLE after this many seconds: under the 29 minutes of RFC 2177, with a margin.
DEFAULT_IDLE_TIMEOUT = 28 * 60.0


class ImapListener:
    """IDLE on every active IMAP mailbox of ``store`` until ``stop_event`` is set.

    Args:
        store: the StateStore (mailboxes are re-read every ``refresh_interval`` seconds: added,
            changed, paused and removed ones are picked up).
        stop_event: stops the listener.
        clock: UTC now (job times).
        sleep: how to wait between reconnections (default: on ``stop_event``).
        monotonic: the clock of IDLE renewal.
        secrets, session: for XOAUTH2 token refreshes.
        idle_timeout: seconds after which IDLE is re-issued.
        check_interval: seconds one wait for IDLE responses lasts (how soon a stop is seen).
        refresh_interval: seconds between reads of the stored mailboxes.
        backoff_base, backoff_max: reconnection backoff (``base * 2**n`` capped).
        poll_interval: seconds between catch-up jobs of a mailbox without an IDLE connection.
        limiter: the per-server connection bound (the process-wide one by default).
        client_factory: builds the IMAP client (tests pass a fake or a wrapper).
    """

    def __init__(
        self,
        store: Any,
        *,
        stop_event: threading.Event,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        secrets: Any = None,
        session: Any = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        check_interval: float = 5.0,
        refresh_interval: float = 30.0,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        poll_interval: float = 300.0,
        limiter: imap.ConnectionLimiter | None = None,
        client_factory: imap.ClientFactory | None = None,
        **_ignored: Any,
    ) -> None:
        if client_factory is None:
            imap.imapclient_module()  # a missing extra fails here, naming it
        self.store = store
        self.stop_event = stop_event
        self.clock = clock
        self.sleep = sleep or self._wait
        self.monotonic = monotonic
        self.secrets = secrets
        self.session = session
        self.idle_timeout = float(idle_timeout)
        self.check_interval = float(check_interval)
        self.refresh_interval = float(refresh_interval)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.poll_interval = float(poll_interval)
        self.limiter = limiter or imap.LIMITER
        self.client_factory = client_factory
        self._watchers: dict[str, _Watcher] = {}
        self._lock = threading.Lock()  # refresh() may be called from another thread too
        #: provider id -> the connection fingerprint whose sign-in was refused.
        self._refused: dict[str, tuple[Any, ...]] = {}

    def _wait(self, seconds: float) -> None:
        self.stop_event.wait(seconds)

    def __repr__(self) -> str:
        return f"ImapListener(mailboxes={len(self._watchers)})"

    # ------------------------------------------------------------------ mailboxes

    def mailboxes(self) -> dict[str, ImapProviderConfig]:
        """The stored IMAP mailboxes that should be listened to now."""
        wanted: dict[str, ImapProviderConfig] = {}
        for config in self.store.list_providers():
            if not isinstance(config, ImapProviderConfig):
                continue
            pid = config.provider_id
            if config.needs_consent:
                self._refused.pop(pid, None)  # the Processor took over; retry once reconnected
                continue
            if not config.active or self._refused.get(pid) == config.connection_fingerprint():
                continue
            wanted[pid] = config
        return wanted

    def watching(self) -> list[str]:
        """The provider ids with a live IDLE watcher."""
        with self._lock:
            return [pid for pid, watcher in self._watchers.items() if watcher.is_alive()]

    def refresh(self) -> None:
        """Start, restart and stop watchers to match the stored mailboxes."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        wanted = self.mailboxes()
        for pid, watcher in list(self._watchers.items()):
            config = wanted.get(pid)
            if watcher.refused:
                self._refused[pid] = watcher.fingerprint
            if (config is None or watcher.refused or not watcher.is_alive()
                    or watcher.fingerprint != config.connection_fingerprint()):
                watcher.stop()
                del self._watchers[pid]
        for pid, config in self.mailboxes().items():
            if pid not in self._watchers:
                watcher = _Watcher(self, config)
                self._watchers[pid] = watcher
                watcher.start()

    def run(self) -> None:
        """Listen until the stop event is set."""
        log.info("IMAP listener started")
        try:
            while not self.stop_event.is_set():
                try:
                    self.refresh()
                except Exception:  # the store may be briefly unavailable: try again later
                    log.exception("IMAP listener: reading the mailboxes failed")
                self.stop_event.wait(self.refresh_interval)
        finally:
            with self._lock:
                watchers = list(self._watchers.values())
                self._watchers.clear()
            for watcher in watchers:
                watcher.stop()
            for watcher in watchers:
                watcher.join(self.check_interval + 5.0)
            log.info("IMAP listener stopped")

    # ------------------------------------------------------------------ jobs

    def enqueue_sync(self, provider_id: str, reason: str, session: str | None = None) -> None:
        """A durable catch-up job for the mailbox, coalesced with a pending one of the same
        ``session`` (one connection of the listener). A job of an earlier session that is parked
        (the mailbox needed consent) does not hold back the pushes of a new one."""
        key = f"sync:{provider_id}" if session is None else f"sync:{provider_id}:{session}"
        self.store.enqueue_job(
            Job(
                kind="sync",
                provider_id=provider_id,
                payload={"reason": reason},
                unique_key=key,
                available_at=self.clock(),
            )
        )

    def backoff(self, failures: int) -> float:
        """Seconds to wait before reconnection number ``failures``."""
        return min(self.backoff_max, self.backoff_base * (2.0 ** min(max(failures - 1, 0), 30)))


class _Watcher(threading.Thread):
    """The IDLE loop of one mailbox (a thread of the listener)."""

    def __init__(self, listener: ImapListener, config: ImapProviderConfig) -> None:
        super().__init__(name=f"mailparity-imap-{config.provider_id}", daemon=True)
        self.listener = listener
        self.config = config
        self.fingerprint = config.connection_fingerprint()
        self.refused = False
        #: Names this watcher's jobs (see ``ImapListener.enqueue_sync``); new per connection.
        self.session = uuid.uuid4().hex[:12]
        self._halt = threading.Event()
        self._client: Any = None

    def stop(self) -> None:
        self._halt.set()

    def _stopping(self) -> bool:
        return self._halt.is_set() or self.listener.stop_event.is_set()

    def run(self) -> None:
        failures = 0
        pid = self.config.provider_id
        key = self.config.server_key()
        listener = self.listener
        while not self._stopping():
            if not listener.limiter.try_acquire(key):
                log.warning("IMAP %s: no free connection to %s; polling", pid, key)
                listener.enqueue_sync(pid, "imap poll", self.session)
                listener.sleep(listener.poll_interval)
                continue
            try:
                failures = self._listen(failures)
            except AuthError as exc:
                log.error("IMAP %s: sign-in refused (%s); listening stops until the mailbox is"
                          " reconnected", pid, exc)
                self.refused = True
                listener.enqueue_sync(pid, "imap sign-in refused", self.session)
                return
            except ConfigurationError as exc:
                failures += 1
                log.error("IMAP %s: %s", pid, exc)
            except Exception as exc:
                failures += 1
                detail = str(exc) if isinstance(exc, MailParityError) else type(exc).__name__
                log.warning("IMAP %s: connection lost (%s); reconnecting", pid, detail)
            finally:
                self._close()
                listener.limiter.release(key)
            if not self._stopping() and failures:
                listener.sleep(listener.backoff(failures))

    def _close(self) -> None:
        if self._client is not None:
            imap.close(self._client)
            self._client = None

    def _access_token(self) -> str:
        from .adapter import ImapAdapter

        adapter = ImapAdapter(
            self.config, store=self.listener.store, secrets=self.listener.secrets,
            session=self.listener.session, client_factory=self.listener.client_factory,
            clock=self.listener.clock,
        )
        return adapter.get_access_token()

    def _listen(self, failures: int) -> int:
        """Connect, catch up, IDLE until stopped; returns the failure count to continue with."""
        listener = self.listener
        pid = self.config.provider_id
        xoauth2 = self.config.auth_method == "xoauth2"
        self.session = uuid.uuid4().hex[:12]
        self._client = imap.connect(
            self.config, access_token=self._access_token if xoauth2 else None,
            factory=listener.client_factory,
        )
        client = self._client
        try:
            client.select_folder(self.config.folder, readonly=True)
            idle = client.has_capability("IDLE")
        except Exception as exc:
            raise imap.map_error(exc, "select") from None
        # Whatever arrived while we were not connected is found by the catch-up job.
        listener.enqueue_sync(pid, "imap connected", self.session)
        if not idle:
            log.warning("IMAP %s: the server has no IDLE; polling", pid)
            listener.sleep(listener.poll_interval)
            return 0
        try:
            while not self._stopping():
                self._idle_once(client)
        except Exception as exc:
            raise imap.map_error(exc, "idle") from None
        return 0

    def _idle_once(self, client: Any) -> None:
        """One IDLE command, ended after ``idle_timeout`` (or a stop) with DONE."""
        listener = self.listener
        client.idle()
        started = listener.monotonic()
        while not self._stopping():
            if listener.monotonic() - started >= listener.idle_timeout:
                break
            responses = client.idle_check(timeout=listener.check_interval)
            if any(_is_arrival(item) for item in responses):
                listener.enqueue_sync(self.config.provider_id, "imap idle", self.session)
            if any(_is_bye(item) for item in responses):
                raise ConnectionResetError("the server ended the session (BYE)")
        # Only after a clean wait: on a broken connection DONE has nowhere to go. What the
        # server reported while DONE was on its way counts too.
        _, responses = client.idle_done()
        if any(_is_arrival(item) for item in responses or ()):
            listener.enqueue_sync(self.config.provider_id, "imap idle", self.session)


def _is_arrival(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) >= 2 and item[1] in (b"EXISTS", b"RECENT")


def _is_bye(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) >= 1 and item[0] == b"BYE"
