"""The store semantics, written once: what every :class:`~mailparity.protocols.StateStore` must
do, as plain functions a store can build on (the shipped stores do).

* leases (dedupe claims, job leases, locks): live while ``now <= until``, free once
  ``until < now`` (:func:`lease_live`);
* ``claim_keys``: :func:`dedupe_claim_outcome` decides from the records of the keys (published
  complete wins over busy);
* ``update_provider``: :func:`apply_config_changes` validates the changes through the config
  model and refuses unknown fields and a changed ``provider_id`` / ``provider``;
* ``compare_and_set_cursor``: :func:`cursor_swap` (the provider's spec names its cursor field);
* what is handed out is a copy (:func:`copy_model`), with aware UTC datetimes
  (:func:`normalize_config`); mailbox lookups are case-insensitive (:func:`config_mailbox_key`);
  subscription lookups use the spec's id (:func:`config_subscription_id`);
* ``prune``: per-message meta keys are those starting with one of the cutoffs' prefixes
  (:func:`meta_key_matches`).

``mailparity.testing.store_contract`` checks a store against these rules.
"""

from __future__ import annotations

from ._common import (
    JOB_STATUSES,
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
)

__all__ = [
    "JOB_STATUSES",
    "LEASE_EXPIRED_ERROR",
    "apply_config_changes",
    "config_mailbox_key",
    "config_subscription_id",
    "copy_model",
    "cursor_swap",
    "dedupe_claim_outcome",
    "lease_live",
    "meta_key_matches",
    "normalize_config",
]
