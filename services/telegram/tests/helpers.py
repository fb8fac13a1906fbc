"""What the telegram service tests share: tickets told as the tickets service tells them (events
with contiguous `seq`), the service's parts wired to the Telegram emulator over one support
chat, and reading what a chat shows there."""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa

from contracts import make_envelope
from contracts.tickets import (
    MessageAddedV1,
    TicketClosedV1,
    TicketMessage,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.db import Database
from telegram.botapi import BotApi
from telegram.config import Settings
from telegram.models import AccountLink, outbox
from telegram.service import Delivery, MirrorService, UpdateService

from .conftest import FORUM_CHATS, make_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
OPERATOR = 1001  # in the default TELEGRAM_OPERATOR_IDS

_forums = iter(FORUM_CHATS)
_groups = itertools.count(-1003000000001, -1)  # supergroups that are not forums
_ids = itertools.count(int(time.time()) * 1000 + 700_000)


def next_id() -> int:
    """A Telegram user, chat, message or update id no other test uses."""
    return next(_ids)


def next_forum() -> int:
    return next(_forums)


def next_group() -> int:
    return next(_groups)


@dataclass
class Story:
    """One ticket's events in the order the tickets service emits them."""

    user_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    subject: str = "VPN is slow"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    status: str = "OPEN"

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def opened(self, body: str = "It buffers all evening", source: str = "WEB"
               ) -> TicketOpenedV1:
        return TicketOpenedV1(
            ticket_id=self.id, user_id=self.user_id, subject=self.subject, source=source,
            status="OPEN", seq=self._next(), opened_at=T0, user_label="ann@example.com",
            message=TicketMessage(message_id=uuid.uuid4().hex, author_role="USER",
                                  origin=source, body=body, created_at=T0))

    def message(self, body: str, author: str = "USER", origin: str = "WEB"
                ) -> list[MessageAddedV1 | TicketStatusChangedV1]:
        after = {("USER", "OPEN"): "OPEN", ("USER", "CLOSED"): "PENDING_SUPPORT",
                 ("USER", "PENDING_USER"): "PENDING_SUPPORT"}.get((author, self.status))
        after = after or (self.status if author == "USER" else "PENDING_USER")
        out: list = [MessageAddedV1(
            ticket_id=self.id, user_id=self.user_id, subject=self.subject,
            message_id=uuid.uuid4().hex, author_role=author, origin=origin, body=body,
            created_at=T0, ticket_status=after, seq=self._next())]
        if after != self.status:
            out.append(self._status(after))
        return out

    def closed(self, by_role: str = "USER") -> list[TicketStatusChangedV1 | TicketClosedV1]:
        return [self._status("CLOSED"), TicketClosedV1(
            ticket_id=self.id, user_id=self.user_id, closed_by_role=by_role, closed_at=T0,
            seq=self._next())]

    def _status(self, to: str) -> TicketStatusChangedV1:
        event = TicketStatusChangedV1(ticket_id=self.id, user_id=self.user_id,
                                      from_status=self.status, to_status=to, changed_at=T0,
                                      seq=self._next())
        self.status = to
        return event


def private_message(tg_user: int, text: str) -> dict:
    return {"message_id": next_id(), "date": 0, "chat": {"id": tg_user, "type": "private"},
            "from": {"id": tg_user, "is_bot": False, "first_name": "Ann", "username": "ann"},
            "text": text}


async def link(db: Database, user_id: str | None = None) -> tuple[str, int]:
    """A user whose Telegram account is linked (their private chat id is their Telegram id)."""
    user_id, tg_user = user_id or uuid.uuid4().hex, next_id()
    async with db.transaction() as s:
        s.add(AccountLink(user_id=user_id, telegram_user_id=tg_user, chat_id=tg_user,
                          telegram_username="ann"))
    return user_id, tg_user


async def published(db: Database, routing_key: str) -> list[dict]:
    """Payloads of the telegram events of this kind in the outbox, oldest first."""
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(outbox.c.envelope)
                                .where(outbox.c.routing_key == routing_key)
                                .order_by(outbox.c.id))).scalars()
        return [r["payload"] for r in rows]


class Bot:
    """The telegram service's parts over one support chat, talking to the emulator."""

    def __init__(self, db: Database, emulator: str, support_chat: int):
        self.db = db
        self.chat_id = support_chat
        self.settings: Settings = make_settings().model_copy(
            update={"support_chat_id": support_chat, "api_base": emulator})
        self.api = BotApi(emulator, self.settings.bot_token)
        self.mirror = MirrorService(self.settings)
        self.delivery = Delivery(db, self.api, self.settings)
        self.updates = UpdateService(self.settings)
        self.control = httpx.AsyncClient(base_url=emulator)

    async def close(self) -> None:
        await self.control.delete("/_emulator/faults")
        await self.control.aclose()
        await self.api.close()

    # ticket events, as the consumer records them, and their delivery by the notify job
    async def record(self, *events) -> list[int]:
        ids: list[int] = []
        for event in events:
            async with self.db.transaction() as s:
                ids += await self.mirror.record_ticket_event(
                    s, make_envelope(event, producer="tickets"), event)
        return ids

    async def tell(self, story: Story, *events) -> int:
        """Record the events and deliver the ticket; how many messages were sent."""
        await self.record(*events)
        return await self.delivery.deliver_ticket(story.id)

    # updates, as the pump hands them over, and the bot's answers
    async def handle(self, message: dict) -> tuple[str, list[int]]:
        async with self.db.transaction() as s:
            return await self.updates.handle(s, next_id(), {"message": message})

    async def answer(self, message: dict) -> tuple[str, list[str]]:
        """Handle the update and send the bot's answers: (outcome, texts the chat got)."""
        chat = message["chat"]["id"]
        before = len(await self.shown(chat))
        outcome, ids = await self.handle(message)
        for oid in ids:
            await self.delivery.deliver_one(oid)
        return outcome, [m["text"] for m in (await self.shown(chat))[before:]]

    def operator_message(self, text: str, *, topic: int | None = None,
                         reply_to: int | None = None, sender: int = OPERATOR) -> dict:
        message = {"message_id": next_id(), "date": 0,
                   "chat": {"id": self.chat_id, "type": "supergroup"},
                   "from": {"id": sender, "is_bot": False, "first_name": "Olga",
                            "last_name": "Ops"}, "text": text}
        if topic is not None:
            message |= {"is_topic_message": True, "message_thread_id": topic}
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to}
        return message

    # what Telegram shows
    async def shown(self, chat_id: int | None = None) -> list[dict]:
        """The bot's text messages in a chat (the support chat by default), oldest first."""
        resp = await self.control.get("/_emulator/messages",
                                      params={"chat_id": chat_id or self.chat_id})
        return [m for m in resp.json()["messages"] if "text" in m and m["from"]["is_bot"]]

    async def topics(self) -> list[dict]:
        resp = await self.control.get("/_emulator/topics", params={"chat_id": self.chat_id})
        return resp.json()["topics"]

    async def fault(self, status: int, description: str | None = None, count: int = 1,
                    methods: tuple[str, ...] = ("sendMessage",)) -> None:
        resp = await self.control.post("/_emulator/faults", json={
            "status": status, "count": count, "methods": list(methods),
            "description": description})
        resp.raise_for_status()
