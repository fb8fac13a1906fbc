"""Tests of the NOWPayments fake: API answers and errors, payment life, signed IPNs, faults."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fakes.nowpayments import FakeConfig, create_app, js_json, main, sign, sort_object

KEY = "np-key"
OTHER = "np-other"
SECRET = "ipn-secret"
AUTH = {"x-api-key": KEY}
HOOK = "http://merchant.test/ipn"


@dataclass
class Receiver:
    """The merchant's IPN endpoint, reached through an ASGI transport."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, then 200

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/ipn")
        @app.post("/elsewhere")
        async def ipn(request: Request):
            self.received.append((dict(request.headers), await request.body()))
            return JSONResponse({}, status_code=self.statuses.pop(0) if self.statuses else 200)

        return app

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.received]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


def make_client(receiver: Receiver, **config: Any) -> httpx.AsyncClient:
    cfg = FakeConfig(**{"api_keys": (KEY, OTHER), "ipn_secret": SECRET, "retry_delays": (),
                        **config})
    app = create_app(cfg, transport=httpx.ASGITransport(app=receiver.app()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://nowpayments.test")


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(receiver) as c:
        yield c


async def new_payment(client: httpx.AsyncClient, key: str = KEY, **body: Any) -> dict:
    r = await client.post("/v1/payment", headers={"x-api-key": key}, json={
        "price_amount": 30, "price_currency": "usd", "pay_currency": "btc", "order_id": "inv-1",
        "order_description": "Invoice inv-1", "ipn_callback_url": HOOK, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def test_status_needs_no_key_and_the_rest_needs_the_right_one(client) -> None:
    r = await client.get("/v1/status")
    assert (r.status_code, r.json()) == (200, {"message": "OK"})
    for headers in ({}, {"x-api-key": "wrong"}):
        r = await client.get("/v1/currencies", headers=headers)
        assert r.status_code == 403
        assert r.json() == {"status": False, "statusCode": 403, "code": "INVALID_API_KEY",
                            "message": "Invalid api key"}
        r = await client.post("/v1/payment", headers=headers, json={})
        assert r.status_code == 403
    currencies = (await client.get("/v1/currencies", headers=AUTH)).json()["currencies"]
    assert {"btc", "usdttrc20", "xrp"} <= set(currencies)


async def test_create_validates_and_prices_at_its_own_rate(client) -> None:
    for body, text in (({"price_currency": "usd", "pay_currency": "btc"}, "price_amount"),
                       ({"price_amount": 5, "price_currency": "usd"}, "pay_currency"),
                       ({"price_amount": -1, "price_currency": "usd", "pay_currency": "btc"},
                        "price_amount"),
                       ({"price_amount": 5, "price_currency": "usd", "pay_currency": "doge"},
                        "doge")):
        r = await client.post("/v1/payment", headers=AUTH, json=body)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST_PARAMS", r.text
        assert text in r.json()["message"]
    created = await new_payment(client)
    assert isinstance(created["payment_id"], str) and created["payment_status"] == "waiting"
    assert created["pay_amount"] == 0.0005 and created["price_amount"] == 30  # 60,000 USD/BTC
    assert created["pay_address"].startswith("bc1q") and created["payin_extra_id"] is None
    for name in ("order_id", "order_description", "ipn_callback_url", "purchase_id",
                 "created_at", "valid_until", "expiration_estimate_date", "network"):
        assert created[name] is not None, name
    await client.post("/_fake/rates", json={"btc": "50000"})
    assert (await new_payment(client))["pay_amount"] == 0.0006
    memo = await new_payment(client, pay_currency="xrp")
    assert memo["pay_address"].startswith("r") and memo["payin_extra_id"].isdigit()
    read = (await client.get(f"/v1/payment/{created['payment_id']}", headers=AUTH)).json()
    assert read["payment_id"] == int(created["payment_id"])  # a number once read
    assert read["actually_paid"] == 0 and read["payment_status"] == "waiting"


async def test_a_payment_is_read_and_listed_only_with_its_key(client) -> None:
    created = [await new_payment(client) for _ in range(5)]
    mine = await new_payment(client, key=OTHER)
    r = await client.get(f"/v1/payment/{created[0]['payment_id']}",
                         headers={"x-api-key": OTHER})
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    page = (await client.get("/v1/payment/", headers=AUTH,
                             params={"limit": 2, "page": 2})).json()
    assert (page["limit"], page["page"], page["pagesCount"], page["total"]) == (2, 2, 3, 5)
    assert [p["payment_id"] for p in page["data"]] == [int(created[4]["payment_id"])]
    desc = (await client.get("/v1/payment/", headers=AUTH,
                             params={"limit": 500, "orderBy": "desc"})).json()
    assert [p["payment_id"] for p in desc["data"]] == [int(c["payment_id"])
                                                       for c in reversed(created)]
    other = (await client.get("/v1/payment/", headers={"x-api-key": OTHER})).json()
    assert [p["payment_id"] for p in other["data"]] == [int(mine["payment_id"])]
    for params in ({"limit": 0}, {"limit": 501}, {"page": -1}, {"sortBy": "nope"}):
        r = await client.get("/v1/payment/", headers=AUTH, params=params)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST_PARAMS"


async def test_one_signed_ipn_per_step_with_a_nested_fee(client, receiver) -> None:
    created = await new_payment(client, order_description="Подписка «Год»")
    r = await client.post(f"/_fake/payments/{created['payment_id']}/pay", json={})
    assert r.json()["payment"]["payment_status"] == "finished"
    bodies = receiver.bodies()
    assert [b["payment_status"] for b in bodies] == [
        "confirming", "confirmed", "sending", "finished"]
    assert ["fee" in b for b in bodies] == [False, True, True, True]
    assert isinstance(bodies[1]["fee"], dict) and bodies[1]["fee"]["currency"] == "btc"
    for headers, raw in receiver.received:
        assert "Подписка «Год»".encode() in raw  # UTF-8, not \\u escapes
        assert headers["x-nowpayments-sig"] == sign(SECRET, json.loads(raw))
    assert bodies[-1]["actually_paid"] == 0.0005
    if shutil.which("node"):  # NOWPayments' own Node receiver code agrees
        for headers, raw in receiver.received:
            assert node_signature(SECRET, raw) == headers["x-nowpayments-sig"]


def node_signature(secret: str, raw: bytes) -> str:
    script = (
        "const crypto = require('crypto');"
        "function sortObject(obj) { return Object.keys(obj).sort().reduce((result, key) => {"
        " result[key] = (obj[key] && typeof obj[key] === 'object') ? sortObject(obj[key])"
        " : obj[key]; return result; }, {}); }"
        "const body = require('fs').readFileSync(0, 'utf8');"
        "const hmac = crypto.createHmac('sha512', process.argv[1]);"
        "hmac.update(JSON.stringify(sortObject(JSON.parse(body))));"
        "process.stdout.write(hmac.digest('hex'));")
    return subprocess.run(["node", "-e", script, secret], input=raw, capture_output=True,
                          check=True).stdout.decode()


def test_the_signed_text_is_javascripts():
    body = {"b": 1e-7, "a": {"z": 100.0, "10": True, "9": None}, "s": "é\n", "l": [2, 1]}
    assert js_json(sort_object(body)) == (
        '{"a":{"9":null,"10":true,"z":100},"b":1e-7,"l":{"0":2,"1":1},"s":"é\\n"}')
    assert sign(SECRET, body) == hmac.new(SECRET.encode(), js_json(sort_object(body)).encode(),
                                          hashlib.sha512).hexdigest()


async def test_partial_over_failed_and_refunded(client, receiver) -> None:
    part = await new_payment(client)
    r = await client.post(f"/_fake/payments/{part['payment_id']}/pay", json={"amount": "0.0002"})
    assert r.json()["payment"]["payment_status"] == "partially_paid"
    assert r.json()["payment"]["actually_paid"] == 0.0002
    over = await new_payment(client)
    r = await client.post(f"/_fake/payments/{over['payment_id']}/pay", json={"amount": "0.001"})
    assert r.json()["payment"]["payment_status"] == "finished"
    r = await client.post(f"/_fake/payments/{over['payment_id']}/status",
                          json={"status": "refunded"})
    assert r.json()["payment"]["payment_status"] == "refunded"
    assert receiver.bodies()[-1]["payment_status"] == "refunded"
    r = await client.post(f"/_fake/payments/{over['payment_id']}/pay", json={})
    assert r.status_code == 409
    r = await client.post(f"/_fake/payments/{over['payment_id']}/status", json={"status": "x"})
    assert r.status_code == 400


async def test_lost_ipns_are_kept_and_sent_or_redelivered_on_demand(client, receiver) -> None:
    created = await new_payment(client)
    r = await client.post(f"/_fake/payments/{created['payment_id']}/pay",
                          json={"until": "confirming", "notify": False})
    lost = r.json()["deliveries"]
    assert [(d["payment_status"], d["reason"], d["sent"]) for d in lost] == [
        ("confirming", "lost", False)]
    assert receiver.received == []
    sent = (await client.post(f"/_fake/deliveries/{lost[0]['id']}/send")).json()
    assert sent["ok"] and receiver.received[-1][1] == json.dumps(
        sent["body"], ensure_ascii=False, separators=(",", ":")).encode()
    again = (await client.post(f"/_fake/deliveries/{lost[0]['id']}/redeliver")).json()
    assert again["redelivery_of"] == lost[0]["id"] and again["payment_status"] == "confirming"
    assert len(receiver.received) == 2
    listed = (await client.get("/_fake/deliveries",
                               params={"payment_id": created["payment_id"]})).json()
    assert [d["id"] for d in listed["deliveries"]] == [lost[0]["id"], again["id"]]


async def test_expiry_and_no_ipn_after_it(receiver) -> None:
    async with make_client(receiver, payment_lifetime_seconds=0) as client:
        created = await new_payment(client)
        read = (await client.get(f"/v1/payment/{created['payment_id']}", headers=AUTH)).json()
        assert read["payment_status"] == "expired"
        assert [b["payment_status"] for b in receiver.bodies()] == ["expired"]
        r = await client.post(f"/_fake/payments/{created['payment_id']}/pay", json={})
        assert r.json()["payment"]["payment_status"] == "finished"
        assert {d["reason"] for d in r.json()["deliveries"]} == {"after_expiry"}
        assert len(receiver.received) == 1


async def test_no_ipn_secret_means_no_ipns_and_a_webhook_url_overrides(receiver) -> None:
    async with make_client(receiver, ipn_secret="") as client:
        created = await new_payment(client)
        await client.post(f"/_fake/payments/{created['payment_id']}/pay", json={})
        assert receiver.received == []
        assert (await client.get("/_fake/deliveries")).json()["deliveries"] == []
    async with make_client(receiver, webhook_url="http://merchant.test/elsewhere") as client:
        created = await new_payment(client)
        r = await client.post(f"/_fake/payments/{created['payment_id']}/expire", json={})
        assert r.json()["deliveries"][0]["url"] == "http://merchant.test/elsewhere"
        assert len(receiver.received) == 1


async def test_a_failed_ipn_is_retried(receiver) -> None:
    receiver.statuses = [500]
    async with make_client(receiver, retry_delays=(0.01,)) as client:
        created = await new_payment(client)
        r = await client.post(f"/_fake/payments/{created['payment_id']}/expire", json={})
        assert r.json()["deliveries"][0]["statusCode"] == 500
        for _ in range(100):
            if len(receiver.received) == 2:
                break
            await asyncio.sleep(0.01)
        assert receiver.received[0][1] == receiver.received[1][1]


async def test_faults_fail_or_hang_calls(client) -> None:
    await client.post("/_fake/faults", json={"operation": "get_payment", "count": 1})
    created = await new_payment(client)
    path = f"/v1/payment/{created['payment_id']}"
    r = await client.get(path, headers=AUTH)
    assert r.status_code == 500 and r.json()["statusCode"] == 500
    assert (await client.get(path, headers=AUTH)).status_code == 200  # count spent
    await client.post("/_fake/faults", json={"operation": "*", "status": 429})
    r = await client.get("/v1/status")
    assert r.status_code == 429 and "nginx" in r.text
    await client.delete("/_fake/faults")
    await client.post("/_fake/faults", json={"operation": "status", "mode": "hang",
                                             "seconds": 0.3})
    started = time.monotonic()
    assert (await client.get("/v1/status")).status_code == 200
    assert time.monotonic() - started >= 0.3
    await client.post("/_fake/reset")
    assert (await client.get("/_fake/payments")).json()["payments"] == []
    assert (await client.get(path, headers=AUTH)).status_code == 404


def test_cli_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--webhook-url", "--api-key", "--ipn-secret"):
        assert flag in out
