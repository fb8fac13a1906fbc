"""The balance through the whole system: a top-up paid on the sandbox chain credits it once, a
plan bought from it is paid at once and provisioned like any purchase, an admin adjustment is
audited and replayed by its key, and the ledger adds up."""

from __future__ import annotations

import uuid

from tests.conftest import payment_option, register, sql, wait_for


def test_top_up_then_buy_from_the_balance_then_adjust(stack, gateway_url, admin_client):
    customer = register(gateway_url)
    user_id = customer.get("/auth/me").json()["user"]["id"]
    option = payment_option(customer)
    plan = customer.get("/plans").json()["plans"][0]

    # A top-up is an invoice paid on the chain; once PAID its amount is credited, once.
    r = customer.post("/balance/top-ups", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"amount_usd": plan["price_usd"], **option})
    assert r.status_code == 201, r.text
    top_up = r.json()["invoice"]
    assert (top_up["kind"], top_up["plan_id"]) == ("TOP_UP", None)
    t = customer.post("/sandbox/transfers", json={
        "address": top_up["address"], "amount_asset": top_up["amount_asset"],
        "asset": top_up["asset"], "network": top_up["network"]})
    assert t.status_code == 201, t.text
    assert customer.post("/sandbox/blocks", json={"count": 3}).status_code == 200
    wait_for(lambda: customer.get("/balance").json()["balance_usd"] == plan["price_usd"],
         message="the top-up credited")

    # Paid from the balance: PAID in the answer, provisioned like any paid invoice.
    key = uuid.uuid4().hex
    body = {"plan_id": plan["id"], **option, "pay_with": "balance"}
    bought = customer.post("/invoices", json=body, headers={"Idempotency-Key": key})
    assert bought.status_code == 201 and bought.json()["invoice"]["status"] == "PAID"
    again = customer.post("/invoices", json=body, headers={"Idempotency-Key": key})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == bought.json()
    wait_for(lambda: [s for s in customer.get("/subscriptions").json()["subscriptions"]
                  if s["status"] == "ACTIVE"], message="the subscription active")
    short = customer.post("/invoices", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert short.status_code == 409 and short.json()["code"] == "INSUFFICIENT_BALANCE"

    # An admin adjustment: audited, once per key, never below zero.
    url = f"/admin/users/{user_id}/balance/adjustments"
    adj = {"headers": {"Idempotency-Key": f"adj-{user_id}"},
           "json": {"amount_usd": "2.50", "note": "sorry for the outage"}}
    first = admin_client.post(url, **adj)
    replay = admin_client.post(url, **adj)
    assert first.status_code == 201 and replay.status_code == 200, first.text
    assert replay.json() == first.json() and first.json()["balance_usd"] == "2.50"
    below = admin_client.post(url, headers={"Idempotency-Key": uuid.uuid4().hex},
                              json={"amount_usd": "-2.51", "note": "too much"})
    assert below.status_code == 409
    assert customer.post(url, **adj).status_code == 403

    ledger = customer.get("/balance").json()
    assert [e["kind"] for e in ledger["entries"]] == ["ADJUSTMENT", "PURCHASE", "TOP_UP"]
    rows = sql("SELECT amount_usd, balance_after_usd FROM billing.balance_entries "
               "WHERE user_id = $1 ORDER BY id", user_id)
    assert sum(r["amount_usd"] for r in rows) == rows[-1]["balance_after_usd"]
    audit = sql("SELECT action, target_id FROM identity.audit_log WHERE action = "
                "'balance.adjust' AND target_id = $1", user_id)
    assert len(audit) >= 2  # the adjustment, its replay and the refused one are each recorded
