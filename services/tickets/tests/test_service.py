"""The ticket service against a real database: which ticket a Telegram message lands on, what
of its text is kept, support replies from the chat, and the state machine with its events.

Every test works on users of its own, so tests share the slot's database without seeing each
other's tickets. The Telegram paths are called the way the consumer calls them (one
transaction per event); the last tests deliver envelopes through the consumer itself.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

import pytest

from contracts import make_envelope
from contracts.telegram import SupportReplyReceivedV1, UserMessageReceivedV1
from runtime.errors import IllegalTransition, NotFound
from runtime.identity import Identity
from tickets.consumers import build_subscription
from tickets.models import Ticket
from tickets.repository import TicketRepository
from tickets.service import ticket_service

_message_ids = itertools.count(1)


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def chat_message() -> dict:
    """A chat and message id no other test uses (the pair is the message's external ref)."""
    return {"chat_id": uuid.uuid4().int % 10**9, "message_id": next(_message_ids)}


async def open_web_ticket(db, user_id: str, subject: str = "Cannot connect") -> str:
    async with db.transaction() as s:
        ticket = await ticket_service.open(s, user_id=user_id, subject=subject,
                                           body="The app says timeout")
        return ticket.id


async def user_writes(db, user_id: str, text: str, ticket_id: str | None = None,
                      **where) -> Ticket | None:
    where = where or chat_message()
    async with db.transaction() as s:
        return await ticket_service.message_from_telegram(
            s, user_id=user_id, ticket_id=ticket_id, text=text, **where)


async def operator_replies(db, ticket_id: str, body: str, **where) -> Ticket | None:
    where = where or chat_message()
    async with db.transaction() as s:
        return await ticket_service.reply_from_telegram(s, ticket_id=ticket_id, body=body,
                                                        **where)


async def close(db, ticket_id: str, by_role: str = "USER") -> None:
    async with db.transaction() as s:
        ticket = await TicketRepository(s).get(ticket_id, for_update=True)
        await ticket_service.close(s, ticket, by_role=by_role)


async def thread(pg, ticket_id: str) -> list[tuple[str, str, str]]:
    rows = await pg.fetch("SELECT author_role, origin, body FROM tickets.messages"
                          " WHERE ticket_id = $1 ORDER BY created_at, id", ticket_id)
    return [(r["author_role"], r["origin"], r["body"]) for r in rows]


async def tickets_of(pg, user_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT * FROM tickets.tickets WHERE user_id = $1 ORDER BY created_at",
                          user_id)
    return [dict(r) for r in rows]


async def events_of(pg, ticket_id: str) -> list[tuple[str, dict]]:
    rows = await pg.fetch("SELECT routing_key, envelope FROM tickets.outbox"
                          " WHERE envelope->'payload'->>'ticket_id' = $1 ORDER BY id", ticket_id)
    return [(r["routing_key"], json.loads(r["envelope"])["payload"]) for r in rows]


# --- which ticket a customer's Telegram message lands on ---------------------------------------

async def test_message_lands_on_the_ticket_the_bot_named(db, pg):
    user = new_user()
    older = await open_web_ticket(db, user, "First problem")
    await open_web_ticket(db, user, "Second problem")  # the latest open one
    landed = await user_writes(db, user, "About the first one", ticket_id=older)
    assert landed.id == older
    assert (await thread(pg, older))[-1] == ("USER", "TELEGRAM", "About the first one")


async def test_a_named_closed_ticket_of_the_user_is_reopened(db, pg):
    user = new_user()
    ticket_id = await open_web_ticket(db, user)
    await close(db, ticket_id)
    await user_writes(db, user, "It broke again", ticket_id=ticket_id)
    [ticket] = await tickets_of(pg, user)
    assert ticket["id"] == ticket_id
    assert ticket["status"] == "PENDING_SUPPORT" and ticket["closed_at"] is None


async def test_another_users_ticket_id_falls_back_to_the_users_own_ticket(db, pg):
    victim, user = new_user(), new_user()
    victims_ticket = await open_web_ticket(db, victim)
    own = await open_web_ticket(db, user)
    landed = await user_writes(db, user, "Let me in", ticket_id=victims_ticket)
    assert landed.id == own
    assert [m[2] for m in await thread(pg, victims_ticket)] == ["The app says timeout"]
    assert (await thread(pg, own))[-1][2] == "Let me in"


async def test_another_users_ticket_id_opens_a_new_ticket_when_the_user_has_none(db, pg):
    victim, user = new_user(), new_user()
    victims_ticket = await open_web_ticket(db, victim)
    landed = await user_writes(db, user, "Hello support", ticket_id=victims_ticket)
    assert landed.id != victims_ticket and landed.user_id == user
    assert len(await thread(pg, victims_ticket)) == 1


async def test_without_a_ticket_id_the_latest_open_ticket_gets_the_message(db, pg):
    user = new_user()
    first = await open_web_ticket(db, user, "First problem")
    second = await open_web_ticket(db, user, "Second problem")
    await user_writes(db, user, "Bump the first", ticket_id=first)  # now the latest message
    closed = await open_web_ticket(db, user, "Solved problem")
    await close(db, closed)  # newest of all, but closed: never chosen
    landed = await user_writes(db, user, "Still there?")
    assert landed.id == first
    assert (await thread(pg, first))[-1][2] == "Still there?"
    assert len(await thread(pg, second)) == 1
    assert len(await thread(pg, closed)) == 1


async def test_a_user_without_an_open_ticket_gets_a_new_one_from_the_text(db, pg):
    user = new_user()
    solved = await open_web_ticket(db, user)
    await close(db, solved)
    text = "My VPN\nstopped   working after the update, " + "x" * 100
    landed = await user_writes(db, user, text)
    assert landed.id != solved
    ticket = (await tickets_of(pg, user))[-1]
    assert ticket["id"] == landed.id
    assert ticket["source"] == "TELEGRAM" and ticket["status"] == "OPEN"
    assert ticket["subject"] == " ".join(text.split())[:80]
    assert ticket["subject"].startswith("My VPN stopped working after the update, x")
    assert await thread(pg, landed.id) == [("USER", "TELEGRAM", text)]
    [(key, opened)] = await events_of(pg, landed.id)
    assert key == "tickets.ticket.opened.v1"
    assert opened["source"] == "TELEGRAM" and opened["message"]["body"] == text


@pytest.mark.parametrize("text,subject", [
    ("hi", "Telegram: hi"),  # below the API's 3-character minimum
    ("  ok \n", "Telegram: ok"),
    ("?!?", "?!?"),
])
async def test_a_short_message_still_gets_a_valid_subject(db, pg, text, subject):
    user = new_user()
    landed = await user_writes(db, user, text)
    assert (await tickets_of(pg, user))[0]["subject"] == subject
    assert (await thread(pg, landed.id))[0][2] == text.strip()


async def test_the_same_telegram_message_lands_once(db, pg):
    user = new_user()
    where = chat_message()
    first = await user_writes(db, user, "Hello", **where)
    assert await user_writes(db, user, "Hello", **where) is None
    assert await user_writes(db, user, "Hello", ticket_id=first.id, **where) is None
    assert len(await tickets_of(pg, user)) == 1
    assert len(await thread(pg, first.id)) == 1
    # the same message id in another chat is another message
    await user_writes(db, user, "Hello", chat_id=where["chat_id"] + 1,
                      message_id=where["message_id"])
    assert len(await thread(pg, first.id)) == 2


async def test_text_with_nothing_visible_adds_nothing(db, pg):
    user = new_user()
    assert await user_writes(db, user, "\u200b\u202e \x00\ufeff") is None
    assert await tickets_of(pg, user) == []
    ticket_id = await open_web_ticket(db, user)
    assert await user_writes(db, user, "\u2066\u2069", ticket_id=ticket_id) is None
    assert len(await thread(pg, ticket_id)) == 1


async def test_text_is_cleaned_and_cut_to_4000_characters(db, pg):
    user = new_user()
    ticket_id = await open_web_ticket(db, user)
    await user_writes(db, user, "\u202e" + "a" * 5000 + "\x00", ticket_id=ticket_id)
    assert (await thread(pg, ticket_id))[-1][2] == "a" * 4000


# --- support replies from the support chat -----------------------------------------------------

async def test_a_support_reply_answers_the_ticket(db, pg):
    user = new_user()
    ticket_id = await open_web_ticket(db, user)
    landed = await operator_replies(db, ticket_id, "Try \u200bthe other server")
    assert landed.id == ticket_id
    assert (await thread(pg, ticket_id))[-1] == ("SUPPORT", "TELEGRAM", "Try the other server")
    assert (await tickets_of(pg, user))[0]["status"] == "PENDING_USER"


async def test_a_support_reply_on_a_closed_ticket_is_dropped(db, pg):
    user = new_user()
    ticket_id = await open_web_ticket(db, user)
    await close(db, ticket_id)
    before = await events_of(pg, ticket_id)
    assert await operator_replies(db, ticket_id, "Too late") is None
    [ticket] = await tickets_of(pg, user)
    assert ticket["status"] == "CLOSED" and ticket["closed_at"] is not None
    assert len(await thread(pg, ticket_id)) == 1
    assert await events_of(pg, ticket_id) == before


async def test_a_support_reply_lands_once_and_invisible_replies_are_dropped(db, pg):
    ticket_id = await open_web_ticket(db, new_user())
    where = chat_message()
    assert await operator_replies(db, ticket_id, "On it", **where) is not None
    assert await operator_replies(db, ticket_id, "On it", **where) is None
    assert await operator_replies(db, ticket_id, "\u200d\u200c") is None
    assert [m[2] for m in await thread(pg, ticket_id)] == ["The app says timeout", "On it"]


async def test_a_support_reply_to_an_unknown_ticket_raises(db):
    with pytest.raises(LookupError):
        await operator_replies(db, "no-such-ticket", "Hello")


# --- the state machine through the service -----------------------------------------------------

async def test_a_ticket_through_its_life(db, pg):
    user = new_user()
    ticket_id = await open_web_ticket(db, user)

    async def status() -> str:
        return (await tickets_of(pg, user))[0]["status"]

    async def message(author: str) -> None:
        async with db.transaction() as s:
            ticket = await TicketRepository(s).get(ticket_id, for_update=True)
            await ticket_service.add_message(s, ticket, author=author, origin="WEB", body="text")

    assert await status() == "OPEN"
    await message("USER")
    assert await status() == "OPEN"
    await message("SUPPORT")
    assert await status() == "PENDING_USER"
    await message("SUPPORT")
    assert await status() == "PENDING_USER"
    await message("USER")
    assert await status() == "PENDING_SUPPORT"
    await close(db, ticket_id, by_role="ADMIN")
    assert await status() == "CLOSED"
    with pytest.raises(IllegalTransition):
        await close(db, ticket_id)
    with pytest.raises(IllegalTransition):
        await message("SUPPORT")
    assert await status() == "CLOSED" and len(await thread(pg, ticket_id)) == 5
    await message("USER")  # a customer message reopens it
    [ticket] = await tickets_of(pg, user)
    assert ticket["status"] == "PENDING_SUPPORT" and ticket["closed_at"] is None

    events = await events_of(pg, ticket_id)
    assert [key for key, _ in events] == [
        "tickets.ticket.opened.v1",
        "tickets.message.added.v1",  # USER on OPEN: no status change
        "tickets.message.added.v1", "tickets.ticket.status_changed.v1",  # -> PENDING_USER
        "tickets.message.added.v1",
        "tickets.message.added.v1", "tickets.ticket.status_changed.v1",  # -> PENDING_SUPPORT
        "tickets.ticket.status_changed.v1", "tickets.ticket.closed.v1",
        "tickets.message.added.v1", "tickets.ticket.status_changed.v1",  # reopened
    ]
    assert [p["seq"] for _, p in events] == list(range(1, len(events) + 1))
    assert ticket["seq"] == len(events)
    changes = [(p["from_status"], p["to_status"]) for k, p in events if "status_changed" in k]
    assert changes == [("OPEN", "PENDING_USER"), ("PENDING_USER", "PENDING_SUPPORT"),
                       ("PENDING_SUPPORT", "CLOSED"), ("CLOSED", "PENDING_SUPPORT")]
    assert events[8][1]["closed_by_role"] == "ADMIN"


async def test_another_users_ticket_is_not_found_but_staff_see_it(db):
    owner = new_user()
    ticket_id = await open_web_ticket(db, owner)
    async with db.transaction() as s:
        with pytest.raises(NotFound):
            await ticket_service.get_visible(s, Identity(user_id=new_user(), role="USER"),
                                             ticket_id)
        staff = Identity(user_id=new_user(), role="SUPPORT")
        assert (await ticket_service.get_visible(s, staff, ticket_id, staff_view=True)).id \
            == ticket_id
        assert (await ticket_service.get_visible(
            s, Identity(user_id=owner, role="USER"), ticket_id)).id == ticket_id


# --- the consumer: one inbox claim and one service call per event, in one transaction ----------

async def deliver(db, event, env=None):
    env = env or make_envelope(event, producer="telegram")
    await build_subscription(db).handlers[event.routing_key()](env, event)
    return env


def user_message_event(user_id: str, text: str, ticket_id: str | None = None):
    where = chat_message()
    return UserMessageReceivedV1(
        user_id=user_id, ticket_id=ticket_id, telegram_user_id=7, chat_id=where["chat_id"],
        telegram_message_id=where["message_id"], text=text, update_id=where["message_id"],
        received_at=datetime.now(UTC))


async def test_a_redelivered_event_is_applied_once(db, pg):
    user = new_user()
    event = user_message_event(user, "Hello from the bot")
    env = await deliver(db, event)
    await deliver(db, event, env)
    [ticket] = await tickets_of(pg, user)
    assert len(await thread(pg, ticket["id"])) == 1


async def test_an_event_that_fails_leaves_no_inbox_row(db, pg):
    where = chat_message()
    reply = SupportReplyReceivedV1(
        ticket_id="no-such-ticket", body="Hello", operator_telegram_id=1,
        chat_id=where["chat_id"], telegram_message_id=where["message_id"],
        update_id=where["message_id"], received_at=datetime.now(UTC))
    env = make_envelope(reply, producer="telegram")
    with pytest.raises(LookupError):
        await deliver(db, reply, env)
    # claimed in the same transaction that failed, so a redelivery is processed again
    assert await pg.fetchval("SELECT count(*) FROM tickets.inbox WHERE event_id = $1",
                             env.event_id) == 0
