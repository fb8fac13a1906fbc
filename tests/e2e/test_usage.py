"""Usage through the whole system: a plan with a traffic allowance bought, its limit on the VPN
backend, `GET /subscriptions/{id}/usage` live from it (null where the sandbox cannot tell, and
another customer's id not found), and the dashboard showing the allowance."""

from __future__ import annotations

import uuid

from tests.conftest import payment_option, register, wait_for

GB = 1024 ** 3


def test_a_plans_allowance_reaches_the_backend_and_the_dashboard(stack, gateway_url,
                                                                 admin_client):
    r = admin_client.post("/admin/plans", json={
        "name": f"metered-{uuid.uuid4().hex[:8]}", "price_usd": "2.00", "duration_days": 30,
        "max_devices": 2, "traffic_limit_gb": 25, "traffic_reset": "MONTH"})
    assert r.status_code == 201, r.text
    plan = r.json()["plan"]
    assert (plan["traffic_limit_gb"], plan["traffic_reset"]) == (25, "MONTH")
    customer = register(gateway_url)
    user_id = customer.get("/auth/me").json()["user"]["id"]
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"amount_usd": "2.00", "note": "test credit"})
    assert r.status_code == 201, r.text
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], **payment_option(customer),
                            "pay_with": "balance"})
    assert r.status_code == 201, r.text
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
