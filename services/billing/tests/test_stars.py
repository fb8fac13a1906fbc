"""The Telegram Stars provider end to end against the Telegram emulator over real HTTP.

The billing API runs with PAYMENT_PROVIDERS=sandbox,stars. A checkout is an invoice link in
Stars made at the emulator; a customer pays it there (the emulator asks a stand-in bot, which
asks billing whether the invoice is payable, as the telegram service does), and the payment
reaches billing as the telegram service relays it: `telegram.stars_payment.received.v1` to the
billing consumer, stored once per charge, settled once. Refunds call `refundStarPayment`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI, Request

from billing.app import create_api
from billing.consumers import build_stars_subscription
from billing.wiring import build_components
from contracts import make_envelope
from contracts.telegram import StarsPaymentReceivedV1
from fakes.telegram import EmulatorConfig
from fakes.telegram import create_app as create_emulator
from runtime import identity
from runtime.testing import free_port, serve_in_thread

from .conftest import make_settings

TOKEN = "123456:TEST-TOKEN"
SIGNING_KEY = "dev-internal-signing-key-change-me"


def as_user(user: str = "star-buyer", role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="billing")}


def admin() -> dict[str, str]:
    return as_user("admin", "ADMIN")


def service() -> dict[str, str]:
    """The telegram service's signed identity (signed per call: it lives a minute)."""
    return as_user("telegram", "SERVICE")


def stars_settings(emulator: str):
    return make_settings(PAYMENT_PROVIDERS="sandbox,stars", TELEGRAM_API_BASE=emulator,
                         TELEGRAM_BOT_TOKEN=TOKEN, STARS_PER_USD="50")


def stand_in_bot(billing_url: str, emulator_url: str) -> FastAPI:
    """What the telegram service does with a pre-checkout query, in a few lines: ask billing,
    answer Telegram."""
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict:
        query = (await request.json()).get("pre_checkout_query")
        if query is not None:
            async with httpx.AsyncClient(timeout=5) as c:
                r = await c.get(f"{billing_url}/internal/invoices/{query['invoice_payload']}"
                                "/payable", headers=service(),
                                params={"provider": "stars", "asset": query["currency"],
                                        "amount": query["total_amount"]})
                verdict = r.json()
                await c.post(f"{emulator_url}/bot{TOKEN}/answerPreCheckoutQuery", json={
                    "pre_checkout_query_id": query["id"], "ok": verdict["payable"],
                    "error_message": verdict["reason"]})
        return {}

    return app


@pytest.fixture(scope="module")
def servers(migrated) -> Iterator[tuple[str, str]]:
    emulator_port, billing_port, bot_port = free_port(), free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    billing_url = f"http://127.0.0.1:{billing_port}"
    with (serve_in_thread(create_emulator(EmulatorConfig(token=TOKEN)), emulator_port),
          serve_in_thread(create_api(stars_settings(emulator_url)), billing_port),
          serve_in_thread(stand_in_bot(billing_url, emulator_url), bot_port)):
        httpx.post(f"{emulator_url}/bot{TOKEN}/setWebhook", json={
            "url": f"http://127.0.0.1:{bot_port}/hook",
            "allowed_updates": ["message", "pre_checkout_query"]}).raise_for_status()
        yield emulator_url, billing_url


@pytest.fixture(scope="module")
async def parts(servers, db):
    components = build_components(stars_settings(servers[0]), db)
    yield components
    await components.close()


@pytest.fixture
async def billing(servers):
    async with httpx.AsyncClient(base_url=servers[1], timeout=20) as c:
        yield c


@pytest.fixture
async def emulator(servers):
    async with httpx.AsyncClient(base_url=servers[0], timeout=20) as c:
        yield c
        await c.delete("/_emulator/faults")


async def new_plan(billing, price_usd: str = "5.00", price_stars: int | None = 250) -> str:
    r = await billing.post("/internal/admin/plans", headers=admin(), json={
        "name": f"stars-{uuid.uuid4().hex[:8]}", "price_usd": price_usd, "duration_days": 30,
        "max_devices": 3, "price_stars": price_stars})
    assert r.status_code == 201, r.text
    return r.json()["plan"]["id"]


async def buy(billing, plan_id: str, user: str = "star-buyer", **extra) -> dict:
    r = await billing.post("/internal/invoices",
                           headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                           json={"plan_id": plan_id, "asset": "XTR", "network": "TELEGRAM",
                                 **extra})
    assert r.status_code == 201, r.text
    return r.json()["invoice"]


async def invoice(billing, invoice_id: str) -> dict:
    r = await billing.get(f"/internal/admin/invoices/{invoice_id}", headers=admin())
    assert r.status_code == 200, r.text
    return r.json()["invoice"]


async def pay(emulator, link: str, payer: int, **extra) -> dict:
    """The customer pays the link in Telegram; the successful_payment update (kept back)."""
    r = await emulator.post("/_emulator/stars/pay", json={"link": link, "from_id": payer,
                                                          "deliver": False, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def received(update: dict) -> StarsPaymentReceivedV1:
    """What the telegram service publishes for a successful_payment update."""
    message = update["message"]
    sp = message["successful_payment"]
    return StarsPaymentReceivedV1(
        invoice_id=sp["invoice_payload"],
        telegram_payment_charge_id=sp["telegram_payment_charge_id"],
        total_amount=sp["total_amount"], currency=sp["currency"],
        telegram_user_id=message["from"]["id"],
        paid_at=datetime.fromtimestamp(message["date"], UTC))


async def relay(db, parts, event: StarsPaymentReceivedV1, times: int = 1) -> None:
    handle = build_stars_subscription(db, parts.watcher).handlers[
        StarsPaymentReceivedV1.routing_key()]
    env = make_envelope(event, producer="telegram")
    for _ in range(times):
        await handle(env, event)


def payer() -> int:
    return 6_000_000_000 + uuid.uuid4().int % 10**9


async def paid_events(pg, invoice_id: str) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", invoice_id)


async def paid_invoice(billing, emulator, db, parts, user: str = "star-buyer"
                       ) -> tuple[dict, int, str]:
    plan = await new_plan(billing)
    inv = await buy(billing, plan, user)
    who = payer()
    paid = await pay(emulator, inv["payment_url"], who)
    await relay(db, parts, received(paid["update"]))
    assert (await invoice(billing, inv["id"]))["status"] == "PAID"
    return inv, who, paid["telegram_payment_charge_id"]


# --- checkout -------------------------------------------------------------------------------------

async def test_stars_is_offered_and_a_checkout_is_an_invoice_link_in_stars(billing, emulator):
    options = (await billing.get("/internal/payment-options", headers=as_user())).json()
    assert {"provider": "stars", "asset": "XTR", "network": "TELEGRAM",
            "label": "XTR · TELEGRAM · Telegram Stars"} in options["options"]
    plan = await new_plan(billing, price_stars=250)
    public = (await billing.get("/internal/plans", headers=as_user())).json()["plans"]
    assert next(p for p in public if p["id"] == plan)["price_stars"] == 250
    inv = await buy(billing, plan)
    assert inv["payment_url"].startswith("https://t.me/$") and inv["address"] is None
    assert (inv["asset"], inv["amount_asset"], inv["amount_stars"]) == ("XTR", "250.00000000", 250)
    assert inv["status"] == "CREATED"
    [call] = [c for c in (await emulator.get("/_emulator/calls", params={
        "method": "createInvoiceLink"})).json()["calls"] if c["params"]["payload"] == inv["id"]]
    params = call["params"]
    assert params["currency"] == "XTR" and params["provider_token"] == ""
    assert params["prices"] == [{"label": params["title"], "amount": 250}]
    assert 1 <= len(params["title"]) <= 32 and 1 <= len(params["description"]) <= 255
    assert call["result"] == inv["payment_url"]
    admin = await invoice(billing, inv["id"])
    assert admin["provider"] == "stars" and admin["rate_usd"] == "0.02000000"


async def test_without_a_stars_price_usd_is_converted_and_rounded_up(billing):
    plan = await new_plan(billing, price_usd="3.99", price_stars=None)
    assert (await buy(billing, plan))["amount_stars"] == 200  # 3.99 × 50 = 199.5
    r = await billing.post("/internal/balance/top-ups",
                           headers={**as_user(), "Idempotency-Key": uuid.uuid4().hex},
                           json={"amount_usd": "5", "asset": "XTR", "network": "TELEGRAM"})
    assert r.status_code == 201, r.text
    assert r.json()["invoice"]["amount_stars"] == 250
    r = await billing.patch(f"/internal/admin/plans/{plan}", headers=admin(),
                            json={"price_stars": 150})
    assert r.json()["plan"]["price_stars"] == 150
    assert (await buy(billing, plan))["amount_stars"] == 150


async def test_the_bot_api_failing_at_checkout_is_503_and_nothing_is_stored(billing, emulator,
                                                                            pg):
    plan = await new_plan(billing)
    await emulator.post("/_emulator/faults", json={"status": 502, "count": 1,
                                                   "methods": ["createInvoiceLink"]})
    user = f"u-{uuid.uuid4().hex[:8]}"
    r = await billing.post("/internal/invoices",
                           headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
                           json={"plan_id": plan, "asset": "XTR", "network": "TELEGRAM"})
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert TOKEN not in r.text
    assert await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1",
                             user) == 0


async def test_sandbox_and_stars_at_once_each_invoice_goes_to_its_provider(billing):
    plan = await new_plan(billing)
    stars = await buy(billing, plan)
    r = await billing.post("/internal/invoices",
                           headers={**as_user(), "Idempotency-Key": uuid.uuid4().hex},
                           json={"plan_id": plan, "asset": "USDT", "network": "TRON"})
    sandbox = r.json()["invoice"]
    assert (await invoice(billing, stars["id"]))["provider"] == "stars"
    assert (await invoice(billing, sandbox["id"]))["provider"] == "sandbox"
    assert sandbox["address"] and sandbox["amount_stars"] is None
    r = await billing.post("/internal/invoices",
                           headers={**as_user(), "Idempotency-Key": uuid.uuid4().hex},
                           json={"plan_id": plan, "asset": "XTR", "network": "TELEGRAM",
                                 "provider": "sandbox"})
    assert r.status_code == 400


# --- the pre-checkout question --------------------------------------------------------------------

async def payable(billing, invoice_id: str, amount, asset: str = "XTR",
                  provider: str = "stars") -> dict:
    r = await billing.get(f"/internal/invoices/{invoice_id}/payable", headers=service(),
                          params={"provider": provider, "asset": asset, "amount": amount})
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_invoice_is_payable_only_while_open_in_time_and_for_its_amount(billing, pg,
                                                                                db, parts,
                                                                                emulator):
    plan = await new_plan(billing)
    inv = await buy(billing, plan)
    assert await payable(billing, inv["id"], 250) == {"payable": True, "reason": None}
    assert (await payable(billing, inv["id"], 249))["reason"] == "wrong_amount"
    assert (await payable(billing, inv["id"], 250, asset="USD"))["reason"] == "wrong_currency"
    assert (await payable(billing, uuid.uuid4().hex, 250))["reason"] == "unknown_invoice"
    r = await billing.post("/internal/invoices",
                           headers={**as_user(), "Idempotency-Key": uuid.uuid4().hex},
                           json={"plan_id": plan, "asset": "USDT", "network": "TRON"})
    other = r.json()["invoice"]
    assert (await payable(billing, other["id"], other["amount_asset"]))["reason"] == \
        "other_provider"

    late = await buy(billing, plan)
    await pg.execute("UPDATE billing.invoices SET rate_locked_until = now() - interval '1 s' "
                     "WHERE id = $1", late["id"])
    assert (await payable(billing, late["id"], 250))["reason"] == "expired"

    canceled = await buy(billing, plan)
    await billing.post(f"/internal/invoices/{canceled['id']}/cancel", headers=as_user())
    assert (await payable(billing, canceled["id"], 250))["reason"] == "closed"

    paid = await pay(emulator, inv["payment_url"], payer())
    await relay(db, parts, received(paid["update"]))
    assert (await payable(billing, inv["id"], 250))["reason"] == "already_paid"

    r = await billing.get(f"/internal/invoices/{inv['id']}/payable",
                          params={"provider": "stars", "asset": "XTR", "amount": 250})
    assert r.status_code == 401  # only with the signed internal identity


async def test_telegram_takes_no_stars_for_an_invoice_that_is_not_payable(billing, emulator,
                                                                          pg):
    plan = await new_plan(billing)
    inv = await buy(billing, plan)
    refused = await pay(emulator, inv["payment_url"], payer(), total_amount=1)
    assert refused["status"] == "refused"
    assert refused["pre_checkout_query"]["error_message"] == "wrong_amount"
    await pg.execute("UPDATE billing.invoices SET rate_locked_until = now() - interval '1 s' "
                     "WHERE id = $1", inv["id"])
    assert (await pay(emulator, inv["payment_url"], payer()))["status"] == "refused"
    charges = (await emulator.get("/_emulator/stars/charges")).json()["charges"]
    assert not [c for c in charges if c["invoice_payload"] == inv["id"]]


# --- the payment ----------------------------------------------------------------------------------

async def test_a_payment_is_stored_once_and_settles_once_however_often_it_arrives(
        billing, emulator, db, parts, pg):
    plan = await new_plan(billing)
    inv = await buy(billing, plan)
    paid = await pay(emulator, inv["payment_url"], payer())
    assert paid["status"] == "paid"
    event = received(paid["update"])
    await relay(db, parts, event, times=3)
    got = await invoice(billing, inv["id"])
    assert got["status"] == "PAID" and got["paid_at"] is not None
    assert [(p["status"], p["txid"], p["amount_asset"]) for p in got["payments"]] == [
        ("SETTLED", paid["telegram_payment_charge_id"], "250.00000000")]
    assert got["amount_received_asset"] == "250.00000000"
    assert Decimal(got["overpaid_asset"]) == 0
    assert await pg.fetchval("SELECT count(*) FROM billing.stars_payments WHERE invoice_id = $1",
                             inv["id"]) == 1
    await parts.watcher.payment_watch()
    assert await paid_events(pg, inv["id"]) == 1


async def test_a_stored_payment_is_settled_by_the_payment_watch(billing, emulator, pg, parts):
    """The consumer stored the payment but stopped before settling: the watch settles it."""
    plan = await new_plan(billing)
    inv = await buy(billing, plan)
    who = payer()
    paid = await pay(emulator, inv["payment_url"], who)
    await pg.execute(
        "INSERT INTO billing.stars_payments (telegram_payment_charge_id, invoice_id, "
        "amount_stars, currency, telegram_user_id, paid_at, received_at) "
        "VALUES ($1, $2, 250, 'XTR', $3, now(), now())",
        paid["telegram_payment_charge_id"], inv["id"], who)
    assert (await invoice(billing, inv["id"]))["status"] == "CREATED"
    outcome = await parts.watcher.payment_watch()
    assert outcome.get("PAID", 0) >= 1
    assert (await invoice(billing, inv["id"]))["status"] == "PAID"
    assert await paid_events(pg, inv["id"]) == 1


async def test_a_payment_after_expiry_is_a_late_payment_kept_for_review(billing, emulator, db,
                                                                        parts, pg):
    plan = await new_plan(billing)
    inv = await buy(billing, plan)
    paid = await pay(emulator, inv["payment_url"], payer())  # approved in time ...
    await pg.execute("UPDATE billing.invoices SET rate_locked_until = now() - interval '1 s' "
                     "WHERE id = $1", inv["id"])
    await parts.watcher.invoice_expiry()  # ... but the invoice expired before it arrived
    assert (await invoice(billing, inv["id"]))["status"] == "EXPIRED"
    await relay(db, parts, received(paid["update"]), times=2)
    got = await invoice(billing, inv["id"])
    assert got["status"] == "EXPIRED" and got["needs_review"] is True
    assert Decimal(got["late_amount_asset"]) == 250
    assert [(p["status"], p["late"]) for p in got["payments"]] == [("SETTLED", True)]
    assert await paid_events(pg, inv["id"]) == 0


async def test_a_payment_naming_no_invoice_of_ours_is_kept(db, parts, pg):
    event = StarsPaymentReceivedV1(
        invoice_id="not-ours", telegram_payment_charge_id=f"stx{uuid.uuid4().hex}",
        total_amount=10, currency="XTR", telegram_user_id=payer(),
        paid_at=datetime.now(UTC) - timedelta(seconds=1))
    await relay(db, parts, event)
    assert await pg.fetchval("SELECT invoice_id FROM billing.stars_payments "
                             "WHERE telegram_payment_charge_id = $1",
                             event.telegram_payment_charge_id) == "not-ours"


# --- refunds --------------------------------------------------------------------------------------

async def refund_calls(emulator, charge: str) -> list[dict]:
    calls = (await emulator.get("/_emulator/calls",
                                params={"method": "refundStarPayment"})).json()["calls"]
    return [c for c in calls if c["params"]["telegram_payment_charge_id"] == charge]


async def test_an_admin_refund_sends_the_stars_back_once(billing, emulator, db, parts):
    inv, who, charge = await paid_invoice(billing, emulator, db, parts)
    r = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                           json={"reason": "customer asked"})
    assert r.status_code == 200, r.text
    assert r.json()["invoice"]["status"] == "REFUNDED"
    assert [p["status"] for p in r.json()["invoice"]["payments"]] == ["REFUNDED"]
    again = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                               json={"reason": "twice"})
    assert again.status_code == 409
    [call] = await refund_calls(emulator, charge)
    assert call["params"] == {"user_id": who, "telegram_payment_charge_id": charge}
    charges = (await emulator.get("/_emulator/stars/charges")).json()["charges"]
    assert next(c for c in charges if c["telegram_payment_charge_id"] == charge)["refunded"]


async def test_a_refund_the_bot_api_refuses_changes_nothing(billing, emulator, db, parts, pg):
    inv, _, charge = await paid_invoice(billing, emulator, db, parts)
    await emulator.post("/_emulator/faults", json={"status": 500, "count": 1,
                                                   "methods": ["refundStarPayment"]})
    r = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                           json={"reason": "customer asked"})
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    got = await invoice(billing, inv["id"])
    assert got["status"] == "PAID" and got["refunded_at"] is None
    assert [p["status"] for p in got["payments"]] == ["SETTLED"]
    assert await pg.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.refunded.v1' "
        "AND envelope->'payload'->>'invoice_id' = $1", inv["id"]) == 0
    assert await refund_calls(emulator, charge) == []
    # once the Bot API answers, the same refund goes through
    r = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                           json={"reason": "customer asked"})
    assert r.status_code == 200 and r.json()["invoice"]["status"] == "REFUNDED"
    assert len(await refund_calls(emulator, charge)) == 1


async def test_stars_already_sent_back_count_as_the_refund(billing, emulator, db, parts):
    """Refunded at Telegram but not recorded here (the commit failed): the retry succeeds."""
    inv, who, charge = await paid_invoice(billing, emulator, db, parts)
    r = await emulator.post(f"/bot{TOKEN}/refundStarPayment",
                            json={"user_id": who, "telegram_payment_charge_id": charge})
    assert r.json()["ok"] is True
    r = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                           json={"reason": "customer asked"})
    assert r.status_code == 200 and r.json()["invoice"]["status"] == "REFUNDED"


async def test_a_refund_to_the_balance_keeps_the_stars(billing, emulator, db, parts):
    user = f"u-{uuid.uuid4().hex[:8]}"
    inv, _, charge = await paid_invoice(billing, emulator, db, parts, user)
    r = await billing.post(f"/internal/admin/invoices/{inv['id']}/refund", headers=admin(),
                           json={"reason": "credit instead", "to": "balance"})
    assert r.status_code == 200 and r.json()["invoice"]["status"] == "REFUNDED"
    assert await refund_calls(emulator, charge) == []
    balance = (await billing.get("/internal/balance", headers=as_user(user))).json()
    assert Decimal(balance["balance_usd"]) == Decimal("5.00")
