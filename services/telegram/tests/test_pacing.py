"""The product's own messages to a chat (telegram.pacing, Delivery.deliver_one): in the order
they were made whichever job runs first, at most one new message a second per chat, a chat on
hold after Telegram's 429 for its retry_after, and edits and callback answers not held back."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis

from telegram.botapi import BotApi, TelegramError
from telegram.models import Outgoing
from telegram.pacing import SendPacer
from telegram.repository import TelegramRepository
from telegram.service import Delivery

from .conftest import make_settings
from .helpers import next_id


@pytest.fixture
async def pacer():
    settings = make_settings()
    p = SendPacer(Redis.from_url(settings.redis_url), per_chat=0.5, overall=100,
                  prefix=f"pacing-test-{next_id()}")
    yield p
    await p.close()


async def add_rows(db, chat: int, texts: list[str]) -> list[int]:
    ids = []
    async with db.transaction() as s:
        repo = TelegramRepository(s)
        for i, text in enumerate(texts):
            ids.append(await repo.add_outgoing(event_id=f"pace-{chat}-{i}", ticket_id=None,
                                               chat_id=chat, kind="bot_reply", seq=0,
                                               text=text))
    return ids


async def sent_to(emulator: str, chat: int) -> list[dict]:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{emulator}/_emulator/calls", params={"method": "sendMessage",
                                                                "chat_id": chat})
    return r.json()["calls"]


async def test_a_chats_messages_go_in_order_one_per_interval(db, emulator, pacer):
    settings = make_settings().model_copy(update={"api_base": emulator})
    bot = BotApi(emulator, settings.bot_token)
    delivery = Delivery(db, bot, settings, pacer=pacer)
    chat = next_id()
    ids = await add_rows(db, chat, [f"notice {i}" for i in range(5)])
    # the jobs run in any order and at once: the last one first
    await asyncio.gather(*(delivery.deliver_one(i) for i in reversed(ids)))
    calls = await sent_to(emulator, chat)
    assert [c["params"]["text"] for c in calls] == [f"notice {i}" for i in range(5)]
    # each send waits for its slot, 0.5 s after the one before; a send's own trip to the
    # emulator may be slower or faster than the next one's, so a single gap can shrink a little,
    # but never to nothing, and the five take about their four intervals
    gaps = [b["time"] - a["time"] for a, b in zip(calls, calls[1:], strict=False)]
    assert min(gaps) >= 0.25, gaps
    assert calls[-1]["time"] - calls[0]["time"] >= 1.5, gaps  # 2 s of slots, less that jitter
    async with db.transaction() as s:
        rows = [await s.get(Outgoing, i) for i in ids]
    assert {r.status for r in rows} == {"SENT"}
    await bot.close()


async def test_a_429_holds_the_chat_and_the_rest_keep_their_order(db, emulator, pacer):
    settings = make_settings().model_copy(update={"api_base": emulator})
    bot = BotApi(emulator, settings.bot_token)
    delivery = Delivery(db, bot, settings, pacer=pacer)
    chat = next_id()
    ids = await add_rows(db, chat, ["first", "second"])
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{emulator}/_emulator/faults", json={
            "status": 429, "retry_after": 2, "methods": ["sendMessage"], "count": 1})
        assert r.status_code == 200, r.text
    with pytest.raises(TelegramError) as first:
        await delivery.deliver_one(ids[1])  # tries "first" first: Telegram says 429
    assert first.value.retry_after == 2
    with pytest.raises(TelegramError) as held:  # the chat is on hold: Telegram is not asked
        await delivery.deliver_one(ids[1])
    assert held.value.is_retry_after and "paced" in held.value.description
    assert await sent_to(emulator, chat) == []
    await asyncio.sleep(2.1)
    await delivery.deliver_one(ids[1])
    assert [c["params"]["text"] for c in await sent_to(emulator, chat)] == ["first", "second"]
    await bot.close()


async def test_edits_and_answers_are_not_paced(pacer):
    chat = next_id()
    start = time.monotonic()
    for _ in range(3):
        assert await pacer.before(chat, "editMessageText") == 0
        assert await pacer.before(chat, "answerCallbackQuery") == 0
    assert await pacer.before(chat, "sendMessage") == 0
    assert 0.4 < await pacer.before(chat, "sendPhoto") <= 0.5  # the chat's next slot
    assert time.monotonic() - start < 1.0
