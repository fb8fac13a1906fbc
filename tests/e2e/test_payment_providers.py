"""Every payment provider through the whole system at once (the shared stack enables the sandbox
chain, Crypto Pay, NOWPayments and Stars, each through its fake): a purchase paid through the
provider's signed webhook (relayed by the gateway) and one whose webhook is lost (the payment
watch finds it), a forged webhook refused with 401 and a replayed one changing nothing, under-
and over-payment, expiry and refund; each paid invoice granted exactly once."""

from __future__ import annotations

import uuid

import httpx
import pytest
from stack import fake_port

from tests.conftest import register, sql, wait_for


def options_of(customer: httpx.Client, provider: str) -> dict:
    found = [o for o in customer.get("/payment-options").json()["options"]
             if o["provider"] == provider]
    if not found:
        pytest.skip(f"{provider} is not enabled in this stack")
    o = found[0]
    return {"provider": o["provider"], "asset": o["asset"], "network": o["network"]}


def buy(gateway_url: str, provider: str) -> tuple[httpx.Client, dict]:
    customer = register(gateway_url)
    plan = customer.get("/plans").json()["plans"][0]
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], **options_of(customer, provider)})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    assert invoice["provider"] == provider and invoice["status"] == "CREATED"
    return customer, invoice


def provider_ref(invoice_id: str) -> str:
    return sql("SELECT provider_ref FROM billing.invoices WHERE id = $1", invoice_id)[0][
        "provider_ref"]


def status(invoice_id: str) -> dict:
    return sql("SELECT status, amount_received_asset, overpaid_asset, underpaid_asset "
               "FROM billing.invoices WHERE id = $1", invoice_id)[0]


def granted_once(invoice_id: str) -> None:
    wait_for(lambda: sql("SELECT status FROM provisioning.grants WHERE invoice_id = $1",
                         invoice_id) == [{"status": "APPLIED"}], timeout=60,
             message="the invoice granted once")


def fake(stack, name: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{fake_port(stack.env, name)}", timeout=15)


# ---------------------------------------------------------------- Crypto Pay

def cryptopay_pay(stack, ref: str, notify: bool = True) -> dict:
    with fake(stack, "cryptopay") as f:
        r = f.post(f"/_fake/invoices/{ref}/pay", json={"paid_asset": "USDT", "notify": notify})
        assert r.status_code == 200, r.text
        return r.json()


def test_cryptopay_webhook_then_replay_and_forgery(stack, gateway_url):
    _, invoice = buy(gateway_url, "cryptopay")
    assert invoice["payment_url"]  # the Crypto Bot link the customer opens
    cryptopay_pay(stack, provider_ref(invoice["id"]))
    wait_for(lambda: status(invoice["id"])["status"] == "PAID", timeout=30,
             message="paid through the webhook")
    granted_once(invoice["id"])
    with fake(stack, "cryptopay") as f:
        deliveries = f.get("/_fake/deliveries",
                           params={"invoice_id": provider_ref(invoice["id"])}).json()
        delivery = deliveries["deliveries"][0]
        r = f.post(f"/_fake/deliveries/{delivery['id']}/resend")  # the same bytes again
        assert r.status_code == 200, r.text
    hooks = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15)
    forged = hooks.post("/payments/webhooks/cryptopay", content=b'{"update_id":1}',
                        headers={"Content-Type": "application/json",
                                 "crypto-pay-api-signature": "0" * 64})
    assert forged.status_code == 401
    granted_once(invoice["id"])
    assert status(invoice["id"])["status"] == "PAID"


def test_cryptopay_lost_webhook_is_found_by_polling(stack, gateway_url):
    _, invoice = buy(gateway_url, "cryptopay")
    cryptopay_pay(stack, provider_ref(invoice["id"]), notify=False)
    wait_for(lambda: status(invoice["id"])["status"] == "PAID", timeout=30,
             message="paid by the payment watch")
    granted_once(invoice["id"])


def test_cryptopay_expiry_and_a_refund(stack, gateway_url, admin_client):
    _, invoice = buy(gateway_url, "cryptopay")
    with fake(stack, "cryptopay") as f:
        assert f.post(f"/_fake/invoices/{provider_ref(invoice['id'])}/expire").status_code == 200
    sql("UPDATE billing.invoices SET rate_locked_until = now() WHERE id = $1", invoice["id"])
    wait_for(lambda: status(invoice["id"])["status"] == "EXPIRED", timeout=30,
             message="expired")
    _, paid = buy(gateway_url, "cryptopay")
    cryptopay_pay(stack, provider_ref(paid["id"]))
    granted_once(paid["id"])
    r = admin_client.post(f"/admin/invoices/{paid['id']}/refund",
                          json={"reason": "customer asked", "to": "balance"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "REFUNDED"


# ---------------------------------------------------------------- NOWPayments

def nowpayments_pay(stack, ref: str, **body) -> dict:
    with fake(stack, "nowpayments") as f:
        r = f.post(f"/_fake/payments/{ref}/pay", json=body)
        assert r.status_code == 200, r.text
        return r.json()


def test_nowpayments_ipn_then_replay_and_forgery(stack, gateway_url):
    _, invoice = buy(gateway_url, "nowpayments")
    assert invoice["address"]  # NOWPayments' deposit address, its own amount
    nowpayments_pay(stack, provider_ref(invoice["id"]))
    wait_for(lambda: status(invoice["id"])["status"] == "PAID", timeout=30,
             message="paid through the IPN")
    granted_once(invoice["id"])
    with fake(stack, "nowpayments") as f:
        listed = f.get("/_fake/deliveries",
                       params={"payment_id": provider_ref(invoice["id"])}).json()
        for d in listed["deliveries"]:
            assert f.post(f"/_fake/deliveries/{d['id']}/send").status_code == 200
    hooks = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15)
    forged = hooks.post("/payments/webhooks/nowpayments", content=b'{"payment_id":1}',
                        headers={"Content-Type": "application/json",
                                 "x-nowpayments-sig": "0" * 128})
    assert forged.status_code == 401
    unsigned = hooks.post("/payments/webhooks/nowpayments", content=b'{"payment_id":1}',
                          headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    granted_once(invoice["id"])


def test_nowpayments_lost_ipn_over_and_under_payment(stack, gateway_url):
    _, over = buy(gateway_url, "nowpayments")
    amount = float(over["amount_asset"])
    nowpayments_pay(stack, provider_ref(over["id"]), amount=str(round(amount * 1.5, 8)),
                    notify=False)
    wait_for(lambda: status(over["id"])["status"] == "PAID", timeout=30,
             message="paid by the payment watch")
    assert status(over["id"])["overpaid_asset"] > 0
    granted_once(over["id"])

    _, under = buy(gateway_url, "nowpayments")
    half = str(round(float(under["amount_asset"]) / 2, 8))
    nowpayments_pay(stack, provider_ref(under["id"]), amount=half, until="partially_paid")
    wait_for(lambda: status(under["id"])["amount_received_asset"] > 0, timeout=30,
             message="the partial payment recorded")
    assert status(under["id"])["status"] in ("CREATED", "PENDING")
    sql("UPDATE billing.invoices SET rate_locked_until = now() WHERE id = $1", under["id"])
    wait_for(lambda: status(under["id"])["status"] == "EXPIRED", timeout=30, message="expired")
    assert status(under["id"])["underpaid_asset"] > 0
    assert sql("SELECT count(*) AS n FROM provisioning.grants WHERE invoice_id = $1",
               under["id"]) == [{"n": 0}]


def test_three_providers_at_once_each_invoice_at_its_own(stack, gateway_url):
    customer = register(gateway_url)
    providers = {o["provider"] for o in customer.get("/payment-options").json()["options"]}
    assert {"sandbox", "cryptopay", "nowpayments"} <= providers
    plan = customer.get("/plans").json()["plans"][0]
    for provider in ("sandbox", "cryptopay", "nowpayments"):
        r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"plan_id": plan["id"], **options_of(customer, provider)})
        assert r.status_code == 201 and r.json()["invoice"]["provider"] == provider, r.text
    # no provider named: the first enabled one that takes the pair (the sandbox chain)
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], "asset": "USDT", "network": "TRON"})
    assert r.status_code == 201 and r.json()["invoice"]["provider"] == "sandbox"
    r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                      json={"plan_id": plan["id"], "asset": "USDT", "network": "TRON",
                            "provider": "cryptopay"})
    assert r.status_code == 400  # Crypto Pay takes USD invoices, not this pair
