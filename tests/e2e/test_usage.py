"""Usage through the whole system: a plan with a traffic allowance bought, its limit on the VPN
backend, `GET /subscriptions/{id}/usage` live from it (null where the sandbox cannot tell, and
another customer's id not found), and the dashboard showing the allowance; then the allowance
used up on the sandbox panel: LIMITED to the customer with one `subscription.limited` event, and
the renewal making it ACTIVE with its traffic reset."""

from __future__ import annotations

import uuid

from tests.conftest import payment_option, register, sql, wait_for
from tests.e2e.test_provisioning import internal

GB = 1024 ** 3


def metered_plan(admin_client, gb: int) -> dict:
    r = admin_client.post("/admin/plans", json={
        "name": f"metered-{uuid.uuid4().hex[:8]}", "price_usd": "2.00", "duration_days": 30,
        "max_devices": 2, "traffic_limit_gb": gb, "traffic_reset": "MONTH"})
    assert r.status_code == 201, r.text
    plan = r.json()["plan"]
    assert (plan["traffic_limit_gb"], plan["traffic_reset"]) == (gb, "MONTH")
    return plan


def buy_from_balance(admin_client, customer, plan: dict) -> None:
    user_id = customer.get("/auth/me").json()["user"]["id"]
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"amount_usd": "2.00", "note": "test credit"})
    assert r.status_code == 201, r.text
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], **payment_option(customer),
                            "pay_with": "balance"})
    assert r.status_code == 201, r.text


def test_a_plans_allowance_reaches_the_backend_and_the_dashboard(stack, gateway_url,
                                                                 admin_client):
    plan = metered_plan(admin_client, 25)
    customer = register(gateway_url)
    buy_from_balance(admin_client, customer, plan)
    sub = wait_for(lambda: customer.get("/subscriptions").json()["subscriptions"],
                   message="the subscription")[0]
    usage = customer.get(f"/subscriptions/{sub['id']}/usage")
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert (body["limit_bytes"], body["used_bytes"], body["devices"]) == (
        25 * GB, None, {"limit": 2, "used": None})
    assert register(gateway_url).get(f"/subscriptions/{sub['id']}/usage").status_code == 404
    page = customer.get(gateway_url + "/app")
    assert 'data-testid="traffic"' in page.text and "25.0 GB allowed" in page.text


def test_a_used_up_allowance_is_limited_once_and_the_renewal_lifts_it(stack, gateway_url,
                                                                      admin_client):
    plan = metered_plan(admin_client, 1)
    customer = register(gateway_url)
    buy_from_balance(admin_client, customer, plan)
    sub = wait_for(lambda: customer.get("/subscriptions").json()["subscriptions"],
                   message="the subscription")[0]
    assert customer.get(gateway_url + f"/app/buy/{plan['id']}").text.count("up to 2 devices")
    r = internal(stack, "POST", f"/internal/sandbox/subscriptions/{sub['id']}/traffic",
                 json={"used_bytes": GB})  # the panel counts the allowance used up
    assert r.status_code == 200 and r.json()["limited"], r.text

    usage = customer.get(f"/subscriptions/{sub['id']}/usage").json()
    assert usage["limited"] and usage["used_bytes"] == usage["limit_bytes"] == GB
    for _ in range(2):  # read again: still the one notice
        (shown,) = customer.get("/subscriptions").json()["subscriptions"]
        assert shown["status"] == "LIMITED" and shown["limited_until"] is None
        customer.get(f"/subscriptions/{sub['id']}/usage")
    page = customer.get(gateway_url + "/app")
    assert 'data-testid="limited"' in page.text and "until you renew" in page.text
    events = sql("SELECT envelope->'payload' AS p FROM provisioning.outbox"
                 " WHERE routing_key = 'provisioning.subscription.limited.v1'"
                 " AND envelope->'payload'->>'subscription_id' = $1", sub["id"])
    assert len(events) == 1

    buy_from_balance(admin_client, customer, plan)  # the renewal
    wait_for(lambda: customer.get("/subscriptions").json()["subscriptions"][0]["status"]
             == "ACTIVE", message="ACTIVE after the renewal")
    usage = customer.get(f"/subscriptions/{sub['id']}/usage").json()
    assert not usage["limited"] and usage["used_bytes"] is None  # the traffic was reset
