"""Fault row for auto-renewal: many renewals fall due at once and the billing worker is killed
(SIGKILL) while it charges them, then started again. Every subscription ends with exactly one
charge (one RENEWAL invoice PAID, one PURCHASE ledger entry for it) and one extension (one
applied grant, `expires_at` moved by one period), and no balance went below zero."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, payment_fields

RENEWALS = 16


async def customer_with_auto_renew(gw: str, admin: httpx.AsyncClient, plan: dict,
                                   option: dict) -> tuple[str, str]:
    """(user id, subscription id): bought from the balance, with a second period's money."""
    c = httpx.AsyncClient(base_url=gw + "/api/v1", timeout=30)
    try:
        r = await c.post("/auth/register", json={"email": f"renew-{uuid.uuid4().hex}@example.com",
                                                 "password": "correct horse 1"})
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["id"]
        credit = format(Decimal(plan["price_usd"]) * 2, "f")
        r = await admin.post(f"/admin/users/{user_id}/balance/adjustments",
                             headers={"Idempotency-Key": uuid.uuid4().hex},
                             json={"amount_usd": credit, "note": "fault row"})
        assert r.status_code == 201, r.text
        r = await c.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                         json={"plan_id": plan["id"], **option, "pay_with": "balance"})
        assert r.status_code == 201, r.text
        for _ in range(200):
            subs = (await c.get("/subscriptions")).json()["subscriptions"]
            if subs:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the subscription never came")
        r = await c.put(f"/subscriptions/{subs[0]['id']}/auto-renew", json={"enabled": True})
        assert r.status_code == 200, r.text
        return user_id, subs[0]["id"]
    finally:
        await c.aclose()


@pytest.mark.timeout(600)
async def test_renewals_while_the_billing_worker_is_killed(stack, gateway_url, db):
    admin = httpx.AsyncClient(base_url=gateway_url + "/api/v1", timeout=30)
    r = await admin.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    if r.status_code != 200:  # the session's first admin use: registered here
        r = await admin.post("/auth/register", json={"email": ADMIN_EMAIL,
                                                     "password": ADMIN_PASSWORD})
    assert r.status_code in (200, 201), r.text
    plan = (await admin.get("/plans")).json()["plans"][0]
    option = payment_fields((await admin.get("/payment-options")).json()["options"][0])
    made = await asyncio.gather(*(customer_with_auto_renew(gateway_url, admin, plan, option)
                                  for _ in range(RENEWALS)))
    users = [u for u, _ in made]
    subs = [s for _, s in made]
    # All due at once (an hour left, inside AUTO_RENEW_HOURS_BEFORE).
    due = await db.fetch("UPDATE provisioning.subscriptions SET expires_at = now() + "
                         "interval '1 hour' WHERE id = ANY($1::text[]) RETURNING id, expires_at",
                         subs)
    before = {r["id"]: r["expires_at"] for r in due}

    # Killed as soon as it has charged the first renewal, so the rest are mid-flight.
    deadline = time.monotonic() + 60
    while not await db.fetchval("SELECT count(*) FROM billing.invoices WHERE kind = 'RENEWAL' "
                                "AND user_id = ANY($1::text[])", users):
        assert time.monotonic() < deadline, "no renewal was charged"
        await asyncio.sleep(0.05)
    stack.kill("billing-worker")
    await asyncio.sleep(2)
    stack.start_service("billing", "worker")

    deadline = time.monotonic() + 120
    while True:
        extended = await db.fetchval(
            "SELECT count(*) FROM provisioning.subscriptions s WHERE s.id = ANY($1::text[]) AND "
            "s.expires_at > now() + interval '2 hours'", subs)
        if extended == RENEWALS:
            break
        assert time.monotonic() < deadline, f"{extended}/{RENEWALS} renewed"
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # sweeps keep running every second: nothing more may happen

    invoices = await db.fetch("SELECT user_id, status, provider FROM billing.invoices WHERE "
                              "kind = 'RENEWAL' AND user_id = ANY($1::text[])", users)
    assert sorted(r["user_id"] for r in invoices) == sorted(users)  # one each
    assert {(r["status"], r["provider"]) for r in invoices} == {("PAID", "balance")}
    purchases = await db.fetch("SELECT user_id, count(*) AS n FROM billing.balance_entries WHERE "
                               "kind = 'PURCHASE' AND user_id = ANY($1::text[]) GROUP BY user_id",
                               users)
    assert {r["n"] for r in purchases} == {2} and len(purchases) == RENEWALS
    assert await db.fetchval("SELECT count(*) FROM billing.balances WHERE "
                             "user_id = ANY($1::text[]) AND balance_usd <> 0", users) == 0
    grants = await db.fetch("SELECT g.user_id, count(*) AS n FROM provisioning.grants g JOIN "
                            "billing.invoices i ON i.id = g.invoice_id WHERE i.kind = 'RENEWAL' "
                            "AND g.status = 'APPLIED' AND g.user_id = ANY($1::text[]) "
                            "GROUP BY g.user_id", users)
    assert {r["n"] for r in grants} == {1} and len(grants) == RENEWALS
    after = await db.fetch("SELECT id, expires_at FROM provisioning.subscriptions WHERE "
                           "id = ANY($1::text[])", subs)
    assert {(r["expires_at"] - before[r["id"]]).days for r in after} == {plan["duration_days"]}
    print(f"faults: billing worker SIGKILL during {RENEWALS} renewals; each charged once, "
          "extended once")
    await admin.aclose()
