"""The nowpayments provider end to end against the NOWPayments fake, both served over real HTTP.

The billing API runs with PAYMENT_PROVIDERS=nowpayments; the fake's IPNs reach it through a
transport that adds the signed identity header, as the gateway's relay does. Purchases by IPN
and by polling, forged and replayed IPNs, partial, over- and late payments, expiry, failures,
refunds, the signature over nested and non-ASCII bodies, two providers at once and a provider
that fails during checkout are checked here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from billing.app import create_api
from billing.providers.nowpayments import NowPaymentsWebhooks, shown_address
from billing.schemas import InvoiceCreate, PlanCreate
from billing.service import plan_service, utcnow
from billing.wiring import build_components
from fakes.nowpayments import FakeConfig, js_json
from fakes.nowpayments import create_app as create_fake
from fakes.nowpayments import sign as fake_sign
from runtime import identity
from runtime.errors import ServiceUnavailable
from runtime.testing import free_port, production_settings, serve_in_thread

from .conftest import make_settings

API_KEY = "np-test-key"
OTHER_KEY = "np-other-key"
SECRET = "nowpayments-test-ipn-secret"
SIGNING_KEY = "dev-internal-signing-key-change-me"
WEBHOOK_PATH = "/internal/webhooks/nowpayments"


class GatewayHop(httpx.AsyncBaseTransport):
    """Adds the internal identity header the gateway adds when relaying a webhook."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[identity.HEADER] = identity.sign(SIGNING_KEY, "nowpayments", "SERVICE",
                                                       audience="billing")
        return await self.inner.handle_async_request(request)


def np_settings(fake_url: str, billing_url: str, **overrides: str):
    return make_settings(**{
        "PAYMENT_PROVIDERS": "nowpayments", "NOWPAYMENTS_API_BASE": f"{fake_url}/v1",
        "NOWPAYMENTS_API_KEY": API_KEY, "NOWPAYMENTS_IPN_SECRET": SECRET,
        "NOWPAYMENTS_PAY_CURRENCIES": "usdttrc20,btc,xrp",
        "NOWPAYMENTS_IPN_URL": f"{billing_url}{WEBHOOK_PATH}", **overrides})


@pytest.fixture(scope="module")
def servers(migrated) -> Iterator[tuple[str, str]]:
    fake_port, billing_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    billing_url = f"http://127.0.0.1:{billing_port}"
    fake = create_fake(FakeConfig(api_keys=(API_KEY, OTHER_KEY), ipn_secret=SECRET,
                                  public_url=fake_url, retry_delays=()),
                       transport=GatewayHop())
    with (serve_in_thread(fake, fake_port),
          serve_in_thread(create_api(np_settings(fake_url, billing_url)), billing_port)):
        yield fake_url, billing_url


@pytest.fixture(scope="module")
async def nowpayments(servers, db):
    parts = build_components(np_settings(*servers), db)
    yield parts
    await parts.close()


@pytest.fixture
async def fake(servers) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=servers[0], timeout=30) as client:
        yield client
        await client.delete("/_fake/faults")


def as_user(user: str = "np-buyer", role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="billing")}


def admin() -> dict[str, str]:
    """Signed when used: a header lives a minute, a module outlives that."""
    return as_user("admin", "ADMIN")


async def plan_id(billing_url: str, price: str = "30.00") -> str:
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.post("/internal/admin/plans", headers=admin(), json={
            "name": f"np-{uuid.uuid4().hex[:8]}", "price_usd": price, "duration_days": 30,
            "max_devices": 1})
        assert r.status_code == 201, r.text
        return r.json()["plan"]["id"]


async def create_invoice(billing_url: str, asset: str = "BTC", network: str = "NOWPAYMENTS",
                         user: str = "np-buyer", **extra: str) -> tuple[dict, str]:
    pid = await plan_id(billing_url)
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.post("/internal/invoices",
                         headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                         json={"plan_id": pid, "asset": asset, "network": network, **extra})
        assert r.status_code == 201, r.text
        invoice = r.json()["invoice"]
        staff = await c.get(f"/internal/admin/invoices/{invoice['id']}", headers=admin())
        return invoice, staff.json()["invoice"]["provider_ref"]


async def admin_invoice(billing_url: str, invoice_id: str) -> dict:
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.get(f"/internal/admin/invoices/{invoice_id}", headers=admin())
        assert r.status_code == 200, r.text
        return r.json()["invoice"]


async def paid_events(pg, invoice_id: str) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice_id)


async def stored(pg, ref: str) -> list[dict]:
    rows = await pg.fetch("SELECT delivery_id, event_type, outcome FROM billing.provider_events "
                          "WHERE provider = 'nowpayments' AND provider_ref = $1 ORDER BY id", ref)
    return [dict(r) for r in rows]


def after_lock() -> object:
    """A moment past any invoice's rate lock (RATE_LOCK_MINUTES is 15)."""
    return utcnow() + timedelta(minutes=16)


# ------------------------------------------------------------------ checkout

async def test_options_and_a_checkout_priced_by_nowpayments(servers, fake):
    fake_url, billing_url = servers
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        options = (await c.get("/internal/payment-options", headers=as_user())).json()
    assert options == {"options": [
        {"provider": "nowpayments", "asset": a, "network": "NOWPAYMENTS",
         "label": f"{a} · NOWPAYMENTS · NOWPayments"} for a in ("USDTTRC20", "BTC", "XRP")]}

    # NOWPayments' own rate (50,000 USD per BTC), not our fixed 60,000
    await fake.post("/_fake/rates", json={"btc": "50000"})
    invoice, ref = await create_invoice(billing_url)
    seen = (await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": API_KEY})).json()
    assert seen["order_id"] == invoice["id"] and seen["payment_status"] == "waiting"
    assert (seen["price_amount"], seen["price_currency"], seen["pay_currency"]) == (
        30, "usd", "btc")
    assert invoice["amount_asset"] == "0.00060000" and invoice["amount_usd"] == "30.00"
    assert invoice["address"] == seen["pay_address"] and invoice["payment_url"] is None
    admin = await admin_invoice(billing_url, invoice["id"])
    assert Decimal(admin["rate_usd"]) == Decimal("50000")
    assert admin["provider"] == "nowpayments" and ref == str(seen["payment_id"])
    payments = (await fake.get("/_fake/payments")).json()["payments"]
    ours = [p for p in payments if p["order_id"] == invoice["id"]]
    assert [p["ipn_callback_url"] for p in ours] == [f"{billing_url}{WEBHOOK_PATH}"]


async def test_a_memo_coin_shows_its_extra_id_with_the_address(servers, fake):
    invoice, ref = await create_invoice(servers[1], asset="XRP")
    seen = (await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": API_KEY})).json()
    assert seen["payin_extra_id"]
    assert invoice["address"] == f"{seen['pay_address']} memo:{seen['payin_extra_id']}"
    assert shown_address("rAddr", None) == "rAddr"


# ------------------------------------------------------------------ paid by IPN, by polling

async def test_a_purchase_is_paid_by_its_ipns(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={})
    assert r.status_code == 200, r.text
    deliveries = r.json()["deliveries"]
    assert [d["payment_status"] for d in deliveries] == [
        "confirming", "confirmed", "sending", "finished"]
    assert all(d["ok"] and d["statusCode"] == 200 for d in deliveries)
    assert "fee" in deliveries[-1]["body"]  # nested: only a recursive signer verifies it
    got = await admin_invoice(billing_url, invoice["id"])  # the IPNs alone (no poll)
    assert got["status"] == "PAID" and got["paid_at"] is not None
    assert [(p["status"], p["txid"]) for p in got["payments"]] == [("SETTLED", ref)]
    assert got["amount_received_asset"] == got["amount_asset"]
    assert Decimal(got["overpaid_asset"]) == 0
    assert await stored(pg, ref) == [
        {"delivery_id": f"{ref}:{s}", "event_type": s, "outcome": o}
        for s, o in (("confirming", "invoice:PENDING"), ("confirmed", "invoice:PENDING"),
                     ("sending", "invoice:PENDING"), ("finished", "invoice:PAID"))]
    assert await paid_events(pg, invoice["id"]) == 1


async def test_replayed_ipns_change_nothing(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    deliveries = (await fake.post(f"/_fake/payments/{ref}/pay", json={})).json()["deliveries"]
    finished = deliveries[-1]["id"]
    again = (await fake.post(f"/_fake/deliveries/{finished}/send")).json()  # the same bytes
    assert again["attempts"][-1]["status_code"] == 200
    # a recurrent notification of the same step: other bytes, the same (payment, status)
    recurrent = (await fake.post(f"/_fake/deliveries/{finished}/redeliver")).json()
    assert recurrent["ok"] and recurrent["body"] != deliveries[-1]["body"]
    rows = await stored(pg, ref)
    assert [r["delivery_id"] for r in rows].count(f"{ref}:finished") == 1
    assert len(rows) == 4
    assert await paid_events(pg, invoice["id"]) == 1
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "PAID"


async def test_lost_ipns_are_repaired_by_payment_watch(servers, fake, nowpayments, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={"notify": False})
    lost = r.json()["deliveries"]
    assert {d["reason"] for d in lost} == {"lost"} and not any(d["sent"] for d in lost)
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "CREATED"
    outcome = await nowpayments.watcher.payment_watch()
    assert outcome.get("PAID", 0) >= 1
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "PAID"
    await nowpayments.watcher.payment_watch()
    # the lost IPN arriving late is stored and changes nothing
    late = (await fake.post(f"/_fake/deliveries/{lost[-1]['id']}/send")).json()
    assert late["ok"]
    assert await stored(pg, ref) == [{"delivery_id": f"{ref}:finished",
                                      "event_type": "finished", "outcome": "invoice:PAID"}]
    assert await paid_events(pg, invoice["id"]) == 1


async def test_confirming_then_finished_by_polling(servers, fake, nowpayments):
    invoice, ref = await create_invoice(servers[1])
    await fake.post(f"/_fake/payments/{ref}/pay", json={"until": "confirming", "notify": False})
    assert await nowpayments.watcher.watch_one(invoice["id"]) == "PENDING"
    got = await admin_invoice(servers[1], invoice["id"])
    assert [p["status"] for p in got["payments"]] == ["DETECTED"]
    await fake.post(f"/_fake/payments/{ref}/pay", json={"until": "sending", "notify": False})
    assert await nowpayments.watcher.watch_one(invoice["id"]) == "PENDING"
    await fake.post(f"/_fake/payments/{ref}/pay", json={"notify": False})
    assert await nowpayments.watcher.watch_one(invoice["id"]) == "PAID"


# ------------------------------------------------------------------ forged IPNs

async def test_forged_or_unsigned_ipns_are_refused_and_change_nothing(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    claim = (await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": API_KEY})).json()
    claim.update(payment_status="finished", actually_paid=claim["pay_amount"],
                 fee={"currency": "btc", "depositFee": 0, "withdrawalFee": 0, "serviceFee": 0})
    body = js_json(claim).encode()
    # the old docs' `JSON.stringify(params, Object.keys(params).sort())`: nested keys dropped
    flat = js_json({k: ({} if isinstance(v, dict) else v) for k, v in sorted(claim.items())})
    signatures = [None, fake_sign("wrong-secret", claim), "garbage", "",
                  fake_sign(SECRET, {**claim, "payment_status": "waiting"}),
                  hmac.new(SECRET.encode(), flat.encode(), hashlib.sha512).hexdigest(),
                  hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()]
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        for sig in signatures:
            headers = {**as_user("nowpayments", "SERVICE"), "Content-Type": "application/json"}
            if sig is not None:
                headers["x-nowpayments-sig"] = sig
            r = await c.post(WEBHOOK_PATH, content=body, headers=headers)
            assert r.status_code == 401, (sig, r.text)
            assert r.json()["code"] == "UNAUTHENTICATED"
        metrics = (await c.get("/metrics")).text
        # the very same body, signed with the secret, is accepted
        r = await c.post(WEBHOOK_PATH, content=body, headers={
            **as_user("nowpayments", "SERVICE"), "x-nowpayments-sig": fake_sign(SECRET, claim)})
        assert r.status_code == 200, r.text
    assert 'billing_webhook_signature_failures_total{provider="nowpayments"}' in metrics
    # the accepted one was stored; the invoice is what NOWPayments says (nothing paid), not
    # what the body claimed
    assert [r["delivery_id"] for r in await stored(pg, ref)] == [f"{ref}:finished"]
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "CREATED" and got["payments"] == []


def test_the_signature_sorts_nested_keys_and_keeps_non_ascii_text():
    body = {"payment_id": 5077125051, "payment_status": "finished", "pay_amount": 0.00001,
            "order_description": "Подписка «Год» – 12 мес", "actually_paid": 1e-7,
            "price_amount": 170, "fee": {"withdrawalFee": 0.0000025, "currency": "btc",
                                         "serviceFee": 0.5, "depositFee": 0}}
    # what NOWPayments' Node signer hashes: JSON.stringify(sortObject(body))
    text = ('{"actually_paid":1e-7,"fee":{"currency":"btc","depositFee":0,"serviceFee":0.5,'
            '"withdrawalFee":0.0000025},"order_description":"Подписка «Год» – 12 мес",'
            '"pay_amount":0.00001,"payment_id":5077125051,"payment_status":"finished",'
            '"price_amount":170}')
    raw = json.dumps(body, ensure_ascii=False).encode()  # sent unsorted, UTF-8
    source = NowPaymentsWebhooks(SECRET)

    def sig(message: str) -> dict[str, str]:
        return {"x-nowpayments-sig": hmac.new(SECRET.encode(), message.encode(),
                                              hashlib.sha512).hexdigest()}

    assert source.verify(raw, sig(text))
    assert fake_sign(SECRET, body) == sig(text)["x-nowpayments-sig"]  # the fake signs alike
    # the official Python example's text (non-ASCII escaped) is accepted too
    assert source.verify(raw, sig(json.dumps(body, sort_keys=True, separators=(",", ":"))))
    # a signer that does not sort `fee`, or drops its keys, or another body: refused
    assert not source.verify(raw, sig(text.replace(
        '"currency":"btc","depositFee":0,"serviceFee":0.5,"withdrawalFee":0.0000025',
        '"withdrawalFee":0.0000025,"currency":"btc","serviceFee":0.5,"depositFee":0')))
    assert not source.verify(raw, sig(text.replace(
        '{"currency":"btc","depositFee":0,"serviceFee":0.5,"withdrawalFee":0.0000025}', "{}")))
    assert not source.verify(raw.replace("Год".encode(), "Месяц".encode()), sig(text))
    assert not NowPaymentsWebhooks("").verify(raw, sig(text))
    delivery = source.parse(raw)
    assert (delivery.delivery_id, delivery.event_type, delivery.provider_ref) == (
        "5077125051:finished", "finished", "5077125051")


async def test_a_signed_ipn_with_nested_fee_and_non_ascii_text_is_accepted(servers, fake, pg):
    fake_url, billing_url = servers
    r = await fake.post("/v1/payment", headers={"x-api-key": API_KEY}, json={
        "price_amount": 12.5, "price_currency": "usd", "pay_currency": "btc",
        "order_description": "Подписка «Год» · ключ ✓",
        "ipn_callback_url": f"{billing_url}{WEBHOOK_PATH}"})
    assert r.status_code == 201, r.text
    ref = r.json()["payment_id"]
    deliveries = (await fake.post(f"/_fake/payments/{ref}/pay", json={})).json()["deliveries"]
    assert all(d["ok"] for d in deliveries)
    assert deliveries[-1]["body"]["order_description"] == "Подписка «Год» · ключ ✓"
    assert isinstance(deliveries[-1]["body"]["fee"], dict)
    # verified (not 401), stored; it names no invoice of ours
    assert {r["outcome"] for r in await stored(pg, ref)} == {"unknown_invoice"}


# ------------------------------------------------------------------ under, over, late, expired

async def test_a_partial_payment_is_an_under_payment_when_the_invoice_expires(
        servers, fake, nowpayments, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    half = Decimal(invoice["amount_asset"]) / 2
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={"amount": str(half)})
    assert r.json()["deliveries"][-1]["payment_status"] == "partially_paid"
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PENDING"
    assert [p["status"] for p in got["payments"]] == ["SETTLED"]  # credited, not refunded
    assert Decimal(got["amount_received_asset"]) == half
    assert await nowpayments.watcher.watch_one(invoice["id"], now=after_lock()) == "EXPIRED"
    got = await admin_invoice(billing_url, invoice["id"])
    assert Decimal(got["underpaid_asset"]) == Decimal(invoice["amount_asset"]) - half
    assert await paid_events(pg, invoice["id"]) == 0


async def test_an_over_payment_is_paid_with_the_excess_recorded(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    due = Decimal(invoice["amount_asset"])
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={"amount": str(due * 3 / 2)})
    assert r.json()["payment"]["payment_status"] == "finished"
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PAID"
    assert Decimal(got["overpaid_asset"]) == due / 2
    assert Decimal(got["amount_received_asset"]) == due * 3 / 2
    assert await paid_events(pg, invoice["id"]) == 1


async def test_expiry_and_a_payment_after_it(servers, fake, nowpayments):
    _, billing_url = servers
    # NOWPayments expires its payment: nothing paid, our own expiry closes the invoice
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/payments/{ref}/expire", json={})
    assert r.json()["deliveries"][0]["ok"]
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "CREATED"
    assert await nowpayments.watcher.watch_one(invoice["id"], now=after_lock()) == "EXPIRED"
    # a deposit after NOWPayments' expiry sends no IPN; the watch records it as late
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={})
    assert {d["reason"] for d in r.json()["deliveries"]} == {"after_expiry"}
    assert await nowpayments.watcher.watch_one(invoice["id"]) == "EXPIRED"
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["needs_review"] is True and got["payments"][0]["late"] is True
    assert got["late_amount_asset"] == got["amount_asset"]

    # our invoice expired while NOWPayments still waits; the customer pays then: late too
    invoice, ref = await create_invoice(billing_url)
    assert await nowpayments.watcher.watch_one(invoice["id"], now=after_lock()) == "EXPIRED"
    r = await fake.post(f"/_fake/payments/{ref}/pay", json={})
    assert all(d["ok"] for d in r.json()["deliveries"])
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "EXPIRED" and got["needs_review"] is True
    assert got["late_amount_asset"] == got["amount_asset"]


async def test_a_failed_payment_credits_nothing(servers, fake, nowpayments):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    await fake.post(f"/_fake/payments/{ref}/pay", json={"until": "confirming"})
    assert [p["status"] for p in (await admin_invoice(billing_url, invoice["id"]))["payments"]
            ] == ["DETECTED"]
    r = await fake.post(f"/_fake/payments/{ref}/status", json={"status": "failed"})
    assert r.json()["deliveries"][0]["ok"]
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PENDING" and [p["status"] for p in got["payments"]] == ["FAILED"]
    assert Decimal(got["amount_received_asset"]) == 0
    assert await nowpayments.watcher.watch_one(invoice["id"], now=after_lock()) == "EXPIRED"


async def test_refunds(servers, fake, pg):
    _, billing_url = servers
    # refunded by NOWPayments before it finished: nothing was credited
    invoice, ref = await create_invoice(billing_url)
    await fake.post(f"/_fake/payments/{ref}/pay", json={"until": "confirmed"})
    await fake.post(f"/_fake/payments/{ref}/status", json={"status": "refunded"})
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PENDING" and [p["status"] for p in got["payments"]] == ["FAILED"]

    # refunded in NOWPayments after it finished: the invoice stays PAID (access stays) until
    # our admin refunds it; that refund is ours, recorded once
    invoice, ref = await create_invoice(billing_url)
    await fake.post(f"/_fake/payments/{ref}/pay", json={})
    r = await fake.post(f"/_fake/payments/{ref}/status", json={"status": "refunded"})
    assert r.json()["deliveries"][0]["ok"]
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PAID" and [p["status"] for p in got["payments"]] == ["SETTLED"]
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.post(f"/internal/admin/invoices/{invoice['id']}/refund", headers=admin(),
                         json={"reason": "refunded in NOWPayments"})
        assert r.status_code == 200, r.text
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "REFUNDED" and [p["status"] for p in got["payments"]] == ["REFUNDED"]
    refunded = await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.refunded.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice["id"])
    assert refunded == 1


# ------------------------------------------------------------------ the API itself

async def test_a_payment_is_read_only_with_the_key_that_made_it(servers, fake):
    _, ref = await create_invoice(servers[1])
    assert (await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": API_KEY})).status_code \
        == 200
    other = await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": OTHER_KEY})
    assert other.status_code == 404 and other.json()["code"] == "NOT_FOUND"
    wrong = await fake.get(f"/v1/payment/{ref}", headers={"x-api-key": "nope"})
    assert wrong.status_code == 403 and wrong.json() == {
        "status": False, "statusCode": 403, "code": "INVALID_API_KEY",
        "message": "Invalid api key"}


# ------------------------------------------------------------------ two providers at once

async def test_sandbox_and_nowpayments_at_once(servers, fake, pg):
    fake_url = servers[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = np_settings(fake_url, url, PAYMENT_PROVIDERS="sandbox,nowpayments")
    with serve_in_thread(create_api(settings), port):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            options = (await c.get("/internal/payment-options", headers=as_user())).json()
        names = [(o["provider"], o["asset"], o["network"]) for o in options["options"]]
        assert names[:4] == [("sandbox", "USDT", "TRON"), ("sandbox", "USDT", "ETHEREUM"),
                             ("sandbox", "BTC", "BITCOIN"), ("sandbox", "ETH", "ETHEREUM")]
        assert names[4:] == [("nowpayments", a, "NOWPAYMENTS")
                             for a in ("USDTTRC20", "BTC", "XRP")]
        on_chain, _ = await create_invoice(url, asset="BTC", network="BITCOIN", user="np-two")
        with_np, ref = await create_invoice(url, asset="BTC", network="NOWPAYMENTS",
                                            user="np-two")
        named, named_ref = await create_invoice(url, asset="USDTTRC20", network="NOWPAYMENTS",
                                                user="np-two", provider="nowpayments")
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            r = await c.post("/internal/invoices", headers={
                **as_user("np-two"), "Idempotency-Key": uuid.uuid4().hex}, json={
                "plan_id": await plan_id(url), "asset": "USDT", "network": "TRON",
                "provider": "nowpayments"})
            assert r.status_code == 400, r.text
        sandbox_row = await admin_invoice(url, on_chain["id"])
        assert sandbox_row["provider"] == "sandbox" and sandbox_row["address"].startswith("bcrt1q")
        assert (await admin_invoice(url, with_np["id"]))["provider"] == "nowpayments"
        assert (await admin_invoice(url, named["id"]))["provider"] == "nowpayments"
        payments = (await fake.get("/_fake/payments")).json()["payments"]
        orders = {p["order_id"] for p in payments}
        assert with_np["id"] in orders and named["id"] in orders
        assert on_chain["id"] not in orders
        # the IPN settles the NOWPayments invoice only
        deliveries = (await fake.post(f"/_fake/payments/{ref}/pay", json={})).json()["deliveries"]
        assert all(d["ok"] for d in deliveries)
        assert (await admin_invoice(url, with_np["id"]))["status"] == "PAID"
        assert (await admin_invoice(url, on_chain["id"]))["status"] == "CREATED"
        assert (await admin_invoice(url, named["id"]))["status"] == "CREATED"


# ------------------------------------------------------------------ provider failures

async def test_a_provider_that_hangs_or_fails_at_checkout_is_503_with_nothing_stored(
        servers, fake, db, pg):
    fake_url, billing_url = servers
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"np-down-{uuid.uuid4().hex[:8]}", price_usd="5.00", duration_days=1,
            max_devices=1))
    body = InvoiceCreate(plan_id=plan.id, asset="BTC", network="NOWPAYMENTS")
    await fake.post("/_fake/faults", json={"operation": "create_payment", "mode": "hang",
                                           "seconds": 3, "count": 1})
    slow = build_components(np_settings(fake_url, billing_url, PROVIDER_TIMEOUT_SECONDS="0.5"),
                            db)
    wrong_key = build_components(np_settings(fake_url, billing_url,
                                             NOWPAYMENTS_API_KEY="revoked"), db)
    try:
        for parts, user in ((slow, "np-timeout"), (wrong_key, "np-badkey")):
            key = uuid.uuid4().hex
            with pytest.raises(ServiceUnavailable):
                await parts.billing.create_invoice_idempotent(db, user_id=user, key=key,
                                                              body=body)
            assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys "
                                     "WHERE key = $1", key) == 0
            assert await pg.fetchval("SELECT count(*) FROM billing.invoices "
                                     "WHERE user_id = $1", user) == 0
    finally:
        await slow.close()
        await wrong_key.close()
    # over HTTP: the provider answers 500, the customer gets 503
    await fake.post("/_fake/faults", json={"operation": "create_payment", "status": 500,
                                           "count": 1})
    async with httpx.AsyncClient(base_url=billing_url, timeout=10) as c:
        r = await c.post("/internal/invoices", headers={
            **as_user("np-500"), "Idempotency-Key": uuid.uuid4().hex}, json={
            "plan_id": plan.id, "asset": "BTC", "network": "NOWPAYMENTS"})
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = 'np-500'") \
        == 0


async def test_a_provider_down_while_watching_leaves_the_invoice_open(servers, fake,
                                                                      nowpayments):
    invoice, ref = await create_invoice(servers[1])
    await fake.post(f"/_fake/payments/{ref}/pay", json={"notify": False})
    await fake.post("/_fake/faults", json={"operation": "get_payment", "status": 500})
    assert await nowpayments.watcher.watch_one(invoice["id"], now=after_lock()) \
        == "provider_error"
    assert (await admin_invoice(servers[1], invoice["id"]))["status"] == "CREATED"
    await fake.delete("/_fake/faults")
    assert await nowpayments.watcher.watch_one(invoice["id"]) == "PAID"


# ------------------------------------------------------------------ settings

def test_settings():
    s = make_settings(PAYMENT_PROVIDERS="nowpayments", APP_BASE_URL="https://vpn.example/",
                      NOWPAYMENTS_PAY_CURRENCIES=" USDTTRC20, btc ,")
    assert s.nowpayments_pay_currencies == ["usdttrc20", "btc"]
    assert s.nowpayments_ipn_url == "https://vpn.example/api/v1/payments/webhooks/nowpayments"
    assert s.nowpayments_api_base == "https://api.nowpayments.io/v1"
    for bad in ("", "btc,btc", "usdt trc20"):
        with pytest.raises(ValueError):
            make_settings(NOWPAYMENTS_PAY_CURRENCIES=bad)
    production = production_settings("billing")
    with pytest.raises(ValueError) as refused:
        make_settings(**production, PAYMENT_PROVIDERS="nowpayments")
    assert "NOWPAYMENTS_IPN_SECRET" in str(refused.value)
    real = make_settings(**production, PAYMENT_PROVIDERS="nowpayments",
                         NOWPAYMENTS_IPN_SECRET="s" * 32)
    assert real.secret_defaults()["NOWPAYMENTS_IPN_SECRET"] is False
    # not enabled: its default secret is not a production concern
    assert "NOWPAYMENTS_IPN_SECRET" not in make_settings(
        **production, PAYMENT_PROVIDERS="btcpay", BTCPAY_WEBHOOK_SECRET="w" * 32
    ).secret_defaults()
