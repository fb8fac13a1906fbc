"""Billing end to end through the gateway: purchase on the sandbox chain, ownership, admin plans
and refunds, webhook signatures, and bad input on every billing endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid

import asyncpg
import httpx
import pytest
import redis

from tests.conftest import ADMIN_DSN, register, wait_for

WEBHOOK_SECRET = "dev-btcpay-webhook-secret"  # billing's development default


def new_plan(admin: httpx.Client, price: str = "9.99", **extra) -> dict:
    r = admin.post("/admin/plans", json={
        "name": f"e2e-{uuid.uuid4().hex[:10]}", "description": "e2e plan", "price_usd": price,
        "duration_days": 30, "max_devices": 3, **extra})
    assert r.status_code == 201, r.text
    return r.json()["plan"]


def create_invoice(client: httpx.Client, plan_id: str, key: str | None = None,
                   asset: str = "USDT", network: str = "TRON") -> httpx.Response:
    return client.post("/invoices", json={"plan_id": plan_id, "asset": asset, "network": network},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def get_invoice(client: httpx.Client, invoice_id: str) -> dict:
    r = client.get(f"/invoices/{invoice_id}")
    assert r.status_code == 200, r.text
    return r.json()["invoice"]


def sql(query: str, *args, method: str = "fetch"):
    """Read billing's tables as postgres (tests only; services never read each other's)."""

    async def run():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return await getattr(conn, method)(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def plan(admin_client) -> dict:
    return new_plan(admin_client)


def test_purchase_paid_by_payment_watch_alone(gateway_url, admin_client, plan):
    public = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15)
    listed = public.get("/plans")
    assert listed.status_code == 200
    mine = [p for p in listed.json()["plans"] if p["id"] == plan["id"]]
    assert mine == [{"id": plan["id"], "name": plan["name"], "description": "e2e plan",
                     "price_usd": "9.99", "duration_days": 30, "max_devices": 3,
                     "price_stars": None, "traffic_limit_gb": None, "traffic_reset": "NONE"}]

    customer = register(gateway_url)
    options = customer.get("/payment-options").json()["options"]
    assert {"provider": "sandbox", "asset": "USDT", "network": "TRON",
            "label": "USDT · TRON · Sandbox chain"} in options
    r = create_invoice(customer, plan["id"])
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    assert invoice["status"] == "CREATED" and invoice["payments"] == []
    assert invoice["amount_usd"] == "9.99" and invoice["amount_asset"] == "9.99000000"
    assert invoice["address"] and invoice["payment_url"] is None
    assert invoice["rate_locked_until"] > invoice["created_at"]

    r = customer.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": "USDT", "network": "TRON"})
    assert r.status_code == 201, r.text
    txid = r.json()["txid"]

    def detected():
        inv = get_invoice(customer, invoice["id"])
        return inv if inv["status"] == "PENDING" and inv["payments"] else None

    pending = wait_for(detected, message="payment detected")
    assert [(p["txid"], p["status"], p["confirmations"]) for p in pending["payments"]] == [
        (txid, "DETECTED", 0)]

    r = customer.post("/sandbox/blocks", json={"count": 2})
    assert r.status_code == 200 and r.json()["height"] >= 2

    def paid():
        inv = get_invoice(customer, invoice["id"])
        return inv if inv["status"] == "PAID" else None

    done = wait_for(paid, message="invoice paid")
    payment = done["payments"][0]
    assert payment["status"] == "SETTLED" and payment["confirmations"] >= 2
    assert payment["detected_at"] <= payment["confirmed_at"] <= payment["settled_at"]
    assert done["paid_at"] is not None

    rows = sql(
        "SELECT envelope FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice["id"])
    assert len(rows) == 1
    event = json.loads(rows[0]["envelope"])
    assert event["producer"] == "billing"
    assert event["payload"]["plan"] == {"plan_id": plan["id"], "name": plan["name"],
                                        "duration_days": 30, "max_devices": 3,
                                        "price_usd": "9.99", "traffic_limit_gb": None,
                                        "traffic_reset": "NONE"}
    assert event["payload"]["amount_paid_asset"] == "9.99000000"

    assert [i["id"] for i in customer.get("/invoices").json()["invoices"]] == [invoice["id"]]
    r = customer.post(f"/invoices/{invoice['id']}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"

    admin_view = admin_client.get("/admin/invoices", params={"status": "PAID"}).json()
    found = [i for i in admin_view["invoices"] if i["id"] == invoice["id"]]
    assert found and found[0]["amount_received_asset"] == "9.99000000"
    assert found[0]["overpaid_asset"] == "0.00000000" and found[0]["needs_review"] is False

    r = admin_client.post(f"/admin/invoices/{invoice['id']}/refund",
                          json={"reason": "customer changed their mind"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "REFUNDED"
    again = admin_client.post(f"/admin/invoices/{invoice['id']}/refund", json={"reason": "x"})
    assert again.status_code == 409
    refunded = sql(
        "SELECT envelope FROM billing.outbox WHERE routing_key = 'billing.invoice.refunded.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice["id"])
    assert len(refunded) == 1
    payload = json.loads(refunded[0]["envelope"])["payload"]
    assert payload["plan"]["plan_id"] == plan["id"] and payload["reason"]
    log = admin_client.get("/admin/audit-log").json()["entries"]
    outcomes = [(e["action"], e["outcome"]) for e in log if e["target_id"] == invoice["id"]]
    assert ("invoice.refund", "success") in outcomes
    assert ("invoice.refund", "refused:409") in outcomes


def test_another_users_invoice_is_not_found(gateway_url, plan):
    owner, other = register(gateway_url), register(gateway_url)
    invoice = create_invoice(owner, plan["id"]).json()["invoice"]
    assert other.get(f"/invoices/{invoice['id']}").status_code == 404
    r = other.post(f"/invoices/{invoice['id']}/cancel")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert other.get("/invoices").json() == {"invoices": [], "next_cursor": None}
    assert get_invoice(owner, invoice["id"])["status"] == "CREATED"


def test_cancel_only_while_created(gateway_url, plan):
    customer = register(gateway_url)
    invoice = create_invoice(customer, plan["id"]).json()["invoice"]
    r = customer.post(f"/invoices/{invoice['id']}/cancel")
    assert r.status_code == 200 and r.json()["invoice"]["status"] == "CANCELED"
    r = customer.post(f"/invoices/{invoice['id']}/cancel")
    assert r.status_code == 409 and r.json()["details"] == {"from": "CANCELED", "to": "CANCELED"}


def test_invoice_list_pages_with_a_cursor(gateway_url, plan):
    customer = register(gateway_url)
    ids = [create_invoice(customer, plan["id"]).json()["invoice"]["id"] for _ in range(3)]
    first = customer.get("/invoices", params={"limit": 2}).json()
    assert len(first["invoices"]) == 2 and first["next_cursor"]
    rest = customer.get("/invoices", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert rest["next_cursor"] is None
    assert [i["id"] for i in first["invoices"] + rest["invoices"]] == ids[::-1]


def test_admin_plans_need_admin_and_used_plans_are_only_deactivated(gateway_url, admin_client):
    user = register(gateway_url)
    plan = new_plan(admin_client, "5.00")
    for method, path, body in (("GET", "/admin/plans", None),
                               ("POST", "/admin/plans", {"name": "x"}),
                               ("PATCH", f"/admin/plans/{plan['id']}", {"price_usd": "1.00"}),
                               ("DELETE", f"/admin/plans/{plan['id']}", None),
                               ("GET", "/admin/invoices", None),
                               ("POST", f"/admin/invoices/{plan['id']}/refund", {"reason": "x"})):
        r = user.request(method, path, json=body)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", (method, path, r.text)

    dup = admin_client.post("/admin/plans", json={"name": plan["name"], "price_usd": "1.00",
                                                  "duration_days": 1, "max_devices": 1})
    assert dup.status_code == 409
    r = admin_client.patch(f"/admin/plans/{plan['id']}", json={"price_usd": "6.50"})
    assert r.status_code == 200 and r.json()["plan"]["price_usd"] == "6.50"

    invoice = create_invoice(user, plan["id"]).json()["invoice"]
    assert invoice["amount_usd"] == "6.50"
    r = admin_client.delete(f"/admin/plans/{plan['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is False and r.json()["plan"]["is_active"] is False
    assert plan["id"] not in [p["id"] for p in user.get("/plans").json()["plans"]]
    assert plan["id"] in [p["id"] for p in admin_client.get("/admin/plans").json()["plans"]]
    r = create_invoice(user, plan["id"])
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    assert get_invoice(user, invoice["id"])["plan_id"] == plan["id"]

    unused = new_plan(admin_client)
    r = admin_client.delete(f"/admin/plans/{unused['id']}")
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert admin_client.patch(f"/admin/plans/{unused['id']}",
                              json={"max_devices": 2}).status_code == 404
    entries = admin_client.get("/admin/audit-log").json()["entries"]
    actions = {(e["action"], e["target_id"]) for e in entries}
    assert ("plan.delete", plan["id"]) in actions and ("plan.update", plan["id"]) in actions


def test_bad_input_is_a_clear_400_on_every_billing_endpoint(gateway_url, admin_client, plan):
    user = register(gateway_url)
    invoice = create_invoice(user, plan["id"]).json()["invoice"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    bodies = {
        ("user", "POST", "/invoices", "key"): {"plan_id": 1, "asset": "USDT", "network": "TRON"},
        ("user", "POST", "/sandbox/transfers", None): {"address": "a", "amount_asset": 1.5,
                                                       "asset": "USDT", "network": "TRON"},
        ("user", "POST", "/sandbox/blocks", None): {"count": "2"},
        ("admin", "POST", "/admin/plans", None): {"name": "n", "price_usd": 9.99,
                                                  "duration_days": 30, "max_devices": 1},
        ("admin", "PATCH", f"/admin/plans/{plan['id']}", None): {"duration_days": "thirty"},
        ("admin", "POST", f"/admin/invoices/{invoice['id']}/refund", None): {"reason": 7},
    }
    for (who, method, path, needs_key), wrong in bodies.items():
        client = user if who == "user" else admin_client
        headers = key if needs_key else {}
        for content in (b"{not json", b"[1, 2]", json.dumps(wrong).encode(),
                        json.dumps({**wrong, "extra": True}).encode()):
            r = client.request(method, path, content=content, headers=headers)
            assert r.status_code == 400, (path, content, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
    for client, path, params in ((user, "/invoices", {"limit": "many"}),
                                 (user, "/invoices", {"limit": 0}),
                                 (user, "/invoices", {"cursor": "not-a-cursor"}),
                                 (admin_client, "/admin/invoices", {"status": "SOLD"}),
                                 (admin_client, "/admin/invoices", {"limit": 101})):
        r = client.get(path, params=params)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (path, r.text)
    r = user.post("/sandbox/transfers", json={"address": "a", "amount_asset": "1",
                                              "asset": "DOGE", "network": "MOON"})
    assert r.status_code == 400
    r = user.post("/sandbox/blocks", json={"count": 0})
    assert r.status_code == 400
    # text PostgreSQL cannot store is refused as input, never a 500
    nul_cases = ((admin_client, "POST", "/admin/plans", {"name": "a\u0000b", "price_usd": "1.00",
                                                          "duration_days": 1, "max_devices": 1}),
                 (admin_client, "POST", f"/admin/invoices/{invoice['id']}/refund",
                  {"reason": "\u0000"}),
                 (user, "POST", "/sandbox/transfers", {"address": "T\u0000", "amount_asset": "1",
                                                       "asset": "USDT", "network": "TRON"}))
    for client, method, path, body in nul_cases:
        r = client.request(method, path, json=body)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (path, r.text)
    nul_cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|a\x00").decode()
    for params in ({"cursor": nul_cursor.rstrip("=")}, {"cursor": "a%00"}):
        r = user.get("/invoices", params=params)
        assert r.status_code == 400, r.text
    assert admin_client.get("/admin/invoices", params={"user_id": "x\x00"}).status_code == 400
    assert get_invoice(user, invoice["id"])["status"] == "CREATED"


def test_webhook_signature_is_checked_and_deliveries_stored_once(gateway_url):
    hooks = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15)
    delivery = uuid.uuid4().hex
    body = json.dumps({"deliveryId": delivery, "webhookId": "wh1", "type": "InvoiceSettled",
                       "invoiceId": "unknown-invoice", "storeId": "s",
                       "timestamp": 1}).encode()
    json_type = {"Content-Type": "application/json"}
    for headers in ({}, {"BTCPay-Sig": "sha256=" + "0" * 64},
                    {"BTCPay-Sig": sign(body, "not-the-secret")},
                    {"BTCPay-Sig": sign(body)[:-2]}):
        r = hooks.post("/payments/webhooks/btcpay", content=body, headers={**json_type,
                                                                            **headers})
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED", r.text
    assert sql("SELECT count(*) FROM billing.provider_events WHERE delivery_id = $1",
               delivery, method="fetchval") == 0

    for _ in range(2):
        r = hooks.post("/payments/webhooks/btcpay", content=body,
                       headers={**json_type, "BTCPay-Sig": sign(body)})
        assert r.status_code == 200 and r.json() == {"ok": True}
    rows = sql("SELECT raw_body, outcome FROM billing.provider_events WHERE delivery_id = $1",
               delivery)
    assert len(rows) == 1 and rows[0]["raw_body"] == body.decode()
    assert rows[0]["outcome"] == "unknown_invoice"

    broken = b"{not json"
    r = hooks.post("/payments/webhooks/btcpay", content=broken,
                   headers={**json_type, "BTCPay-Sig": sign(broken)})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    r = hooks.post("/payments/webhooks/nopay", content=body,
                   headers={**json_type, "BTCPay-Sig": sign(body)})
    assert r.status_code == 404


def test_sandbox_provider_faults_need_an_admin_and_valid_input(stack):
    """The fault switch is an operator's tool: signed ADMIN identity only, bad input is a 400."""
    from runtime import identity

    key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")
    url = stack.api_url("billing") + "/internal/sandbox/faults"
    body = {"operation": "observe", "for_seconds": 1}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    as_user = {identity.HEADER: identity.sign(key, "u-1", "USER", audience="billing")}
    r = httpx.post(url, json=body, headers=as_user, timeout=10)
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert httpx.delete(url, headers=as_user, timeout=10).status_code == 403
    as_admin = {identity.HEADER: identity.sign(key, "admin-1", "ADMIN", audience="billing")}
    for bad in ({"operation": "mine"}, {"for_seconds": 0}, {"delay_ms": -1}, {"extra": 1}):
        r = httpx.post(url, json=bad, headers=as_admin, timeout=10)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (bad, r.text)
    # kept in Redis under the jobs prefix, never in the billing schema
    injected = redis.Redis.from_url(stack.env["REDIS_URL"])
    key = f"{stack.env['JOBS_PREFIX']}:billing:sandbox-faults"
    assert injected.hlen(key) == 0
    r = httpx.post(url, json=body, headers=as_admin, timeout=10)
    assert r.status_code == 201 and isinstance(r.json()["id"], int)
    assert injected.hlen(key) == 1
    assert httpx.delete(url, headers=as_admin, timeout=10).status_code == 204
    assert injected.hlen(key) == 0
