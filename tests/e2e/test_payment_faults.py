"""Fault rows for the payment providers: a provider that hangs during checkout (the customer gets
a clear 503, no invoice is stored under the key, and the retry with the same key makes one), and
webhooks delivered while billing is down and restarting (each invoice settled and granted once,
whether the redelivered webhook or the payment watch gets there first)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from stack import fake_port

from tests.conftest import register, sql, wait_for
from tests.e2e.test_payment_providers import granted_once, options_of, provider_ref, status


def fake(stack, name: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{fake_port(stack.env, name)}", timeout=15)


def test_a_provider_timing_out_at_checkout_stores_nothing(stack, gateway_url):
    customer = register(gateway_url)
    plan = customer.get("/plans").json()["plans"][0]
    body = {"plan_id": plan["id"], **options_of(customer, "cryptopay")}
    key = uuid.uuid4().hex
    before = sql("SELECT count(*) AS n FROM billing.invoices")[0]["n"]
    with fake(stack, "cryptopay") as f:
        # longer than PROVIDER_TIMEOUT_SECONDS, and the invoice is made at Crypto Pay first
        r = f.post("/_fake/faults", json={"method": "createInvoice", "delay_ms": 4000,
                                          "times": 1, "after": True})
        assert r.status_code == 200, r.text
        refused = customer.post("/invoices", headers={"Idempotency-Key": key}, json=body)
        f.delete("/_fake/faults")
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
    owner = customer.get("/auth/me").json()["user"]["id"]
    assert sql("SELECT count(*) AS n FROM billing.invoices WHERE user_id = $1",
               owner) == [{"n": 0}]
    retried = customer.post("/invoices", headers={"Idempotency-Key": key}, json=body)
    assert retried.status_code == 201, retried.text
    again = customer.post("/invoices", headers={"Idempotency-Key": key}, json=body)
    assert again.json()["invoice"]["id"] == retried.json()["invoice"]["id"]
    assert sql("SELECT count(*) AS n FROM billing.invoices")[0]["n"] == before + 1


@pytest.mark.timeout(600)
def test_webhooks_during_a_billing_restart_settle_once(stack, gateway_url):
    bought = []
    for provider in ("cryptopay", "nowpayments"):
        customer = register(gateway_url)
        plan = customer.get("/plans").json()["plans"][0]
        r = customer.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"plan_id": plan["id"], **options_of(customer, provider)})
        assert r.status_code == 201, r.text
        bought.append((provider, r.json()["invoice"]))
    stack.kill("billing-api")
    stack.kill("billing-worker")
    try:
        with fake(stack, "cryptopay") as cp, fake(stack, "nowpayments") as np:
            for provider, invoice in bought:  # their webhooks now meet a billing that is away
                ref = provider_ref(invoice["id"])
                if provider == "cryptopay":
                    r = cp.post(f"/_fake/invoices/{ref}/pay", json={"paid_asset": "TON"})
                else:
                    r = np.post(f"/_fake/payments/{ref}/pay", json={})
                assert r.status_code == 200, r.text
    finally:
        stack.start_service("billing", "api")
        stack.start_service("billing", "worker")
        stack.wait_ready()
    with fake(stack, "cryptopay") as cp, fake(stack, "nowpayments") as np:
        # and every webhook again, racing the payment watch
        for d in cp.get("/_fake/deliveries").json()["deliveries"]:
            if d["invoice_id"] == int(provider_ref(bought[0][1]["id"])):
                cp.post(f"/_fake/deliveries/{d['id']}/resend")
        ref = provider_ref(bought[1][1]["id"])
        for d in np.get("/_fake/deliveries", params={"payment_id": ref}).json()["deliveries"]:
            np.post(f"/_fake/deliveries/{d['id']}/send")
    for _, invoice in bought:
        wait_for(lambda i=invoice: status(i["id"])["status"] == "PAID", timeout=60,
                 message="paid after the restart")
        granted_once(invoice["id"])
        paid_events = sql("SELECT count(*) AS n FROM billing.outbox WHERE routing_key = "
                          "'billing.invoice.paid.v1' AND envelope->'payload'->>'invoice_id' = $1",
                          invoice["id"])
        assert paid_events == [{"n": 1}]
    print("faults: billing api+worker SIGKILL while Crypto Pay and NOWPayments webhooks "
          "arrive; each invoice paid once, granted once")
