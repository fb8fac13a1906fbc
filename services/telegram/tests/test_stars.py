"""Telegram Stars in the telegram service, against the Telegram emulator over real HTTP: the
webhook answers a pre-checkout query within Telegram's 10 s from billing's word (a stand-in
billing that checks the signed identity), "try again" when billing is slow or down; a
successful_payment is recorded once per charge and published once; a refund is recorded;
/paysupport is answered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request

from runtime import identity
from runtime.testing import free_port, serve_in_thread
from telegram.app import create_api
from telegram.botapi import BotApi
from telegram.models import ReceivedUpdate, StarsPayment
from telegram.payments import PAID_TEXT, REFUSALS, TRY_AGAIN, BillingClient, PreCheckout
from telegram.pump import UpdatePump
from telegram.service import PAYSUPPORT_TEXT, UpdateService

from .conftest import make_settings
from .helpers import Bot, next_forum, next_id, private_message, published

ROUTING_KEY = "telegram.stars_payment.received.v1"


@dataclass
class FakeBilling:
    """Billing's `payable` answer as the test sets it, and the calls it got."""

    reason: str | None = None
    delay: float = 0.0
    calls: list[dict] = field(default_factory=list)

    def app(self, signing_key: str) -> FastAPI:
        app = FastAPI()

        @app.get("/internal/invoices/{invoice_id}/payable")
        async def payable(invoice_id: str, request: Request) -> dict:
            who = identity.verify(signing_key, request.headers.get(identity.HEADER),
                                  audience="billing")
            self.calls.append({"invoice_id": invoice_id, "caller": (who.user_id, who.role),
                               **dict(request.query_params)})
            await asyncio.sleep(self.delay)
            return {"payable": self.reason is None, "reason": self.reason}

        return app


def signed(app, key: str):
    """The telegram API as the gateway's relay reaches it: with the signed identity."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            header = identity.sign(key, "telegram-webhook", "SERVICE", audience="telegram")
            scope = {**scope, "headers": [*scope["headers"],
                                          (identity.HEADER.lower().encode(), header.encode())]}
        await app(scope, receive, send)

    return asgi


@dataclass
class Shop:
    emulator: httpx.AsyncClient
    billing: FakeBilling
    settings: object


@pytest.fixture(scope="module")
def stack(migrated, emulator) -> Iterator[tuple[FakeBilling, str]]:
    """The telegram API (webhook + pre-checkout) and a stand-in billing, the emulator's webhook
    pointing at the API; with billing answering in `billing_timeout`."""
    billing = FakeBilling()
    billing_port, api_port = free_port(), free_port()
    settings = make_settings().model_copy(update={
        "api_base": emulator, "billing_url": f"http://127.0.0.1:{billing_port}",
        "pre_checkout_billing_timeout": 1.5})
    with (serve_in_thread(billing.app(settings.internal_signing_key), billing_port),
          serve_in_thread(signed(create_api(settings), settings.internal_signing_key),
                          api_port)):
        httpx.post(f"{emulator}/bot{settings.bot_token}/setWebhook", json={
            "url": f"http://127.0.0.1:{api_port}/internal/webhook",
            "secret_token": settings.webhook_secret,
            "allowed_updates": ["message", "pre_checkout_query"]}).raise_for_status()
        try:
            yield billing, settings
        finally:
            httpx.post(f"{emulator}/bot{settings.bot_token}/deleteWebhook")


@pytest.fixture
async def shop(stack, emulator):
    billing, settings = stack
    billing.reason, billing.delay, billing.calls[:] = None, 0.0, []
    async with httpx.AsyncClient(base_url=emulator, timeout=30) as c:
        yield Shop(c, billing, settings)


class NoJobs:
    async def enqueue_outgoing(self, rows, suffix: str = "") -> None:
        pass


async def pump(db) -> None:
    pumped = UpdatePump(db, UpdateService(make_settings()), NoJobs())
    while await pumped.pump_once():
        pass


async def invoice_link(shop: Shop, invoice_id: str, stars: int = 250) -> str:
    r = await shop.emulator.post(f"/bot{shop.settings.bot_token}/createInvoiceLink", json={
        "title": "Month", "description": "30 days of VPN", "payload": invoice_id,
        "provider_token": "", "currency": "XTR", "prices": [{"label": "Month", "amount": stars}]})
    return r.json()["result"]


async def pay(shop: Shop, link: str, payer: int) -> dict:
    r = await shop.emulator.post("/_emulator/stars/pay", json={"link": link, "from_id": payer})
    assert r.status_code == 200, r.text
    return r.json()


async def outcome_of(db, update_id: int) -> str | None:
    async with db.transaction() as s:
        return await s.scalar(sa.select(ReceivedUpdate.outcome)
                              .where(ReceivedUpdate.update_id == update_id))


async def test_a_payable_invoice_is_accepted_and_its_payment_relayed_once(shop, db):
    invoice_id, payer = uuid.uuid4().hex, next_id()
    paid = await pay(shop, await invoice_link(shop, invoice_id), payer)
    assert paid["status"] == "paid"
    assert paid["pre_checkout_query"]["answered_after"] < 3  # well within Telegram's 10 s
    [call] = shop.billing.calls
    assert call == {"invoice_id": invoice_id, "caller": ("telegram", "SERVICE"),
                    "provider": "stars", "asset": "XTR", "amount": "250"}
    assert paid["payment_delivery"]["status_code"] == 200
    await pump(db)
    assert await outcome_of(db, paid["update"]["update_id"]) == "stars_payment"
    charge = paid["telegram_payment_charge_id"]
    events = [e for e in await published(db, ROUTING_KEY)
              if e["telegram_payment_charge_id"] == charge]
    assert len(events) == 1
    assert events[0]["invoice_id"] == invoice_id and events[0]["total_amount"] == 250
    assert events[0]["currency"] == "XTR" and events[0]["telegram_user_id"] == payer
    # the same payment again, redelivered under another update id: recorded and published once
    redelivered = {**paid["update"], "update_id": paid["update"]["update_id"] + 10_000_000}
    r = await shop.emulator.post("/_emulator/updates", json={"update": redelivered})
    assert r.json()["status_code"] == 200
    await pump(db)
    assert await outcome_of(db, redelivered["update_id"]) == "stars_payment_known"
    assert len([e for e in await published(db, ROUTING_KEY)
                if e["telegram_payment_charge_id"] == charge]) == 1
    async with db.transaction() as s:
        row = await s.get(StarsPayment, charge)
    assert (row.invoice_payload, row.total_amount, row.telegram_user_id) == (
        invoice_id, 250, payer)


@pytest.mark.parametrize("reason", ["expired", "already_paid", "wrong_amount", "closed"])
async def test_an_invoice_billing_refuses_is_not_paid(shop, reason):
    shop.billing.reason = reason
    paid = await pay(shop, await invoice_link(shop, uuid.uuid4().hex), next_id())
    assert paid["status"] == "refused"
    assert paid["pre_checkout_query"]["error_message"] == REFUSALS[reason]
    assert "update" not in paid


async def test_billing_too_slow_is_a_no_in_time(shop):
    shop.billing.delay = 6.0  # longer than TELEGRAM_PRE_CHECKOUT_BILLING_TIMEOUT (1.5 s here)
    started = time.monotonic()
    paid = await pay(shop, await invoice_link(shop, uuid.uuid4().hex), next_id())
    assert paid["status"] == "refused"
    assert paid["pre_checkout_query"]["error_message"] == TRY_AGAIN
    assert paid["pre_checkout_query"]["answered_after"] < 4
    assert time.monotonic() - started < 6


async def test_a_query_billing_cannot_be_asked_about_is_refused_without_asking(shop):
    paid = await pay(shop, await invoice_link(shop, "../../admin"), next_id())
    assert paid["status"] == "refused"
    assert paid["pre_checkout_query"]["error_message"] == REFUSALS["unknown_invoice"]
    assert shop.billing.calls == []


async def test_billing_down_is_try_again(migrated, emulator, db):
    """No billing at all: the pre-checkout service answers no, with "try again"."""
    settings = make_settings()
    bot = BotApi(emulator, settings.bot_token)
    billing = BillingClient(f"http://127.0.0.1:{free_port()}", settings.internal_signing_key, 1)
    try:
        refusal = await PreCheckout(bot, billing, 1).verdict(
            {"id": "1", "currency": "XTR", "total_amount": 5, "invoice_payload": "abc"},
            time.monotonic())
    finally:
        await bot.close()
        await billing.close()
    assert refusal == TRY_AGAIN


async def test_the_pump_leaves_a_pre_checkout_query_to_the_webhook(shop, db):
    paid = await pay(shop, await invoice_link(shop, uuid.uuid4().hex), next_id())
    query_update = paid["pre_checkout_query"]
    await pump(db)
    async with db.transaction() as s:
        outcomes = (await s.execute(sa.select(ReceivedUpdate.outcome).where(
            ReceivedUpdate.payload["pre_checkout_query"]["id"].astext == query_update["id"]
        ))).scalars().all()
    assert outcomes == ["pre_checkout"]


async def test_a_refund_is_recorded_on_its_payment(shop, db):
    payer = next_id()
    paid = await pay(shop, await invoice_link(shop, uuid.uuid4().hex), payer)
    charge = paid["telegram_payment_charge_id"]
    r = await shop.emulator.post(f"/bot{shop.settings.bot_token}/refundStarPayment",
                                 json={"user_id": payer, "telegram_payment_charge_id": charge})
    assert r.json()["ok"] is True
    deadline = time.monotonic() + 10
    while True:
        await pump(db)
        async with db.transaction() as s:
            row = await s.get(StarsPayment, charge)
        if row is not None and row.refunded_at is not None:
            break
        assert time.monotonic() < deadline, "the refund was not recorded"
        await asyncio.sleep(0.1)
    assert row.total_amount == 250


async def test_the_payer_is_thanked_once_and_paysupport_is_answered(db, emulator):
    bot = Bot(db, emulator, next_forum())
    try:
        payer = next_id()
        message = {"message_id": next_id(), "date": int(time.time()),
                   "chat": {"id": payer, "type": "private"},
                   "from": {"id": payer, "is_bot": False, "first_name": "Ann"},
                   "successful_payment": {"currency": "XTR", "total_amount": 10,
                                          "invoice_payload": uuid.uuid4().hex,
                                          "telegram_payment_charge_id": f"stx{next_id()}",
                                          "provider_payment_charge_id": ""}}
        assert await bot.answer(message) == ("stars_payment", [PAID_TEXT])
        assert await bot.answer(message) == ("stars_payment_known", [])
        unreadable = {**message, "successful_payment": {"currency": "XTR"}}
        assert await bot.answer(unreadable) == ("stars_payment_known", [])
        assert await bot.answer(private_message(next_id(), "/paysupport")) == (
            "paysupport", [PAYSUPPORT_TEXT])
    finally:
        await bot.close()
