"""Telegram Stars in the emulator: invoices (createInvoiceLink, sendInvoice), a user paying one
(the pre_checkout_query answered in time, then successful_payment), refunds once, and the
transactions list. The emulator and a bot's webhook are real HTTP servers, so the bot answers
the query while the platform waits, as on Telegram."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from fakes.telegram import EmulatorConfig, create_app

TOKEN = "123456:TEST-TOKEN"
PAYER = 5550001


def bound() -> socket.socket:
    """A socket on a free port, bound now and served by uvicorn as it is: a port looked up and
    bound later could be taken in between by another test."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: FastAPI, sock: socket.socket) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class BotBehaviour:
    """How the test bot answers pre-checkout queries, and what its webhook received."""

    answer: str = "yes"  # yes | no | silent | late
    late_by: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[httpx.Response] = field(default_factory=list)


@dataclass
class World:
    api: str
    control: str
    bot: BotBehaviour


@pytest.fixture
def world() -> Iterator[World]:
    emu_sock, bot_sock = bound(), bound()
    emu_port, bot_port = emu_sock.getsockname()[1], bot_sock.getsockname()[1]
    base = f"http://127.0.0.1:{emu_port}"
    emulator = create_app(EmulatorConfig(token=TOKEN, pre_checkout_timeout=1.0))
    bot = BotBehaviour()
    hook = FastAPI()

    @hook.post("/hook")
    async def receive(request: Request) -> dict:
        update = await request.json()
        bot.received.append(update)
        query = update.get("pre_checkout_query")
        if query is not None and bot.answer != "silent":
            async def answer() -> None:
                await asyncio.sleep(bot.late_by)
                params = {"pre_checkout_query_id": query["id"], "ok": bot.answer != "no"}
                if bot.answer == "no":
                    params["error_message"] = "This invoice has expired"
                async with httpx.AsyncClient() as c:
                    bot.answers.append(await c.post(
                        f"{base}/bot{TOKEN}/answerPreCheckoutQuery", json=params))
            asyncio.get_running_loop().create_task(answer())
        return {}

    with ExitStack() as servers:
        servers.enter_context(serve(emulator, emu_sock))
        servers.enter_context(serve(hook, bot_sock))
        httpx.post(f"{base}/bot{TOKEN}/setWebhook",
                   json={"url": f"http://127.0.0.1:{bot_port}/hook",
                         "allowed_updates": ["message", "pre_checkout_query"]}
                   ).raise_for_status()
        yield World(api=f"{base}/bot{TOKEN}", control=f"{base}/_emulator", bot=bot)


def invoice(**overrides: Any) -> dict[str, Any]:
    return {"title": "Month, 3 devices", "description": "30 days of VPN", "payload": "inv-1",
            "provider_token": "", "currency": "XTR",
            "prices": [{"label": "Month", "amount": 250}], **overrides}


async def test_invoice_links_are_checked_as_for_stars(world):
    async with httpx.AsyncClient() as c:
        for bad, why in ((invoice(prices=[{"label": "a", "amount": 1},
                                          {"label": "b", "amount": 2}]), "STARS_INVOICE_INVALID"),
                         (invoice(title="x" * 33), "TITLE_INVALID"),
                         (invoice(description="d" * 256), "DESCRIPTION_INVALID"),
                         (invoice(payload="é" * 65), "INVOICE_PAYLOAD_INVALID"),  # 130 bytes
                         (invoice(currency="USD"), "PAYMENT_PROVIDER_INVALID"),
                         (invoice(provider_token="284685063:TEST"), "PAYMENT_PROVIDER_INVALID"),
                         (invoice(prices=[{"label": "m", "amount": 0}]),
                          "CURRENCY_TOTAL_AMOUNT_INVALID"),
                         (invoice(subscription_period=86400), "SUBSCRIPTION_PERIOD_INVALID")):
            r = await c.post(f"{world.api}/createInvoiceLink", json=bad)
            assert r.status_code == 400, bad
            assert r.json() == {"ok": False, "error_code": 400,
                                "description": f"Bad Request: {why}"}
        r = await c.post(f"{world.api}/createInvoiceLink",
                         json=invoice(subscription_period=2592000))
        assert r.json()["ok"] is True
        link = (await c.post(f"{world.api}/createInvoiceLink", json=invoice())).json()["result"]
    assert link.startswith("https://t.me/$")


async def test_a_user_pays_when_the_bot_says_yes_in_time(world):
    async with httpx.AsyncClient(timeout=15) as c:
        link = (await c.post(f"{world.api}/createInvoiceLink", json=invoice())).json()["result"]
        r = await c.post(f"{world.control}/stars/pay", json={"link": link, "from_id": PAYER})
    paid = r.json()
    assert paid["status"] == "paid", paid
    assert paid["pre_checkout_query"]["ok"] is True
    assert paid["pre_checkout_query"]["answered_after"] < 1.0
    query, message = world.bot.received
    assert query["pre_checkout_query"] == {
        "id": paid["pre_checkout_query"]["id"], "currency": "XTR", "total_amount": 250,
        "invoice_payload": "inv-1",
        "from": {"id": PAYER, "is_bot": False, "first_name": f"User {PAYER}"}}
    payment = message["message"]["successful_payment"]
    assert payment == {"currency": "XTR", "total_amount": 250, "invoice_payload": "inv-1",
                       "telegram_payment_charge_id": paid["telegram_payment_charge_id"],
                       "provider_payment_charge_id": ""}
    assert message["message"]["chat"]["id"] == PAYER
    assert message["update_id"] > query["update_id"]


@pytest.mark.parametrize("answer", ["no", "silent", "late"])
async def test_no_payment_without_a_yes_in_time(world, answer):
    world.bot.answer, world.bot.late_by = answer, 1.3 if answer == "late" else 0.0
    async with httpx.AsyncClient(timeout=15) as c:
        link = (await c.post(f"{world.api}/createInvoiceLink", json=invoice())).json()["result"]
        r = await c.post(f"{world.control}/stars/pay", json={"link": link, "from_id": PAYER})
        deadline = time.monotonic() + 5
        while answer == "late" and not world.bot.answers:  # the bot's late answer arrives
            assert time.monotonic() < deadline, "the late answer never came"
            await asyncio.sleep(0.05)
        charges = (await c.get(f"{world.control}/stars/charges")).json()["charges"]
    result = r.json()
    if answer == "no":
        assert result["status"] == "refused"
        assert result["pre_checkout_query"]["error_message"] == "This invoice has expired"
    else:
        assert result["status"] == "no_answer"
    assert charges == []
    assert [u for u in world.bot.received if "message" in u] == []
    if answer == "late":
        [late] = world.bot.answers
        assert late.status_code == 400
        assert "query is too old" in late.json()["description"]


async def test_a_query_is_answered_once_and_a_no_needs_its_reason(world):
    world.bot.answer = "silent"
    async with httpx.AsyncClient(timeout=15) as c:
        link = (await c.post(f"{world.api}/createInvoiceLink", json=invoice())).json()["result"]
        pay = asyncio.create_task(c.post(f"{world.control}/stars/pay",
                                         json={"link": link, "from_id": PAYER}))
        while not world.bot.received:
            await asyncio.sleep(0.02)
        query_id = world.bot.received[0]["pre_checkout_query"]["id"]
        r = await c.post(f"{world.api}/answerPreCheckoutQuery",
                         json={"pre_checkout_query_id": query_id, "ok": False})
        assert r.json()["description"] == "Bad Request: error_message is empty"
        r = await c.post(f"{world.api}/answerPreCheckoutQuery",
                         json={"pre_checkout_query_id": query_id, "ok": True})
        assert r.json() == {"ok": True, "result": True}
        again = await c.post(f"{world.api}/answerPreCheckoutQuery",
                             json={"pre_checkout_query_id": query_id, "ok": True})
        assert again.status_code == 400
        assert (await pay).json()["status"] == "paid"


async def test_a_refund_is_for_the_payers_charge_and_happens_once(world):
    async with httpx.AsyncClient(timeout=15) as c:
        link = (await c.post(f"{world.api}/createInvoiceLink", json=invoice())).json()["result"]
        charge = (await c.post(f"{world.control}/stars/pay", json={
            "link": link, "from_id": PAYER})).json()["telegram_payment_charge_id"]
        r = await c.post(f"{world.api}/refundStarPayment",
                         json={"user_id": PAYER, "telegram_payment_charge_id": "stxNOPE"})
        assert r.json()["description"] == "Bad Request: CHARGE_NOT_FOUND"
        r = await c.post(f"{world.api}/refundStarPayment",
                         json={"user_id": PAYER + 1, "telegram_payment_charge_id": charge})
        assert r.json()["description"] == "Bad Request: CHARGE_NOT_FOUND"
        r = await c.post(f"{world.api}/refundStarPayment",
                         json={"user_id": PAYER, "telegram_payment_charge_id": charge})
        assert r.json() == {"ok": True, "result": True}
        r = await c.post(f"{world.api}/refundStarPayment",
                         json={"user_id": PAYER, "telegram_payment_charge_id": charge})
        assert r.json() == {"ok": False, "error_code": 400,
                            "description": "Bad Request: CHARGE_ALREADY_REFUNDED"}
        deadline = time.monotonic() + 5
        while not any("refunded_payment" in u.get("message", {}) for u in world.bot.received):
            assert time.monotonic() < deadline, "no refunded_payment update"
            await asyncio.sleep(0.02)
        txs = (await c.post(f"{world.api}/getStarTransactions", json={})).json()["result"]
        calls = (await c.get(f"{world.control}/calls",
                             params={"method": "refundStarPayment"})).json()["calls"]
    refunded = next(u["message"]["refunded_payment"] for u in world.bot.received
                    if "refunded_payment" in u.get("message", {}))
    assert refunded == {"currency": "XTR", "total_amount": 250, "invoice_payload": "inv-1",
                        "telegram_payment_charge_id": charge}
    kinds = sorted("source" if "source" in t else "receiver" for t in txs["transactions"])
    assert kinds == ["receiver", "source"]
    assert all(t["id"] == charge and t["amount"] == 250 for t in txs["transactions"])
    assert len(calls) == 1  # only the successful refund is in the call log


async def test_send_invoice_puts_an_invoice_in_the_chat_that_can_be_paid(world):
    async with httpx.AsyncClient(timeout=15) as c:
        r = await c.post(f"{world.api}/sendInvoice", json={
            **invoice(), "chat_id": PAYER,
            "reply_markup": {"inline_keyboard": [[{"text": "Open", "url": "https://x.y"}]]}})
        assert r.json()["description"] == (
            "Bad Request: first button in the inline keyboard must be a Pay button")
        r = await c.post(f"{world.api}/sendInvoice", json={
            **invoice(), "chat_id": PAYER,
            "reply_markup": {"inline_keyboard": [[{"text": "Pay ⭐250", "pay": True}]]}})
        message = r.json()["result"]
        assert message["invoice"] == {"title": "Month, 3 devices",
                                      "description": "30 days of VPN", "start_parameter": "",
                                      "currency": "XTR", "total_amount": 250}
        assert "text" not in message
        paid = (await c.post(f"{world.control}/stars/pay", json={
            "chat_id": PAYER, "message_id": message["message_id"], "from_id": PAYER,
            "total_amount": 249})).json()
    assert paid["status"] == "paid"
    assert paid["update"]["message"]["successful_payment"]["total_amount"] == 249
