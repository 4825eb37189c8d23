"""The tables of :class:`~mailparity.contrib.django.store.DjangoStore` (app label
``mailparity``), created by the app's Django migrations (``python manage.py migrate``).

Instants are stored as whole microseconds since the Unix epoch (UTC) in integer columns: exact,
sortable, and independent of the host's ``USE_TZ`` and ``TIME_ZONE`` (a ``DateTimeField`` stores
naive local times when ``USE_TZ = False``, and the leases need microsecond-exact comparisons). The
``*_at`` properties give them back as aware UTC datetimes.

Configs and tokens are JSON with their secrets revealed, as in every shipped store (the library
needs them back to call the providers): protect the database like any credential store. The admin
never shows these columns.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models

from ...stores._common import from_micros

__all__ = ["Credential", "DedupeKey", "Job", "Lock", "Mailbox", "MetaValue"]


def _when(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


class Mailbox(models.Model):  # type: ignore[misc]
    """One mailbox connection: the config of a registered provider, keyed by the host's
    ``provider_id``."""

    provider_id = models.CharField(max_length=255, primary_key=True)
    provider = models.CharField(max_length=32)
    tenant = models.CharField(max_length=255)
    mailbox = models.CharField(max_length=320)
    #: The case-insensitive lookup key of ``mailbox``.
    mailbox_key = models.CharField(max_length=320)
    #: The push subscription id the config is found by (its provider spec's), or NULL.
    subscription_id = models.CharField(max_length=255, null=True, blank=True)
    #: The config as JSON, secrets revealed.
    config = models.TextField()
    updated_at_us = models.BigIntegerField()

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_mailbox"
        ordering = ["provider_id"]
        verbose_name = "mailbox"
        verbose_name_plural = "mailboxes"
        indexes = [
            models.Index(fields=["provider", "mailbox_key"], name="mailparity_mailbox_lookup"),
            models.Index(fields=["subscription_id"], name="mailparity_mailbox_sub"),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox} ({self.provider}, {self.provider_id})"

    def __repr__(self) -> str:
        # The config holds secrets: never in a repr.
        return f"<Mailbox {self.provider_id!r} {self.provider} {self.mailbox!r}>"


class Credential(models.Model):  # type: ignore[misc]
    """The OAuth tokens of one provider (JSON, secrets revealed)."""

    provider_id = models.CharField(max_length=255, primary_key=True)
    data = models.TextField()
    updated_at_us = models.BigIntegerField()

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_credential"

    def __str__(self) -> str:
        return f"tokens of {self.provider_id}"

    def __repr__(self) -> str:
        return f"<Credential {self.provider_id!r}>"


class Job(models.Model):  # type: ignore[misc]
    """A durable job (see :class:`~mailparity.models.Job`)."""

    id = models.CharField(max_length=64, primary_key=True)
    kind = models.CharField(max_length=32)
    provider_id = models.CharField(max_length=255, db_index=True)
    payload = models.TextField()
    unique_key = models.CharField(max_length=512, null=True, blank=True)
    attempts = models.IntegerField(default=0)
    available_at_us = models.BigIntegerField()
    created_at_us = models.BigIntegerField()
    last_error = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=16)
    lease_until_us = models.BigIntegerField(null=True, blank=True)
    worker_id = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_job"
        constraints = [
            # At most one pending job per unique_key: the database decides concurrent enqueues.
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=models.Q(status="pending"),
                name="mailparity_job_pending_key",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "available_at_us"], name="mailparity_job_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def available_at(self) -> datetime | None:
        return _when(self.available_at_us)


class DedupeKey(models.Model):  # type: ignore[misc]
    """A dedupe key of one provider: claimed (``owner`` until ``lease_until``) and/or
    published (``complete`` or ``minimal``)."""

    provider_id = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    published = models.CharField(max_length=16, null=True, blank=True)
    event_id = models.CharField(max_length=64, null=True, blank=True)
    published_at_us = models.BigIntegerField(null=True, blank=True)
    owner = models.CharField(max_length=255, null=True, blank=True)
    lease_until_us = models.BigIntegerField(null=True, blank=True)

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_dedupe"
        constraints = [
            models.UniqueConstraint(fields=["provider_id", "key"], name="mailparity_dedupe_key"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.key}"


class Lock(models.Model):  # type: ignore[misc]
    """A lease lock (token refresh, renewal sweeps)."""

    name = models.CharField(max_length=255, primary_key=True)
    owner = models.CharField(max_length=255)
    until_us = models.BigIntegerField()

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_lock"

    def __str__(self) -> str:
        return str(self.name)


class MetaValue(models.Model):  # type: ignore[misc]
    """A small per-provider value (last push, failure counters, sweep marks)."""

    provider_id = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    value = models.TextField()
    #: When the value was last set (the store's clock), for retention.
    updated_at_us = models.BigIntegerField()

    class Meta:
        app_label = "mailparity"
        db_table = "mailparity_meta"
        constraints = [
            models.UniqueConstraint(fields=["provider_id", "key"], name="mailparity_meta_key"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.key}"
