"""Retention: each service purges its own old data with named rules, on one daily schedule.

A rule is a DELETE bounded by a cutoff; running it twice deletes nothing the second time. It
deletes in batches of at most `BATCH` rows, each batch its own transaction, so a year of rows
falling due at once is never one long transaction holding its locks and its WAL to the end.
The batches walk the table in primary-key order, each one starting after the last key of the
one before: a run reads the table once, however many rows fall due. (Taking "any `BATCH` due
rows" instead makes every batch scan again past the rows the batches before it deleted, which
stay in the table as dead rows until a vacuum: a cost growing with the square of the rows due.)
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

    def statement(self, now: datetime, batch: int = BATCH,
                  after: tuple | None = None) -> sa.Select:
        """Delete the first `batch` rows due whose primary key comes after `after` (from the
        start when None). Its one row: how many were picked, and the last key picked; no row
        when none was due."""
        key = list(self.table.primary_key.columns)
        due = self.due(now)
        if after is not None:
            bound = [sa.bindparam(None, v, type_=c.type) for c, v in zip(key, after, strict=True)]
            due.append(key[0] > bound[0] if len(key) == 1 else sa.tuple_(*key) > sa.tuple_(*bound))
        picked = sa.select(*key).where(*due).order_by(*key).limit(batch).cte("picked")
        target = key[0] if len(key) == 1 else sa.tuple_(*key)
        gone = (sa.delete(self.table).where(target.in_(sa.select(*picked.c)))
                .returning(key[0]).cte("gone"))
        last = (sa.select(*picked.c).order_by(*(c.desc() for c in picked.c)).limit(1)
                .subquery("last"))
        return sa.select(
            sa.select(sa.func.count()).select_from(picked).scalar_subquery().label("picked"),
            sa.select(sa.func.count()).select_from(gone).scalar_subquery().label("deleted"),
            *last.c)


def outbox_inbox_rules(outbox: sa.Table, inbox: sa.Table, outbox_days: float = 7,
                       inbox_days: float = 7) -> list[Rule]:
    return [Rule("outbox_published", outbox, "published_at", outbox_days),
            Rule("inbox_processed", inbox, "processed_at", inbox_days)]


async def run_rules(db: Database, service: str, rules: list[Rule],
                    now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Apply every rule (disabled when days <= 0), a transaction per batch of `batch` rows,
    until a batch comes back short (the end of the table)."""
    now = now or datetime.now(UTC)
    purged: dict[str, int] = {}
    for rule in rules:
        if rule.days <= 0:
            continue
        purged[rule.name] = 0
        after = None
        while True:
            async with db.transaction() as s:
                row = (await s.execute(rule.statement(now, batch, after))).first()
            if row is None:
                break
            picked, deleted, *last = row
            purged[rule.name] += deleted
            PURGED.labels(service, rule.name).inc(deleted)
            if picked < batch:
                break
            after = tuple(last)
    log.info("retention_cleanup", **purged)
    return purged
