"""The provisioner's expiry sweep over many subscriptions made due at once, in a seeded scale
database (`seed.py --db ...`), run in this process the way the worker's `expiry_sweep` job runs
it (its handler: batch after batch for `SWEEP_BUDGET_SECONDS`, the settings' batch size and
concurrency, the sandbox backend behind the server pool).

`--due N` running subscriptions (all of them when fewer are running; `--revive` first makes
ended ones running again, accounts on, to reach N) get an `expires_at` a minute ago; then job
runs follow one another (no wait between them) until one expires nothing. Printed: each run's
count and time, the total, and the check that every one is EXPIRED with exactly one
`subscription.expired` event and its sandbox account off. `--restore` first puts back what an
earlier measurement expired (ACTIVE for 30 more days, accounts on, its events deleted), so the
same set can be measured again (e.g. before and after a change). The tables are vacuumed before
the sweep starts, as autovacuum would keep them.

    .venv/bin/python tests/bench/scale/expiry_sweep.py --db vpn_scale_expiry --due 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

EXPIRED_KEY = "provisioning.subscription.expired%"


async def restore(conn: asyncpg.Connection) -> int:
    """Undo an earlier measurement: what it expired runs again, its events are gone."""
    async with conn.transaction():
        ids = [r["id"] for r in await conn.fetch(
            "SELECT DISTINCT envelope->'payload'->>'subscription_id' AS id FROM "
            "provisioning.outbox WHERE routing_key LIKE $1", EXPIRED_KEY)]
        await conn.execute("UPDATE provisioning.subscriptions SET status = 'ACTIVE', "
                           "expires_at = now() + interval '30 days' WHERE id = ANY($1::text[])",
                           ids)
        await enable(conn, ids)
        await conn.execute("DELETE FROM provisioning.outbox WHERE routing_key LIKE $1",
                           EXPIRED_KEY)
    return len(ids)


async def enable(conn: asyncpg.Connection, ids: list[str]) -> None:
    refs = "SELECT provision_ref FROM provisioning.subscriptions WHERE id = ANY($1::text[])"
    await conn.execute(f"UPDATE provisioning.sandbox_vpn_accounts SET enabled = true "
                       f"WHERE ref IN ({refs})", ids)
    await conn.execute(f"UPDATE provisioning.backend_accounts SET state = 'ACTIVE' "
                       f"WHERE ref IN ({refs})", ids)


async def make_due(conn: asyncpg.Connection, due: int, revive: bool) -> list[str]:
    async with conn.transaction():
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM provisioning.subscriptions WHERE status = 'ACTIVE' ORDER BY id "
            "LIMIT $1", due)]
        if revive and len(ids) < due:
            more = [r["id"] for r in await conn.fetch(
                "SELECT id FROM provisioning.subscriptions WHERE status IN "
                "('EXPIRED', 'CANCELED') ORDER BY id LIMIT $1", due - len(ids))]
            await conn.execute("UPDATE provisioning.subscriptions SET status = 'ACTIVE', "
                               "suspend_reason = NULL WHERE id = ANY($1::text[])", more)
            await enable(conn, more)
            ids += more
        await conn.execute("UPDATE provisioning.subscriptions SET expires_at = now() - "
                           "interval '1 minute' WHERE id = ANY($1::text[])", ids)
    return ids


async def check(conn: asyncpg.Connection, ids: list[str]) -> dict:
    left = await conn.fetchval("SELECT count(*) FROM provisioning.subscriptions WHERE "
                               "id = ANY($1::text[]) AND status <> 'EXPIRED'", ids)
    events = await conn.fetch(
        "SELECT envelope->'payload'->>'subscription_id' AS id, count(*) AS n FROM "
        "provisioning.outbox WHERE routing_key LIKE $1 GROUP BY 1", EXPIRED_KEY)
    chosen = set(ids)
    still_on = await conn.fetchval(
        "SELECT count(*) FROM provisioning.sandbox_vpn_accounts v JOIN "
        "provisioning.subscriptions s ON s.provision_ref = v.ref WHERE s.id = ANY($1::text[])"
        " AND v.enabled", ids)
    return {"not_expired": left,
            "one_event": sum(1 for e in events if e["id"] in chosen and e["n"] == 1),
            "more_than_one_event": sum(1 for e in events if e["n"] > 1),
            "events_for_others": sum(1 for e in events if e["id"] not in chosen),
            "accounts_still_on": still_on}


async def measure(ns: argparse.Namespace) -> dict:
    from seed import scale_env

    os.environ.update(scale_env(ns.db))
    from provisioner.backends import build_backend
    from provisioner.config import Settings
    from provisioner.jobs import schedule_handlers
    from provisioner.servers import ServerPool
    from provisioner.service import ProvisioningService
    from runtime.db import Database

    settings = Settings()
    db = Database(settings)
    backend = build_backend(settings, db)
    pool = ServerPool(db, settings, backend)
    service = ProvisioningService(backend, settings.auto_renew_hours_before, pool)
    sweep = schedule_handlers(db, service, None, settings)["expiry_sweep"]
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        restored = await restore(conn) if ns.restore else 0
        await pool.adopt()  # the rows made before the pool placed on the seeded server
        ids = await make_due(conn, ns.due, ns.revive)
        # the tables as autovacuum keeps them (this server runs without it): the dead rows of
        # the preparation and of earlier measurements would be read by every batch
        await conn.execute("VACUUM (ANALYZE) provisioning.subscriptions, provisioning.outbox, "
                           "provisioning.backend_accounts, provisioning.sandbox_vpn_accounts")
        runs, started, cpu = [], time.monotonic(), time.process_time()
        while len(runs) < ns.runs:
            t0 = time.monotonic()
            n = await sweep(None)
            runs.append({"expired": n, "seconds": round(time.monotonic() - t0, 2)})
            if n == 0:
                break
        total = time.monotonic() - started
        out = {"due": len(ids), "restored_first": restored, "runs": runs,
               "seconds": round(total, 2),
               "per_s": round(sum(r["expired"] for r in runs) / total, 1),
               # this process's own CPU (the sweep's Python side; the rest is Postgres')
               "process_cpu_seconds": round(time.process_time() - cpu, 2),
               "load_average": os.getloadavg(),
               "settings": {k: getattr(settings, k) for k in (
                   "expiry_batch", "expiry_concurrency", "sweep_batch",
                   "sweep_budget_seconds") if hasattr(settings, k)}}
        out.update(await check(conn, ids))
        return out
    finally:
        await conn.close()
        await pool.close()
        await backend.close()
        await db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="vpn_scale")
    ap.add_argument("--due", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1000, help="stop after this many job runs")
    ap.add_argument("--revive", action="store_true")
    ap.add_argument("--restore", action="store_true")
    ns = ap.parse_args()
    print(json.dumps(asyncio.run(measure(ns)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
