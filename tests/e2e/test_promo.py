"""Promo codes through the whole system: an admin creates codes (audited), a customer previews
one and buys with it, its use is reserved then refused to the next customer, a free code is
PAID at once and provisioned, and bonus days reach the subscription."""

from __future__ import annotations

import uuid

from tests.conftest import payment_option, register, sql, wait_for


def create_code(admin_client, **fields) -> dict:
    body = {"code": f"E2E{uuid.uuid4().hex[:8]}", "kind": "PERCENT", "value": "25", **fields}
    r = admin_client.post("/admin/promo-codes", json=body)
    assert r.status_code == 201, r.text
    return r.json()["promo_code"]


def test_preview_buy_with_a_code_and_its_limits(stack, gateway_url, admin_client):
    plan = admin_client.post("/admin/plans", json={
        "name": f"Promo plan {uuid.uuid4().hex[:6]}", "price_usd": "8.00", "duration_days": 30,
        "max_devices": 2}).json()["plan"]
    quarter = create_code(admin_client, max_uses=1)
    first, second = register(gateway_url), register(gateway_url)
    option = payment_option(first)

    preview = first.get(f"/promo-codes/{quarter['code'].upper()}", params={"plan_id": plan["id"]})
    assert preview.status_code == 200, preview.text
    got = preview.json()
    assert (got["valid"], got["reason"], got["price_usd"], got["discount_usd"]) == (
        True, None, "6.00", "2.00")
    assert first.get("/promo-codes/NOSUCHCODE1", params={"plan_id": plan["id"]}).status_code == 404

    r = first.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                   json={"plan_id": plan["id"], **option, "promo_code": quarter["code"]})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    assert (invoice["amount_usd"], invoice["discount_usd"], invoice["promo_code"]) == (
        "6.00", "2.00", quarter["code"])
    # its one use is reserved: the next customer is refused, with the reason
    assert second.get(f"/promo-codes/{quarter['code']}",
                      params={"plan_id": plan["id"]}).json()["reason"] == "used_up"
    refused = second.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"plan_id": plan["id"], **option, "promo_code": quarter["code"]})
    assert refused.status_code == 422 and refused.json()["code"] == "PROMO_CODE_INVALID"
    assert refused.json()["details"] == {"reason": "used_up"}
    listed = {c["id"]: c for c in admin_client.get("/admin/promo-codes").json()["promo_codes"]}
    assert (listed[quarter["id"]]["uses_reserved"], listed[quarter["id"]]["uses_counted"]) == (1, 0)

    # a free code with bonus days: PAID at once, provisioned with the extra days
    free = create_code(admin_client, kind="AMOUNT", value="100.00")
    r = second.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"plan_id": plan["id"], **option, "promo_code": free["code"]})
    assert r.status_code == 201 and r.json()["invoice"]["status"] == "PAID", r.text
    days = create_code(admin_client, kind="DAYS", value="5", max_uses_per_user=2)
    r = second.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"plan_id": plan["id"], **option, "promo_code": days["code"]})
    bonus = r.json()["invoice"]
    assert bonus["bonus_days"] == 5 and bonus["amount_usd"] == "8.00"
    t = second.post("/sandbox/transfers", json={
        "address": bonus["address"], "amount_asset": bonus["amount_asset"],
        "asset": bonus["asset"], "network": bonus["network"]})
    assert t.status_code == 201, t.text
    second.post("/sandbox/blocks", json={"count": 3})

    def expiry():
        active = [s for s in second.get("/subscriptions").json()["subscriptions"]
                  if s["status"] == "ACTIVE"]
        grants = sql("SELECT count(*) AS n FROM provisioning.grants WHERE invoice_id = $1",
                     bonus["id"])
        return active and grants[0]["n"] and active[0]["expires_at"]

    wait_for(expiry, message="the bonus invoice granted")
    rows = sql("SELECT duration_days FROM provisioning.grants WHERE invoice_id = $1", bonus["id"])
    assert rows == [{"duration_days": 35}]  # 30 + 5, in one grant
    created = sql("SELECT count(*) AS n FROM identity.audit_log WHERE action = "
                  "'promo_code.create' AND details->>'promo_code_id' = $1", days["id"])
    assert created[0]["n"] == 1
