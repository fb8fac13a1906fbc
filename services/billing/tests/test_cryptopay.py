"""The cryptopay provider end to end against the Crypto Pay fake, both served over real HTTP.

The billing API runs with PAYMENT_PROVIDERS=cryptopay; the fake's webhooks reach it through a
transport that adds the signed identity header, as the gateway's relay does. Checkout, the
signed `invoice_paid` webhook and its replays, a lost webhook repaired by `payment_watch`,
expiry, a payment racing it, refunds and provider faults during checkout are checked here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest
from pydantic import ValidationError as PydanticValidationError

from billing.app import create_api
from billing.config import Settings
from billing.providers.base import ProviderError
from billing.providers.cryptopay import (
    CryptoPayClient,
    CryptoPayProvider,
    CryptoPayWebhooks,
    expires_in,
)
from billing.providers.cryptopay import sign as cryptopay_sign
from billing.wiring import build_components
from fakes.cryptopay import FakeConfig
from fakes.cryptopay import create_app as create_fake
from runtime import identity
from runtime.errors import ValidationFailed
from runtime.testing import free_port, production_settings, serve_in_thread

from .conftest import make_settings

TOKEN = "4321:cryptopay-test-token"
SIGNING_KEY = "dev-internal-signing-key-change-me"
LOCK_MINUTES = 15
PRODUCTION = production_settings("billing")


class GatewayHop(httpx.AsyncBaseTransport):
    """Adds the internal identity header the gateway adds when relaying a webhook."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[identity.HEADER] = identity.sign(SIGNING_KEY, "cryptopay", "SERVICE",
                                                       audience="billing")
        return await self.inner.handle_async_request(request)


def cryptopay_settings(fake_url: str, providers: str = "cryptopay"):
    return make_settings(PAYMENT_PROVIDERS=providers, CRYPTOPAY_API_BASE=f"{fake_url}/api",
                         CRYPTOPAY_TOKEN=TOKEN, CRYPTOPAY_ACCEPTED_ASSETS="USDT,TON",
                         PROVIDER_TIMEOUT_SECONDS="1.5",
                         RATE_LOCK_MINUTES=str(LOCK_MINUTES))


@pytest.fixture(scope="module")
def servers(migrated) -> Iterator[tuple[str, str]]:
    fake_port, billing_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    billing_url = f"http://127.0.0.1:{billing_port}"
    fake = create_fake(FakeConfig(
        token=TOKEN, public_url=fake_url, retry_delays=(),
        webhook_url=f"{billing_url}/internal/webhooks/cryptopay"), transport=GatewayHop())
    with (serve_in_thread(fake, fake_port),
          serve_in_thread(create_api(cryptopay_settings(fake_url)), billing_port)):
        yield fake_url, billing_url


@pytest.fixture(scope="module")
async def cryptopay(servers, db):
    parts = build_components(cryptopay_settings(servers[0]), db)
    yield parts
    await parts.close()


@pytest.fixture
async def fake(servers):
    async with httpx.AsyncClient(base_url=servers[0], timeout=30) as client:
        await client.delete("/_fake/faults")
        yield client
        await client.delete("/_fake/faults")


def as_user(user: str = "buyer", role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="billing")}


async def plan_id(billing_url: str) -> str:
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.post("/internal/admin/plans", headers=as_user("admin", "ADMIN"), json={
            "name": f"cp-{uuid.uuid4().hex[:8]}", "price_usd": "30.00", "duration_days": 30,
            "max_devices": 1})
        assert r.status_code == 201, r.text
        return r.json()["plan"]["id"]


async def create_invoice(billing_url: str, user: str = "buyer", **body) -> tuple[dict, str]:
    pid = await plan_id(billing_url)
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.post("/internal/invoices",
                         headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                         json={"plan_id": pid, "asset": "USD", "network": "CRYPTOPAY", **body})
        assert r.status_code == 201, r.text
        invoice = r.json()["invoice"]
        return invoice, (await admin_invoice(billing_url, invoice["id"]))["provider_ref"]


async def admin_invoice(billing_url: str, invoice_id: str) -> dict:
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.get(f"/internal/admin/invoices/{invoice_id}",
                        headers=as_user("admin", "ADMIN"))
        assert r.status_code == 200, r.text
        return r.json()["invoice"]


async def paid_events(pg, invoice_id: str) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice_id)


async def stored_deliveries(pg, ref: str) -> list:
    return await pg.fetch("SELECT delivery_id, event_type, outcome FROM billing.provider_events "
                          "WHERE provider = 'cryptopay' AND provider_ref = $1", ref)


async def lock_passed(pg, invoice_id: str) -> None:
    """Our rate lock ends now (Crypto Pay's invoice keeps its own expiry)."""
    await pg.execute("UPDATE billing.invoices SET rate_locked_until = now() - interval '1 second'"
                     " WHERE id = $1", invoice_id)


# ----------------------------------------------------------------------------- checkout


async def test_checkout_is_a_usd_invoice_in_crypto_bot(servers, fake):
    _, billing_url = servers
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        options = (await c.get("/internal/payment-options", headers=as_user())).json()
    assert options == {"options": [{"provider": "cryptopay", "asset": "USD",
                                    "network": "CRYPTOPAY",
                                    "label": "USD · CRYPTOPAY · Crypto Bot"}]}
    invoice, ref = await create_invoice(billing_url)
    seen = (await fake.get(f"/_fake/invoices/{ref}")).json()
    assert invoice["status"] == "CREATED" and invoice["address"] is None
    assert invoice["asset"] == "USD" and invoice["network"] == "CRYPTOPAY"
    assert Decimal(invoice["amount_asset"]) == Decimal("30")
    # the customer pays on bot_invoice_url, not on the deprecated pay_url
    assert invoice["payment_url"] == seen["bot_invoice_url"]
    assert ref == str(seen["invoice_id"])
    assert Decimal((await admin_invoice(billing_url, invoice["id"]))["rate_usd"]) == 1
    sent = seen["request"]
    assert {k: sent[k] for k in ("currency_type", "fiat", "amount", "accepted_assets",
                                 "payload")} == {
        "currency_type": "fiat", "fiat": "USD", "amount": "30.00",
        "accepted_assets": "USDT,TON", "payload": invoice["id"]}
    assert sent["description"]
    # expires_in: the seconds left of our rate lock
    assert LOCK_MINUTES * 60 - 10 <= sent["expires_in"] <= LOCK_MINUTES * 60
    locked_until = datetime.fromisoformat(invoice["rate_locked_until"])
    expiration = datetime.fromisoformat(seen["expiration_date"].replace("Z", "+00:00"))
    assert abs((expiration - locked_until).total_seconds()) < 3


def test_expires_in_stays_within_crypto_pays_limits():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert expires_in(now + timedelta(minutes=15), now) == 900
    assert expires_in(now + timedelta(seconds=0.2), now) == 1
    assert expires_in(now - timedelta(minutes=1), now) == 1
    assert expires_in(now + timedelta(days=90), now) == 2_678_400


def test_settings_production_needs_the_token_and_assets_are_a_list():
    with pytest.raises(PydanticValidationError) as refused:
        Settings(**PRODUCTION, PAYMENT_PROVIDERS="cryptopay")
    assert "CRYPTOPAY_TOKEN" in str(refused.value)
    with pytest.raises(PydanticValidationError):
        Settings(**PRODUCTION, PAYMENT_PROVIDERS="btcpay", BTCPAY_WEBHOOK_SECRET="w" * 32,
                 RATE_SOURCE="cryptopay")
    ok = Settings(**PRODUCTION, PAYMENT_PROVIDERS="cryptopay", CRYPTOPAY_TOKEN=TOKEN,
                  CRYPTOPAY_ACCEPTED_ASSETS=" usdt, ton ,BTC")
    assert ok.cryptopay_accepted_assets == ["USDT", "TON", "BTC"]
    assert ok.cryptopay_api_base == "https://pay.crypt.bot/api"
    assert ok.rate_source == "fixed" and ok.rates_max_age_seconds == 300
    with pytest.raises(PydanticValidationError):
        make_settings(CRYPTOPAY_ACCEPTED_ASSETS="USDT;TON")


# ----------------------------------------------------------------------------- webhooks


async def test_webhook_settles_once_and_replays_do_nothing_more(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/invoices/{ref}/pay", json={"paid_asset": "TON"})
    assert r.status_code == 200, r.text
    [delivery] = r.json()["deliveries"]
    assert delivery["ok"] is True and delivery["status_code"] == 200
    # the webhook alone (no poll) made it paid
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PAID" and got["paid_at"] is not None
    assert [(p["status"], p["txid"]) for p in got["payments"]] == [
        ("SETTLED", f"cryptopay:{ref}")]
    assert Decimal(got["amount_received_asset"]) == Decimal("30")

    # a redelivery with a new update_id, one repeating it, the same bytes again
    new_id = (await fake.post(f"/_fake/deliveries/{delivery['id']}/redeliver",
                              json={"update_id": "new"})).json()
    same_id = (await fake.post(f"/_fake/deliveries/{delivery['id']}/redeliver",
                               json={"update_id": "same"})).json()
    again = (await fake.post(f"/_fake/deliveries/{delivery['id']}/resend")).json()
    assert new_id["update_id"] != delivery["update_id"] == same_id["update_id"]
    assert new_id["ok"] and same_id["ok"] and again["ok"]
    # fired anew by the fake (another update_id): still the same delivery for billing
    sent = (await fake.post(f"/_fake/invoices/{ref}/webhook")).json()["deliveries"]
    assert sent[0]["ok"]
    assert await stored_deliveries(pg, ref) == [
        (f"invoice_paid:{ref}", "invoice_paid", "invoice:PAID")]
    assert await paid_events(pg, invoice["id"]) == 1
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "PAID"


async def test_lost_webhook_is_repaired_by_payment_watch(servers, cryptopay, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
    assert r.json()["deliveries"] == []
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "CREATED"
    outcome = await cryptopay.watcher.payment_watch()
    assert outcome.get("PAID", 0) >= 1
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "PAID"
    await cryptopay.watcher.payment_watch()
    assert await paid_events(pg, invoice["id"]) == 1
    assert await stored_deliveries(pg, ref) == []


async def test_forged_webhooks_are_refused_and_change_nothing(servers, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    # paid at Crypto Pay with the webhook lost: a forged webhook must not be what settles it
    await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
    body = json.dumps({"update_id": 7, "update_type": "invoice_paid",
                       "request_date": "2026-01-01T00:00:00.000Z",
                       "payload": {"invoice_id": int(ref), "status": "paid"}},
                      separators=(",", ":")).encode()
    empty_token = cryptopay_sign("", body)
    keyed_with_token = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()  # not SHA-256'd
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        for sig in (None, "0" * 64, cryptopay_sign("other:token", body), empty_token,
                    keyed_with_token, cryptopay_sign(TOKEN, body + b" "), "garbage"):
            headers = {**as_user("cryptopay", "SERVICE"), "Content-Type": "application/json"}
            if sig is not None:
                headers["crypto-pay-api-signature"] = sig
            r = await c.post("/internal/webhooks/cryptopay", content=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "UNAUTHENTICATED"
        metrics = (await c.get("/metrics")).text
    assert await stored_deliveries(pg, ref) == []
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "CREATED"
    assert 'billing_webhook_signature_failures_total{provider="cryptopay"}' in metrics


async def test_a_signed_body_that_names_no_invoice_is_400(servers, pg):
    _, billing_url = servers
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        for body in (b'{"update_id":1,"update_type":"invoice_paid","payload":{}}',
                     b'{"update_id":1,"update_type":"invoice_paid","payload":{"invoice_id":true}}',
                     b'{"update_id":1,"payload":{"invoice_id":5}}', b'[1]', b'not json'):
            headers = {**as_user("cryptopay", "SERVICE"), "Content-Type": "application/json",
                       "Crypto-Pay-API-Signature": cryptopay_sign(TOKEN, body)}
            r = await c.post("/internal/webhooks/cryptopay", content=body, headers=headers)
            assert r.status_code == 400, (body, r.text)
    assert await pg.fetchval("SELECT count(*) FROM billing.provider_events "
                             "WHERE provider = 'cryptopay' AND provider_ref IS NULL") == 0


def test_the_delivery_id_is_the_invoice_not_the_update_id():
    hooks = CryptoPayWebhooks(TOKEN)
    one = hooks.parse(b'{"update_id":1,"update_type":"invoice_paid","payload":{"invoice_id":9}}')
    two = hooks.parse(b'{"update_id":2,"update_type":"invoice_paid","payload":{"invoice_id":9}}')
    assert one == two
    assert (one.delivery_id, one.event_type, one.provider_ref) == (
        "invoice_paid:9", "invoice_paid", "9")
    with pytest.raises(ValidationFailed):
        hooks.parse(b'{"update_type":"invoice_paid","payload":{"invoice_id":"9x"}}')
    body = b'{"update_id":1}'
    assert hooks.verify(body, {"crypto-pay-api-signature": cryptopay_sign(TOKEN, body)})
    # no token configured: nothing is authentic, not even a body "signed" with the empty token
    assert not CryptoPayWebhooks("").verify(body, {"crypto-pay-api-signature":
                                                   cryptopay_sign("", body)})


# ----------------------------------------------------------------------------- amounts


@pytest.mark.parametrize("paid_amount", ["0.5", "100"])
async def test_the_coin_amount_never_makes_an_under_or_over_payment(servers, fake, paid_amount):
    """Crypto Bot prices the coin and takes the invoice in full or not at all: whatever the
    customer sent in TON (less or more than our rate would say), the invoice is paid its
    USD amount, with nothing under- or over-paid."""
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/invoices/{ref}/pay",
                        json={"paid_asset": "TON", "paid_amount": paid_amount})
    assert r.json()["invoice"]["paid_amount"] == paid_amount
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "PAID"
    assert Decimal(got["amount_received_asset"]) == Decimal(got["amount_asset"]) == 30
    assert Decimal(got["overpaid_asset"]) == Decimal(got["underpaid_asset"]) == 0
    assert [Decimal(p["amount_asset"]) for p in got["payments"]] == [Decimal("30")]


async def test_a_coin_the_invoice_does_not_accept_cannot_pay_it(servers, fake):
    _, billing_url = servers
    _, ref = await create_invoice(billing_url)
    r = await fake.post(f"/_fake/invoices/{ref}/pay", json={"paid_asset": "BTC"})
    assert r.status_code == 409


# ----------------------------------------------------------------------------- expiry


async def test_expiry_expires_ours_and_crypto_pay_refuses_payment(servers, cryptopay, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    assert (await fake.post(f"/_fake/invoices/{ref}/expire")).status_code == 200
    # Crypto Pay's expiry alone changes nothing on our side until our lock passes
    assert await cryptopay.watcher.watch_one(invoice["id"]) == "CREATED"
    await lock_passed(pg, invoice["id"])
    assert (await cryptopay.watcher.invoice_expiry()).get("EXPIRED", 0) >= 1
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "EXPIRED" and got["payments"] == []
    assert (await fake.post(f"/_fake/invoices/{ref}/pay", json={})).status_code == 409


async def test_paid_before_the_lock_passed_is_caught_by_the_last_look(servers, cryptopay, fake,
                                                                      pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
    await lock_passed(pg, invoice["id"])
    await cryptopay.watcher.invoice_expiry()
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "PAID"
    assert await paid_events(pg, invoice["id"]) == 1


async def test_a_payment_racing_our_expiry_is_late_and_flagged(servers, cryptopay, fake, pg):
    _, billing_url = servers
    invoice, ref = await create_invoice(billing_url)
    await lock_passed(pg, invoice["id"])
    await cryptopay.watcher.invoice_expiry()
    assert (await admin_invoice(billing_url, invoice["id"]))["status"] == "EXPIRED"
    # Crypto Pay's clock still had the invoice open: the customer paid, the webhook arrives
    r = await fake.post(f"/_fake/invoices/{ref}/pay", json={"force": True})
    assert r.json()["deliveries"][0]["ok"]
    got = await admin_invoice(billing_url, invoice["id"])
    assert got["status"] == "EXPIRED" and got["needs_review"] is True
    assert Decimal(got["late_amount_asset"]) == 30
    assert [p["late"] for p in got["payments"]] == [True]
    assert await paid_events(pg, invoice["id"]) == 0


# ----------------------------------------------------------------------------- refund


async def test_refund_is_recorded_in_billing_and_credited_to_the_balance(servers, fake):
    """Crypto Pay cannot refund an invoice: the admin refunds in billing (here to the
    customer's balance); nothing is asked of Crypto Pay."""
    _, billing_url = servers
    user = f"cp-refund-{uuid.uuid4().hex[:8]}"
    invoice, ref = await create_invoice(billing_url, user=user)
    await fake.post(f"/_fake/invoices/{ref}/pay", json={})
    calls_before = len((await fake.get("/_fake/calls")).json()["calls"])
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.post(f"/internal/admin/invoices/{invoice['id']}/refund",
                         headers=as_user("admin", "ADMIN"),
                         json={"reason": "customer asked", "to": "balance"})
        assert r.status_code == 200, r.text
        assert r.json()["invoice"]["status"] == "REFUNDED"
        balance = (await c.get("/internal/balance", headers=as_user(user))).json()
        again = await c.post(f"/internal/admin/invoices/{invoice['id']}/refund",
                             headers=as_user("admin", "ADMIN"),
                             json={"reason": "twice", "to": "balance"})
    assert again.status_code == 409
    assert Decimal(balance["balance_usd"]) == 30
    assert [e["kind"] for e in balance["entries"]] == ["REFUND"]
    got = await admin_invoice(billing_url, invoice["id"])
    assert [p["status"] for p in got["payments"]] == ["REFUNDED"]
    assert len((await fake.get("/_fake/calls")).json()["calls"]) == calls_before


# ----------------------------------------------------------------------------- faults


async def test_provider_timeout_during_checkout_is_503_and_stores_nothing(servers, fake, pg):
    """createInvoice hangs past PROVIDER_TIMEOUT_SECONDS (and even created the invoice at
    Crypto Pay): a clear 503, no invoice, the Idempotency-Key free for the retry."""
    _, billing_url = servers
    user = f"cp-timeout-{uuid.uuid4().hex[:8]}"
    pid = await plan_id(billing_url)
    key = uuid.uuid4().hex
    await fake.post("/_fake/faults", json={"method": "createInvoice", "delay_ms": 3000,
                                           "after": True, "times": 1})
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        body = {"plan_id": pid, "asset": "USD", "network": "CRYPTOPAY"}
        headers = {**as_user(user), "Idempotency-Key": key}
        r = await c.post("/internal/invoices", headers=headers, json=body)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "SERVICE_UNAVAILABLE"
        assert r.json()["message"] == "The payment provider is unavailable"
        assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1",
                                 user) == 0
        assert await pg.fetchval("SELECT count(*) FROM billing.idempotency_keys "
                                 "WHERE key = $1", key) == 0
        # the fault is gone: the same key now creates the invoice
        r = await c.post("/internal/invoices", headers=headers, json=body)
        assert r.status_code == 201, r.text
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1",
                             user) == 1


@pytest.mark.parametrize("fault", [
    {"status": 500, "name": "INTERNAL_ERROR"},
    {"status": 502, "raw": "<html>Bad Gateway</html>"},
])
async def test_provider_errors_during_checkout_are_503(servers, fake, pg, fault):
    _, billing_url = servers
    user = f"cp-error-{uuid.uuid4().hex[:8]}"
    pid = await plan_id(billing_url)
    await fake.post("/_fake/faults", json={"method": "createInvoice", **fault})
    async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
        r = await c.post("/internal/invoices",
                         headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                         json={"plan_id": pid, "asset": "USD", "network": "CRYPTOPAY"})
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1",
                             user) == 0


async def test_a_wrong_token_is_a_provider_error_that_never_shows_the_token(servers):
    fake_url, _ = servers
    client = CryptoPayClient(f"{fake_url}/api", "999:wrong-secret-token", 5)
    try:
        with pytest.raises(ProviderError) as refused:
            await client.call("get_me", "getMe")
    finally:
        await client.close()
    assert "401 UNAUTHORIZED" in str(refused.value)
    assert "wrong-secret-token" not in str(refused.value)


@pytest.mark.parametrize("answer, expected", [
    ({"ok": False, "error": {"code": 400, "name": "INVOICE_NOT_FOUND"}}, "400 INVOICE_NOT_FOUND"),
    ({"ok": False, "error": {"code": 400, "message": "EXPIRES_IN_INVALID"}},
     "400 EXPIRES_IN_INVALID"),
    ({"ok": False, "error": "PARAM_AMOUNT_REQUIRED"}, "PARAM_AMOUNT_REQUIRED"),
    ({"ok": True}, "answer without ok"),
])
async def test_both_error_shapes_become_provider_errors(answer, expected):
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json=answer))
    client = CryptoPayClient("https://pay.example/api", TOKEN, 5, transport)
    try:
        with pytest.raises(ProviderError) as failed:
            await client.call("create_invoice", "createInvoice", {})
    finally:
        await client.close()
    assert expected in str(failed.value)


async def test_polling_reads_more_than_a_hundred_invoices_in_one_batch(servers, fake):
    """getInvoices answers 100 items unless `count` says more, even for named ids."""
    fake_url, _ = servers
    headers = {"Crypto-Pay-API-Token": TOKEN}
    invoices = []
    for n in range(120):
        r = await fake.post("/api/createInvoice", headers=headers, json={
            "currency_type": "fiat", "fiat": "USD", "amount": "2", "payload": f"batch-{n}"})
        ref = str(r.json()["result"]["invoice_id"])
        await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
        invoices.append(SimpleNamespace(id=f"batch-{n}", provider_ref=ref))
    provider = CryptoPayProvider(f"{fake_url}/api", TOKEN, 5, ["USDT"])
    try:
        seen = await provider.observe_many(invoices)
    finally:
        await provider.close()
    assert all(isinstance(v, list) and len(v) == 1 for v in seen.values()), seen
    assert {v[0].txid for v in seen.values()} == {f"cryptopay:{i.provider_ref}"
                                                 for i in invoices}
    calls = (await fake.get("/_fake/calls", params={"method": "getInvoices"})).json()["calls"]
    assert calls[-1]["params"]["count"] == 120


async def test_an_invoice_answered_for_another_payload_is_not_settled(servers, fake):
    fake_url, _ = servers
    r = await fake.post("/api/createInvoice", headers={"Crypto-Pay-API-Token": TOKEN}, json={
        "currency_type": "fiat", "fiat": "USD", "amount": "5", "payload": "someone-else"})
    ref = str(r.json()["result"]["invoice_id"])
    await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
    provider = CryptoPayProvider(f"{fake_url}/api", TOKEN, 5, ["USDT"])
    try:
        seen = await provider.observe_many([SimpleNamespace(id="mine", provider_ref=ref)])
    finally:
        await provider.close()
    assert isinstance(seen["mine"], ProviderError)


# ----------------------------------------------------------------------------- with sandbox


async def test_sandbox_and_cryptopay_at_once(servers, db, fake, pg):
    fake_url, _ = servers
    settings = cryptopay_settings(fake_url, providers="sandbox,cryptopay")
    parts = build_components(settings, db)
    try:
        with serve_in_thread(create_api(settings)) as billing_url:
            async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
                options = (await c.get("/internal/payment-options", headers=as_user())).json()
            names = [(o["provider"], o["asset"], o["network"]) for o in options["options"]]
            assert names[-1] == ("cryptopay", "USD", "CRYPTOPAY")
            assert {n[0] for n in names[:-1]} == {"sandbox"}  # in PAYMENT_PROVIDERS order

            user = f"cp-both-{uuid.uuid4().hex[:8]}"
            on_chain, _ = await create_invoice(billing_url, user=user, asset="USDT",
                                               network="TRON")
            in_bot, ref = await create_invoice(billing_url, user=user)
            assert (await admin_invoice(billing_url, on_chain["id"]))["provider"] == "sandbox"
            assert on_chain["address"] and on_chain["payment_url"] is None
            assert (await admin_invoice(billing_url, in_bot["id"]))["provider"] == "cryptopay"
            seen = (await fake.get(f"/_fake/invoices/{ref}")).json()
            assert seen["payload"] == in_bot["id"]
            # naming the provider: the USD option is Crypto Bot's only
            async with httpx.AsyncClient(base_url=billing_url, timeout=30) as c:
                r = await c.post("/internal/invoices", headers={
                    **as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                    json={"plan_id": await plan_id(billing_url), "asset": "USD",
                          "network": "CRYPTOPAY", "provider": "sandbox"})
            assert r.status_code == 400, r.text

            await fake.post(f"/_fake/invoices/{ref}/pay", json={"notify": False})
            await parts.watcher.payment_watch()
            assert (await admin_invoice(billing_url, in_bot["id"]))["status"] == "PAID"
            assert (await admin_invoice(billing_url, on_chain["id"]))["status"] == "CREATED"
    finally:
        await parts.close()
