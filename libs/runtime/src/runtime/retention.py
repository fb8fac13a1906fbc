"""Retention: each service purges its own old data with named rules, on one daily schedule.

A rule is a DELETE bounded by a cutoff; running it twice deletes nothing the second time.
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

    def statement(self, now: datetime) -> sa.Delete:
        col = self.table.c[self.column]
        stmt = sa.delete(self.table).where(col.is_not(None), col < now - timedelta(days=self.days))
        if self.where is not None:
            stmt = stmt.where(self.where(self.table))
        return stmt


def outbox_inbox_rules(outbox: sa.Table, inbox: sa.Table, outbox_days: float = 7,
                       inbox_days: float = 7) -> list[Rule]:
    return [Rule("outbox_published", outbox, "published_at", outbox_days),
            Rule("inbox_processed", inbox, "processed_at", inbox_days)]


async def run_rules(db: Database, service: str, rules: list[Rule],
                    now: datetime | None = None) -> dict[str, int]:
    """Apply every rule (disabled when days <= 0), each in its own transaction."""
    now = now or datetime.now(UTC)
    purged: dict[str, int] = {}
    for rule in rules:
        if rule.days <= 0:
            continue
        async with db.transaction() as s:
            result = await s.execute(rule.statement(now))
        purged[rule.name] = result.rowcount or 0
        PURGED.labels(service, rule.name).inc(purged[rule.name])
    log.info("retention_cleanup", **purged)
    return purged
