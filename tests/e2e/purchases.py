"""Buying through the public API, as a customer would: invoice, sandbox transfer, blocks."""

from __future__ import annotations

import asyncio
import uuid

import httpx

PASSWORD = "buyer password 1"


async def new_customer(gw: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=gw + "/api/v1", timeout=60,
                          headers={"Content-Type": "application/json"})
    r = await c.post("/auth/register", json={"email": f"buyer-{uuid.uuid4().hex[:12]}@example.com",
                                             "password": PASSWORD})
    assert r.status_code == 201, r.text
    return c


async def catalogue(c: httpx.AsyncClient) -> tuple[dict, dict]:
    plans = (await c.get("/plans")).json()["plans"]
    options = (await c.get("/payment-options")).json()["options"]
    assert plans and options
    return plans[0], options[0]


async def pay_invoice(c: httpx.AsyncClient, plan: dict, option: dict) -> dict:
    """Create an invoice and send its exact amount on the sandbox chain (0 confirmations)."""
    r = await c.post("/invoices", json={"plan_id": plan["id"], **option},
                     headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    t = await c.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": invoice["asset"], "network": invoice["network"]})
    assert t.status_code == 201, t.text
    return invoice


async def mine(c: httpx.AsyncClient, blocks: int = 3) -> None:
    r = await c.post("/sandbox/blocks", json={"count": blocks})
    assert r.status_code == 200, r.text


async def buy_many(gw: str, n: int, concurrency: int = 16) -> list[tuple[httpx.AsyncClient, dict]]:
    """n customers each buy the first plan; returns (client, invoice) pairs."""
    sem = asyncio.Semaphore(concurrency)
    first = await new_customer(gw)
    plan, option = await catalogue(first)

    async def one(i: int):
        async with sem:
            c = first if i == 0 else await new_customer(gw)
            return c, await pay_invoice(c, plan, option)

    bought = await asyncio.gather(*(one(i) for i in range(n)))
    await mine(first)
    return list(bought)
