"""The purchase flow across billing and provisioning, driven only through the gateway."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta

from tests.conftest import await_for
from tests.e2e.purchases import catalogue, mine, new_customer, pay_invoice


async def _active(c) -> list[dict]:
    subs = (await c.get("/subscriptions")).json()["subscriptions"]
    return [s for s in subs if s["status"] == "ACTIVE"]


async def test_purchase_grants_access_and_a_second_invoice_extends(gateway_url, admin_client, db):
    c = await new_customer(gateway_url)
    plan, option = await catalogue(c)
    invoice = await pay_invoice(c, plan, option)
    await mine(c)

    async def paid():
        inv = (await c.get(f"/invoices/{invoice['id']}")).json()["invoice"]
        return inv if inv["status"] == "PAID" else None

    inv = await await_for(paid, timeout=60, message="invoice PAID")
    assert [p["status"] for p in inv["payments"]] == ["SETTLED"]
    subs = await await_for(lambda: _active(c), timeout=60, message="subscription ACTIVE")
    assert len(subs) == 1
    sub = subs[0]
    started = datetime.fromisoformat(sub["started_at"])
    expires = datetime.fromisoformat(sub["expires_at"])
    assert abs((expires - started) - timedelta(days=plan["duration_days"])) < timedelta(minutes=5)
    access = await c.get(f"/subscriptions/{sub['id']}/access")
    assert access.status_code == 200, access.text
    assert access.json()["access_url"] and access.json()["backend"] == "sandbox"

    # the stable link serves the server's content with the clients' headers; a rotation
    # refuses the old token at once and the new one works
    link = access.json()["subscription_url"]
    served = await c.get(link)
    assert served.status_code == 200, served.text
    assert base64.b64decode(served.content).decode().startswith("ss://")
    assert "expire=" in served.headers["subscription-userinfo"]
    assert served.headers["profile-update-interval"] and served.headers["content-disposition"]
    rotated = await c.post(f"/subscriptions/{sub['id']}/link")
    assert rotated.status_code == 200, rotated.text
    new_link = rotated.json()["link"]["subscription_url"]
    assert new_link != link and (await c.get(link)).status_code == 404
    assert (await c.get(new_link)).content == served.content

    second = await pay_invoice(c, plan, option)
    await mine(c)

    async def extended():
        subs = await _active(c)
        return subs if subs and subs[0]["expires_at"] != sub["expires_at"] else None

    subs = await await_for(extended, timeout=60, message="subscription extended")
    assert len(subs) == 1 and subs[0]["id"] == sub["id"]
    new_expiry = datetime.fromisoformat(subs[0]["expires_at"])
    assert abs((new_expiry - expires) - timedelta(days=plan["duration_days"])) < timedelta(
        minutes=5)
    grants = await db.fetchval("SELECT count(*) FROM provisioning.grants WHERE invoice_id = "
                               "ANY($1::text[])", [invoice["id"], second["id"]])
    assert grants == 2
    paid_events = await db.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = ANY($1::text[])", [invoice["id"], second["id"]])
    assert paid_events == 2

    # an admin refunds the second invoice: the time it bought is taken back
    r = admin_client.post(f"/admin/invoices/{second['id']}/refund",
                          json={"reason": "customer asked"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "REFUNDED"

    async def shortened():
        subs = await _active(c)
        return subs if subs and abs(datetime.fromisoformat(subs[0]["expires_at"]) - expires) \
            < timedelta(minutes=5) else None

    await await_for(shortened, timeout=60, message="refunded time taken back")
    assert admin_client.post(f"/admin/invoices/{second['id']}/refund",
                             json={"reason": "again"}).status_code == 409
    log = admin_client.get("/admin/audit-log").json()["entries"]
    assert any(e["action"] == "invoice.refund" and e["target_id"] == second["id"]
               and e["outcome"] == "success" for e in log)
    await asyncio.gather(c.aclose())
