"""`python -m billing api|worker|migrate|bootstrap|revision|retention-cleanup|seed-plans`."""

from __future__ import annotations

from decimal import Decimal

from billing import retention
from billing.app import create_api
from billing.config import Settings
from billing.service import plan_service
from billing.stats import StatsRepository
from billing.worker import build_worker
from runtime.db import Database
from runtime.logging import get_logger
from runtime.service import ServiceDefinition, run_cli

log = get_logger("billing")

DEMO_PLANS = [
    {"name": "Monthly", "description": "30 days, up to 3 devices", "price_usd": Decimal("4.99"),
     "duration_days": 30, "max_devices": 3},
    {"name": "Quarterly", "description": "90 days, up to 5 devices",
     "price_usd": Decimal("12.99"), "duration_days": 90, "max_devices": 5},
    {"name": "Yearly", "description": "365 days, up to 10 devices",
     "price_usd": Decimal("39.99"), "duration_days": 365, "max_devices": 10},
]


async def seed_plans(settings: Settings, args: list[str]) -> int:
    """Create the demo plans; plans that already exist (by name) are left as they are."""
    db = Database(settings, pool_size=1)
    try:
        async with db.transaction() as s:
            created = await plan_service.seed(s, DEMO_PLANS)
    finally:
        await db.dispose()
    log.info("plans_seeded", created=created, total=len(DEMO_PLANS))
    return 0


definition = ServiceDefinition(name="billing", settings_factory=Settings, create_api=create_api,
                               build_worker=build_worker, retention=retention.rules,
                               stats_days=StatsRepository, commands={"seed-plans": seed_plans})

if __name__ == "__main__":
    run_cli(definition)
