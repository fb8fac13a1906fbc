"""Retention: each service purges its own old data with named rules, on one daily schedule.

A rule is a DELETE bounded by a cutoff; running it twice deletes nothing the second time. It
deletes in batches of at most `BATCH` rows, each batch its own transaction, so a year of rows
falling due at once is never one long transaction holding its locks and its WAL to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import Counter

from runtime.db import Database
from runtime.logging import get_logger

log = get_logger(__name__)

BATCH = 5000

PURGED = Counter("retention_purged_rows_total", "Rows removed by retention rules",
                 ["service", "rule"])


@dataclass(frozen=True)
class Rule:
    """Delete rows of `table` where `column` is older than `days` (and `where`, if given)."""

    name: str
    table: sa.Table
    column: str
    days: float
    where: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None

    def due(self, now: datetime) -> list[sa.ColumnElement[bool]]:
        """What makes a row due at `now`."""
        col = self.table.c[self.column]
        due = [col.is_not(None), col < now - timedelta(days=self.days)]
        if self.where is not None:
            due.append(self.where(self.table))
        return due

    def statement(self, now: datetime, batch: int = BATCH) -> sa.Delete:
        """At most `batch` of the rows due, picked by primary key."""
        key = list(self.table.primary_key.columns)
        picked = sa.select(*key).where(*self.due(now)).limit(batch)
        target = key[0] if len(key) == 1 else sa.tuple_(*key)
        return sa.delete(self.table).where(target.in_(picked))


def outbox_inbox_rules(outbox: sa.Table, inbox: sa.Table, outbox_days: float = 7,
                       inbox_days: float = 7) -> list[Rule]:
    return [Rule("outbox_published", outbox, "published_at", outbox_days),
            Rule("inbox_processed", inbox, "processed_at", inbox_days)]


async def run_rules(db: Database, service: str, rules: list[Rule],
                    now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Apply every rule (disabled when days <= 0), a transaction per batch of `batch` rows,
    until a batch comes back short."""
    now = now or datetime.now(UTC)
    purged: dict[str, int] = {}
    for rule in rules:
        if rule.days <= 0:
            continue
        purged[rule.name] = 0
        while True:
            async with db.transaction() as s:
                deleted = (await s.execute(rule.statement(now, batch))).rowcount or 0
            purged[rule.name] += deleted
            PURGED.labels(service, rule.name).inc(deleted)
            if deleted < batch:
                break
    log.info("retention_cleanup", **purged)
    return purged
