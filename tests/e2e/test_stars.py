"""Telegram Stars through the whole system: a customer buys a plan with Stars (an invoice link in
Telegram, shown on the invoice page as "Pay in Telegram"), pays it in the Telegram emulator (its
pre_checkout_query reaches the bot through the gateway's webhook and is answered yes from
billing's word within 10 s, then successful_payment travels as an event to billing), the plan is
granted once, the paid link is refused a second time, and an admin refund sends the Stars back
with refundStarPayment once.

Needs a stack with `stars` in PAYMENT_PROVIDERS (the shared stack's PAYMENT_FAKES=all); skipped
otherwise."""

from __future__ import annotations

import html
import uuid

import httpx
import pytest

from tests.conftest import register, sql, wait_for


def stars_option(customer: httpx.Client) -> dict:
    options = [o for o in customer.get("/payment-options").json()["options"]
               if o["provider"] == "stars"]
    if not options:
        pytest.skip("Telegram Stars is not a payment option of this stack: it needs `stars` in "
                    "PAYMENT_PROVIDERS (PAYMENT_FAKES=all or PAYMENT_FAKES=stars)")
    return {k: options[0][k] for k in ("provider", "asset", "network")}


@pytest.fixture
def stars_plan(admin_client):
    """A plan priced in Stars, the dearest, so no other test picks it; withdrawn after."""
    r = admin_client.post("/admin/plans", json={
        "name": f"Stars {uuid.uuid4().hex[:6]}", "price_usd": "97.00", "duration_days": 30,
        "max_devices": 2, "price_stars": 4321})
    assert r.status_code == 201, r.text
    plan = r.json()["plan"]
    yield plan
    admin_client.delete(f"/admin/plans/{plan['id']}")


def pay(emulator_url: str, link: str, payer: int) -> dict:
    with httpx.Client(base_url=emulator_url, timeout=30) as emulator:
        r = emulator.post("/_emulator/stars/pay", json={"link": link, "from_id": payer})
        assert r.status_code == 200, r.text
        return r.json()


def test_a_plan_bought_with_stars_is_granted_once_and_refunded_in_stars(
        gateway_url, emulator_url, admin_client, stars_plan):
    customer = register(gateway_url)
    option = stars_option(customer)
    assert next(p for p in customer.get("/plans").json()["plans"]
                if p["id"] == stars_plan["id"])["price_stars"] == 4321
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": stars_plan["id"], **option})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    assert invoice["amount_stars"] == 4321 and invoice["asset"] == "XTR"
    link = invoice["payment_url"]
    assert link.startswith("https://t.me/$") and invoice["address"] is None

    # the web invoice page offers the link to open in Telegram
    web = httpx.Client(base_url=gateway_url, timeout=15, cookies={"sid": customer.cookies["sid"]})
    page = web.get(f"/app/invoices/{invoice['id']}").text
    assert 'data-testid="pay-in-telegram"' in page and html.escape(link) in page
    assert "4321" in page

    payer = 7_700_000_000 + uuid.uuid4().int % 10**8
    paid = pay(emulator_url, link, payer)
    assert paid["status"] == "paid", paid
    assert paid["pre_checkout_query"]["answered_after"] < 10
    charge = paid["telegram_payment_charge_id"]
    wait_for(lambda: customer.get(f"/invoices/{invoice['id']}").json()["invoice"]["status"]
             == "PAID", timeout=30, message="the Stars invoice paid")
    wait_for(lambda: sql("SELECT status FROM provisioning.grants WHERE invoice_id = $1",
                         invoice["id"]) == [{"status": "APPLIED"}], timeout=60,
             message="the plan granted once")
    assert sql("SELECT txid, amount_asset FROM billing.payments WHERE invoice_id = $1",
               invoice["id"]) == [{"txid": charge, "amount_asset": 4321}]

    # the paid invoice takes no second payment: Telegram is told no before taking Stars
    again = pay(emulator_url, link, payer)
    assert again["status"] == "refused"
    assert again["pre_checkout_query"]["error_message"] == "This invoice is already paid."

    r = admin_client.post(f"/admin/invoices/{invoice['id']}/refund",
                          json={"reason": "customer asked (e2e)"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "REFUNDED"
    with httpx.Client(base_url=emulator_url, timeout=15) as emulator:
        calls = emulator.get("/_emulator/calls", params={"method": "refundStarPayment"}).json()
        charges = emulator.get("/_emulator/stars/charges").json()["charges"]
    assert [c["params"] for c in calls["calls"]
            if c["params"]["telegram_payment_charge_id"] == charge] == [
        {"user_id": payer, "telegram_payment_charge_id": charge}]
    assert next(c for c in charges if c["telegram_payment_charge_id"] == charge)["refunded"]
    # the bot records the refunded_payment Telegram sends after it
    wait_for(lambda: sql("SELECT refunded_at FROM telegram.stars_payments "
                         "WHERE telegram_payment_charge_id = $1", charge)[0]["refunded_at"],
             timeout=30, message="the refund recorded by the bot")
