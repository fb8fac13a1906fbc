"""Purchase pipeline under load: N customers buy at a steady rate until every one is active."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.e2e.purchases import catalogue, mine, new_customer, pay_invoice


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def purchase_pipeline(stack, n: int, rate: float) -> dict:
    gw = stack.api_url("gateway")
    db = stack.env["DATABASE_URL"]
    customers = await asyncio.gather(*(new_customer(gw) for _ in range(n)))
    plan, option = await catalogue(customers[0])
    invoices: list[str] = []
    stop_mining = asyncio.Event()

    async def miner():
        while not stop_mining.is_set():
            await mine(customers[0], 1)
            await asyncio.sleep(0.2)

    mining = asyncio.create_task(miner())
    started = time.perf_counter()

    async def buy(i: int):
        await asyncio.sleep(i / rate)
        inv = await pay_invoice(customers[i], plan, option)
        invoices.append(inv["id"])

    await asyncio.gather(*(buy(i) for i in range(n)))
    conn = await asyncpg.connect(db)
    try:
        deadline = time.monotonic() + 300
        applied = 0
        while time.monotonic() < deadline:
            applied = await conn.fetchval(
                "SELECT count(*) FROM provisioning.grants WHERE applied_at IS NOT NULL AND "
                "invoice_id = ANY($1::text[])", invoices)
            if applied >= n:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        stop_mining.set()
        await mining
        rows = await conn.fetch(
            "SELECT extract(epoch FROM g.applied_at - i.paid_at) * 1000 AS ms "
            "FROM billing.invoices i JOIN provisioning.grants g ON g.invoice_id = i.id "
            "WHERE i.id = ANY($1::text[]) AND g.applied_at IS NOT NULL", invoices)
        once = await conn.fetchval(
            "SELECT count(*) FROM (SELECT invoice_id FROM provisioning.grants WHERE "
            "invoice_id = ANY($1::text[]) GROUP BY invoice_id HAVING count(*) = 1) x", invoices)
        active = await conn.fetchval(
            "SELECT count(*) FROM provisioning.subscriptions WHERE status = 'ACTIVE'")
    finally:
        await conn.close()
        for c in customers:
            await c.aclose()
    lat = [float(r["ms"]) for r in rows]
    return {"n": n, "rate": rate, "seconds": elapsed, "purchases_per_s": applied / elapsed,
            "settle_to_active_p50_ms": pct(lat, 50), "settle_to_active_p95_ms": pct(lat, 95),
            "settle_to_active_p99_ms": pct(lat, 99), "provisioned_once": once,
            "active_subscriptions": active}
