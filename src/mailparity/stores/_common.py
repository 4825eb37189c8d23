"""Helpers shared by the shipped stores: one definition of the store semantics, so the in-memory
and SQLite stores (and the SQL store) cannot drift apart.

Leases, everywhere (dedupe claims, job leases, locks): a lease is live while ``now <= until`` and
free once ``until < now``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, TypeVar

from pydantic import BaseModel, SecretBytes, SecretStr

from ..models import ProviderConfigBase
from ..protocols import ClaimOutcome
from ..providers import spec_for

__all__ = [
    "EPOCH",
    "JOB_STATUSES",
    "LEASE_EXPIRED_ERROR",
    "apply_config_changes",
    "config_mailbox_key",
    "config_subscription_id",
    "copy_model",
    "cursor_swap",
    "dedupe_claim_outcome",
    "from_micros",
    "lease_live",
    "meta_key_matches",
    "normalize_config",
    "to_micros",
    "to_utc",
    "utc_now_micros",
]

AnyConfig = ProviderConfigBase

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Every status a job can have. ``done`` jobs are deleted by the shipped stores.
JOB_STATUSES = ("pending", "running", "done", "dead")

#: The error recorded on a job whose worker's lease ran out (the worker crashed or hung).
LEASE_EXPIRED_ERROR = "lease expired before the job completed"

_IMMUTABLE_FIELDS = frozenset({"provider_id", "provider"})

_M = TypeVar("_M", bound=BaseModel)

#: Values a copy may share with the original: nobody can change them in place.
_SHARED_TYPES = (
    str, bytes, int, float, bool, type(None), datetime, date, time, timedelta, SecretStr,
    SecretBytes, frozenset,
)


#: The same, as exact types: a set lookup settles most values before any isinstance() check.
_SHARED_EXACT = frozenset(_SHARED_TYPES)


def _copy_value(value: Any) -> Any:
    kind = type(value)
    if kind in _SHARED_EXACT or isinstance(value, _SHARED_TYPES):
        return value
    if kind is dict:
        return {key: _copy_value(item) for key, item in value.items()}
    if kind is list:
        if all(type(item) is str for item in value):  # scopes, ids: a shallow copy is enough
            return list(value)
        return [_copy_value(item) for item in value]
    if kind is tuple:
        return tuple(_copy_value(item) for item in value)
    if isinstance(value, BaseModel):
        return copy_model(value)
    return copy.deepcopy(value)


_set_attr = object.__setattr__


def copy_model(model: _M) -> _M:
    """A copy of ``model`` that shares nothing mutable with it (what ``model_copy(deep=True)``
    gives), made without ``copy.deepcopy`` for the immutable values (str, datetime, SecretStr,
    ...) that make up most of a config or job: the stores copy on every read and write, so a
    generic deep copy was a large part of the cost of a job.

    Built the way pydantic's own ``__copy__`` builds a copy (new instance, then ``__dict__``,
    extra, fields set and private state), with the mutable values copied on the way."""
    cls = type(model)
    clone = cls.__new__(cls)
    state = dict(model.__dict__)
    for name, value in state.items():
        if type(value) not in _SHARED_EXACT and not isinstance(value, _SHARED_TYPES):
            state[name] = _copy_value(value)  # replaces a value: the dict's size is unchanged
    _set_attr(clone, "__dict__", state)
    extra = model.__pydantic_extra__
    _set_attr(clone, "__pydantic_extra__", None if extra is None else _copy_value(extra))
    _set_attr(clone, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    private = getattr(model, "__pydantic_private__", None)
    _set_attr(clone, "__pydantic_private__", None if private is None else _copy_value(private))
    return clone


def to_utc(value: datetime) -> datetime:
    """``value`` as timezone-aware UTC; naive datetimes are taken as UTC (as the models do)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_micros(value: datetime) -> int:
    """Whole microseconds since the Unix epoch: an exact, sortable integer for SQL columns."""
    return (to_utc(value) - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """The inverse of :func:`to_micros` (timezone-aware UTC)."""
    return EPOCH + timedelta(microseconds=value)


def utc_now_micros() -> int:
    """The current time as :func:`to_micros` (bookkeeping columns such as ``updated_at``)."""
    return to_micros(datetime.now(timezone.utc))


def lease_live(until: datetime | None, now: datetime) -> bool:
    """True while a lease ending at ``until`` still holds at ``now``."""
    return until is not None and to_utc(now) <= to_utc(until)


def config_mailbox_key(mailbox: str) -> str:
    """The case-insensitive lookup key of a mailbox address."""
    return mailbox.strip().casefold()


def config_subscription_id(config: AnyConfig) -> str | None:
    """The push subscription id a config is found by (its spec's ``subscription_id``; None for a
    provider whose pushes are routed otherwise)."""
    return spec_for(config).subscription_id(config)


#: The cursor field the former ``compare_and_set_history_id`` moves.
LEGACY_CURSOR_FIELD = "history_id"


def cursor_swap(
    config: AnyConfig, expected: Any, new: Any, *, legacy: bool = False
) -> AnyConfig | None:
    """``config`` with its catch-up cursor set to ``new`` when the cursor is still ``expected``;
    None when it is not (the compare-and-set lost). The caller stores the result atomically with
    the read of ``config``.

    Raises ValueError when the provider has no cursor field (or, with ``legacy``, when it is not
    ``history_id``: the former ``compare_and_set_history_id`` served Gmail only), or when the
    config rejects ``new``."""
    name = spec_for(config).cursor_field
    if legacy and name != LEGACY_CURSOR_FIELD:
        raise ValueError(
            f"provider {config.provider_id!r} is not a Gmail provider (its cursor is not"
            f" {LEGACY_CURSOR_FIELD})"
        )
    if name is None:
        raise ValueError(
            f"provider {config.provider_id!r} ({config.provider}) has no catch-up cursor field"
        )
    if getattr(config, name) != expected:
        return None
    return apply_config_changes(config, {name: new})


def normalize_config(config: AnyConfig) -> AnyConfig:
    """A deep copy of ``config`` whose datetime fields are timezone-aware UTC.

    The config models accept naive datetimes; the stores hand back aware UTC ones only, so that
    comparisons with ``utcnow()`` (renewal sweeps) can never fail on a naive value.
    """
    changes = {
        name: to_utc(value)
        for name in type(config).model_fields
        if isinstance(value := getattr(config, name), datetime)
    }
    return copy_model(config.model_copy(update=changes))


def apply_config_changes(config: AnyConfig, changes: Mapping[str, Any]) -> AnyConfig:
    """A new, validated config: ``config`` with ``changes`` (field name -> value) applied.

    Values go through the model's validation (``"123"`` becomes ``123`` for ``history_id``, a plain
    string becomes ``SecretStr``, a naive datetime is read as UTC). Unknown fields raise
    ``ValueError`` rather than being dropped silently, and so do ``provider_id`` / ``provider``
    changes, which would move the record under another key.
    """
    fields = type(config).model_fields
    unknown = sorted(name for name in changes if name not in fields)
    if unknown:
        raise ValueError(f"unknown config fields for {type(config).__name__}: {unknown}")
    for name in _IMMUTABLE_FIELDS.intersection(changes):
        if changes[name] != getattr(config, name):
            raise ValueError(f"{name} cannot be changed by update_provider")
    data = config.model_dump(mode="python")
    data.update(changes)
    return normalize_config(type(config).model_validate(data))


def dedupe_claim_outcome(
    records: Sequence[tuple[str | None, str | None, datetime | None]], owner: str, now: datetime
) -> ClaimOutcome:
    """Decide a ``claim_keys`` call from the current records of the keys.

    Each record is ``(published, claim_owner, claim_lease_until)`` of one existing key. Published
    complete wins over busy: a message already delivered must not be retried just because
    someone else is looking at it too.
    """
    if any(published == "complete" for published, _, _ in records):
        return "published"
    for _, holder, until in records:
        if holder is not None and holder != owner and lease_live(until, now):
            return "busy"
    return "claimed"


def meta_key_matches(key: str, prefixes: Sequence[str]) -> bool:
    """True when the meta ``key`` starts with one of ``prefixes`` (what ``prune`` may delete)."""
    return any(key.startswith(prefix) for prefix in prefixes if prefix)
