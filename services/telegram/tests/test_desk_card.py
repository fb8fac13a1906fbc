"""The support desk's customer card, ADMIN commands and CSAT buttons, against a real database,
the real notify queue in Redis and the Telegram emulator over HTTP. Billing, the provisioner and
the tickets service are one stand-in HTTP server that checks the signed identity the bot sends
(the real services meet in the e2e test).

- the card: posted under the opening message and pinned, once (a redelivered row, a restart
  between posting and pinning); edited in place when what it shows changes; a burst of events
  makes one job; "message is not modified" is success;
- `/extend <days>`: an ADMIN operator's, once per update (a redelivered update, a re-run job),
  through the provisioner's admin extension as that ADMIN; others are refused;
- `/resend`: the customer gets their access message in the bot;
- CSAT: a closed ticket's customer is asked once; a press rates once, the second is "already
  rated".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from contracts.tickets import TicketClosedV1
from runtime import identity
from runtime.testing import serve_in_thread
from telegram import card as card_module
from telegram.botapi import TelegramError
from telegram.card import touch
from telegram.desk_admin import REFUSED
from telegram.models import (
    AccountLink,
    CustomerView,
    DeskAction,
    Outgoing,
    TicketCard,
    TicketThread,
)
from telegram.service import Delivery, UpdateService

from .helpers import T0, Bot, Story, link, next_forum, next_id

PLAN = {"id": "month", "name": "Month", "description": "30 days", "price_usd": "5.00",
        "duration_days": 30, "max_devices": 3}


@dataclass
class StandIn:
    """Billing's, the provisioner's and the tickets service's internal API as the bot uses
    them."""

    key: str
    invoices: dict[str, list[dict]] = field(default_factory=dict)
    subs: dict[str, list[dict]] = field(default_factory=dict)
    tickets: dict[str, list[dict]] = field(default_factory=dict)
    extends: list[dict] = field(default_factory=list)
    ratings: dict[str, int] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        def who(request: Request, audience: str, role: str = "USER") -> str:
            ident = identity.verify(self.key, request.headers.get(identity.HEADER),
                                    audience=audience)
            assert ident.role == role
            return ident.user_id

        @app.get("/internal/plans")
        async def plans(request: Request):
            who(request, "billing")
            return {"plans": [PLAN]}

        @app.get("/internal/invoices")
        async def invoices(request: Request, limit: int = 20):
            return {"invoices": self.invoices.get(who(request, "billing"), [])[:limit],
                    "next_cursor": None}

        @app.get("/internal/subscriptions")
        async def subscriptions(request: Request):
            return {"subscriptions": self.subs.get(who(request, "provisioner"), [])}

        @app.get("/internal/subscriptions/{sub_id}/usage")
        async def usage(sub_id: str, request: Request):
            who(request, "provisioner")
            return {"used_bytes": 3 * 1024 ** 3, "limit_bytes": 50 * 1024 ** 3,
                    "resets_at": "2026-04-01T00:00:00+00:00",
                    "devices": {"limit": 3, "used": None}, "limited": False,
                    "fetched_at": datetime.now(UTC).isoformat()}

        @app.get("/internal/subscriptions/{sub_id}/access")
        async def access(sub_id: str, request: Request):
            who(request, "provisioner")
            return {"backend": "sandbox", "access_url": "https://vpn.example.com/sub/xyz",
                    "config": {}, "fetched_at": datetime.now(UTC).isoformat()}

        @app.post("/internal/admin/subscriptions/{sub_id}/extend")
        async def extend(sub_id: str, request: Request):
            admin = who(request, "provisioner", "ADMIN")
            days = (await request.json())["days"]
            self.extends.append({"sub": sub_id, "admin": admin, "days": days})
            for subs in self.subs.values():
                for sub in subs:
                    if sub["id"] == sub_id:
                        until = datetime.fromisoformat(sub["expires_at"]) + timedelta(days=days)
                        sub["expires_at"] = until.isoformat()
                        return {"subscription": sub}
            return JSONResponse({"code": "NOT_FOUND", "message": "no subscription"}, 404)

        @app.get("/internal/tickets")
        async def tickets(request: Request):
            return {"tickets": self.tickets.get(who(request, "tickets"), []),
                    "next_cursor": None}

        @app.post("/internal/tickets/{ticket_id}/rating", status_code=201)
        async def rating(ticket_id: str, request: Request):
            who(request, "tickets")
            if ticket_id in self.ratings:
                return JSONResponse({"code": "CONFLICT", "message": "already rated",
                                     "details": {"reason": "already_rated"}}, 409)
            self.ratings[ticket_id] = (await request.json())["score"]
            return {"ticket": {"id": ticket_id}}

        return app


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[StandIn, str]]:
    from .conftest import make_settings
    services = StandIn(make_settings().internal_signing_key)
    with serve_in_thread(services.app()) as url:
        yield services, url


@pytest.fixture
async def desk(db, emulator, standin):
    services, url = standin
    services.extends.clear()
    bot = Bot(db, emulator, next_forum())
    operator_admin, operator_user = next_id(), next_id()
    bot.settings = bot.settings.model_copy(update={
        "billing_url": url, "provisioner_url": url, "tickets_url": url,
        "operator_ids": [*bot.settings.operator_ids, operator_admin, operator_user],
        "app_base_url": "https://vpn.example.com"})
    bot.updates = UpdateService(bot.settings)
    bot.delivery = Delivery(db, bot.api, bot.settings)
    user_id, tg = await link(db)
    async with db.transaction() as s:
        s.add(CustomerView(user_id=user_id, email="ann@example.com", role="USER",
                           registered_at=T0))
        for op, role in ((operator_admin, "ADMIN"), (operator_user, "SUPPORT")):
            staff = uuid.uuid4().hex
            s.add(AccountLink(user_id=staff, telegram_user_id=op, chat_id=op))
            s.add(CustomerView(user_id=staff, email=f"{role.lower()}@x.io", role=role,
                               registered_at=T0))
    services.subs[user_id] = [{"id": "sub-" + user_id[:8], "plan_id": "month",
                               "status": "ACTIVE", "started_at": "2026-02-01T00:00:00+00:00",
                               "expires_at": "2026-03-31T00:00:00+00:00", "max_devices": 3}]
    services.invoices[user_id] = [
        {"id": f"inv{i}", "status": "PENDING", "amount_usd": "5.00",
         "created_at": f"2026-02-0{i}T10:00:00+00:00"} for i in (4, 3, 2, 1)]
    services.tickets[user_id] = [{"id": "x", "status": "OPEN"}]
    yield Desk(bot, services, user_id, tg, operator_admin, operator_user)
    await bot.updates.shop.api.close()
    await bot.delivery.cards.api.close()
    await bot.close()


@dataclass
class Desk:
    bot: Bot
    services: StandIn
    user_id: str
    tg: int
    admin: int
    support: int

    async def open(self) -> Story:
        story = Story(user_id=self.user_id)
        await self.bot.tell(story, story.opened())
        return story

    async def card(self, story: Story) -> TicketCard:
        async with self.bot.db.transaction() as s:
            return await s.get(TicketCard, story.id)

    async def topic(self) -> int:
        [topic] = await self.bot.topics()
        return topic["message_thread_id"]

    async def pins(self) -> list[int]:
        r = await self.bot.control.get("/_emulator/pins", params={"chat_id": self.bot.chat_id})
        return r.json()["pinned"]

    async def command(self, text: str, sender: int, update_id: int | None = None
                      ) -> tuple[str, list[int]]:
        message = self.bot.operator_message(text, topic=await self.topic(), sender=sender)
        async with self.bot.db.transaction() as s:
            return await self.bot.updates.handle(s, update_id or next_id(), {"message": message})

    async def deliver(self, ids: list[int]) -> None:
        for oid in ids:
            await self.bot.delivery.deliver_one(oid)

    async def customer_messages(self) -> list[dict]:
        r = await self.bot.control.get("/_emulator/messages", params={"chat_id": self.tg})
        return [m for m in r.json()["messages"] if m["from"]["is_bot"]]


# ---------------------------------------------------------------- the customer card

async def test_the_card_is_posted_under_the_opening_message_and_pinned_once(desk):
    story = await desk.open()
    opening, card_msg = await desk.bot.shown()
    assert opening["text"].startswith("🆕 New ticket")
    text = card_msg["text"]
    for part in ("ann@example.com · since 2026-03-01", "Telegram @ann", "Month · ACTIVE · "
                 "until 2026-03-31 · 3 devices", "Traffic 3.0 GB of 50.0 GB · resets 2026-04-01",
                 "2026-02-04 $5.00 PENDING", "Open tickets: 1"):
        assert part in text
    assert text.count("$5.00") == 3  # the last 3 invoices
    link_entity = [e for e in card_msg["entities"] if e["type"] == "text_link"]
    assert link_entity[0]["url"] == f"https://vpn.example.com/admin/users?q={desk.user_id}"
    assert card_msg["message_thread_id"] == await desk.topic()
    assert await desk.pins() == [card_msg["message_id"]]
    row = await desk.card(story)
    assert (row.message_id, row.pinned, row.due_at) == (card_msg["message_id"], True, None)

    assert await desk.bot.delivery.deliver_ticket(story.id) == 0
    async with desk.bot.db.transaction() as s:  # the row once more: done, nothing posted
        thread = await s.get(TicketThread, story.id)
        assert await desk.bot.delivery.cards.step(s, thread, True) is True
    assert len(await desk.bot.shown()) == 2 and await desk.pins() == [card_msg["message_id"]]


async def test_a_restart_between_posting_and_pinning_pins_the_card_it_posted(desk, db):
    story = Story(user_id=desk.user_id)
    await desk.bot.record(story.opened())
    await desk.bot.fault(500, methods=("pinChatMessage",))  # the worker dies here
    with pytest.raises(TelegramError):
        await desk.bot.delivery.deliver_ticket(story.id)
    posted = (await desk.card(story)).message_id
    assert posted is not None and await desk.pins() == []
    restarted = Delivery(db, desk.bot.api, desk.bot.settings)  # a new process: nothing cached
    try:
        assert await restarted.deliver_ticket(story.id) == 1
    finally:
        await restarted.cards.api.close()
    assert [m["message_id"] for m in await desk.bot.shown()][-1] == posted  # not posted again
    assert await desk.pins() == [posted]


async def test_events_make_the_card_due_once_and_it_is_edited_in_place(desk, db, jobs):
    story = await desk.open()
    before = await desk.card(story)
    for _ in range(3):  # a burst: invoice paid, subscription extended, ... in one second
        async with db.transaction() as s:
            dues = await touch(s, desk.user_id, 5.0)
        await jobs.enqueue_cards(dues)
    counts = await jobs.notify.counts()
    assert counts["delayed"] + counts["waiting"] == 1  # one job for the burst
    desk.services.invoices[desk.user_id][0]["status"] = "PAID"
    edited, again = await desk.bot.delivery.cards.refresh(db, story.id)
    assert (edited, again) == (True, None)
    card_msg = [m for m in await desk.bot.shown() if m["message_id"] == before.message_id][0]
    assert "2026-02-04 $5.00 PAID" in card_msg["text"] and card_msg.get("edit_date")
    assert len(await desk.bot.shown()) == 2  # edited, never re-posted
    after = await desk.card(story)
    assert (after.edits, after.due_at, after.message_id) == (1, None, before.message_id)
    assert await desk.bot.delivery.cards.refresh(db, story.id) == (False, None)  # not due


async def test_an_event_while_the_card_is_read_makes_it_due_again(desk, db, monkeypatch):
    story = await desk.open()
    async with db.transaction() as s:
        await touch(s, desk.user_id, 0)
    cards = desk.bot.delivery.cards
    render = cards.render

    async def render_then_event(s, user_id):
        out = await render(s, user_id)
        async with db.transaction() as other:
            await touch(other, desk.user_id, 0)
        return out

    monkeypatch.setattr(cards, "render", render_then_event)
    _, again = await cards.refresh(db, story.id)
    assert again is not None  # the caller queues it again


async def test_message_is_not_modified_is_success(desk, db):
    story = await desk.open()
    async with db.transaction() as s:
        row = await s.get(TicketCard, story.id)
        row.text, row.due_at = "what this service last thought it showed", T0
    # Telegram still shows the rendered card: the edit answers "message is not modified"
    edited, again = await desk.bot.delivery.cards.refresh(db, story.id)
    assert (edited, again) == (True, None)
    row = await desk.card(story)
    assert row.text.startswith("🪪") and row.due_at is None


async def test_a_service_that_cannot_be_read_shows_a_dash_and_the_card_is_due_again(desk, db):
    story = await desk.open()
    async with db.transaction() as s:
        await touch(s, desk.user_id, 0)
    cards = desk.bot.delivery.cards
    away = card_module.ShopApi("http://127.0.0.1:9", "http://127.0.0.1:9", "k", 1.0,
                               "http://127.0.0.1:9")
    cards.api, kept = away, cards.api
    try:
        edited, again = await cards.refresh(db, story.id)
    finally:
        cards.api = kept
        await away.close()
    assert edited and again is not None
    text = [m for m in await desk.bot.shown()][-1]["text"]
    assert "Subscription: —" in text and "Invoices: —" in text


async def test_cards_of_closed_topics_are_left_alone(desk, db):
    story = await desk.open()
    async with db.transaction() as s:
        (await s.get(TicketThread, story.id)).closed = True
        assert await touch(s, desk.user_id, 0) == []


# ---------------------------------------------------------------- /extend and /resend

async def test_extend_by_an_admin_runs_once_per_update(desk, db):
    await desk.open()
    update_id = next_id()
    outcome, ids = await desk.command("/extend 7", desk.admin, update_id)
    assert outcome == "desk:extend"
    again, more = await desk.command("/extend 7", desk.admin, update_id)  # redelivered
    assert (again, more) == ("desk:extend_known", [])
    await desk.deliver(ids)
    await desk.deliver(ids)  # a job run twice
    async with db.transaction() as s:
        row = await s.get(Outgoing, ids[0])
        row.status = "PENDING"  # and once more, as if the job had not finished
    await desk.deliver(ids)
    assert len(desk.services.extends) == 1
    [call] = desk.services.extends
    async with db.transaction() as s:
        action = await s.get(DeskAction, update_id)
        staff = (await s.execute(sa.select(AccountLink.user_id).where(
            AccountLink.telegram_user_id == desk.admin))).scalar_one()
    assert call == {"sub": "sub-" + desk.user_id[:8], "admin": staff, "days": 7}
    assert (action.status, action.actor_id, action.operator_telegram_id,
            action.operator_name) == ("DONE", staff, desk.admin, "Olga Ops")
    answers = [m["text"] for m in await desk.bot.shown() if m["text"].startswith("✅ Extended")]
    assert answers[0] == "✅ Extended by 7 days: now until 2026-04-07."


async def test_an_interrupted_extend_is_never_repeated(desk, db):
    await desk.open()
    update_id = next_id()
    _, ids = await desk.command("/extend 3", desk.admin, update_id)
    async with db.transaction() as s:
        (await s.get(DeskAction, update_id)).status = "RUNNING"  # the worker died mid-call
    await desk.deliver(ids)
    assert desk.services.extends == []
    assert (await desk.bot.shown())[-1]["text"].startswith("⚠️ /extend was interrupted")


@pytest.mark.parametrize("who", ["support", "unlinked"])
async def test_extend_and_resend_are_refused_to_operators_who_are_not_admins(desk, who):
    await desk.open()
    sender = desk.support if who == "support" else 1001  # 1001: an operator with no account
    for text in ("/extend 7", "/resend"):
        outcome, ids = await desk.command(text, sender)
        assert outcome == "desk:admin_refused"
        await desk.deliver(ids)
        assert (await desk.bot.shown())[-1]["text"] == REFUSED
    assert desk.services.extends == [] and await desk.customer_messages() == []


async def test_extend_needs_a_number_of_days(desk):
    await desk.open()
    for text in ("/extend", "/extend soon", "/extend 0", "/extend 99999"):
        outcome, ids = await desk.command(text, desk.admin)
        assert outcome == "desk:help"
        await desk.deliver(ids)
    assert desk.services.extends == []


async def test_resend_sends_the_customer_their_access(desk, db):
    await desk.open()
    outcome, ids = await desk.command("/resend", desk.admin)
    assert outcome == "desk:resend"
    await desk.deliver(ids)
    shown = await desk.customer_messages()
    assert "https://vpn.example.com/sub/xyz" in shown[0]["text"] and "photo" in shown[1]
    assert (await desk.bot.shown())[-1]["text"] == "✅ Access link sent to the customer in the bot."


# ---------------------------------------------------------------- CSAT in the bot

async def test_a_closed_ticket_asks_once_and_a_press_rates_once(desk, db):
    story = await desk.open()
    await desk.bot.tell(story, *story.closed())
    [question] = await desk.customer_messages()
    assert question["text"].startswith("⭐ How did we do with “VPN is slow”?")
    keys = [b["callback_data"] for b in question["reply_markup"]["inline_keyboard"][0]]
    assert keys == [f"cs:{story.id}:{n}" for n in range(1, 6)]
    # reopened and closed again: not asked again
    await desk.bot.tell(story, *story.message("still slow"), *story.closed())
    assert len([m for m in await desk.customer_messages() if "reply_markup" in m]) == 1

    async def press(score: int) -> dict:
        r = await desk.bot.control.post("/_emulator/press", json={
            "chat_id": desk.tg, "message_id": question["message_id"], "from_id": desk.tg,
            "data": f"cs:{story.id}:{score}"})
        assert r.status_code in (200, 409), r.text  # 409: no webhook here to deliver it to
        return r.json()["update"]

    async def handle(update: dict) -> str:
        async with db.transaction() as s:
            outcome, ids = await desk.bot.updates.handle(s, next_id(), update)
        await desk.deliver(ids)
        return outcome

    first, second = await press(4), await press(5)  # a double tap
    assert await handle(first) == "shop:csat_rated"
    assert desk.services.ratings[story.id] == 4
    edited = [m for m in await desk.customer_messages()
              if m["message_id"] == question["message_id"]][0]
    assert edited["text"] == "🙏 Thank you for rating our support: ⭐⭐⭐⭐"
    assert "reply_markup" not in edited
    assert await handle(second) == "shop:csat_already_rated"
    assert desk.services.ratings[story.id] == 4


async def test_the_question_is_in_the_customers_language(desk, db):
    async with db.transaction() as s:
        from telegram.repository import ShopRepository
        user = await ShopRepository(s).bot_user(desk.tg, desk.tg, "ru")
        user.language = "ru"
    story = await desk.open()
    await desk.bot.record(TicketClosedV1(ticket_id=story.id, user_id=desk.user_id,
                                         closed_by_role="SUPPORT", closed_at=T0, seq=2))
    await desk.bot.delivery.deliver_ticket(story.id)
    [question] = await desk.customer_messages()
    assert question["text"].startswith("⭐ Как мы справились")
