"""Busy support groups (telegram.support_groups): a group's new messages are spaced by its
interval whichever ticket sends them, each ticket keeps its order, a 429 holds the whole group,
a long wait leaves the transaction as a paced 429; past the backlog setting a new ticket goes to
the least busy group and stays there, and operators work from every group."""

from __future__ import annotations

import asyncio
import time

import pytest

from telegram import support_groups
from telegram.botapi import TelegramError
from telegram.models import Outgoing, TicketThread
from telegram.repository import TelegramRepository
from telegram.service import Delivery, MirrorService, UpdateService
from telegram.support_groups import GROUP_WRITES

from .helpers import Bot, Story, next_forum, published


class Groups(Bot):
    """The service's parts over several support groups, with their pacing settings."""

    def __init__(self, db, emulator: str, chats: list[int], interval: float = 0.0,
                 spread: int = 20):
        super().__init__(db, emulator, chats[0])
        self.settings = self.settings.model_copy(update={
            "support_chat_ids": chats, "support_send_interval": interval,
            "support_spread_backlog": spread})
        self.mirror = MirrorService(self.settings)
        self.delivery = Delivery(db, self.api, self.settings)
        self.updates = UpdateService(self.settings)

    async def writes(self, chat: int) -> list[dict]:
        """The calls that put something into the group, in the order Telegram took them."""
        r = await self.control.get("/_emulator/calls", params={"chat_id": chat})
        return [c for c in r.json()["calls"] if c["method"] in GROUP_WRITES]

    async def thread(self, story: Story) -> TicketThread:
        async with self.db.transaction() as s:
            thread = await TelegramRepository(s).thread(story.id)
        assert thread is not None
        return thread


def in_topic(calls: list[dict], topic: int) -> list[str]:
    """The texts sent into a topic, in order."""
    return [c["params"]["text"] for c in calls if c["method"] == "sendMessage"
            and c["params"].get("message_thread_id") == topic]


async def all_sent(db, story: Story) -> bool:
    async with db.transaction() as s:
        rows = (await s.execute(Outgoing.__table__.select()
                                .where(Outgoing.ticket_id == story.id))).all()
    return bool(rows) and {r.status for r in rows} == {"SENT"}


async def test_a_groups_messages_are_spaced_and_each_ticket_keeps_its_order(db, emulator):
    chat = next_forum()
    bot = Groups(db, emulator, [chat], interval=0.3)
    stories = [Story(subject=f"spaced {i}") for i in range(3)]
    for i, story in enumerate(stories):
        await bot.record(story.opened(body=f"open {i}"), *story.message(f"more {i}"))
    # three tickets' jobs at once: the group's slots are shared, each ticket goes in its order
    await asyncio.gather(*(bot.delivery.deliver_ticket(s.id) for s in stories))
    calls = await bot.writes(chat)
    assert len(calls) == 3 * 5  # topic, opening message, card, pin, the customer's message
    # each call takes a slot 0.3 s after the one before; the emulator notes when a call
    # arrived, which a busy machine delays by a little, so a single gap may look shorter
    gaps = [b["time"] - a["time"] for a, b in zip(calls, calls[1:], strict=False)]
    assert min(gaps) >= 0.15, gaps
    assert calls[-1]["time"] - calls[0]["time"] >= 0.3 * len(gaps) - 0.05, gaps
    for i, story in enumerate(stories):
        texts = in_topic(calls, (await bot.thread(story)).message_thread_id)
        assert len(texts) == 3
        assert f"open {i}" in texts[0] and texts[1].startswith("🪪") and f"more {i}" in texts[2]
        assert await all_sent(db, story)
    await bot.close()


async def test_a_429_holds_the_whole_group(db, emulator):
    chat = next_forum()
    bot = Groups(db, emulator, [chat])
    first, second = Story(), Story()
    await bot.record(first.opened(body="first"))
    await bot.record(second.opened(body="second"))
    await bot.fault(429, methods=("createForumTopic",))  # Telegram: retry after 1 s
    refused = time.time()
    with pytest.raises(TelegramError) as exc:
        await bot.delivery.deliver_ticket(first.id)
    assert exc.value.retry_after == 1
    # the other ticket waits for the group's hold (outside its transaction), then goes
    await bot.delivery.deliver_ticket(second.id)
    calls = await bot.writes(chat)
    assert calls and calls[0]["time"] >= refused + 0.9
    await bot.delivery.deliver_ticket(first.id)
    assert await all_sent(db, first) and await all_sent(db, second)
    texts = in_topic(await bot.writes(chat), (await bot.thread(first)).message_thread_id)
    assert "first" in texts[0] and texts[1].startswith("🪪")
    await bot.close()


async def test_a_long_wait_comes_back_as_a_paced_429_and_keeps_its_slot(db, emulator,
                                                                         monkeypatch):
    monkeypatch.setattr(support_groups, "MAX_INLINE_WAIT", 0.4)  # 5 s in production
    chat = next_forum()
    bot = Groups(db, emulator, [chat], interval=0.8)
    story = Story()
    await bot.record(story.opened(body="slow"))
    started = time.monotonic()
    with pytest.raises(TelegramError) as exc:  # the topic went; the message's slot is 0.8 s on
        await bot.delivery.deliver_ticket(story.id)
    assert exc.value.is_retry_after and exc.value.description.startswith("paced")
    assert time.monotonic() - started < 0.6  # not slept in the job, nor in a transaction
    async with db.transaction() as s:  # no lock left behind
        await s.execute(TicketThread.__table__.select().where(
            TicketThread.ticket_id == story.id).with_for_update(nowait=True))
    await asyncio.sleep(0.5)
    with pytest.raises(TelegramError):  # the message in the slot it was given; the card's next
        await bot.delivery.deliver_ticket(story.id)
    calls = await bot.writes(chat)
    assert [c["method"] for c in calls] == ["createForumTopic", "sendMessage"]
    assert 0.75 <= calls[1]["time"] - calls[0]["time"] < 1.2
    while not await all_sent(db, story):  # as the notify job does: again after retry_after
        try:
            await bot.delivery.deliver_ticket(story.id)
        except TelegramError as again:
            assert again.description.startswith("paced")
            await asyncio.sleep(again.retry_after)
    assert [c["method"] for c in await bot.writes(chat)] == [
        "createForumTopic", "sendMessage", "sendMessage", "pinChatMessage"]
    await bot.close()


async def test_past_the_backlog_a_new_ticket_goes_to_the_least_busy_group(db, emulator):
    first, second = next_forum(), next_forum()
    bot = Groups(db, emulator, [first, second], spread=2)
    one, two, three = Story(), Story(), Story()
    await bot.record(one.opened())  # the first group: nothing pending
    await bot.record(two.opened())  # 2 pending there: not past the setting
    await bot.record(three.opened())  # 4 pending: past it, so the other group
    await bot.record(*one.message("still in the first group"))  # a ticket keeps its group
    assert [(await bot.thread(s)).chat_id for s in (one, two, three)] == [first, first, second]
    for story in (one, two, three):
        await bot.delivery.deliver_ticket(story.id)
    in_second = " ".join(c["params"].get("text", "") for c in await bot.writes(second))
    assert three.id in in_second and one.id not in in_second and two.id not in in_second
    texts = in_topic(await bot.writes(first), (await bot.thread(one)).message_thread_id)
    assert one.id in texts[0] and "still in the first group" in texts[-1]

    # operators answer and use commands from the second group as from the first
    topic = (await bot.thread(three)).message_thread_id
    reply = bot.operator_message("Hello from the second group", topic=topic)
    reply["chat"]["id"] = second
    assert (await bot.handle(reply))[0] == "support_reply"
    [event] = [e for e in await published(db, "telegram.support_reply.received.v1")
               if e["ticket_id"] == three.id]
    assert event["chat_id"] == second and event["body"] == "Hello from the second group"
    note = bot.operator_message("/note checked the logs", topic=topic)
    note["chat"]["id"] = second
    assert (await bot.handle(note))[0] == "desk:note"
    stranger = bot.operator_message("not a support group", topic=topic)
    stranger["chat"]["id"] = next_forum()
    assert (await bot.handle(stranger))[0] == "ignored:other_chat"
    await bot.close()


async def test_a_burst_of_new_tickets_handled_at_once_still_spreads(db, emulator):
    first, second = next_forum(), next_forum()
    bot = Groups(db, emulator, [first, second], spread=2)
    stories = [Story() for _ in range(6)]
    await asyncio.gather(*(bot.record(s.opened()) for s in stories))  # consumers at once
    chats = [(await bot.thread(s)).chat_id for s in stories]
    # one choice at a time: the first two in the first group, then the least busy each time
    assert sorted(chats.count(c) for c in (first, second)) == [3, 3], chats
    await bot.close()
