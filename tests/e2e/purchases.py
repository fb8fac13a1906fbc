"""Buying through the public API, as a customer would: invoice, sandbox transfer, blocks.

The client retries what a real one would retry (transport errors and 5xx, the same request with
the same Idempotency-Key), so these helpers also drive purchases through injected faults.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx

PASSWORD = "buyer password 1"
RETRYABLE = {500, 502, 503, 504}


async def call(c: httpx.AsyncClient, method: str, url: str, **kw) -> httpx.Response:
    for attempt in range(60):
        try:
            r = await c.request(method, url, **kw)
            if r.status_code not in RETRYABLE:
                return r
        except httpx.TransportError:
            pass
        await asyncio.sleep(min(0.2 * (attempt + 1), 2))
    raise AssertionError(f"{method} {url} kept failing")


async def new_customer(gw: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=gw + "/api/v1", timeout=60,
                          headers={"Content-Type": "application/json"})
    email = f"buyer-{uuid.uuid4().hex[:12]}@example.com"
    r = await call(c, "POST", "/auth/register", json={"email": email, "password": PASSWORD})
    if r.status_code == 409:  # registered by a try whose answer was lost
        r = await call(c, "POST", "/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code in (200, 201), r.text
    return c


async def catalogue(c: httpx.AsyncClient) -> tuple[dict, dict]:
    plans = (await call(c, "GET", "/plans")).json()["plans"]
    options = (await call(c, "GET", "/payment-options")).json()["options"]
    assert plans and options
    return plans[0], {k: options[0][k] for k in ("provider", "asset", "network")}


async def post_once(c: httpx.AsyncClient, url: str, body: dict) -> httpx.Response:
    """POST a money-moving request under one Idempotency-Key, retried until it is answered."""
    key = uuid.uuid4().hex
    r = await call(c, "POST", url, json=body, headers={"Idempotency-Key": key})
    while r.status_code == 409 and r.json().get("code") == "IDEMPOTENCY_IN_PROGRESS":
        await asyncio.sleep(0.5)
        r = await call(c, "POST", url, json=body, headers={"Idempotency-Key": key})
    return r


async def pay_invoice(c: httpx.AsyncClient, plan: dict, option: dict,
                      promo_code: str | None = None) -> dict:
    """Create an invoice (with `promo_code`, at its price) and send its exact amount on the
    sandbox chain (0 confirmations)."""
    body = {"plan_id": plan["id"], **option}
    if promo_code:
        body["promo_code"] = promo_code
    r = await post_once(c, "/invoices", body)
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    await send_amount(c, invoice)
    return invoice


async def send_amount(c: httpx.AsyncClient, invoice: dict) -> None:
    """Send an invoice's (a plan's or a top-up's) exact amount on the sandbox chain."""
    t = await call(c, "POST", "/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": invoice["asset"], "network": invoice["network"]})
    assert t.status_code == 201, t.text


async def mine(c: httpx.AsyncClient, blocks: int = 3) -> None:
    r = await call(c, "POST", "/sandbox/blocks", json={"count": blocks})
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

    done = asyncio.Event()

    async def miner():  # blocks keep coming while customers pay, as on a real chain
        while not done.is_set():
            await mine(first, 1)
            await asyncio.sleep(0.3)

    mining = asyncio.create_task(miner())
    try:
        bought = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        done.set()
        await mining
    await mine(first)
    return list(bought)
