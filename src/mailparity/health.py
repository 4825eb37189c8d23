"""Health endpoints: ``/healthz`` (the process is up) and ``/readyz`` (it can do its work).

Readiness means two things: the store answers (a read of one meta value), and a worker recorded a
heartbeat recently. :class:`~mailparity.worker.Worker` records one in the store's metadata (under
the reserved provider id :data:`HEARTBEAT_PROVIDER`) at most every ``heartbeat_interval`` seconds
while it runs, polling or not, so a web process can tell that some worker is alive even when it
runs elsewhere. A deployment without a mailparity worker (Celery runs the jobs) passes
``require_worker=False``.

The answers are small JSON documents that never carry an exception's text (it may name a
database host or quote a URL with a password): only the failing check and the error's type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from .models import utcnow
from .protocols import MetaStore
from .pushing import WebhookResponse

__all__ = [
    "HEALTH_PATH",
    "HEARTBEAT_KEY",
    "HEARTBEAT_PROVIDER",
    "READY_PATH",
    "HealthCheck",
    "check_for",
    "last_heartbeat",
    "record_heartbeat",
]

log = logging.getLogger("mailparity.health")

#: The liveness path: 200 while the process serves requests.
HEALTH_PATH = "/healthz"
#: The readiness path: 200 when the store answers and a worker's heartbeat is recent, else 503.
READY_PATH = "/readyz"
#: The meta "provider id" of process-wide values (no provider has it: ids are the host's own).
HEARTBEAT_PROVIDER = "_mailparity"
#: The meta key of the last worker heartbeat (ISO 8601 UTC).
HEARTBEAT_KEY = "worker_heartbeat_at"


def record_heartbeat(store: MetaStore, now: datetime) -> None:
    """Record that a worker is alive at ``now`` (the latest beat of any worker wins)."""
    store.set_meta(HEARTBEAT_PROVIDER, HEARTBEAT_KEY, now.astimezone(timezone.utc).isoformat())


def last_heartbeat(store: MetaStore) -> datetime | None:
    """The last recorded worker heartbeat, or None (never, or unreadable)."""
    raw = store.get_meta(HEARTBEAT_PROVIDER, HEARTBEAT_KEY)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _json(status: int, document: dict[str, Any]) -> WebhookResponse:
    body = (json.dumps(document, sort_keys=True) + "\n").encode()
    return WebhookResponse(
        status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body
    )


class HealthCheck:
    """The liveness and readiness answers for one store.

    Args:
        store: the store the pipeline uses (read for readiness).
        heartbeat_max_age: a worker heartbeat older than this makes the process not ready
            (5 minutes: ten of the worker's default beats).
        require_worker: False when no mailparity worker runs (readiness checks the store only).
        clock: injectable for tests (UTC now).
    """

    def __init__(
        self,
        store: MetaStore,
        *,
        heartbeat_max_age: timedelta = timedelta(minutes=5),
        require_worker: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.heartbeat_max_age = heartbeat_max_age
        self.require_worker = require_worker
        self.clock = clock

    def liveness(self) -> WebhookResponse:
        """200 ``{"status": "ok"}``: answering at all is the proof."""
        return _json(200, {"status": "ok"})

    def readiness(self) -> WebhookResponse:
        """200 when the store answers and (``require_worker``) a heartbeat is recent; else 503
        naming the failing check."""
        checks: dict[str, str] = {}
        try:
            beat = last_heartbeat(self.store)
        except Exception as exc:  # any store failure means "not ready", never a 500
            log.warning("readiness: the store did not answer (%s)", type(exc).__name__)
            checks["store"] = f"unreachable: {type(exc).__name__}"
            if self.require_worker:
                checks["worker"] = "unknown"
            return _json(503, {"status": "unavailable", "checks": checks})
        checks["store"] = "ok"
        ready = True
        if self.require_worker:
            if beat is None:
                checks["worker"] = "no heartbeat recorded"
                ready = False
            else:
                age = self.clock() - beat
                if age > self.heartbeat_max_age:
                    checks["worker"] = f"heartbeat {int(age.total_seconds())} s old"
                    ready = False
                else:
                    checks["worker"] = "ok"
        document = {"status": "ok" if ready else "unavailable", "checks": checks}
        return _json(200 if ready else 503, document)

    def respond(self, path: str) -> WebhookResponse | None:
        """The answer for ``path`` (relative to where the app is mounted), or None when it is not
        a health path."""
        normalized = path.rstrip("/") or "/"
        if normalized == HEALTH_PATH:
            return self.liveness()
        if normalized == READY_PATH:
            return self.readiness()
        return None


def check_for(handler: Any, health: HealthCheck | None) -> HealthCheck | None:
    """The check an app serves: ``health``, else one of the handler's store; None (no health
    routes) for a handler-like object without a store."""
    if health is not None:
        return health
    store = getattr(handler, "store", None)
    return None if store is None else HealthCheck(store)
