"""The support groups: which group a new ticket goes to, and the pace of a group's messages.

Telegram takes about 20 messages a minute into one group (adapters.md, "Flood limits"). Every
call that puts something new into a support group (a message, a photo, a topic created, closed,
reopened or renamed, a pin: each shows in the group) waits for the group's slot,
`TELEGRAM_SUPPORT_SEND_INTERVAL` seconds after the one before (3 s: 20 a minute), through the
same Redis script as the product's other chats (telegram.pacing). A 429 from Telegram holds the
group for its `retry_after`. Nothing is dropped: a row only waits.

A wait never holds a database transaction: a step whose slot is not now is given one ahead
(kept in Redis for the ticket, or for the job of a row outside tickets) and comes back without
sending (`GroupBusy`); the delivery loop sleeps a short wait outside its transaction, and a
longer one returns as a "paced" 429, so the job is delayed and takes its slot when it comes.
Each ticket's rows still go one at a time in its order (Delivery.deliver_ticket).

Several groups (`TELEGRAM_SUPPORT_CHAT_IDS`): a new ticket goes to the first group unless that
group's backlog (its pending rows) is past `TELEGRAM_SUPPORT_SPREAD_BACKLOG`, then to the least
backlogged group; a ticket stays in its group for life (`ticket_threads.chat_id`). New tickets
choose one at a time (a transaction advisory lock), so a burst spreads as it arrives.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from telegram.botapi import BotApi, TelegramError
from telegram.config import Settings
from telegram.models import Outgoing
from telegram.pacing import MAX_INLINE_WAIT, NEW_MESSAGE_METHODS, SendPacer
from telegram.repository import TelegramRepository

# Calls that put something new into a group (a topic's service messages included).
GROUP_WRITES = NEW_MESSAGE_METHODS | {"createForumTopic", "editForumTopic", "closeForumTopic",
                                      "reopenForumTopic", "pinChatMessage"}
# Slept inside the step's transaction at most; a longer wait leaves the transaction first.
STEP_WAIT = 0.25
# A slot reserved ahead that its job reaches later than this is given up (a new one is taken).
LATE = 2.0

# Whose slots a send takes: the ticket being delivered, or the job of a row outside tickets.
_holder: contextvars.ContextVar[str | None] = contextvars.ContextVar("support_slot_holder",
                                                                     default=None)


@contextmanager
def holding(holder: str) -> Iterator[None]:
    token = _holder.set(holder)
    try:
        yield
    finally:
        _holder.reset(token)


class GroupBusy(Exception):
    """The group's slot is not now: leave the transaction, wait, and do the step again."""

    def __init__(self, chat_id: int, wait: float):
        super().__init__(f"support group {chat_id} waits {wait:.1f} s")
        self.chat_id = chat_id
        self.wait = wait

    async def wait_outside(self) -> None:
        """Sleep a short wait; a longer one is a "paced" 429, so the job is delayed."""
        if self.wait > MAX_INLINE_WAIT:
            raise TelegramError(429, f"paced: {self}",
                                retry_after=max(1, math.floor(self.wait) - 2))
        await asyncio.sleep(self.wait)


async def chat_for_ticket(repo: TelegramRepository, settings: Settings, ticket_id: str,
                          user_id: str) -> int:
    """The ticket's group: its thread's, or for a new ticket the group chosen now (kept)."""
    thread = await repo.thread(ticket_id)
    if thread is not None:
        return thread.chat_id
    chats = settings.support_chats
    chat = chats[0]
    if len(chats) > 1:
        # one new ticket's choice at a time, each seeing the rows of the one before (a burst
        # of tickets handled at once would otherwise all see the same backlogs)
        await repo.session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtext("telegram:support-spread"))))
        backlog = await backlogs(repo, chats)
        if backlog[chat] > settings.support_spread_backlog:
            chat = min(chats, key=lambda c: backlog[c])  # the first of the least busy
    await repo.ensure_thread(ticket_id, user_id, chat, None)
    thread = await repo.thread(ticket_id)  # another event of the ticket may have come first
    assert thread is not None
    return thread.chat_id


async def backlogs(repo: TelegramRepository, chats: list[int]) -> dict[int, int]:
    """Pending rows per group (a row that sends nothing not counted)."""
    rows = await repo.session.execute(
        sa.select(Outgoing.chat_id, sa.func.count())
        .where(Outgoing.status == "PENDING", Outgoing.chat_id.in_(chats),
               Outgoing.kind != "noop")
        .group_by(Outgoing.chat_id))
    counts = {int(chat): int(n) for chat, n in rows.all()}
    return {chat: counts.get(chat, 0) for chat in chats}


class PacedGroups:
    """The Bot API client with the support groups' pacing in front of their writes; every
    other call goes straight through."""

    def __init__(self, bot: BotApi, pacer: SendPacer, settings: Settings):
        self.bot = bot
        self.pacer = pacer
        self.chats = frozenset(settings.support_chats)
        self.interval = settings.support_send_interval
        self.prefix = settings.jobs_prefix

    send_message = BotApi.send_message  # through `call` below

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bot, name)

    async def call(self, method: str, **params: Any) -> Any:
        return await self._paced(method, params.get("chat_id"), self.bot.call(method, **params))

    async def upload(self, method: str, files: dict[str, tuple[str, bytes, str]],
                     **params: Any) -> Any:
        return await self._paced(method, params.get("chat_id"),
                                 self.bot.upload(method, files, **params))

    async def _paced(self, method: str, chat: Any, request) -> Any:
        if chat not in self.chats or method not in GROUP_WRITES:
            return await request
        try:
            await self.slot(chat)
        except BaseException:
            request.close()  # never awaited: nothing was sent
            raise
        try:
            return await request
        except TelegramError as exc:
            if exc.is_retry_after:  # nothing goes into the group until then
                await self.pacer.hold(chat, exc.retry_after or 1)
            raise

    async def slot(self, chat: int) -> None:
        """Take the group's slot for this send: the one reserved ahead for this holder when it
        is due, or the next one when it is now; otherwise raise GroupBusy (a slot ahead kept
        for the holder, unless the group is on hold)."""
        holder = _holder.get()
        key = f"{self.prefix}:pace:slot:{chat}:{holder}" if holder else None
        mine = await self.pacer.redis.get(key) if key else None
        if mine is not None:
            held = await self.pacer.held(chat)
            wait = int(mine) / 1_000_000 - time.time()
            if held:  # a 429 came after it was reserved: a new slot after the hold
                await self.pacer.redis.delete(key)
                raise GroupBusy(chat, held)
            if wait > STEP_WAIT:
                raise GroupBusy(chat, wait)
            await self.pacer.redis.delete(key)
            if wait > -LATE:
                await asyncio.sleep(max(0.0, wait))
                return
        done, wait = await self.pacer.reserve(chat, self.interval, 24 * 3600)
        if not done:
            raise GroupBusy(chat, wait)  # on hold
        if wait <= STEP_WAIT:
            await asyncio.sleep(wait)
            return
        if key is not None:
            at = int((time.time() + wait) * 1_000_000)
            await self.pacer.redis.set(key, at, px=int(wait * 1000) + 120_000)
        raise GroupBusy(chat, wait)
