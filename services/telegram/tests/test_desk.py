"""The support desk in the support chat, against a real database and the Telegram emulator:
operators' commands in a ticket's topic (published for the tickets service, or answered with
help), and the desk's ticket events in the topic (a note never reaches the customer's chat,
assignment, a canned reply shown to the operator and sent to the customer)."""

from __future__ import annotations

import uuid

import pytest

from contracts.tickets import NoteAddedV1, TicketAssignedV1
from telegram.desk import HELP, parse

from .helpers import T0, Bot, Story, link, next_forum, published


@pytest.fixture
async def forum(db, emulator):
    bot = Bot(db, emulator, next_forum())
    yield bot
    await bot.close()


def note(story: Story, body: str, origin: str = "ADMIN", author: str | None = "ops@x.io"
         ) -> NoteAddedV1:
    story.seq += 1
    return NoteAddedV1(ticket_id=story.id, user_id=story.user_id, message_id=uuid.uuid4().hex,
                       origin=origin, body=body, author_name=author, created_at=T0,
                       seq=story.seq)


def assigned(story: Story, assignee: str | None, name: str | None = None) -> TicketAssignedV1:
    story.seq += 1
    return TicketAssignedV1(ticket_id=story.id, user_id=story.user_id, assignee_id=assignee,
                            assignee_name=name, assigned_at=T0, seq=story.seq)


async def topic_of(forum: Bot) -> int:
    [topic] = await forum.topics()
    return topic["message_thread_id"]


@pytest.mark.parametrize("text,parsed", [
    ("/note  the user is on iOS 17\nsecond line", ("note", "the user is on iOS 17\nsecond line")),
    ("/R@vpn_support_bot reinstall", ("r", "reinstall")),
    ("/close", ("close", "")),
    ("no command", None),
])
def test_commands_are_parsed(text, parsed):
    assert parse(text) == parsed


@pytest.mark.parametrize("command", ["note", "r", "close", "assign", "unassign"])
async def test_a_ticket_command_in_the_topic_is_published_not_sent_to_the_customer(
        db, forum, command):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    text = {"note": "/note checked the panel", "r": "/r reinstall"}.get(command, f"/{command}")
    outcome, _ = await forum.handle(forum.operator_message(text, topic=await topic_of(forum)))
    assert outcome == f"desk:{command}"
    [event] = [e for e in await published(db, "telegram.support_command.received.v1")
               if e["ticket_id"] == story.id]
    assert event["command"] == command and event["operator_telegram_id"] == 1001
    assert event["operator_name"] == "Olga Ops"
    assert event["argument"] == {"note": "checked the panel", "r": "reinstall"}.get(command, "")
    assert not [e for e in await published(db, "telegram.support_reply.received.v1")
                if e["ticket_id"] == story.id]  # never a reply to the customer
    assert await forum.shown(tg_user) == []


async def test_an_unknown_command_or_a_missing_argument_gets_help_in_the_topic(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    topic = await topic_of(forum)
    outcome, texts = await forum.answer(forum.operator_message("/refund 10", topic=topic))
    assert (outcome, texts) == ("desk:help", [HELP])
    assert (await forum.shown())[-1]["message_thread_id"] == topic
    outcome, texts = await forum.answer(forum.operator_message("/note   ", topic=topic))
    assert outcome == "desk:help" and texts == ["ℹ️ Write the note after the command: /note <text>"]


async def test_a_customer_or_a_stranger_cannot_use_commands(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    outcome, _ = await forum.handle(forum.operator_message(
        "/close", topic=await topic_of(forum), sender=424242))
    assert outcome == "ignored:not_operator"


async def test_a_note_shows_in_the_topic_only_and_never_in_the_customers_chat(db, forum):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    sent = await forum.tell(story, note(story, "VIP <customer>, refund ok"),
                            note(story, "typed in the topic", origin="TELEGRAM"))
    assert sent == 2
    web, telegram_note = (await forum.shown())[-2:]
    assert web["text"] == ("📝 Internal note by ops@x.io (web panel, staff only):"
                           "VIP <customer>, refund ok")
    assert telegram_note["text"] == "📝 Note saved (staff only, the customer does not see it)."
    assert web["message_thread_id"] == await topic_of(forum)
    assert await forum.shown(tg_user) == []
    # the ticket goes on in order after the notes
    await forum.tell(story, *story.message("Thanks", author="SUPPORT", origin="ADMIN"))
    assert [m["text"] for m in await forum.shown(tg_user)] == [
        "💬 Support replied to “VPN is slow”:\n\nThanks"]


async def test_a_note_on_a_closed_ticket_does_not_reopen_its_topic(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    await forum.tell(story, *story.closed())
    await forum.tell(story, note(story, "closed as duplicate"))
    [topic] = await forum.topics()
    assert topic["closed"] is True
    assert "closed as duplicate" in (await forum.shown())[-1]["text"]


async def test_assignment_is_told_in_the_topic(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    await forum.tell(story, assigned(story, "tg:1001", "Olga Ops"), assigned(story, None))
    assert [m["text"] for m in (await forum.shown())[-2:]] == ["👤 Assigned to Olga Ops.",
                                                                "👤 Unassigned."]


async def test_a_canned_reply_is_shown_in_the_topic_and_sent_to_the_customer(db, forum):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    [added, *rest] = story.message("Переустановите приложение.", author="SUPPORT",
                                   origin="TELEGRAM")
    added = added.model_copy(update={"canned": "reinstall"})
    await forum.tell(story, added, *rest)
    assert (await forum.shown())[-1]["text"] == (
        "📋 Canned reply “reinstall” sent to the customer:Переустановите приложение.")
    [reply] = await forum.shown(tg_user)
    assert reply["text"].endswith("Переустановите приложение.")


async def test_a_customers_language_goes_with_their_message(db, forum):
    user_id, tg_user = await link(db)
    message = {"message_id": 77, "date": 0, "chat": {"id": tg_user, "type": "private"},
               "from": {"id": tg_user, "is_bot": False, "first_name": "Anna",
                        "language_code": "ru"}, "text": "Не работает"}
    outcome, _ = await forum.handle(message)
    assert outcome == "user_message"
    [event] = [e for e in await published(db, "telegram.user_message.received.v1")
               if e["user_id"] == user_id]
    assert event["language_code"] == "ru"


async def test_the_topic_title_follows_the_tickets_state(db, forum):
    story = Story(subject="Slow\nat night")
    await forum.tell(story, story.opened())
    short = story.id[:6]
    assert [t["name"] for t in await forum.topics()] == [f"#{short} Slow at night"]
    await forum.tell(story, *story.message("Which server?", author="SUPPORT", origin="ADMIN"))
    assert [t["name"] for t in await forum.topics()] == [f"🟡 #{short} Slow at night"]
    await forum.tell(story, *story.message("Frankfurt"))
    assert [t["name"] for t in await forum.topics()] == [f"🔴 #{short} Slow at night"]
    await forum.tell(story, *story.closed())
    [topic] = await forum.topics()
    assert (topic["name"], topic["closed"]) == (f"✅ #{short} Slow at night", True)
