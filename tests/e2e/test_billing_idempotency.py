"""`POST /invoices` with `Idempotency-Key` through the gateway (Stripe / IETF draft semantics)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import register
from tests.e2e.test_billing import create_invoice, new_plan, sql


@pytest.fixture(scope="module")
def plan(admin_client) -> dict:
    return new_plan(admin_client, "3.00")


def user_id(client: httpx.Client) -> str:
    return client.get("/auth/me").json()["user"]["id"]


def invoices_of(client: httpx.Client) -> int:
    return sql("SELECT count(*) FROM billing.invoices WHERE user_id = $1", user_id(client),
               method="fetchval")


def test_same_key_and_body_replays_the_first_answer(gateway_url, plan):
    customer = register(gateway_url)
    key = uuid.uuid4().hex
    first = create_invoice(customer, plan["id"], key)
    second = create_invoice(customer, plan["id"], key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert invoices_of(customer) == 1

    reused = create_invoice(customer, plan["id"], key, asset="BTC", network="BITCOIN")
    assert reused.status_code == 422 and reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert invoices_of(customer) == 1

    # keys belong to one user: another customer's identical key is a new request
    other = register(gateway_url)
    theirs = create_invoice(other, plan["id"], key)
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["invoice"]["id"] != first.json()["invoice"]["id"]


def test_key_is_required_and_at_most_255_chars(gateway_url, plan):
    customer = register(gateway_url)
    body = {"plan_id": plan["id"], "asset": "USDT", "network": "TRON"}
    for headers in ({}, {"Idempotency-Key": ""}, {"Idempotency-Key": "k" * 256}):
        r = customer.post("/invoices", json=body, headers=headers)
        assert r.status_code == 400 and r.json()["code"] == "IDEMPOTENCY_KEY_REQUIRED", r.text
    assert invoices_of(customer) == 0
    assert create_invoice(customer, plan["id"], "k" * 255).status_code == 201


def test_a_request_failing_validation_stores_nothing(gateway_url, plan):
    customer = register(gateway_url)
    key = uuid.uuid4().hex
    for body in ({"plan_id": "no-such-plan", "asset": "USDT", "network": "TRON"},
                 {"plan_id": plan["id"], "asset": "DOGE", "network": "TRON"},
                 {"plan_id": plan["id"], "asset": "USDT"}):
        r = customer.post("/invoices", json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    assert sql("SELECT count(*) FROM billing.idempotency_keys WHERE key = $1", key,
               method="fetchval") == 0
    r = create_invoice(customer, plan["id"], key)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


def test_twenty_concurrent_requests_make_one_invoice(gateway_url, plan):
    customer = register(gateway_url)
    key = uuid.uuid4().hex
    body = {"plan_id": plan["id"], "asset": "USDT", "network": "TRON"}

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway_url + "/api/v1", timeout=30,
                                     cookies=customer.cookies,
                                     headers={"Content-Type": "application/json"}) as client:
            return await asyncio.gather(*(
                client.post("/invoices", json=body, headers={"Idempotency-Key": key})
                for _ in range(20)))

    answers = asyncio.run(all_at_once())
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in answers if r.status_code == 201]
    assert created, statuses
    assert len({r.text for r in created}) == 1
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) <= 1
    for r in answers:
        if r.status_code == 409:
            assert r.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert invoices_of(customer) == 1
    # once finished, every retry replays the one answer
    again = create_invoice(customer, plan["id"], key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.text == created[0].text
