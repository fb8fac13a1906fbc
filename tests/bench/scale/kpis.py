"""Times each service's KPI figures (`StatsRepository.stats`, what `GET /internal/admin/stats`
answers) straight against a seeded scale database: 30 days by day, a year by day and by week,
with the day cache emptied first (cold) and then as left by the cold run (warm).

`python tests/bench/scale/kpis.py --db vpn_scale [--runs 3]`

`--fill`: instead, each service's cache emptied and filled as its worker's `stats_days_fill`
job fills it (`runtime.daystats.fill_recent`, `STATS_DAYS_WARM_DAYS` days, 31 a transaction),
timed; its snapshot of the days not closed emptied and renewed as `stats_live_refresh` renews
it, timed; then the three ranges read warm `--runs` times (as a request reads them while the
worker keeps the snapshot fresh).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from runtime.clock import now
from runtime.periods import Periods

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCHEMAS = {"billing": "billing", "provisioner": "provisioning", "tickets": "tickets"}
SERVICES = tuple(SCHEMAS)


def repository(service: str):
    if service == "billing":
        from billing.stats import StatsRepository
    elif service == "provisioner":
        from provisioner.stats import StatsRepository
    else:
        from tickets.stats import StatsRepository
    return StatsRepository


async def timed(engine, service: str, periods: Periods) -> float:
    async with AsyncSession(engine) as s, s.begin():
        started = time.perf_counter()
        await repository(service)(s).stats(periods)
        return (time.perf_counter() - started) * 1000


async def worker_fill(engine, ranges: dict[str, Periods], runs: int, db_name: str) -> None:
    """The worker's fill from an empty cache, then warm reads."""
    import importlib
    import os

    from seed import scale_env

    from runtime.daystats import fill_recent, refresh_recent
    from runtime.db import Database

    os.environ.update(scale_env(db_name))
    for service in SERVICES:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"TRUNCATE {SCHEMAS[service]}.stats_days, "
                                       f"{SCHEMAS[service]}.stats_live"))
        settings = importlib.import_module(f"{service}.config").Settings()
        db = Database(settings)
        try:
            started = time.perf_counter()
            days = await fill_recent(db, service, repository(service),
                                     settings.stats_days_warm_days)
            took = time.perf_counter() - started
            started = time.perf_counter()
            live = await refresh_recent(db, service, repository(service))
            renewed = time.perf_counter() - started
        finally:
            await db.dispose()
        print(f"{service:12} filled {days} days in {took:6.1f} s, renewed the snapshot of "
              f"{live} live days in {renewed * 1000:.0f} ms", flush=True)
        for name, periods in ranges.items():
            warm = [await timed(engine, service, periods) for _ in range(runs)]
            print(f"{service:12} {name:13} warm: " + ", ".join(f"{r:.0f}" for r in warm)
                  + " ms", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="vpn_scale")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fill", action="store_true", help="time the worker's fill, then warm reads")
    args = ap.parse_args()
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.db}")
    today = now().date()
    ranges = {"30 days": Periods.between(today - timedelta(days=29), today),
              "year by day": Periods.between(today - timedelta(days=365), today),
              "year by week": Periods.between(today - timedelta(days=365), today, "week")}
    if args.fill:
        await worker_fill(engine, ranges, args.runs, args.db)
        await engine.dispose()
        return
    for service in SERVICES:
        async with engine.begin() as conn:
            cached = await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"),
                                       {"t": f"{SCHEMAS[service]}.stats_days"})
        for name, periods in ranges.items():
            if cached:
                async with engine.begin() as conn:
                    await conn.execute(sa.text(f"TRUNCATE {SCHEMAS[service]}.stats_days, "
                                               f"{SCHEMAS[service]}.stats_live"))
            runs = [await timed(engine, service, periods) for _ in range(args.runs + 1)]
            label = "cold, then warm" if cached else "first, then again"
            print(f"{service:12} {name:13} {label}: {runs[0]:8.0f} ms, then "
                  + ", ".join(f"{r:.0f}" for r in runs[1:]) + " ms")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
