"""The shop inside the bot, against the Telegram emulator over real HTTP: a customer's buttons
are pressed in the emulator (`/_emulator/press`), the callback_query it delivers is handled as
the update pump does, and the outgoing rows are delivered. Billing and the provisioner are a
stand-in HTTP server checking the signed identity the bot sends for the customer (the real
services are exercised by the e2e test)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from contracts import make_envelope
from contracts.billing import InvoicePaidV1, PaymentDetectedV1, PlanSnapshot
from contracts.provisioning import SubscriptionActivatedV1, SubscriptionExpiredV1
from runtime import identity
from runtime.testing import serve_in_thread
from telegram import notifications
from telegram.models import BotUser, Outgoing, ShopInvoice
from telegram.repository import ShopRepository
from telegram.service import UpdateService
from telegram.shop import qr_png
from telegram.texts import TEXTS

from .helpers import T0, Bot, Story, link, next_forum, next_id

PLAN = {"id": "month", "name": "Month", "description": "30 days", "price_usd": "5.00",
        "duration_days": 30, "max_devices": 3}
OPTIONS = [{"provider": "sandbox", "asset": "USDT", "network": "TRON",
            "label": "USDT · TRON · Sandbox"},
           {"provider": "stars", "asset": "XTR", "network": "TELEGRAM",
            "label": "XTR · TELEGRAM · Telegram Stars"}]
ACCESS_URL = "https://vpn.example.com/sub/abc123"


@dataclass
class StandIn:
    """Billing's and the provisioner's internal API as the bot uses them, per customer."""

    key: str
    invoices: dict[str, dict] = field(default_factory=dict)
    by_key: dict[tuple[str, str], str] = field(default_factory=dict)
    created: list[dict] = field(default_factory=list)
    subs: dict[str, list[dict]] = field(default_factory=dict)
    balance: dict[str, str] = field(default_factory=dict)
    trials: set[str] = field(default_factory=set)
    links: dict[str, dict] = field(default_factory=dict)  # the stable link's part of access

    def app(self) -> FastAPI:
        app = FastAPI()

        def who(request: Request, audience: str) -> str:
            ident = identity.verify(self.key, request.headers.get(identity.HEADER),
                                    audience=audience)
            assert ident.role == "USER"
            return ident.user_id

        @app.get("/internal/plans")
        async def plans(request: Request):
            who(request, "billing")
            return {"plans": [PLAN]}

        @app.get("/internal/payment-options")
        async def options(request: Request):
            who(request, "billing")
            return {"options": OPTIONS}

        @app.get("/internal/balance")
        async def balance(request: Request):
            return {"balance_usd": self.balance.get(who(request, "billing"), "0.00"),
                    "entries": [], "next_cursor": None}

        @app.get("/internal/promo-codes/{code}")
        async def promo(code: str, plan_id: str, request: Request):
            who(request, "billing")
            if code.upper() != "SPRING":
                return JSONResponse({"code": "NOT_FOUND", "message": "no such code"}, 404)
            return {"code": "SPRING", "kind": "PERCENT", "value": "20", "plan_ids": None,
                    "valid": True, "reason": None, "price_usd": "4.00",
                    "discount_usd": "1.00", "bonus_days": 0}

        @app.post("/internal/invoices", status_code=201)
        async def create(request: Request):
            user = who(request, "billing")
            body = await request.json()
            key = request.headers["Idempotency-Key"]
            if (user, key) in self.by_key:
                return {"invoice": self.invoices[self.by_key[user, key]]}
            if body.get("pay_with") == "balance" and self.balance.get(user, "0.00") < "5":
                return JSONResponse({"code": "INSUFFICIENT_BALANCE", "message": "short"}, 409)
            self.created.append({"user": user, "key": key, **body})
            inv_id = uuid.uuid4().hex
            stars = body["provider"] == "stars"
            self.invoices[inv_id] = invoice = {
                "id": inv_id, "status": "PAID" if body.get("pay_with") else "CREATED",
                "plan_id": body["plan_id"], "provider": body["provider"],
                "amount_usd": "4.00" if body.get("promo_code") else "5.00",
                "asset": body["asset"], "network": body["network"],
                "amount_asset": "250" if stars else "4.000000",
                "amount_stars": 250 if stars else None,
                "address": None if stars else f"T{inv_id[:20]}",
                "payment_url": "https://t.me/$abc" if stars else None,
                "rate_locked_until": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
                "user": user}
            self.by_key[user, key] = inv_id
            return {"invoice": invoice}

        @app.get("/internal/invoices/{inv_id}")
        async def get(inv_id: str, request: Request):
            user = who(request, "billing")
            invoice = self.invoices.get(inv_id)
            if invoice is None or invoice["user"] != user:
                return JSONResponse({"code": "NOT_FOUND", "message": "no invoice"}, 404)
            return {"invoice": invoice}

        @app.post("/internal/trial", status_code=201)
        async def trial(request: Request):
            user = who(request, "billing")
            if user in self.trials:
                return JSONResponse({"code": "TRIAL_UNAVAILABLE", "message": "used"}, 409)
            self.trials.add(user)
            return {"invoice": {"id": "t-" + user, "status": "PAID"}}

        @app.get("/internal/referrals")
        async def referrals(request: Request):
            who(request, "billing")
            return {"code": "abc12", "link": "https://vpn.example.com/r/abc12", "invited": 2,
                    "paid": 1, "reward_total_usd": "1.00", "reward_total_days": 0}

        @app.get("/internal/subscriptions")
        async def subscriptions(request: Request):
            return {"subscriptions": self.subs.get(who(request, "provisioner"), [])}

        @app.get("/internal/subscriptions/{sub_id}/access")
        async def access(sub_id: str, request: Request):
            user = who(request, "provisioner")
            assert any(x["id"] == sub_id for x in self.subs.get(user, []))
            return {"backend": "sandbox", "access_url": ACCESS_URL, "config": {},
                    "fetched_at": datetime.now(UTC).isoformat(), **self.links.get(user, {})}

        return app


@pytest.fixture(scope="module")
def standin(emulator) -> Iterator[tuple[StandIn, str]]:
    """The stand-in services, and a webhook receiver the emulator delivers presses to (the
    test hands each delivered update to the service itself, as the pump would)."""
    from .conftest import make_settings
    services = StandIn(make_settings().internal_signing_key)
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook():
        return {}

    with serve_in_thread(services.app()) as url, serve_in_thread(receiver) as hook_url:
        token = make_settings().bot_token
        httpx.post(f"{emulator}/bot{token}/setWebhook", json={
            "url": f"{hook_url}/hook", "allowed_updates": ["message", "callback_query"]}
        ).raise_for_status()
        yield services, url
        httpx.post(f"{emulator}/bot{token}/deleteWebhook")


@dataclass
class Customer:
    bot: Bot
    user_id: str
    tg: int
    lang: str = "en"

    async def write(self, text: str) -> tuple[str, None]:
        """The customer sends a message in the emulator; the bot handles it."""
        r = await self.bot.control.post("/_emulator/updates", json={
            "chat_id": self.tg, "from_id": self.tg, "text": text, "language_code": self.lang,
            "chat_type": "private"})
        assert r.status_code == 200, r.text
        return await self.handle(r.json()["update"]), None

    async def deliver(self, ids: list[int]) -> None:
        for oid in ids:
            await self.bot.delivery.deliver_one(oid)

    async def press(self, message_id: int, data: str, *, handle: bool = True) -> dict:
        r = await self.bot.control.post("/_emulator/press", json={
            "chat_id": self.tg, "message_id": message_id, "from_id": self.tg, "data": data,
            "language_code": self.lang})
        assert r.status_code == 200, r.text
        update = r.json()["update"]
        if handle:
            await self.handle(update)
        return update

    async def handle(self, update: dict) -> str:
        async with self.bot.db.transaction() as s:
            outcome, ids = await self.bot.updates.handle(s, next_id(), update)
        await self.deliver(ids)
        return outcome

    async def messages(self) -> list[dict]:
        r = await self.bot.control.get("/_emulator/messages", params={"chat_id": self.tg})
        return [m for m in r.json()["messages"] if m["from"]["is_bot"]]

    async def screen(self) -> dict:
        """The bot's newest text message (the screen being edited)."""
        return [m for m in await self.messages() if "text" in m][-1]

    async def answers(self) -> list[dict]:
        r = await self.bot.control.get("/_emulator/callback-queries",
                                       params={"chat_id": self.tg})
        return r.json()["callback_queries"]


def buttons(message: dict) -> dict[str, dict]:
    return {b["text"]: b for row in message.get("reply_markup", {}).get("inline_keyboard", [])
            for b in row}


@pytest.fixture
async def customer(db, emulator, standin):
    services, url = standin
    bot = Bot(db, emulator, next_forum())
    bot.settings = bot.settings.model_copy(update={"billing_url": url, "provisioner_url": url})
    bot.updates = UpdateService(bot.settings)
    user_id, tg = await link(db)
    yield Customer(bot, user_id, tg)
    await bot.updates.shop.api.close()
    await bot.close()


async def test_menu_in_the_customers_language_switched_and_remembered(customer, db) -> None:
    customer.lang = "ru"
    outcome, _ = await customer.write("/menu")
    assert outcome == "shop:menu"
    menu = await customer.screen()
    assert menu["text"].startswith("🛡 VPN-магазин") and "Подписки пока нет" in menu["text"]
    keys = buttons(menu)
    assert [keys[k]["callback_data"] for k in (
        "🛒 Купить", "📄 Моя подписка", "🔑 Доступ", "🎁 Пробный период", "💰 Баланс",
        "👥 Пригласить друзей", "🌐 Язык", "💬 Поддержка")] == [
        "b", "s", "a", "t", "bal", "ref", "lang", "sup"]
    await customer.press(menu["message_id"], "lang")
    await customer.press(menu["message_id"], "l:en")
    edited = await customer.screen()
    assert edited["message_id"] == menu["message_id"] and edited["text"].startswith(
        "🛡 VPN shop") and "🛒 Buy" in buttons(edited)
    # every press answered, once
    answers = await customer.answers()
    assert len(answers) == 2 and all(a["answered"] for a in answers)
    assert answers[1]["text"] == "Language: English."
    async with db.transaction() as s:
        user = await s.get(BotUser, customer.tg)
        assert (user.language, user.language_code) == ("en", "ru")
    await customer.write("/menu")  # remembered over the app's language
    assert (await customer.screen())["text"].startswith("🛡 VPN shop")


async def test_buy_with_a_typed_promo_code_and_a_double_tap_makes_one_invoice(
        customer, standin, db) -> None:
    services, _ = standin
    await customer.write("/buy")
    screen = await customer.screen()
    assert "Month: $5.00 · 30 days · 3 devices" in screen["text"]
    msg = screen["message_id"]
    await customer.press(msg, "p:month")
    methods = buttons(await customer.screen())
    assert {"USDT · TRON · Sandbox", "⭐ Telegram Stars", "💰 From balance ($0.00)"} <= set(
        methods)
    await customer.press(msg, "o:0")
    await customer.press(msg, "promo")
    assert (await customer.screen())["text"] == TEXTS["en"]["promo_type"]
    outcome, _ = await customer.write("spring")
    assert outcome == "shop:promo_applied"
    screen = await customer.screen()
    assert screen["message_id"] == msg and "Promo code SPRING: −$1.00 → $4.00" in screen["text"]
    # the typed code was removed from the chat
    deleted = (await customer.bot.control.get("/_emulator/deleted")).json()["deleted"]
    assert any(d["chat_id"] == customer.tg for d in deleted)
    # a double tap: both presses reach the bot before either is handled
    first = await customer.press(msg, "c", handle=False)
    second = await customer.press(msg, "c", handle=False)
    assert await customer.handle(first) == "shop:invoice"
    assert await customer.handle(second) == "shop:invoice_again"
    mine = [c for c in services.created if c["user"] == customer.user_id]
    assert len(mine) == 1 and mine[0]["promo_code"] == "SPRING" and mine[0]["provider"] == \
        "sandbox"
    (invoice_id,) = [i for i, v in services.invoices.items() if v["user"] == customer.user_id]
    address = services.invoices[invoice_id]["address"]
    shown = await customer.messages()
    screen = [m for m in shown if m["message_id"] == msg][0]
    assert f"Invoice {invoice_id}" in screen["text"] and "Amount: 4.000000 USDT ($4.00)" in \
        screen["text"] and "Status: ⏳ waiting for payment" in screen["text"]
    assert {"type": "code"} .items() <= next(
        e for e in screen["entities"] if e["type"] == "code").items()
    assert buttons(screen)["🔄 Check payment"]["callback_data"] == f"r:{invoice_id}"
    photos = [m for m in shown if "photo" in m]
    assert len(photos) == 1 and photos[0]["caption"] == address
    calls = (await customer.bot.control.get("/_emulator/calls", params={
        "method": "sendPhoto", "chat_id": customer.tg})).json()["calls"]
    assert calls[0]["params"]["photo"]["sha256"] == hashlib.sha256(qr_png(address)).hexdigest()
    answers = await customer.answers()
    assert all(a["answered"] for a in answers) and answers[-1]["text"] == \
        "This invoice exists already."
    async with db.transaction() as s:
        row = await s.get(ShopInvoice, invoice_id)
        assert (row.chat_id, row.message_id, row.status) == (customer.tg, msg, "CREATED")


async def test_an_expired_invoices_button_says_so(customer, standin) -> None:
    services, _ = standin
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:0", "c"):
        await customer.press(msg, data)
    (invoice_id,) = [i for i, v in services.invoices.items() if v["user"] == customer.user_id]
    services.invoices[invoice_id]["status"] = "EXPIRED"
    assert await customer.handle(await customer.press(msg, f"r:{invoice_id}", handle=False)) \
        == "shop:invoice_expired"
    answer = (await customer.answers())[-1]
    assert answer["answered"] and answer["show_alert"] and answer["text"] == \
        "This invoice has expired. Create a new one from Buy."
    screen = await customer.screen()
    assert "Status: ⌛ expired" in screen["text"] and "🔄 Check payment" not in buttons(screen)


async def test_stars_are_invoiced_in_the_bot_and_balance_pays_at_once(customer, standin) -> None:
    services, _ = standin
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:1", "c"):
        await customer.press(msg, data)
    (invoice,) = [v for v in services.invoices.values() if v["user"] == customer.user_id]
    (stars,) = [m for m in await customer.messages() if "invoice" in m]
    assert stars["invoice"]["currency"] == "XTR" and stars["invoice"]["total_amount"] == 250
    stored = (await customer.bot.control.get("/_emulator/stars/invoices")).json()["invoices"]
    assert any(i["payload"] == invoice["id"] for i in stored)
    # the balance: short, then paid at once
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:bal", "c"):
        await customer.press(msg, data)
    assert (await customer.answers())[-1]["text"] == TEXTS["en"]["insufficient"]
    services.balance[customer.user_id] = "9.00"
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:bal", "c"):
        await customer.press(msg, data)
    assert "Status: ✅ paid" in (await customer.screen())["text"]


async def test_access_trial_balance_invite(customer, standin) -> None:
    services, _ = standin
    await customer.write("/menu")
    msg = (await customer.screen())["message_id"]
    await customer.press(msg, "a")
    assert (await customer.screen())["text"] == TEXTS["en"]["no_access"]
    await customer.press(msg, "m")
    await customer.press(msg, "t")
    assert (await customer.screen())["text"].startswith("🎁 Your free trial")
    await customer.press(msg, "m")
    await customer.press(msg, "t")
    assert (await customer.answers())[-1]["text"] == TEXTS["en"]["trial_refused"]
    services.subs[customer.user_id] = [{
        "id": "sub1", "plan_id": "trial", "status": "ACTIVE",
        "started_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-04T00:00:00Z",
        "max_devices": 1, "auto_renew": {"enabled": False}}]
    await customer.press(msg, "a")
    screen = await customer.screen()
    assert screen["message_id"] == msg and ACCESS_URL in screen["text"]
    keys = buttons(screen)
    assert keys["📋 Happ"]["copy_text"]["text"] == f"happ://add/{ACCESS_URL}"
    assert keys["📋 v2rayNG"]["copy_text"]["text"].startswith(
        "v2rayng://install-config?url=https%3A%2F%2F")
    calls = (await customer.bot.control.get("/_emulator/calls", params={
        "method": "sendPhoto", "chat_id": customer.tg})).json()["calls"]
    assert calls[-1]["params"]["photo"]["sha256"] == hashlib.sha256(
        qr_png(ACCESS_URL)).hexdigest()
    await customer.press(msg, "m")
    await customer.press(msg, "ref")
    assert "https://t.me/vpn_support_bot?start=ref_abc12" in (await customer.screen())["text"]
    await customer.press(msg, "m")
    await customer.press(msg, "bal")
    assert buttons(await customer.screen())["+$10"]["callback_data"] == "tu:10"


async def test_the_access_message_shows_the_stable_link_with_buttons_to_our_import_page(
        customer, standin) -> None:
    services, _ = standin
    link = "https://vpn.example.com/api/v1/sub/" + "T" * 43
    apps = [{"id": app_id, "name": name, "platforms": ["android"], "import_url": f"{app_id}://x",
             "open_url": f"https://vpn.example.com/import/{app_id}/{'T' * 43}"}
            for app_id, name in (("happ", "Happ"), ("v2rayng", "v2rayNG"),
                                 ("clash-verge", "Clash Verge (Mihomo)"))]
    services.links[customer.user_id] = {"subscription_url": link, "apps": apps}
    services.subs[customer.user_id] = [{
        "id": "sub1", "plan_id": "p1", "status": "ACTIVE",
        "started_at": "2026-12-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z",
        "max_devices": 1, "auto_renew": {"enabled": False}}]
    await customer.write("/access")
    screen = await customer.screen()
    assert screen["text"].startswith("🔑 Your subscription link") and link in screen["text"]
    assert ACCESS_URL not in screen["text"]
    keys = buttons(screen)
    assert keys["📲 Happ"]["url"] == apps[0]["open_url"]  # https: Telegram opens it
    assert keys["📲 v2rayNG"]["url"] == apps[1]["open_url"]
    assert "📲 Clash Verge (Mihomo)" not in keys  # a desktop app: on the web page only
    calls = (await customer.bot.control.get("/_emulator/calls", params={
        "method": "sendPhoto", "chat_id": customer.tg})).json()["calls"]
    assert calls[-1]["params"]["photo"]["sha256"] == hashlib.sha256(qr_png(link)).hexdigest()


async def test_unlinked_stale_and_blocked(customer, db, emulator) -> None:
    stranger = Customer(customer.bot, "nobody", next_id())
    message = await customer.bot.api.call("sendMessage", chat_id=stranger.tg, text="old menu",
                                          reply_markup={"inline_keyboard": [[
                                              {"text": "Buy", "callback_data": "b"}]]})
    assert await stranger.handle(await stranger.press(message["message_id"], "b",
                                                      handle=False)) == "shop:unlinked"
    assert (await stranger.answers())[-1]["show_alert"] is True
    # a button of a purchase no longer open
    await customer.write("/menu")
    msg = (await customer.screen())["message_id"]
    await customer.bot.api.call("editMessageReplyMarkup", chat_id=customer.tg, message_id=msg,
                                reply_markup={"inline_keyboard": [[
                                    {"text": "Create", "callback_data": "c"}]]})
    assert await customer.handle(await customer.press(msg, "c", handle=False)) == \
        "shop:stale_button"
    # blocked: the 403 marks the customer, writing again clears it
    await customer.bot.control.post(f"/_emulator/users/{customer.tg}/block", json={})
    async with db.transaction() as s:
        oid = (await s.execute(sa.insert(Outgoing).values(
            event_id=f"n-{uuid.uuid4().hex}", kind="user_notice", seq=0, chat_id=customer.tg,
            text="hello").returning(Outgoing.id))).scalar_one()
    await customer.deliver([oid])
    async with db.transaction() as s:
        assert (await s.get(Outgoing, oid)).last_error == "Forbidden: bot was blocked by the user"
        assert (await s.get(BotUser, customer.tg)).bot_blocked_at is not None
    await customer.write("/menu")
    async with db.transaction() as s:
        assert (await s.get(BotUser, customer.tg)).bot_blocked_at is None


async def consume(customer: Customer, jobs, event, producer: str = "billing"):
    """The event as the broker hands it to the `telegram.notifications` consumer; the rows it
    queued are delivered as the notify job would."""
    env = make_envelope(event, producer=producer)
    sub = notifications.build_subscription(customer.bot.db, jobs, "https://vpn.example",
                                           customer.bot.updates.shop.api)
    await sub.handlers[event.routing_key()](env, event)
    found = await jobs.notify.queue.getJobs(["waiting", "delayed"])
    await customer.deliver(sorted(int(j.data["outgoing_id"]) for j in found))
    for job in found:
        await job.remove()
    return env


async def test_the_invoice_message_follows_the_payment_and_the_access_message_follows(
        customer, standin, jobs, db) -> None:
    services, _ = standin
    customer.lang = "ru"
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:0", "c"):
        await customer.press(msg, data)
    (invoice_id,) = [i for i, v in services.invoices.items() if v["user"] == customer.user_id]
    plan = PlanSnapshot(plan_id="month", name="Month", duration_days=30, max_devices=3,
                        price_usd="5.00")
    services.invoices[invoice_id]["status"] = "DETECTED"
    await consume(customer, jobs, PaymentDetectedV1(
        invoice_id=invoice_id, payment_id="p1", user_id=customer.user_id, txid="tx",
        amount_asset="4", asset="USDT", network="TRON", detected_at=T0))
    shown = {m["message_id"]: m for m in await customer.messages()}
    assert "Статус: 👀 платёж найден" in shown[msg]["text"]
    services.invoices[invoice_id]["status"] = "PAID"
    paid = InvoicePaidV1(invoice_id=invoice_id, user_id=customer.user_id, plan=plan,
                         amount_usd="5.00", asset="USDT", network="TRON", amount_asset="4",
                         amount_paid_asset="4", paid_at=T0)
    env = await consume(customer, jobs, paid)
    await sub_redeliver(customer, jobs, env, paid)  # told once
    texts = [m["text"] for m in await customer.messages() if "text" in m]
    assert texts.count(f"✅ Счёт {invoice_id} оплачен. Спасибо!") == 1
    shown = {m["message_id"]: m for m in await customer.messages()}
    assert "Статус: ✅ оплачен" in shown[msg]["text"]
    # the subscription is active: the access message and its QR follow, once
    services.subs[customer.user_id] = [{
        "id": "sub9", "plan_id": "month", "status": "ACTIVE",
        "started_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-31T00:00:00Z",
        "max_devices": 3}]
    activated = SubscriptionActivatedV1(subscription_id="sub9", user_id=customer.user_id,
                                        plan_id="month", invoice_id=invoice_id, started_at=T0,
                                        expires_at=T0 + timedelta(days=30), max_devices=3)
    await consume(customer, jobs, activated, "provisioner")
    shown = await customer.messages()
    assert shown[-2]["text"].startswith("🔑 Ваш доступ") and ACCESS_URL in shown[-2]["text"]
    assert shown[-1]["photo"] and shown[-1]["caption"] == "QR-код вашего ключа доступа"
    async with db.transaction() as s:
        assert (await s.get(ShopInvoice, invoice_id)).access_sent is True
    # a customer who blocked the bot is told nothing
    before = len(await customer.messages())
    async with db.transaction() as s:
        await ShopRepository(s).mark_blocked(customer.tg, datetime.now(UTC))
    await consume(customer, jobs, SubscriptionExpiredV1(
        subscription_id="sub9", user_id=customer.user_id, expired_at=T0), "provisioner")
    assert len(await customer.messages()) == before


async def sub_redeliver(customer: Customer, jobs, env, event) -> None:
    sub = notifications.build_subscription(customer.bot.db, jobs, "https://vpn.example",
                                           customer.bot.updates.shop.api)
    await sub.handlers[event.routing_key()](env, event)
    assert await jobs.notify.queue.getJobs(["waiting", "delayed"]) == []


async def test_a_support_reply_in_the_customers_language_and_none_while_blocked(
        customer, db) -> None:
    customer.lang = "ru"
    await customer.write("/menu")
    story = Story(user_id=customer.user_id)
    await customer.bot.tell(story, story.opened(),
                            *story.message("Перезагрузите роутер", author="SUPPORT"))
    texts = [m["text"] for m in await customer.messages() if "text" in m]
    assert "💬 Поддержка ответила на «VPN is slow»:\n\nПерезагрузите роутер" in texts
    async with db.transaction() as s:
        await ShopRepository(s).mark_blocked(customer.tg, datetime.now(UTC))
    events = story.message("Ещё вопрос?", author="SUPPORT")
    await customer.bot.tell(story, *events)
    async with db.transaction() as s:
        replies = (await s.execute(sa.select(sa.func.count()).where(
            Outgoing.chat_id == customer.tg, Outgoing.kind == "user_reply"))).scalar_one()
    assert replies == 1  # the first reply only
    assert not [m for m in await customer.messages() if "Ещё вопрос" in m.get("text", "")]


async def test_the_access_message_follows_a_grant_that_comes_before_the_paid_event(
        customer, standin, jobs, db) -> None:
    """The provisioner's event and billing's travel apart: the grant may be told first."""
    services, _ = standin
    await customer.write("/buy")
    msg = (await customer.screen())["message_id"]
    for data in ("p:month", "o:0", "c"):
        await customer.press(msg, data)
    (invoice_id,) = [i for i, v in services.invoices.items() if v["user"] == customer.user_id]
    services.invoices[invoice_id]["status"] = "PAID"
    services.subs[customer.user_id] = [{
        "id": "sub7", "plan_id": "month", "status": "ACTIVE",
        "started_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-31T00:00:00Z",
        "max_devices": 3}]
    activated = SubscriptionActivatedV1(subscription_id="sub7", user_id=customer.user_id,
                                        plan_id="month", invoice_id=invoice_id, started_at=T0,
                                        expires_at=T0 + timedelta(days=30), max_devices=3)
    await consume(customer, jobs, activated, "provisioner")
    shown = await customer.messages()
    assert shown[-2]["text"].startswith("🔑") and ACCESS_URL in shown[-2]["text"]
    assert shown[-1]["photo"]
    async with db.transaction() as s:
        assert (await s.get(ShopInvoice, invoice_id)).access_sent is True
    # billing's paid event after it edits the status line and sends no second access message
    before = len([m for m in await customer.messages() if m.get("photo")])
    plan = PlanSnapshot(plan_id="month", name="Month", duration_days=30, max_devices=3,
                        price_usd="5.00")
    await consume(customer, jobs, InvoicePaidV1(
        invoice_id=invoice_id, user_id=customer.user_id, plan=plan, amount_usd="5.00",
        asset="USDT", network="TRON", amount_asset="4", amount_paid_asset="4", paid_at=T0))
    assert len([m for m in await customer.messages() if m.get("photo")]) == before
