"""v0001: the initial schema of the SQL store.

The tables are declared here, frozen as of this version, rather than imported from the store: a
later change to the store's table objects must never change what this migration creates.
"""

from __future__ import annotations

import sqlalchemy as sa

_TS = sa.DateTime(timezone=True)


def _tables(meta: sa.MetaData) -> None:
    sa.Table(
        "providers",
        meta,
        sa.Column("provider_id", sa.String(255), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("mailbox", sa.String(320), nullable=False),
        # casefolded mailbox: find_provider_by_mailbox compares case-insensitively via the index
        sa.Column("mailbox_key", sa.String(320), nullable=False),
        sa.Column("subscription_id", sa.String(255), nullable=True),
        # provider_config_to_storage() as JSON text (secrets revealed: protect the database)
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Index("ix_providers_mailbox", "provider", "mailbox_key"),
        sa.Index("ix_providers_subscription", "subscription_id"),
    )
    sa.Table(
        "tokens",
        meta,
        sa.Column("provider_id", sa.String(255), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    jobs = sa.Table(
        "jobs",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider_id", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("unique_key", sa.String(512), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("available_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Index("ix_jobs_claim", "status", "available_at"),
        sa.Index("ix_jobs_provider", "provider_id"),
    )
    # At most one *pending* job per unique_key: the constraint does the coalescing, so concurrent
    # enqueuers cannot both win. Both supported dialects have partial indexes.
    sa.Index(
        "ux_jobs_pending_unique_key",
        jobs.c.unique_key,
        unique=True,
        postgresql_where=jobs.c.status == "pending",
        sqlite_where=jobs.c.status == "pending",
    )
    sa.Table(
        "dedupe",
        meta,
        sa.Column("provider_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("published", sa.String(16), nullable=True),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_until", _TS, nullable=True),
    )
    sa.Table(
        "locks",
        meta,
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("until", _TS, nullable=False),
    )
    sa.Table(
        "meta",
        meta,
        sa.Column("provider_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def upgrade(connection: sa.Connection) -> None:
    """Create the tables of the first schema version."""
    meta = sa.MetaData()
    _tables(meta)
    meta.create_all(connection)
