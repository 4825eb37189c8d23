"""v0002: what the retention sweep needs.

* ``meta.updated_at``: when each value was last set, so per-message bookkeeping can be pruned by
  age. Rows from before the upgrade count as set at the upgrade (nothing is pruned early).
* an index on ``dedupe.published_at``: the sweep deletes published keys by age.

Dead jobs are pruned by ``(status, available_at)``, which ``ix_jobs_claim`` already covers.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

_TS = sa.DateTime(timezone=True)


def upgrade(connection: sa.Connection) -> None:
    """Add ``meta.updated_at`` (filled with the upgrade's time) and index ``published_at``."""
    type_sql = _TS.compile(dialect=connection.dialect)
    connection.exec_driver_sql(f"ALTER TABLE meta ADD COLUMN updated_at {type_sql}")
    meta = sa.MetaData()
    table = sa.Table("meta", meta, sa.Column("updated_at", _TS))
    now = datetime.now(timezone.utc)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # naive UTC, as the store's UtcDateTime writes it
    connection.execute(sa.update(table).values(updated_at=now))
    dedupe = sa.Table("dedupe", meta, sa.Column("published_at", _TS))
    sa.Index("ix_dedupe_published_at", dedupe.c.published_at).create(connection)
