"""The btcpay provider end to end against the BTCPay fake, both served over real HTTP.

The billing API runs with PAYMENT_PROVIDER=btcpay; the fake's webhooks reach it through a
transport that adds the signed identity header, as the gateway's relay does. Signatures, stored
deliveries, redeliveries and a lost webhook repaired by `payment_watch` are checked here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from billing.app import create_api
from billing.providers.btcpay import sign as btcpay_sign
from billing.schemas import InvoiceCreate, PlanCreate
from billing.service import plan_service
from billing.wiring import build_components
from fakes.btcpay import FakeConfig
from fakes.btcpay import create_app as create_fake
from runtime import identity
from runtime.errors import ServiceUnavailable
from runtime.testing import free_port, serve_in_thread

from .conftest import make_settings

API_KEY = "test-key"
STORE = "Store9"
SECRET = "btcpay-test-secret"
SIGNING_KEY = "dev-internal-signing-key-change-me"


class GatewayHop(httpx.AsyncBaseTransport):
    """Adds the internal identity header the gateway adds when relaying a webhook."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[identity.HEADER] = identity.sign(SIGNING_KEY, "btcpay", "SERVICE",
                                                       audience="billing")
        return await self.inner.handle_async_request(request)


def btcpay_settings(fake_url: str):
    return make_settings(PAYMENT_PROVIDER="btcpay", BTCPAY_URL=fake_url, BTCPAY_API_KEY=API_KEY,
                         BTCPAY_STORE_ID=STORE, BTCPAY_WEBHOOK_SECRET=SECRET)


@pytest.fixture(scope="module")
def servers(migrated) -> Iterator[tuple[str, str]]:
    fake_port, billing_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    billing_url = f"http://127.0.0.1:{billing_port}"
    fake = create_fake(FakeConfig(
        api_key=API_KEY, store_id=STORE, public_url=fake_url, webhook_secret=SECRET,
        webhook_url=f"{billing_url}/internal/webhooks/btcpay", retry_delays=()),
        transport=GatewayHop())
    with (serve_in_thread(fake, fake_port),
          serve_in_thread(create_api(btcpay_settings(fake_url)), billing_port)):
        yield fake_url, billing_url


@pytest.fixture(scope="module")
async def btcpay(servers, db):
    parts = build_components(btcpay_settings(servers[0]), db)
    yield parts
    await parts.close()


def as_user(user: str = "buyer", role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="billing")}


async def plan_id(billing_url: str) -> str:
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.post("/internal/admin/plans", headers=as_user("admin", "ADMIN"), json={
            "name": f"btc-{uuid.uuid4().hex[:8]}", "price_usd": "30.00", "duration_days": 30,
            "max_devices": 1})
        assert r.status_code == 201, r.text
        return r.json()["plan"]["id"]


async def create_invoice(billing_url: str) -> tuple[dict, str]:
    pid = await plan_id(billing_url)
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        options = (await c.get("/internal/payment-options", headers=as_user())).json()
        assert options == {"options": [{"provider": "btcpay", "asset": "BTC",
                                        "network": "BITCOIN", "label": "BTC · BITCOIN · BTCPay"}]}
        r = await c.post("/internal/invoices",
                         headers={**as_user(), "Idempotency-Key": uuid.uuid4().hex},
                         json={"plan_id": pid, "asset": "BTC", "network": "BITCOIN"})
        assert r.status_code == 201, r.text
        invoice = r.json()["invoice"]
        admin = await c.get(f"/internal/admin/invoices/{invoice['id']}",
                            headers=as_user("admin", "ADMIN"))
        return invoice, admin.json()["invoice"]["provider_ref"]


async def invoice_status(billing_url: str, invoice_id: str) -> dict:
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.get(f"/internal/invoices/{invoice_id}", headers=as_user())
        assert r.status_code == 200, r.text
        return r.json()["invoice"]


async def paid_events(pg, invoice_id: str) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice_id)


async def test_checkout_link_from_btcpay(servers):
    fake_url, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    assert invoice["status"] == "CREATED" and invoice["address"] is None
    assert invoice["payment_url"] == f"{fake_url}/i/{ref}"
    assert invoice["amount_asset"] == "0.00050000"
    async with httpx.AsyncClient(base_url=fake_url, timeout=10) as c:
        seen = (await c.get(f"/api/v1/stores/{STORE}/invoices/{ref}",
                            headers={"Authorization": f"token {API_KEY}"})).json()
    assert seen["amount"] == "0.0005" and seen["currency"] == "BTC"
    assert seen["metadata"]["orderId"] == invoice["id"]


async def test_unsigned_or_badly_signed_webhooks_are_refused(servers, pg):
    _, billing_url = servers
    delivery = uuid.uuid4().hex
    body = (f'{{"deliveryId": "{delivery}", "type": "InvoiceSettled", '
            f'"invoiceId": "x"}}').encode()
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        for sig in (None, "sha256=" + "0" * 64, btcpay_sign("wrong-secret", body), "garbage",
                    btcpay_sign(SECRET, body + b" ")):
            headers = {**as_user("btcpay", "SERVICE"), "Content-Type": "application/json"}
            if sig is not None:
                headers["BTCPay-Sig"] = sig
            r = await c.post("/internal/webhooks/btcpay", content=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "UNAUTHENTICATED"
        metrics = (await c.get("/metrics")).text
    assert await pg.fetchval("SELECT count(*) FROM billing.provider_events "
                             "WHERE delivery_id = $1", delivery) == 0
    assert "billing_webhook_signature_failures_total" in metrics


async def test_webhook_settles_and_redeliveries_do_nothing_more(servers, pg):
    fake_url, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    async with httpx.AsyncClient(base_url=fake_url, timeout=30) as fake:
        r = await fake.post(f"/_fake/invoices/{ref}/payments",
                            json={"amount": "0.0005", "settled": True})
        assert r.status_code == 200, r.text
        deliveries = r.json()["deliveries"]
        assert [d["type"] for d in deliveries] == [
            "InvoiceReceivedPayment", "InvoicePaymentSettled", "InvoiceSettled"]
        assert all(d["ok"] for d in deliveries)
        # the webhook alone (no poll) made it paid
        got = await invoice_status(billing_url, invoice["id"])
        assert got["status"] == "PAID" and got["paid_at"] is not None
        assert [p["status"] for p in got["payments"]] == ["SETTLED"]

        settled = deliveries[-1]["id"]
        again = await fake.post(f"/_fake/deliveries/{settled}/resend")
        assert again.json()["attempts"][-1]["status_code"] == 200
        redelivered = await fake.post(f"/_fake/deliveries/{settled}/redeliver")
        assert redelivered.json()["ok"] is True
    assert await pg.fetchval("SELECT count(*) FROM billing.provider_events "
                             "WHERE delivery_id = $1", settled) == 1
    # InvoiceCreated arrived while the invoice was being created: stored, nothing to settle
    stored = await pg.fetch("SELECT event_type, outcome FROM billing.provider_events "
                            "WHERE provider_ref = $1 AND event_type <> 'InvoiceCreated'", ref)
    assert len(stored) == 4  # three deliveries + the manual redelivery (a new delivery id)
    assert {r["outcome"] for r in stored} == {"invoice:PAID"}
    assert await paid_events(pg, invoice["id"]) == 1
    assert (await invoice_status(billing_url, invoice["id"]))["status"] == "PAID"


async def test_lost_webhook_is_repaired_by_payment_watch(servers, btcpay, pg):
    fake_url, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    async with httpx.AsyncClient(base_url=fake_url, timeout=30) as fake:
        r = await fake.post(f"/_fake/invoices/{ref}/payments",
                            json={"amount": "0.0005", "settled": True, "notify": False})
        assert r.json()["deliveries"] == []
    assert (await invoice_status(billing_url, invoice["id"]))["status"] == "CREATED"
    outcome = await btcpay.watcher.payment_watch()
    assert outcome.get("PAID", 0) >= 1
    assert (await invoice_status(billing_url, invoice["id"]))["status"] == "PAID"
    await btcpay.watcher.payment_watch()
    assert await paid_events(pg, invoice["id"]) == 1


async def test_processing_then_settled_by_polling(servers, btcpay):
    fake_url, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    async with httpx.AsyncClient(base_url=fake_url, timeout=30) as fake:
        await fake.post(f"/_fake/invoices/{ref}/payments",
                        json={"amount": "0.0005", "notify": False})
        assert await btcpay.watcher.watch_one(invoice["id"]) == "PENDING"
        got = await invoice_status(billing_url, invoice["id"])
        assert [p["status"] for p in got["payments"]] == ["DETECTED"]
        await fake.post(f"/_fake/invoices/{ref}/settle", json={"notify": False})
    assert await btcpay.watcher.watch_one(invoice["id"]) == "PAID"


async def test_sandbox_chain_is_404_with_btcpay(servers):
    _, billing_url = servers
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.post("/internal/sandbox/blocks", headers=as_user(), json={"count": 1})
        assert r.status_code == 404
        r = await c.post("/internal/sandbox/transfers", headers=as_user(), json={})
        assert r.status_code == 404


async def test_provider_down_answers_503_and_keeps_the_key_free(migrated, db, pg):
    nobody_listens = f"http://127.0.0.1:{free_port()}"
    parts = build_components(btcpay_settings(nobody_listens), db)
    try:
        async with db.transaction() as s:
            plan = await plan_service.create(s, PlanCreate(
                name=f"down-{uuid.uuid4().hex[:8]}", price_usd="5.00", duration_days=1,
                max_devices=1))
        key = uuid.uuid4().hex
        with pytest.raises(ServiceUnavailable):
            await parts.billing.create_invoice_idempotent(
                db, user_id="u-down", key=key,
                body=InvoiceCreate(plan_id=plan.id, asset="BTC", network="BITCOIN"))
        assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys "
                                 "WHERE key = $1", key) == 0
        assert await pg.fetchval("SELECT count(*) FROM billing.invoices "
                                 "WHERE user_id = 'u-down'") == 0
    finally:
        await parts.close()
