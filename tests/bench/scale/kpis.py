"""Times each service's KPI figures (`StatsRepository.stats`, what `GET /internal/admin/stats`
answers) straight against a seeded scale database: 30 days by day, a year by day and by week,
with the day cache emptied first (cold) and then as left by the cold run (warm).

`python tests/bench/scale/kpis.py --db vpn_scale [--runs 3]`
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from runtime.clock import now
from runtime.periods import Periods

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


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", default="vpn_scale")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{args.db}")
    today = now().date()
    ranges = {"30 days": Periods.between(today - timedelta(days=29), today),
              "year by day": Periods.between(today - timedelta(days=365), today),
              "year by week": Periods.between(today - timedelta(days=365), today, "week")}
    for service in SERVICES:
        async with engine.begin() as conn:
            cached = await conn.scalar(sa.text("SELECT to_regclass(:t) IS NOT NULL"),
                                       {"t": f"{SCHEMAS[service]}.stats_days"})
        for name, periods in ranges.items():
            if cached:
                async with engine.begin() as conn:
                    await conn.execute(sa.text(f"TRUNCATE {SCHEMAS[service]}.stats_days"))
            runs = [await timed(engine, service, periods) for _ in range(args.runs + 1)]
            label = "cold, then warm" if cached else "first, then again"
            print(f"{service:12} {name:13} {label}: {runs[0]:8.0f} ms, then "
                  + ", ".join(f"{r:.0f}" for r in runs[1:]) + " ms")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
