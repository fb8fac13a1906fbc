"""Tests of the BTCPay Server fake: Greenfield answers, invoice life, signed webhooks, retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fakes.btcpay import FakeConfig, create_app

KEY = "k-123"
STORE = "Store1"
SECRET = "whsec"
AUTH = {"Authorization": f"token {KEY}"}
BASE = f"/api/v1/stores/{STORE}"


@dataclass
class Receiver:
    """The merchant's webhook endpoint, reached through an ASGI transport."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request):
            self.received.append((dict(request.headers), await request.body()))
            return JSONResponse({}, status_code=self.status)

        return app

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.received]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


def make_client(receiver: Receiver, **config: Any) -> httpx.AsyncClient:
    cfg = FakeConfig(api_key=KEY, store_id=STORE, public_url="http://btcpay.test",
                     webhook_url="http://merchant.test/hook", webhook_secret=SECRET, **config)
    app = create_app(cfg, transport=httpx.ASGITransport(app=receiver.app()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://btcpay.test")


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(receiver) as c:
        yield c


async def new_invoice(client: httpx.AsyncClient, amount: str = "0.001", **checkout: Any) -> dict:
    r = await client.post(f"{BASE}/invoices", headers=AUTH, json={
        "amount": amount, "currency": "BTC", "metadata": {"orderId": "inv-1"},
        "checkout": {"expirationMinutes": 15, **checkout}})
    assert r.status_code == 200, r.text
    return r.json()


async def test_auth_and_store_permission(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{BASE}/invoices", json={"amount": "1"})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await client.get(f"{BASE}/invoices/x", headers={"Authorization": "token wrong"})
    assert r.status_code == 401
    r = await client.get("/api/v1/stores/Other/invoices", headers=AUTH)
    assert r.status_code == 403 and r.json()["code"] == "missing-permission"
    r = await client.get(f"{BASE}/invoices/nope", headers=AUTH)
    assert r.status_code == 404 and r.json()["code"] == "invoice-not-found"


async def test_create_and_read_invoice(client: httpx.AsyncClient, receiver: Receiver) -> None:
    inv = await new_invoice(client)
    assert inv["status"] == "New" and inv["additionalStatus"] == "None"
    assert inv["amount"] == "0.001" and inv["currency"] == "BTC"
    assert inv["checkoutLink"] == f"http://btcpay.test/i/{inv['id']}"
    assert inv["expirationTime"] - inv["createdTime"] == 15 * 60
    assert inv["metadata"] == {"orderId": "inv-1"}
    again = (await client.get(f"{BASE}/invoices/{inv['id']}", headers=AUTH)).json()
    assert again["id"] == inv["id"]
    methods = (await client.get(f"{BASE}/invoices/{inv['id']}/payment-methods",
                                headers=AUTH)).json()
    assert methods[0]["cryptoCode"] == "BTC" and methods[0]["payments"] == []
    assert methods[0]["due"] == "0.001"
    assert [b["type"] for b in receiver.bodies()] == ["InvoiceCreated"]


async def test_validation_errors_are_422_lists(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{BASE}/invoices", headers=AUTH, json={"amount": "-1"})
    assert r.status_code == 422
    assert r.json()[0]["path"] == "amount"
    r = await client.post(f"{BASE}/invoices", headers=AUTH, content=b"{not json")
    assert r.status_code == 422


async def test_payment_settles_and_webhooks_are_signed(client: httpx.AsyncClient,
                                                       receiver: Receiver) -> None:
    inv = await new_invoice(client)
    r = await client.post(f"/_fake/invoices/{inv['id']}/payments", json={"amount": "0.001"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "Processing"
    r = await client.post(f"/_fake/invoices/{inv['id']}/settle", json={})
    assert r.json()["invoice"]["status"] == "Settled"
    types = [b["type"] for b in receiver.bodies()]
    assert types == ["InvoiceCreated", "InvoiceReceivedPayment", "InvoiceProcessing",
                     "InvoicePaymentSettled", "InvoiceSettled"]
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["btcpay-sig"] == expected
    settled = receiver.bodies()[-1]
    assert settled["invoiceId"] == inv["id"] and settled["storeId"] == STORE
    assert settled["manuallyMarked"] is False and settled["overPaid"] is False
    assert settled["isRedelivery"] is False and settled["originalDeliveryId"] == settled[
        "deliveryId"]
    received = receiver.bodies()[1]
    assert received["payment"]["value"] == "0.001" and received["afterExpiration"] is False
    methods = (await client.get(f"{BASE}/invoices/{inv['id']}/payment-methods",
                                headers=AUTH)).json()
    assert [p["status"] for p in methods[0]["payments"]] == ["Settled"]


async def test_partial_then_expired_and_overpaid(client: httpx.AsyncClient,
                                                 receiver: Receiver) -> None:
    inv = await new_invoice(client)
    r = await client.post(f"/_fake/invoices/{inv['id']}/payments",
                          json={"amount": "0.0004", "settled": True})
    assert r.json()["invoice"]["status"] == "New"
    assert r.json()["invoice"]["additionalStatus"] == "PaidPartial"
    r = await client.post(f"/_fake/invoices/{inv['id']}/expire", json={})
    body = r.json()
    assert body["invoice"]["status"] == "Expired"
    assert body["invoice"]["additionalStatus"] == "PaidPartial"
    assert receiver.bodies()[-1]["type"] == "InvoiceExpired"
    assert receiver.bodies()[-1]["partiallyPaid"] is True

    over = await new_invoice(client)
    r = await client.post(f"/_fake/invoices/{over['id']}/payments",
                          json={"amount": "0.002", "settled": True})
    assert r.json()["invoice"]["status"] == "Settled"
    assert r.json()["invoice"]["additionalStatus"] == "PaidOver"
    assert receiver.bodies()[-1]["overPaid"] is True


async def test_late_payment_after_expiry(client: httpx.AsyncClient, receiver: Receiver) -> None:
    inv = await new_invoice(client)
    await client.post(f"/_fake/invoices/{inv['id']}/expire", json={})
    r = await client.post(f"/_fake/invoices/{inv['id']}/payments",
                          json={"amount": "0.001", "settled": True})
    assert r.json()["invoice"]["status"] == "Settled"
    assert r.json()["invoice"]["additionalStatus"] == "PaidLate"
    received = [b for b in receiver.bodies() if b["type"] == "InvoiceReceivedPayment"]
    assert received[-1]["afterExpiration"] is True


async def test_mark_settled_by_merchant(client: httpx.AsyncClient) -> None:
    inv = await new_invoice(client)
    assert inv["availableStatusesForManualMarking"] == ["Settled", "Invalid"]
    r = await client.post(f"{BASE}/invoices/{inv['id']}/status", headers=AUTH,
                          json={"status": "Settled"})
    assert r.status_code == 200
    assert r.json()["status"] == "Settled" and r.json()["additionalStatus"] == "Marked"
    r = await client.post(f"{BASE}/invoices/{inv['id']}/status", headers=AUTH,
                          json={"status": "Bogus"})
    assert r.status_code == 400


async def test_payment_without_webhook_is_only_visible_by_polling(
        client: httpx.AsyncClient, receiver: Receiver) -> None:
    inv = await new_invoice(client)
    before = len(receiver.received)
    r = await client.post(f"/_fake/invoices/{inv['id']}/payments",
                          json={"amount": "0.001", "settled": True, "notify": False})
    assert r.json()["deliveries"] == []
    assert len(receiver.received) == before
    read = (await client.get(f"{BASE}/invoices/{inv['id']}", headers=AUTH)).json()
    assert read["status"] == "Settled"


async def test_failed_delivery_is_retried_with_the_same_id(receiver: Receiver) -> None:
    receiver.status = 500
    async with make_client(receiver, retry_delays=(0.01, 0.01)) as client:
        await new_invoice(client)

        async def attempts() -> int:
            return len(receiver.received)

        for _ in range(200):
            if await attempts() >= 3:
                break
            await asyncio.sleep(0.01)
        ids = {b["deliveryId"] for b in receiver.bodies()}
        assert len(receiver.received) == 3 and len(ids) == 1
        deliveries = (await client.get("/_fake/deliveries")).json()["deliveries"]
        assert len(deliveries[0]["attempts"]) == 3 and deliveries[0]["ok"] is False


async def test_manual_redelivery_gets_a_new_id(client: httpx.AsyncClient,
                                               receiver: Receiver) -> None:
    inv = await new_invoice(client)
    first = (await client.get("/_fake/deliveries", params={"invoice_id": inv["id"]})
             ).json()["deliveries"][0]
    again = (await client.post(f"/_fake/deliveries/{first['id']}/redeliver")).json()
    assert again["id"] != first["id"]
    body = receiver.bodies()[-1]
    assert body["isRedelivery"] is True and body["originalDeliveryId"] == first["id"]
    same = (await client.post(f"/_fake/deliveries/{first['id']}/resend")).json()
    assert same["id"] == first["id"] and receiver.bodies()[-1]["deliveryId"] == first["id"]
