"""Telegram's send limits for the product's own messages to customers (notices, the shop's
messages, bot replies): about one message a second per chat and a share of the bot's 30 a
second overall (adapters.md, "Flood limits").

One Redis script reserves a send slot atomically on two keys: the chat's (`per_chat`
seconds apart) and the product's (`1 / overall` seconds apart, shared by every worker
replica; broadcasts pace themselves on their own share, telegram.broadcasts). A 429 puts the
chat on hold for its `retry_after`, so no other job sends into it meanwhile. Only calls that
make a new message are paced: edits and callback answers change what the customer already
sees and answer a press, and Telegram does not count them as new messages.

The order of a chat's messages is kept by `Delivery.deliver_one` (the earliest pending row of
the chat goes first); the pacer only says when. The support groups use the same script with
their own interval and slots reserved ahead (telegram.support_groups).
"""

from __future__ import annotations

import asyncio
import math
import time

from redis.asyncio import Redis

from telegram.botapi import TelegramError

NEW_MESSAGE_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendInvoice",
                                 "copyMessage", "forwardMessage"})
# A wait longer than this is not slept in the job: it comes back as a 429 the job delays on.
MAX_INLINE_WAIT = 5.0

# Reserves the chat's next slot (ARGV[1] µs after the one before) and the product's (ARGV[2]
# µs after the one before), unless the chat is on hold or its slot is more than ARGV[3] µs
# away: then nothing is reserved. Returns {reserved (1/0), µs to the slot or the hold's end}.
# The product's slot is counted when reserved (a rate, not a timeline): a support group's slot
# minutes ahead does not hold back every other chat until then.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return {0, hold - now} end
local all = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), now)
local at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), all)
if at - now > tonumber(ARGV[3]) then return {0, at - now} end
redis.call('SET', KEYS[1], at + tonumber(ARGV[1]), 'PX',
           math.floor((at - now + tonumber(ARGV[1])) / 1000) + 60000)
redis.call('SET', KEYS[3], all + tonumber(ARGV[2]), 'PX', 60000)
return {1, at - now}
"""


class SendPacer:
    def __init__(self, redis: Redis, *, per_chat: float = 1.0, overall: float = 10.0,
                 prefix: str = "bull"):
        self.redis = redis
        self.per_chat_us = int(per_chat * 1_000_000)
        self.overall_us = int(1_000_000 / overall)
        self.prefix = prefix
        self._script = redis.register_script(RESERVE)

    def _keys(self, chat_id: int) -> list[str]:
        return [f"{self.prefix}:pace:chat:{chat_id}", f"{self.prefix}:pace:hold:{chat_id}",
                f"{self.prefix}:pace:all"]

    async def reserve(self, chat_id: int, interval: float, max_wait: float
                      ) -> tuple[bool, float]:
        """Reserve the chat's next slot, `interval` seconds after its previous one, when it is
        at most `max_wait` away: (reserved, seconds to the slot or to the hold's end)."""
        done, wait = await self._script(keys=self._keys(chat_id),
                                        args=[int(interval * 1_000_000), self.overall_us,
                                              int(max_wait * 1_000_000)])
        return bool(done), int(wait) / 1_000_000

    async def held(self, chat_id: int) -> float:
        """Seconds the chat is still on hold after a 429 (0: not held)."""
        until = int(await self.redis.get(self._keys(chat_id)[1]) or 0)
        return max(0.0, until / 1_000_000 - time.time())

    async def before(self, chat_id: int | None, method: str) -> float:
        """Wait for the chat's next send slot (seconds waited); a chat on hold, or a wait
        past MAX_INLINE_WAIT (nothing reserved then), raises a 429 TelegramError with the
        seconds left."""
        if chat_id is None or method not in NEW_MESSAGE_METHODS:
            return 0.0
        done, wait = await self.reserve(chat_id, self.per_chat_us / 1_000_000, MAX_INLINE_WAIT)
        if not done:
            raise TelegramError(429, f"paced: chat {chat_id} waits {wait:.1f} s",
                                retry_after=max(1, math.ceil(wait)))
        if wait:
            await asyncio.sleep(wait)
        return wait

    async def hold(self, chat_id: int | None, seconds: float) -> None:
        """Telegram answered 429 for this chat: nothing goes into it for `seconds`."""
        if chat_id is None:
            return
        until = int((time.time() + seconds) * 1_000_000)
        await self.redis.set(self._keys(chat_id)[1], until, px=int(seconds * 1000) + 1000)

    async def close(self) -> None:
        await self.redis.aclose()
