"""Auto-renewal through the whole system: switched on by the customer, charged from the balance
once when the period nears its end (`AUTO_RENEW_HOURS_BEFORE`), the subscription extended once
from its end; with a short balance one RENEWAL invoice and a reminder with its pay link; and the
web panel's banner and switch."""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal

from tests.conftest import payment_option, register, sql, wait_for


def subscribed(gateway_url: str, admin_client, periods: int = 1):
    """A new customer who bought the first plan from a balance credited with `periods` times
    its price: (client, user id, plan, subscription)."""
    customer = register(gateway_url)
    user_id = customer.get("/auth/me").json()["user"]["id"]
    plan = customer.get("/plans").json()["plans"][0]
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"amount_usd": format(Decimal(plan["price_usd"]) * periods, "f"),
                                "note": "test credit"})
    assert r.status_code == 201, r.text
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], **payment_option(customer),
                            "pay_with": "balance"})
    assert r.status_code == 201 and r.json()["invoice"]["status"] == "PAID", r.text
    sub = wait_for(lambda: [s for s in customer.get("/subscriptions").json()["subscriptions"]
                            if s["status"] == "ACTIVE"], message="the subscription active")[0]
    return customer, user_id, plan, sub


def make_due(subscription_id: str) -> None:
    """The period ends in an hour: inside AUTO_RENEW_HOURS_BEFORE, so the sweep asks now."""
    sql("UPDATE provisioning.subscriptions SET expires_at = now() + interval '1 hour' "
        "WHERE id = $1", subscription_id)


def expires_at(subscription_id: str):
    return sql("SELECT expires_at FROM provisioning.subscriptions WHERE id = $1",
               subscription_id)[0]["expires_at"]


def renewals(user_id: str) -> list[dict]:
    return sql("SELECT id, status, provider, amount_usd FROM billing.invoices "
               "WHERE user_id = $1 AND kind = 'RENEWAL'", user_id)


def test_auto_renewal_charges_the_balance_once_and_extends_once(stack, gateway_url,
                                                                admin_client):
    customer, user_id, plan, sub = subscribed(gateway_url, admin_client, periods=2)
    price = Decimal(plan["price_usd"])
    assert sub["auto_renew"] == {"enabled": False, "plan_id": None, "next_attempt_at": None}

    r = customer.put(f"/subscriptions/{sub['id']}/auto-renew", json={"enabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["subscription"]["auto_renew"]["enabled"] is True
    assert r.json()["subscription"]["auto_renew"]["next_attempt_at"] is not None
    other = register(gateway_url)  # someone else's subscription does not exist for them
    assert other.put(f"/subscriptions/{sub['id']}/auto-renew",
                     json={"enabled": True}).status_code == 404
    assert customer.put(f"/subscriptions/{sub['id']}/auto-renew",
                        json={"enabled": True, "plan_id": "no-such-plan"}).status_code == 400

    make_due(sub["id"])
    before = expires_at(sub["id"])
    wait_for(lambda: [i for i in renewals(user_id) if i["status"] == "PAID"], timeout=30,
             message="the renewal charged")
    wait_for(lambda: expires_at(sub["id"]) > before, timeout=30, message="the extension")
    # Several more sweeps run (every second): still one charge and one extension.
    wait_for(lambda: sql("SELECT count(*) AS n FROM provisioning.grants g JOIN billing.invoices "
                         "i ON i.id = g.invoice_id WHERE i.user_id = $1 AND i.kind = 'RENEWAL' "
                         "AND g.status = 'APPLIED'", user_id)[0]["n"] == 1,
             message="the renewal's grant applied")
    time.sleep(3)
    [invoice] = renewals(user_id)
    assert (invoice["provider"], invoice["amount_usd"]) == ("balance", price)
    assert (expires_at(sub["id"]) - before).days == plan["duration_days"]
    assert customer.get("/balance").json()["balance_usd"] == "0.00"  # 2 × price, spent twice
    purchases = sql("SELECT count(*) AS n FROM billing.balance_entries WHERE user_id = $1 AND "
                    "kind = 'PURCHASE'", user_id)[0]["n"]
    assert purchases == 2  # the first purchase and the one renewal


def test_a_short_balance_gets_one_renewal_invoice_and_a_reminder(stack, gateway_url,
                                                                 admin_client):
    customer, user_id, plan, sub = subscribed(gateway_url, admin_client)
    assert customer.put(f"/subscriptions/{sub['id']}/auto-renew",
                        json={"enabled": True}).status_code == 200
    make_due(sub["id"])
    [invoice] = wait_for(lambda: renewals(user_id), timeout=30, message="the renewal invoice")
    assert invoice["status"] == "CREATED" and invoice["provider"] != "balance"
    reminders = wait_for(lambda: sql(
        "SELECT envelope->'payload' AS p FROM billing.outbox WHERE routing_key = "
        "'billing.renewal.reminder.v1' AND envelope->'payload'->>'user_id' = $1", user_id),
        message="the reminder")
    assert f"/app/invoices/{invoice['id']}" in reminders[0]["p"]
    shown = customer.get(f"/invoices/{invoice['id']}").json()["invoice"]
    assert shown["kind"] == "RENEWAL"


def test_the_dashboard_banner_and_switch(stack, gateway_url, admin_client):
    customer, user_id, plan, sub = subscribed(gateway_url, admin_client)
    web = customer.base_url.copy_with(path="/")
    page = customer.get(str(web.join("app")), headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'data-testid="renewal-banner"' not in page.text
    sql("UPDATE provisioning.subscriptions SET expires_at = now() + interval '3 days' "
        "WHERE id = $1", sub["id"])
    page = customer.get(str(web.join("app")))
    assert 'data-testid="renewal-banner"' in page.text
    assert f'href="/app/buy/{plan["id"]}"' in page.text
    # Auto-renewal on and a balance that covers it: no banner; short: the banner says so.
    assert customer.put(f"/subscriptions/{sub['id']}/auto-renew",
                        json={"enabled": True}).status_code == 200
    page = customer.get(str(web.join("app")))
    assert 'data-testid="renewal-banner"' in page.text and "/app/balance" in page.text
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"amount_usd": plan["price_usd"], "note": "test credit"})
    assert r.status_code == 201
    page = customer.get(str(web.join("app")))
    assert 'data-testid="renewal-banner"' not in page.text
    assert re.search(r'data-testid="auto-renew-state">[^<]*\d{4}', page.text)
