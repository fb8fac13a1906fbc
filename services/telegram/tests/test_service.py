"""The telegram service against a real database and the Telegram emulator over HTTP: tickets
mirrored into the support chat (a topic per ticket in a forum, a reply thread in a plain group),
in order and once, operators' answers mapped back to their ticket, and the private chat with
customers (linking, commands, messages that become support requests)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from contracts import make_envelope
from telegram.botapi import TelegramError
from telegram.models import AccountLink, Outgoing, SubscriptionView, TicketThread
from telegram.repository import TelegramRepository
from telegram.service import (
    BLOCKED_TEXT,
    HELP_TEXT,
    UNLINKED_TEXT,
    NotReady,
    create_link_token,
    now,
)
from telegram.texts import t as texts_t

from .helpers import (
    T0,
    Bot,
    Story,
    link,
    next_forum,
    next_group,
    next_id,
    private_message,
    published,
)


@pytest.fixture
async def forum(db, emulator):
    bot = Bot(db, emulator, next_forum())
    yield bot
    await bot.close()


@pytest.fixture
async def group(db, emulator):
    bot = Bot(db, emulator, next_group())
    yield bot
    await bot.close()


async def thread_of(db, ticket_id: str) -> TicketThread:
    async with db.transaction() as s:
        return await s.get(TicketThread, ticket_id)


async def outgoing(db, ids: list[int]) -> list[Outgoing]:
    async with db.transaction() as s:
        return [await s.get(Outgoing, i) for i in ids]


# --- the support chat is a forum: a topic per ticket ---------------------------------------------

async def test_a_new_ticket_gets_a_topic_and_its_messages_go_into_it(db, forum):
    story = Story(subject="VPN\nis slow")
    assert await forum.tell(story, story.opened("It buffers\nall evening"),
                            *story.message("Still slow today")) == 3  # and the card
    [topic] = await forum.topics()
    assert topic["name"] == f"#{story.id[:6]} VPN is slow"
    opened, card, customer = await forum.shown()
    assert card["text"].startswith("🪪 Customer") and card["message_thread_id"] == \
        topic["message_thread_id"]
    assert opened["message_thread_id"] == customer["message_thread_id"] \
        == topic["message_thread_id"]
    assert opened["text"].startswith("🆕 New ticket: VPN is slow\nFrom: ann@example.com (via web)")
    assert opened["text"].endswith("It buffers\nall evening")
    assert customer["text"] == "💬 Customer:\nStill slow today"
    assert (await thread_of(db, story.id)).message_thread_id == topic["message_thread_id"]


async def test_an_operator_writing_in_a_topic_answers_that_tickets_customer(db, forum):
    first, second = Story(subject="First"), Story(subject="Second")
    await forum.tell(first, first.opened())
    await forum.tell(second, second.opened())
    topic = {t["name"].split(" ", 1)[1]: t["message_thread_id"] for t in await forum.topics()}
    outcome, _ = await forum.handle(forum.operator_message("Try  the\u200b other server ",
                                                           topic=topic["Second"]))
    assert outcome == "support_reply"
    reply = (await published(db, "telegram.support_reply.received.v1"))[-1]
    assert reply["ticket_id"] == second.id
    assert reply["body"] == "Try  the other server"  # invisible characters removed, trimmed
    assert reply["operator_name"] == "Olga Ops" and reply["chat_id"] == forum.chat_id


async def test_closing_closes_the_topic_and_a_customer_message_reopens_it(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    await forum.tell(story, *story.closed())
    [topic] = await forum.topics()
    assert topic["closed"] is True
    # an operator writing in the closed topic is told the customer will not see it
    outcome, texts = await forum.answer(forum.operator_message(
        "Anything else?", topic=topic["message_thread_id"]))
    assert outcome == "ignored:ticket_closed"
    assert texts[0].startswith("ℹ️ This ticket is closed")
    assert (await forum.shown())[-1]["message_thread_id"] == topic["message_thread_id"]
    await forum.tell(story, *story.message("It broke again"))
    [topic] = await forum.topics()
    assert topic["closed"] is False
    last = (await forum.shown())[-1]
    assert (last["text"], last["message_thread_id"]) == ("💬 Customer:\nIt broke again",
                                                         topic["message_thread_id"])


async def test_an_operators_own_reply_is_not_echoed_but_reaches_the_linked_customer(db, forum):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id, subject="Refund <please>")
    await forum.tell(story, story.opened())
    before = len(await forum.shown())
    await forum.tell(story, *story.message("Done, <b>refunded</b>", author="SUPPORT",
                                           origin="TELEGRAM"))
    assert len(await forum.shown()) == before  # the operator already sees it in the topic
    [reply] = await forum.shown(tg_user)
    assert reply["text"] == "💬 Support replied to “Refund <please>”:\n\nDone, <b>refunded</b>"


async def test_a_panel_answer_shows_in_the_topic_and_reaches_the_customer(db, forum):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    await forum.tell(story, *story.message("Reinstall the app", author="SUPPORT", origin="ADMIN"))
    assert (await forum.shown())[-1]["text"] == "👤 Support (web panel):\nReinstall the app"
    assert [m["text"] for m in await forum.shown(tg_user)] == [
        "💬 Support replied to “VPN is slow”:\n\nReinstall the app"]


async def test_an_unlinked_customer_gets_nothing_in_private(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    ids = await forum.record(*story.message("Reinstall the app", author="SUPPORT",
                                            origin="ADMIN"))
    assert {r.chat_id for r in await outgoing(db, ids)} == {forum.chat_id}


async def test_events_that_arrive_out_of_order_wait_for_the_earlier_ones(db, forum):
    story = Story()
    opened, (message, _) = story.opened(), story.message("Second thought", author="SUPPORT")
    await forum.record(message)
    with pytest.raises(NotReady):
        await forum.delivery.deliver_ticket(story.id)
    assert await forum.shown() == [] and await forum.topics() == []
    await forum.record(opened)
    assert await forum.delivery.deliver_ticket(story.id) == 3
    assert [m["text"].split("\n")[0] for m in await forum.shown()] == [
        "🆕 New ticket: VPN is slow", "🪪 Customer", "👤 Support (web panel):"]


async def test_an_event_recorded_twice_is_sent_once(db, forum):
    story = Story()
    event = story.opened()
    env = make_envelope(event, producer="tickets")
    for _ in range(2):
        async with db.transaction() as s:
            ids = await forum.mirror.record_ticket_event(s, env, event)
    assert ids == []
    assert await forum.delivery.deliver_ticket(story.id) == 2  # the opening and the card
    assert await forum.delivery.deliver_ticket(story.id) == 0
    assert len(await forum.shown()) == 2 and len(await forum.topics()) == 1


async def test_a_message_telegram_refuses_is_given_up_and_the_ticket_goes_on(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    ids = await forum.record(*story.message("refused"), *story.message("after it"))
    await forum.fault(400, "Bad Request: message is too long")
    assert await forum.delivery.deliver_ticket(story.id) == 2
    refused = (await outgoing(db, ids))[0]
    assert (refused.status, refused.last_error) == ("FAILED", "Bad Request: message is too long")
    assert (await forum.shown())[-1]["text"] == "💬 Customer:\nafter it"


async def test_a_message_that_fails_for_now_is_sent_once_on_the_retry(db, forum):
    story = Story()
    await forum.tell(story, story.opened())
    [oid] = await forum.record(*story.message("hello?"))
    await forum.fault(502)
    with pytest.raises(TelegramError):
        await forum.delivery.deliver_ticket(story.id)
    assert (await outgoing(db, [oid]))[0].status == "PENDING"
    assert await forum.delivery.deliver_ticket(story.id) == 1
    assert [m["text"] for m in await forum.shown()].count("💬 Customer:\nhello?") == 1


# --- the support chat is a plain group: the opening message is the thread root -------------------

async def test_in_a_plain_group_a_ticket_is_a_reply_thread(db, group):
    story = Story()
    await group.tell(story, story.opened(), *story.message("More details"), *story.closed())
    assert await group.topics() == []
    root, card, customer, closed = await group.shown()
    assert root["text"].startswith("🆕 New ticket: VPN is slow")
    assert card["reply_to_message"]["message_id"] == root["message_id"]
    assert customer["reply_to_message"]["message_id"] == root["message_id"]
    assert (closed["text"], closed["reply_to_message"]["message_id"]) == (
        "✅ Ticket closed.", root["message_id"])
    assert (await thread_of(db, story.id)).root_message_id == root["message_id"]


async def test_in_a_plain_group_replying_to_any_message_of_a_ticket_answers_it(db, group):
    other, story = Story(), Story()
    await group.tell(other, other.opened())
    await group.tell(story, story.opened(), *story.message("More details"))
    customer = (await group.shown())[-1]
    outcome, _ = await group.handle(group.operator_message(
        "On it", reply_to=customer["message_id"]))
    assert outcome == "support_reply"
    assert (await published(db, "telegram.support_reply.received.v1"))[-1]["ticket_id"] \
        == story.id


@pytest.mark.parametrize("sender,where,outcome", [
    (4242, "reply", "ignored:not_operator"),  # a group member who is not an operator
    (1001, "nowhere", "ignored:no_ticket"),  # neither in a topic nor a reply to a ticket
    (1001, "unmapped", "ignored:no_ticket"),  # a reply to a message of no ticket
])
async def test_what_is_not_an_answer_to_a_ticket_publishes_nothing(db, group, sender, where,
                                                                    outcome):
    story = Story()
    await group.tell(story, story.opened())
    root = (await group.shown())[-1]["message_id"]
    reply_to = {"reply": root, "nowhere": None, "unmapped": root + 10_000}[where]
    before = await published(db, "telegram.support_reply.received.v1")
    assert (await group.handle(group.operator_message("hi", reply_to=reply_to,
                                                      sender=sender)))[0] == outcome
    assert await published(db, "telegram.support_reply.received.v1") == before


# --- the private chat: linking an account ------------------------------------------------------

async def new_token(db, user_id: str) -> str:
    async with db.transaction() as s:
        url, expires = await create_link_token(s, user_id, "vpn_support_bot")
    assert url.startswith("https://t.me/vpn_support_bot?start=")
    assert timedelta(minutes=14) < expires - now() <= timedelta(minutes=15)
    return url.rsplit("=", 1)[1]


async def link_of(db, user_id: str) -> AccountLink | None:
    async with db.transaction() as s:
        return await s.get(AccountLink, user_id)


async def test_a_link_token_links_the_telegram_account_once(db, forum):
    user_id, tg_user = uuid.uuid4().hex, next_id()
    token = await new_token(db, user_id)
    outcome, texts = await forum.answer(private_message(tg_user, f"/start {token}"))
    assert outcome == "linked"
    assert texts == ["✅ Your Telegram account is now linked. "
                     "Write here any time to reach support."]
    linked = await link_of(db, user_id)
    assert (linked.telegram_user_id, linked.chat_id, linked.telegram_username) == (
        tg_user, tg_user, "ann")
    event = (await published(db, "telegram.account.linked.v1"))[-1]
    assert (event["user_id"], event["telegram_user_id"]) == (user_id, tg_user)
    outcome, texts = await forum.answer(private_message(tg_user, f"/start {token}"))
    assert outcome == "link_refused"
    assert texts == ["This link is invalid or has expired. Create a new one in the web panel."]


async def test_an_expired_or_unknown_token_links_nothing(db, forum, pg):
    user_id, tg_user = uuid.uuid4().hex, next_id()
    token = await new_token(db, user_id)
    await pg.execute("UPDATE telegram.link_tokens SET expires_at = now() - interval '1 second'"
                     " WHERE user_id = $1", user_id)
    for text in (f"/start {token}", "/start not-a-token", f"/start@vpn_support_bot {token}"):
        assert (await forum.answer(private_message(tg_user, text)))[0] == "link_refused", text
    assert await link_of(db, user_id) is None


async def test_a_telegram_account_linked_to_another_account_is_refused(db, forum):
    # refused while the account it is linked to has a subscription (an unused one gives it up:
    # test_accounts)
    linked_user, tg_user = await link(db)
    async with db.transaction() as s:
        s.add(SubscriptionView(user_id=linked_user, status="ACTIVE"))
    other = uuid.uuid4().hex
    outcome, texts = await forum.answer(private_message(tg_user,
                                                        f"/start {await new_token(db, other)}"))
    assert outcome == "link_refused"
    assert texts == [texts_t("en", "link_taken")]
    assert await link_of(db, other) is None


async def test_linking_again_moves_the_account_to_the_new_telegram(db, forum):
    user_id, _ = await link(db)
    new_tg = next_id()
    outcome, _ = await forum.answer(private_message(new_tg,
                                                    f"/start {await new_token(db, user_id)}"))
    assert outcome == "linked"
    linked = await link_of(db, user_id)
    assert (linked.telegram_user_id, linked.chat_id) == (new_tg, new_tg)


async def test_a_blocked_users_token_links_nothing(db, forum):
    user_id, tg_user = uuid.uuid4().hex, next_id()
    token = await new_token(db, user_id)
    async with db.transaction() as s:
        await TelegramRepository(s).record_block(user_id, True, T0)
    assert await forum.answer(private_message(tg_user, f"/start {token}")) == (
        "blocked", [BLOCKED_TEXT])
    assert await link_of(db, user_id) is None


# --- the private chat: commands and support requests -------------------------------------------

async def test_a_linked_customers_message_becomes_a_support_request(db, forum):
    user_id, tg_user = await link(db)
    message = private_message(tg_user, "  My key \u202estopped working  ")
    outcome, texts = await forum.answer(message)
    assert (outcome, texts) == ("user_message", ["✉️ Got it: support will answer here."])
    event = (await published(db, "telegram.user_message.received.v1"))[-1]
    assert (event["user_id"], event["chat_id"], event["telegram_message_id"], event["text"],
            event["ticket_id"]) == (user_id, tg_user, message["message_id"],
                                    "My key stopped working", None)


async def test_an_unlinked_sender_is_told_how_to_link(db, forum):
    tg_user = next_id()
    before = await published(db, "telegram.user_message.received.v1")
    assert await forum.answer(private_message(tg_user, "hello")) == ("unlinked",
                                                                      [UNLINKED_TEXT])
    assert await forum.answer(private_message(tg_user, "/help")) == (
        "help", [f"{HELP_TEXT}\n\n{UNLINKED_TEXT}"])
    assert await published(db, "telegram.user_message.received.v1") == before


async def test_commands_of_a_linked_customer(db, forum):
    user_id, tg_user = await link(db)
    assert await forum.answer(private_message(tg_user, "/start")) == ("help", [HELP_TEXT])
    assert await forum.answer(private_message(tg_user, "/nope")) == ("unknown_command",
                                                                     [HELP_TEXT])
    assert await forum.answer(private_message(tg_user, "/status")) == ("status", [
        "You have no subscription yet. Press /menu to choose a plan."])
    async with db.transaction() as s:
        s.add(SubscriptionView(user_id=user_id, status="ACTIVE",
                               expires_at=T0 + timedelta(days=30)))
    assert await forum.answer(private_message(tg_user, "/status")) == ("status", [
        "Subscription: active until 2026-03-31."])


async def test_a_message_in_a_group_the_bot_does_not_serve_is_ignored(db, forum):
    message = private_message(next_id(), "hello")
    message["chat"] = {"id": -4242, "type": "group"}
    assert await forum.handle(message) == ("ignored:other_chat", [])


async def test_a_reply_arrives_in_the_customers_chat_even_after_they_relinked(db, forum):
    """The customer's private chat is read when the answer is recorded, not when they wrote."""
    user_id, old_tg = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    new_tg = next_id()
    assert (await forum.answer(private_message(
        new_tg, f"/start {await new_token(db, user_id)}")))[0] == "linked"
    await forum.tell(story, *story.message("Here you go", author="SUPPORT", origin="ADMIN"))
    assert await forum.shown(old_tg) == []
    assert [m["text"] for m in await forum.shown(new_tg)][-1].endswith("Here you go")


async def test_a_customer_who_blocked_the_bot_does_not_hold_up_the_ticket(db, forum):
    user_id, tg_user = await link(db)
    story = Story(user_id=user_id)
    await forum.tell(story, story.opened())
    ids = await forum.record(*story.message("Answer", author="SUPPORT", origin="TELEGRAM"))
    await forum.record(*story.message("I see it on the site, thanks"))
    await forum.fault(403, "Forbidden: bot was blocked by the user")
    await forum.delivery.deliver_ticket(story.id)
    [reply] = [r for r in await outgoing(db, ids) if r.kind == "user_reply"]
    assert (reply.status, reply.last_error) == ("FAILED", "Forbidden: bot was blocked by the user")
    assert await forum.shown(tg_user) == []
    assert (await forum.shown())[-1]["text"] == "💬 Customer:\nI see it on the site, thanks"


async def test_a_link_token_never_looks_like_a_deep_link(db, monkeypatch):
    tokens = iter(["ref_" + "a" * 39, "pay_" + "b" * 39, "c" * 43])
    monkeypatch.setattr("telegram.service.secrets.token_urlsafe", lambda n: next(tokens))
    assert (await new_token(db, uuid.uuid4().hex)) == "c" * 43
