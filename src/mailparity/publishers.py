"""Shipped ``EventPublisher`` and ``SecretStore`` implementations.

* :class:`InMemoryPublisher` keeps every event in ``.events`` (tests, demos); it can simulate a
  failing bus with :meth:`~InMemoryPublisher.fail_next`.
* :class:`CallbackPublisher` adapts plain functions, one per kind of event
  (``on_email=``, ``on_auth_failure=``) or one for all.
* :class:`JsonlFilePublisher` appends one JSON line per event to a file, durably and safely from
  several threads and processes.
* :class:`DictSecretStore` serves tenant secrets from a mapping.

Every publisher raises :class:`~mailparity.errors.PublishError` when an event was not accepted, so
the library keeps the work pending and publishes again later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import MailParityError, PublishError
from .models import (
    EmailProviderAuthFailed,
    EmailProviderConnected,
    EmailProviderReauthorized,
    EmailProviderSubscriptionLost,
    InboundEmailReceived,
    MailParityEvent,
)

try:  # POSIX; elsewhere appends rely on O_APPEND alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_log = logging.getLogger(__name__)

__all__ = [
    "CallbackPublisher",
    "DictSecretStore",
    "InMemoryPublisher",
    "JsonlFilePublisher",
    "event_to_json",
]


def event_to_json(event: MailParityEvent) -> dict[str, Any]:
    """The wire form of an event: camelCase keys, JSON types (what every publisher sends)."""
    return event.model_dump(mode="json", by_alias=True)


class InMemoryPublisher:
    """Collects published events in ``.events``, in publishing order. Thread-safe.

    ``fail_next(n)`` makes the next ``n`` calls of :meth:`publish` raise (a failing bus); failed
    events are not recorded. ``attempts`` counts every call, failed or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[MailParityEvent] = []
        self.attempts = 0
        self._failures_left = 0
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"InMemoryPublisher(events={len(self.events)})"

    def publish(self, event: MailParityEvent) -> None:
        """Record ``event``, or raise when a failure was scheduled with :meth:`fail_next`."""
        with self._lock:
            self.attempts += 1
            if self._failures_left > 0:
                self._failures_left -= 1
                failure = self._failure
                if self._failures_left == 0:
                    self._failure = None
                if failure is not None:
                    raise failure
                raise PublishError("simulated publish failure")
            self.events.append(event)

    def fail_next(self, n: int = 1, exc: BaseException | None = None) -> None:
        """Make the next ``n`` publishes fail with ``exc`` (default: a ``PublishError``)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._failures_left = n
            self._failure = exc

    def clear(self) -> None:
        """Forget the recorded events (the failure schedule is kept)."""
        with self._lock:
            self.events.clear()

    @property
    def emails(self) -> list[InboundEmailReceived]:
        """The recorded ``INBOUND_EMAIL_RECEIVED`` events, in order, typed as such."""
        with self._lock:
            return [event for event in self.events if isinstance(event, InboundEmailReceived)]

    @property
    def auth_failures(self) -> list[EmailProviderAuthFailed]:
        """The recorded ``EMAIL_PROVIDER_AUTH_FAILED`` events, in order, typed as such."""
        with self._lock:
            return [event for event in self.events if isinstance(event, EmailProviderAuthFailed)]

    @property
    def connected(self) -> list[EmailProviderConnected]:
        """The recorded ``EMAIL_PROVIDER_CONNECTED`` events, in order, typed as such."""
        with self._lock:
            return [event for event in self.events if isinstance(event, EmailProviderConnected)]

    @property
    def reauthorized(self) -> list[EmailProviderReauthorized]:
        """The recorded ``EMAIL_PROVIDER_REAUTHORIZED`` events, in order, typed as such."""
        with self._lock:
            return [
                event for event in self.events if isinstance(event, EmailProviderReauthorized)
            ]

    @property
    def subscriptions_lost(self) -> list[EmailProviderSubscriptionLost]:
        """The recorded ``EMAIL_PROVIDER_SUBSCRIPTION_LOST`` events, in order, typed as such."""
        with self._lock:
            return [
                event for event in self.events
                if isinstance(event, EmailProviderSubscriptionLost)
            ]

    def events_of_type(self, event_type: str) -> list[MailParityEvent]:
        """The recorded events whose ``event_type`` is ``event_type``, in order."""
        with self._lock:
            return [event for event in self.events if event.event_type == event_type]

    def event_ids(self) -> list[str]:
        """The ``event_id`` of every recorded event, in order."""
        with self._lock:
            return [event.event_id for event in self.events]


class CallbackPublisher:
    """Adapts functions to the ``EventPublisher`` protocol, one per kind of event.

    ``on_email`` gets every :class:`~mailparity.models.InboundEmailReceived`,
    ``on_auth_failure`` every :class:`~mailparity.models.EmailProviderAuthFailed`,
    ``on_connected`` every :class:`~mailparity.models.EmailProviderConnected`,
    ``on_reauthorized`` every :class:`~mailparity.models.EmailProviderReauthorized` and
    ``on_subscription_lost`` every :class:`~mailparity.models.EmailProviderSubscriptionLost`,
    each typed as its own event class (``event.email_data`` type-checks under
    ``mypy --strict``). ``fn``, the positional function, gets the events no typed function
    takes (all of them when it is the only one). An event no function takes is accepted and not
    passed on: the mailbox's health stays in the store (``needs_consent``) whatever the
    publisher does with the event. ::

        mp.CallbackPublisher(on_email=lambda event: print(event.email_data.subject))

    An exception from a function becomes a :class:`PublishError` (chained as ``__cause__``; its
    message names only the exception type, since the function's message may carry anything), so
    the event is published again later. Errors of the library pass through unchanged.
    """

    def __init__(
        self,
        fn: Callable[[MailParityEvent], object] | None = None,
        *,
        on_email: Callable[[InboundEmailReceived], object] | None = None,
        on_auth_failure: Callable[[EmailProviderAuthFailed], object] | None = None,
        on_connected: Callable[[EmailProviderConnected], object] | None = None,
        on_reauthorized: Callable[[EmailProviderReauthorized], object] | None = None,
        on_subscription_lost: Callable[[EmailProviderSubscriptionLost], object] | None = None,
    ) -> None:
        given = {
            "fn": fn, "on_email": on_email, "on_auth_failure": on_auth_failure,
            "on_connected": on_connected, "on_reauthorized": on_reauthorized,
            "on_subscription_lost": on_subscription_lost,
        }
        for name, value in given.items():
            if value is not None and not callable(value):
                raise TypeError(
                    f"CallbackPublisher {name} must be callable, not {type(value).__name__}"
                )
        if all(value is None for value in given.values()):
            raise TypeError(
                "CallbackPublisher needs a function: fn, on_email, on_auth_failure, on_connected,"
                " on_reauthorized or on_subscription_lost"
            )
        self._fn = fn
        self._on_email = on_email
        self._on_auth_failure = on_auth_failure
        self._on_connected = on_connected
        self._on_reauthorized = on_reauthorized
        self._on_subscription_lost = on_subscription_lost

    def __repr__(self) -> str:
        parts = []
        for label, value in (
            ("", self._fn), ("on_email=", self._on_email),
            ("on_auth_failure=", self._on_auth_failure), ("on_connected=", self._on_connected),
            ("on_reauthorized=", self._on_reauthorized),
            ("on_subscription_lost=", self._on_subscription_lost),
        ):
            if value is not None:
                name = getattr(value, "__qualname__", type(value).__name__)
                parts.append(f"{label}{name}")
        return f"CallbackPublisher({', '.join(parts)})"

    def publish(self, event: MailParityEvent) -> None:
        """Call the function that takes ``event``'s kind (see the class)."""
        try:
            if isinstance(event, InboundEmailReceived) and self._on_email is not None:
                self._on_email(event)
            elif isinstance(event, EmailProviderAuthFailed) and self._on_auth_failure is not None:
                self._on_auth_failure(event)
            elif isinstance(event, EmailProviderConnected) and self._on_connected is not None:
                self._on_connected(event)
            elif isinstance(event, EmailProviderReauthorized) and self._on_reauthorized is not None:
                self._on_reauthorized(event)
            elif (
                isinstance(event, EmailProviderSubscriptionLost)
                and self._on_subscription_lost is not None
            ):
                self._on_subscription_lost(event)
            elif self._fn is not None:
                self._fn(event)
            else:
                _log.debug("CallbackPublisher: no function takes %s; accepted", event.event_type)
        except MailParityError:
            raise
        except Exception as exc:
            raise PublishError(f"publisher callback raised {type(exc).__name__}") from exc


class JsonlFilePublisher:
    """Appends each event as one JSON line (``event_to_json``) to ``path``.

    Each line is written with one ``write`` on an ``O_APPEND`` descriptor under an exclusive
    ``fcntl`` lock and ``fsync``-ed before ``publish`` returns, so concurrent processes never
    interleave lines and a returned publish survives a crash. The file is created when missing
    (mode 0600: events carry mail content); its folder must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlFilePublisher({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The file the events are appended to."""
        return self._path

    def publish(self, event: MailParityEvent) -> None:
        """Append ``event``; raise :class:`PublishError` when it could not be written durably."""
        line = (
            json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode("utf-8")
        with self._lock:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise PublishError(f"cannot open the event file: {exc.strerror}") from exc
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.write(fd, self._after_torn_line(fd) + line)
                if written < len(line):
                    raise PublishError("short write to the event file")
                if self._fsync:
                    os.fsync(fd)
            except OSError as exc:
                raise PublishError(f"cannot write the event file: {exc.strerror}") from exc
            finally:
                # Closing the descriptor also drops the flock.
                os.close(fd)

    @staticmethod
    def _after_torn_line(fd: int) -> bytes:
        """A newline when the file ends mid-line (a writer crashed during its write), so the torn
        fragment stays on its own line instead of corrupting the next event."""
        size = os.fstat(fd).st_size
        if size == 0 or not hasattr(os, "pread"):
            return b""
        return b"" if os.pread(fd, 1, size - 1) == b"\n" else b"\n"

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Every event written to ``path`` so far, as dicts (an absent file reads as empty)."""
        return list(JsonlFilePublisher.iter_events(path))

    @staticmethod
    def iter_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
        """Iterate the events of ``path``. A torn line (a writer crashed mid-write, so that publish
        never returned and the event will be published again) is skipped."""
        try:
            handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                text = raw.strip()
                if not text:
                    continue
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    yield value


class DictSecretStore:
    """A ``SecretStore`` over a mapping ``{tenant: {name: value}}`` (copied on construction).

    Values never appear in its repr.
    """

    def __init__(self, mapping: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, dict[str, str]] = {
            tenant: dict(values) for tenant, values in (mapping or {}).items()
        }

    def __repr__(self) -> str:
        with self._lock:
            return f"DictSecretStore(tenants={sorted(self._secrets)})"

    def get_secret(self, tenant: str, name: str) -> str | None:
        """The secret ``name`` of ``tenant``, or None."""
        with self._lock:
            return self._secrets.get(tenant, {}).get(name)

    def set_secret(self, tenant: str, name: str, value: str | None) -> None:
        """Set (None deletes) a secret."""
        with self._lock:
            if value is None:
                self._secrets.get(tenant, {}).pop(name, None)
            else:
                self._secrets.setdefault(tenant, {})[name] = value
