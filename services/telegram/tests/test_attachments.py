"""Photos and documents both ways, against the Telegram emulator and the real tickets service
(its own database of this TEST_SLOT): a customer's photo in the bot lands on their ticket and
reaches the ticket's topic as a photo; an operator's document in the topic lands on the ticket
and reaches the customer's chat as a document (not echoed into the topic); files outside the
rules get a clear reply and nothing is stored. The tickets service's events are carried to
the telegram service by hand, as the consumer would."""

from __future__ import annotations

import hashlib
import json

import asyncpg
import httpx
import pytest

from contracts import Envelope, parse_payload
from runtime import identity
from runtime.testing import recreate_and_migrate, serving, unit_database_url
from tickets.app import create_api as create_tickets_api
from tickets.config import Settings as TicketsSettings

from .helpers import OPERATOR, Bot, link, next_forum, next_id

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(300)
PDF = b"%PDF-1.7\n" + b"%%EOF\n" * 20


@pytest.fixture(scope="module")
def tickets_db() -> str:
    return recreate_and_migrate("tickets", unit_database_url("tickets").rsplit("/", 1)[1])


@pytest.fixture
async def desk(db, emulator, tickets_db):
    """The bot over a forum support chat, its tickets service real and served here."""
    tickets = create_tickets_api(TicketsSettings(DATABASE_URL=tickets_db))
    async with serving(tickets) as tickets_url:
        bot = Bot(db, emulator, next_forum())
        bot.settings = bot.settings.model_copy(update={"tickets_url": tickets_url})
        from telegram.service import Delivery, UpdateService

        bot.delivery = Delivery(db, bot.api, bot.settings)
        bot.updates = UpdateService(bot.settings)
        bot.tickets_url = tickets_url
        bot.tickets_pg = await asyncpg.connect(tickets_db)
        yield bot
        await bot.tickets_pg.close()
        await bot.delivery.files.close()
        await bot.updates.files.close()
        await bot.close()
        await tickets.state.db.dispose()


async def carry(bot: Bot, ticket_id: str, after: int = 0) -> int:
    """Record the tickets service's events of the ticket (outbox ids past `after`) in the
    telegram service and deliver the ticket; the last outbox id."""
    rows = await bot.tickets_pg.fetch(
        "SELECT id, envelope FROM tickets.outbox WHERE envelope->'payload'->>'ticket_id' = $1"
        " AND id > $2 ORDER BY id", ticket_id, after)
    for r in rows:
        env = Envelope.model_validate(json.loads(r["envelope"]))
        await bot.record(parse_payload(env))
    await bot.delivery.deliver_ticket(ticket_id)
    return rows[-1]["id"] if rows else after


async def user_file(bot: Bot, kind: str, name: str, data: bytes, mime: str) -> dict:
    r = await bot.control.post("/_emulator/files", data={"kind": kind, "mime_type": mime},
                               files={"file": (name, data, mime)})
    r.raise_for_status()
    return r.json()


async def chat_messages(bot: Bot, chat_id: int) -> list[dict]:
    r = await bot.control.get("/_emulator/messages", params={"chat_id": chat_id})
    return r.json()["messages"]


def private(tg_user: int, **content) -> dict:
    return {"message_id": next_id(), "date": 0, "chat": {"id": tg_user, "type": "private"},
            "from": {"id": tg_user, "is_bot": False, "first_name": "Ann",
                     "language_code": "en"}, **content}


async def test_a_customers_photo_from_the_bot_reaches_the_topic_as_a_photo(desk):
    user_id, tg_user = await link(desk.db)
    photo = (await user_file(desk, "photo", "shot.jpg", PNG, "image/jpeg"))["photo"]
    outcome, ids = await desk.handle(private(tg_user, photo=photo, caption="The app says this"))
    assert outcome == "user_file"
    for oid in ids:
        await desk.delivery.deliver_one(oid)
    assert (await chat_messages(desk, tg_user))[-1]["text"] == \
        "📎 Got it: support will see your file."

    ticket = await desk.tickets_pg.fetchrow(
        "SELECT id, subject FROM tickets.tickets WHERE user_id = $1", user_id)
    assert ticket["subject"] == "The app says this"
    await carry(desk, ticket["id"])

    topic_msgs = await chat_messages(desk, desk.chat_id)
    photos = [m for m in topic_msgs if "photo" in m]
    assert len(photos) == 1
    assert photos[0]["photo"][0]["file_unique_id"] == hashlib.sha256(PNG).hexdigest()[:16]
    assert photos[0]["message_thread_id"] == (await desk.topics())[0]["message_thread_id"]
    opened = next(m for m in topic_msgs if "New ticket" in m.get("text", ""))
    assert opened["message_id"] < photos[0]["message_id"]  # in the ticket's order


async def test_an_operators_document_in_the_topic_reaches_the_customer(desk):
    user_id, tg_user = await link(desk.db)
    who = {identity.HEADER: identity.sign(desk.settings.internal_signing_key, user_id, "USER",
                                          audience="tickets")}
    async with httpx.AsyncClient(base_url=desk.tickets_url) as c:
        r = await c.post("/internal/tickets", headers=who,
                         json={"subject": "How to set up", "body": "On Windows"})
        ticket_id = r.json()["ticket"]["id"]
    last = await carry(desk, ticket_id)
    topic = (await desk.topics())[0]["message_thread_id"]

    doc = (await user_file(desk, "document", "guide.pdf", PDF, "application/pdf"))["document"]
    message = desk.operator_message("", topic=topic)
    del message["text"]
    message |= {"document": doc, "caption": "Follow these steps"}
    outcome, _ = await desk.handle(message)
    assert outcome == "support_file"
    before = len(await chat_messages(desk, desk.chat_id))
    await carry(desk, ticket_id, last)

    got = await chat_messages(desk, tg_user)
    assert "Follow these steps" in got[-2]["text"]  # the answer's text, then its file
    assert got[-1]["document"]["file_name"] == "guide.pdf"
    assert got[-1]["document"]["file_unique_id"] == hashlib.sha256(PDF).hexdigest()[:16]
    # the operator's own file is not echoed into the topic
    assert not any("document" in m for m in (await chat_messages(desk, desk.chat_id))[before:])
    staff = await desk.tickets_pg.fetch(
        "SELECT m.author_role, m.author_name, a.name FROM tickets.attachments a"
        " JOIN tickets.messages m ON m.id = a.message_id WHERE a.ticket_id = $1", ticket_id)
    assert [tuple(r) for r in staff] == [("SUPPORT", "Olga Ops", "guide.pdf")]


@pytest.mark.parametrize(("name", "mime", "size", "outcome", "says"), [
    ("anim.gif", "image/gif", None, "file_refused:file_type", "PNG or JPEG pictures and PDF"),
    ("big.pdf", "application/pdf", 6 * 1024 * 1024, "file_refused:file_size", "larger than 5 MB"),
])
async def test_files_outside_the_rules_get_a_clear_reply_and_nothing_is_stored(
        desk, name, mime, size, outcome, says):
    user_id, tg_user = await link(desk.db)
    doc = (await user_file(desk, "document", name, PDF, mime))["document"]
    if size is not None:
        doc["file_size"] = size  # as Telegram describes it: nothing is downloaded
    result, ids = await desk.handle(private(tg_user, document=doc))
    assert result == outcome
    for oid in ids:
        await desk.delivery.deliver_one(oid)
    assert says in (await chat_messages(desk, tg_user))[-1]["text"]
    assert await desk.tickets_pg.fetchval(
        "SELECT count(*) FROM tickets.tickets WHERE user_id = $1", user_id) == 0


async def test_bytes_that_are_not_what_telegram_said_are_refused_by_the_tickets_service(desk):
    user_id, tg_user = await link(desk.db)
    doc = (await user_file(desk, "document", "fake.pdf", b"<html>not a pdf</html>",
                           "application/pdf"))["document"]
    result, _ = await desk.handle(private(tg_user, document=doc))
    assert result == "file_refused:tickets"
    assert await desk.tickets_pg.fetchval(
        "SELECT count(*) FROM tickets.tickets WHERE user_id = $1", user_id) == 0


async def test_an_unlinked_customer_and_a_stranger_in_the_support_chat_store_nothing(desk):
    stranger = next_id()
    photo = (await user_file(desk, "photo", "p.jpg", PNG, "image/jpeg"))["photo"]
    result, _ = await desk.handle(private(stranger, photo=photo))
    assert result == "unlinked"
    message = desk.operator_message("", topic=1, sender=OPERATOR + 999)
    del message["text"]
    result, _ = await desk.handle(message | {"photo": photo})
    assert result == "ignored:not_operator"
