"""Support-chat mirroring, ordered exactly-once delivery, and incoming update handling.

Ticket events become `outgoing` rows (in the consumer's transaction, deduplicated by event id).
The `notify` job delivers a ticket's pending rows one by one in `seq` order, each in its own
short transaction holding the ticket thread's row lock, so two workers never interleave a
ticket's messages and a crash re-sends at most the one message in flight.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope, events_of
from contracts.telegram import AccountLinkedV1, SupportReplyReceivedV1, UserMessageReceivedV1
from contracts.text import clean_untrusted, has_visible
from contracts.tickets import (
    MessageAddedV1,
    TicketClosedV1,
    TicketOpenedV1,
    TicketStatusChangedV1,
)
from runtime.clock import now
from runtime.db import Database
from runtime.logging import get_logger
from runtime.outbox import Outbox
from telegram import attachments, csat, shop, texts
from telegram.accounts import PAY_PREFIX, REFERRAL_PREFIX, SECRET_KINDS, Accounts
from telegram.botapi import BotApi, TelegramError
from telegram.card import Cards
from telegram.config import Settings
from telegram.desk import (
    DESK_KINDS,
    canned_text,
    record_desk_event,
    topic_command,
    topic_step,
)
from telegram.desk_admin import DeskAdmin
from telegram.models import (
    AccountLink,
    BotUser,
    CustomerFacts,
    LinkToken,
    Outgoing,
    SubscriptionView,
    TicketThread,
    outbox,
)
from telegram.pacing import SendPacer
from telegram.payments import record_payment, record_refund
from telegram.repository import ShopRepository, TelegramRepository
from telegram.support_groups import GroupBusy, PacedGroups, chat_for_ticket, holding

log = get_logger(__name__)

events = Outbox(outbox, producer="telegram", publishes=events_of("telegram"))

SUPPORT_KINDS = {"ticket_opened", "ticket_message", "ticket_closed", "noop",
                 "topic_card"} | DESK_KINDS
LINK_TOKEN_TTL = timedelta(minutes=15)


class NotReady(Exception):
    """The ticket's first event has not arrived yet; the job is retried later."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MAX_TEXT = 4096  # Telegram's limit, in UTF-16 code units of the text after HTML parsing


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _line(text: str) -> str:
    """Customer text shown inside one of the bot's own lines: no line breaks of its own."""
    return " ".join(text.split())


def _fit(text: str, units: int) -> str:
    """`text` cut to at most `units` UTF-16 code units (never half a surrogate pair)."""
    data = text.encode("utf-16-le")
    return text if len(data) <= 2 * units else data[:2 * units].decode("utf-16-le", "ignore")


def quoted(header: str, body: str) -> str:
    """HTML: the bot's `header` (already escaped), then the customer's `body` in a
    blockquote, so nothing the customer writes can pass for one of the bot's own lines."""
    visible = len(html.unescape(re.sub(r"<[^>]*>", "", header)).encode("utf-16-le")) // 2
    return f"{header}<blockquote>{_esc(_fit(body, MAX_TEXT - visible))}</blockquote>"


def opened_text(e: TicketOpenedV1) -> str:
    who = e.user_label or f"user {e.user_id}"
    return quoted(f"🆕 New ticket: <b>{_esc(_line(e.subject))}</b>\nFrom: {_esc(who)} "
                  f"(via {e.source.lower()})\nTicket: {_esc(e.ticket_id)}\n\n", e.message.body)


def message_text(e: MessageAddedV1) -> str:
    if e.author_role == "USER":
        return quoted("💬 Customer:\n", e.body)
    return quoted("👤 Support (web panel):\n", e.body)


def reply_text(e: MessageAddedV1, lang: str = "en") -> str:
    return quoted(texts.t(lang, "support_replied", subject=_line(e.subject)), e.body)


@dataclass
class MirrorService:
    settings: Settings

    async def record_ticket_event(self, s: AsyncSession, env: Envelope, event) -> list[int]:
        """Turn a ticket event into outgoing rows; returns the new row ids."""
        repo = TelegramRepository(s)
        # the ticket's support group: chosen at its first event, kept for life
        chat = await chat_for_ticket(repo, self.settings, event.ticket_id, event.user_id)
        ids: list[int | None] = []
        eid = str(env.event_id)
        desk_row = await record_desk_event(repo, chat, eid, event)  # notes, assignment
        if desk_row is not None:
            return [desk_row]
        if isinstance(event, TicketOpenedV1):
            await repo.ensure_thread(event.ticket_id, event.user_id, chat, event.subject)
            ids.append(await repo.add_outgoing(event_id=eid, ticket_id=event.ticket_id,
                                               chat_id=chat, kind="ticket_opened", seq=event.seq,
                                               text=opened_text(event), parse_mode="HTML"))
            # the customer card, right under the opening message (telegram.card)
            ids.append(await repo.add_outgoing(event_id=eid, ticket_id=event.ticket_id,
                                               chat_id=chat, kind="topic_card", seq=event.seq))
            ids += await attachments.file_rows(repo, eid, event, chat, None)
        elif isinstance(event, MessageAddedV1):
            await repo.ensure_thread(event.ticket_id, event.user_id, chat, None)
            echo = (event.author_role == "SUPPORT" and event.origin == "TELEGRAM"
                    and event.canned is None)  # a canned reply is shown in the topic
            # an operator's own Telegram reply is not echoed: a no-op keeps `seq` contiguous
            ids.append(await repo.add_outgoing(event_id=eid, ticket_id=event.ticket_id,
                                               chat_id=chat, kind="noop" if echo else
                                               "ticket_message", seq=event.seq,
                                               text=None if echo else
                                               canned_text(event) if event.canned else
                                               message_text(event),
                                               parse_mode="HTML"))
            customer = None  # the customer's chat, for a support answer's files
            if event.author_role == "SUPPORT":
                link = await repo.link_for_user(event.user_id)
                # in the customer's language; nothing while they have blocked the bot
                user = await ShopRepository(s).bot_user_by_chat(link.chat_id) if link else None
                if link is not None and (user is None or user.bot_blocked_at is None):
                    lang = texts.language_of(user.language, user.language_code) if user else "en"
                    ids.append(await repo.add_outgoing(
                        event_id=eid, ticket_id=event.ticket_id, chat_id=link.chat_id,
                        kind="user_reply", seq=event.seq, text=reply_text(event, lang),
                        parse_mode="HTML"))
                    customer = link.chat_id
            ids += await attachments.file_rows(repo, eid, event, chat, customer)
        elif isinstance(event, TicketStatusChangedV1):
            await repo.ensure_thread(event.ticket_id, event.user_id, chat, None)
            ids.append(await repo.add_outgoing(event_id=eid, ticket_id=event.ticket_id,
                                               chat_id=chat, kind="noop", seq=event.seq))
        elif isinstance(event, TicketClosedV1):
            await repo.ensure_thread(event.ticket_id, event.user_id, chat, None)
            ids.append(await repo.add_outgoing(event_id=eid, ticket_id=event.ticket_id,
                                               chat_id=chat, kind="ticket_closed", seq=event.seq,
                                               text="✅ Ticket closed."))
            thread = await repo.thread(event.ticket_id)
            ids.append(await csat.ask(repo, event, thread.subject if thread else None))
        return [i for i in ids if i is not None]


class Delivery:
    """Sends outgoing rows through the Bot API: a ticket's rows in its order
    (`deliver_ticket`), and every other row after the earlier rows of its chat, paced
    (`deliver_one`, telegram.pacing); whatever goes into a support group waits for the group's
    slot (telegram.support_groups)."""

    def __init__(self, db: Database, bot: BotApi, settings: Settings,
                 pacer: SendPacer | None = None):
        self.db = db
        self.settings = settings
        self.pacer = pacer or SendPacer(Redis.from_url(settings.redis_url),
                                        per_chat=settings.chat_send_interval,
                                        overall=settings.send_rate, prefix=settings.jobs_prefix)
        self.bot = PacedGroups(bot, self.pacer, settings)
        self.cards = Cards(settings, self.bot)
        self.desk_admin = DeskAdmin(self.cards.api)
        self.files = attachments.TicketFiles(settings)
        self._forum: dict[int, bool] = {}

    async def is_forum(self, chat_id: int) -> bool:
        if chat_id not in self._forum:
            chat = await self.bot.call("getChat", chat_id=chat_id)
            self._forum[chat_id] = bool(chat.get("is_forum"))
        return self._forum[chat_id]

    async def deliver_ticket(self, ticket_id: str) -> int:
        """Deliver every pending row of the ticket in order; returns how many were sent."""
        sent = 0
        with holding(f"ticket:{ticket_id}"):
            while True:
                try:
                    async with self.db.transaction() as s:
                        repo = TelegramRepository(s)
                        thread = await repo.thread(ticket_id, for_update=True)
                        if thread is None:
                            return sent
                        row = await repo.next_pending(ticket_id)
                        if row is None:
                            return sent
                        if row.seq > thread.delivered_seq + 1 or (
                                row.kind in SUPPORT_KINDS and thread.subject is None):
                            raise NotReady(ticket_id)  # an earlier event is still on its way
                        done = await self._apply(repo, thread, row)
                        if done:
                            thread.delivered_seq = max(thread.delivered_seq, row.seq)
                            sent += 1
                except GroupBusy as busy:  # the group's slot: waited outside the transaction
                    await busy.wait_outside()

    async def deliver_one(self, outgoing_id: int) -> None:
        """Deliver the row after every earlier pending row of its chat, whichever job runs
        first: a chat's messages keep their order (the shop's chained calls, notices, bot
        replies), and each new message waits for the chat's and the product's send slot."""
        done: set[int] = set()
        with holding(f"outgoing:{outgoing_id}"):
            while outgoing_id not in done:
                try:
                    async with self.db.transaction() as s:
                        repo = TelegramRepository(s)
                        row = await repo.first_pending_in_chat(outgoing_id)  # locked
                        if row is None:
                            return
                        if row.id in done:  # still pending after its step: the job is retried
                            raise NotReady(f"outgoing {row.id}")
                        method = None if row.kind == "noop" else row.method or "sendMessage"
                        if row.chat_id not in self.bot.chats:  # a group paces in self.bot
                            await self.pacer.before(row.chat_id, method)
                        try:
                            await self._apply(repo, None, row)
                        except TelegramError as exc:
                            if exc.is_retry_after:  # nothing goes into this chat until then
                                await self.pacer.hold(row.chat_id, exc.retry_after or 1)
                            raise
                        done.add(row.id)
                except GroupBusy as busy:  # the group's slot: waited outside the transaction
                    await busy.wait_outside()

    async def _apply(self, repo: TelegramRepository, thread: TicketThread | None,
                     row: Outgoing) -> bool:
        """Do one step for the row. True when the row is finished, False when only progress."""
        try:
            if row.kind == "noop":
                pass
            elif row.kind in attachments.FILE_KINDS:  # a ticket's photo or document
                forum = thread is not None and await self.is_forum(thread.chat_id)
                msg = await self.files.send(self.bot, row, thread, forum)
                row.telegram_message_id = msg["message_id"]
                if row.kind == "ticket_file" and thread is not None:
                    await repo.map_message(thread.chat_id, msg["message_id"], thread.ticket_id)
            elif row.kind in SUPPORT_KINDS:
                assert thread is not None
                if not await self._support_step(repo, thread, row):
                    return False
            elif row.kind == "desk_extend":  # an ADMIN's /extend, carried out once
                text = await self.desk_admin.run_extend(self.db, row)
                msg = await self.bot.send_message(row.chat_id, text, thread_id=row.thread_id)
                row.telegram_message_id = msg["message_id"]
            elif row.method is not None:  # the shop bot's calls
                msg = await shop.perform(self.bot, row)
                row.telegram_message_id = msg.get("message_id") if msg else None
            else:
                msg = await self.bot.send_message(row.chat_id, row.text or "",
                                                  thread_id=row.thread_id,
                                                  parse_mode=row.parse_mode)
                row.telegram_message_id = msg["message_id"]
                if row.kind in SECRET_KINDS:
                    row.text = None  # a sign-in link is not kept once it is delivered
        except TelegramError as exc:
            if exc.is_permanent:
                row.status, row.last_error = "FAILED", exc.description[:500]
                row.attempts += 1
                if exc.status == 403 and shop.BLOCKED in exc.description and row.chat_id:
                    # no more notices until the customer writes again
                    await ShopRepository(repo.session).mark_blocked(row.chat_id, now())
                log.error("telegram_send_failed", outgoing_id=row.id, kind=row.kind,
                          error=exc.description)
                return True
            raise
        row.status, row.sent_at = "SENT", now()
        row.attempts += 1
        return True

    async def _support_step(self, repo: TelegramRepository, thread: TicketThread,
                            row: Outgoing) -> bool:
        chat = thread.chat_id
        forum = await self.is_forum(chat)
        if row.kind == "ticket_opened":
            if forum and thread.message_thread_id is None:
                name = f"#{thread.ticket_id[:6]} {_line(thread.subject)}"[:128]
                topic = await self.bot.call("createForumTopic", chat_id=chat, name=name)
                thread.message_thread_id = int(topic["message_thread_id"])
                return False  # commit the topic before sending into it
            msg = await self.bot.send_message(chat, row.text or "",
                                              thread_id=thread.message_thread_id,
                                              parse_mode=row.parse_mode)
            if not forum:
                thread.root_message_id = msg["message_id"]
        elif row.kind == "ticket_message":
            if thread.closed:
                await self._reopen(thread, forum)
                return False
            msg = await self.bot.send_message(chat, row.text or "",
                                              thread_id=thread.message_thread_id if forum else None,
                                              reply_to=None if forum else thread.root_message_id,
                                              parse_mode=row.parse_mode)
        elif row.kind in DESK_KINDS:  # into the topic as it is: a note never reopens it
            msg = await topic_step(self.bot, thread, row, forum)
        elif row.kind == "topic_card":
            return await self.cards.step(repo.session, thread, forum)
        else:  # ticket_closed
            if thread.closed:
                return True
            if forum and thread.message_thread_id is not None:
                await self._topic_action("closeForumTopic", chat, thread.message_thread_id)
                msg = None
            else:
                msg = await self.bot.send_message(chat, row.text or "",
                                                  reply_to=thread.root_message_id)
            thread.closed = True
        if msg is not None:
            row.telegram_message_id = msg["message_id"]
            await repo.map_message(chat, msg["message_id"], thread.ticket_id)
        return True

    async def _reopen(self, thread: TicketThread, forum: bool) -> None:
        if forum and thread.message_thread_id is not None:
            await self._topic_action("reopenForumTopic", thread.chat_id, thread.message_thread_id)
        thread.closed = False

    async def _topic_action(self, method: str, chat: int, thread_id: int) -> None:
        try:
            await self.bot.call(method, chat_id=chat, message_thread_id=thread_id)
        except TelegramError as exc:
            if "TOPIC_NOT_MODIFIED" not in exc.description:
                raise


START_RE = re.compile(r"^/start(?:@\w+)?\s+([A-Za-z0-9_-]{1,64})\s*$")
# `/start ref_<code>` and `/start pay_<invoice>` (telegram.accounts). Link tokens never start
# with a deep link's prefix (`create_link_token`), so the two never meet.
DEEP_LINK_PREFIXES = (REFERRAL_PREFIX, PAY_PREFIX)

# The private chat's answers are texts.t keys in the customer's language; these are the
# English ones, for the places that need a text before any customer is known.
HELP_TEXT = texts.t("en", "help")
BLOCKED_TEXT = texts.t("en", "blocked")
# Telegram requires a bot that takes payments to answer /paysupport.
PAYSUPPORT_TEXT = texts.t("en", "paysupport")
UNLINKED_TEXT = texts.t("en", "unlinked_chat")


class UpdateService:
    """Handles webhook updates after the webhook has answered."""

    def __init__(self, settings: Settings, shop_bot: shop.Shop | None = None):
        self.settings = settings
        self.shop = shop_bot or shop.Shop(settings)
        self.desk_admin = DeskAdmin(self.shop.api)
        self.accounts = Accounts(settings, events, BLOCKED_TEXT, self.shop.api)
        self.files = attachments.TicketFiles(settings)

    async def handle(self, s: AsyncSession, update_id: int, update: dict) -> tuple[str, list[int]]:
        """Apply one update; returns its outcome and outgoing rows to deliver."""
        if isinstance(update.get("pre_checkout_query"), dict):
            return "pre_checkout", []  # answered by the webhook as it arrived
        if isinstance(update.get("callback_query"), dict):
            return await self.shop.on_callback(s, update_id, update["callback_query"])
        message = update.get("message")
        if not isinstance(message, dict):
            return "ignored:not_a_message", []
        if isinstance(message.get("successful_payment"), dict):
            return await self._stars_payment(s, update_id, message)
        if isinstance(message.get("refunded_payment"), dict):
            return ("stars_refund" if await record_refund(s, update_id, message)
                    else "ignored:bad_refund"), []
        if attachments.file_of(message) is not None:  # a photo or a document, to a ticket
            return await self.files.on_file(s, update_id, message)
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        text = message.get("text")
        if not isinstance(text, str):
            return "ignored:no_text", []
        text = clean_untrusted(text)  # what operators read: no bidi or zero-width characters
        if not has_visible(text):
            return "ignored:no_text", []
        chat_id = chat.get("id")
        if chat_id in self.settings.support_chats:  # any of the support groups
            return await self._support_chat(s, update_id, message, sender, text)
        if chat.get("type") == "private":
            return await self._private_chat(s, update_id, message, sender, text)
        return "ignored:other_chat", []

    async def _stars_payment(self, s: AsyncSession, update_id: int, message: dict
                             ) -> tuple[str, list[int]]:
        if not await record_payment(s, update_id, message, events):
            return "stars_payment_known", []  # a redelivery, or not readable (logged)
        chat_id = (message.get("chat") or {}).get("id")
        if not isinstance(chat_id, int):
            return "stars_payment", []
        user = await s.get(BotUser, chat_id)  # a private chat's id is its user's
        lang = texts.language_of(user.language if user else None,
                                 (message.get("from") or {}).get("language_code"))
        oid = await TelegramRepository(s).add_outgoing(
            event_id=f"update-{update_id}", ticket_id=None, chat_id=chat_id, kind="bot_reply",
            seq=0, text=texts.t(lang, "stars_paid"))
        return "stars_payment", [oid] if oid else []

    async def _support_chat(self, s, update_id, message, sender, text):
        if sender.get("is_bot") or sender.get("id") not in self.settings.operator_ids:
            return "ignored:not_operator", []
        repo = TelegramRepository(s)
        chat_id = message["chat"]["id"]
        ticket_id = None
        if message.get("is_topic_message") and message.get("message_thread_id"):
            thread = await repo.thread_by_topic(chat_id, message["message_thread_id"])
            ticket_id = thread.ticket_id if thread else None
            if thread is not None:  # an ADMIN's /extend or /resend (telegram.desk_admin)
                admin = await self.desk_admin.command(s, update_id=update_id, thread=thread,
                                                      message=message, sender=sender, text=text)
                if admin is not None:
                    return admin
            if thread is not None:  # an operator's command (telegram.desk), closed or not
                command = await topic_command(
                    s, events, ticket_id=thread.ticket_id, thread_id=message["message_thread_id"],
                    chat_id=chat_id, update_id=update_id, message=message, sender=sender,
                    text=text, received_at=now())
                if command is not None:
                    return command
            if thread is not None and thread.closed:
                oid = await repo.add_outgoing(
                    event_id=f"update-{update_id}", ticket_id=None, chat_id=chat_id,
                    thread_id=thread.message_thread_id, kind="closed_notice", seq=0,
                    text="ℹ️ This ticket is closed, so the customer will not see this reply. "
                         "It reopens when the customer writes again.")
                return "ignored:ticket_closed", [oid] if oid else []
        if ticket_id is None and isinstance(message.get("reply_to_message"), dict):
            ticket_id = await repo.ticket_by_message(chat_id,
                                                     message["reply_to_message"]["message_id"])
        if ticket_id is None:
            return "ignored:no_ticket", []
        name = " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")])) or None
        await events.add(s, SupportReplyReceivedV1(
            ticket_id=ticket_id, body=text.strip()[:4000], operator_telegram_id=sender["id"],
            operator_name=name, chat_id=chat_id, telegram_message_id=message["message_id"],
            update_id=update_id, received_at=now(),
        ))
        return "support_reply", []

    async def _private_chat(self, s, update_id, message, sender, text):
        repo = TelegramRepository(s)
        chat_id = message["chat"]["id"]
        tg_user = sender.get("id")
        if not isinstance(tg_user, int):
            return "ignored:no_sender", []
        eid = f"update-{update_id}"
        user = await s.get(BotUser, tg_user)
        lang = texts.language_of(user.language if user else None, sender.get("language_code"))

        def say(key: str, **values) -> str:
            return texts.t(lang, key, **values)

        async def reply(body: str, kind: str = "bot_reply") -> list[int]:
            oid = await repo.add_outgoing(event_id=eid, ticket_id=None, chat_id=chat_id,
                                          kind=kind, seq=0, text=body)
            return [oid] if oid else []

        account = await self.accounts.handle(s, text.strip(), sender, chat_id, reply, update_id)
        if account is not None:
            return account
        match = START_RE.match(text.strip())
        if match:
            return await self._link(s, repo, match.group(1), sender, chat_id, reply, say)
        if text.strip().split("@", 1)[0] == "/paysupport":
            return "paysupport", await reply(say("paysupport"))
        link = await repo.link_for_telegram(tg_user)
        if link is not None and await repo.is_blocked(link.user_id):
            return "blocked", await reply(say("blocked"))  # no ticket; /status says the same
        stripped = text.strip()
        if link is not None:
            bought = await self.shop.on_text(s, update_id, message, stripped, link.user_id)
            if bought is not None:
                return bought
        else:  # the language and "writes again" (not blocked) are known for unlinked users too
            await ShopRepository(s).bot_user(tg_user, chat_id, sender.get("language_code"))
        if stripped.startswith("/help") or stripped == "/start":
            return "help", await reply(say("help") if link
                                       else f"{say('help')}\n\n{say('unlinked_chat')}")
        if link is None:
            return "unlinked", await reply(say("unlinked_chat"))
        if stripped.startswith("/status"):
            return "status", await reply(await self._status_text(s, link.user_id, say))
        if stripped.startswith("/"):
            return "unknown_command", await reply(say("help"))
        await events.add(s, UserMessageReceivedV1(
            user_id=link.user_id, ticket_id=None, telegram_user_id=tg_user, chat_id=chat_id,
            telegram_message_id=message["message_id"], text=stripped[:4000],
            update_id=update_id, received_at=now(), language_code=sender.get("language_code"),
        ))
        return "user_message", await reply(say("message_taken"), "bot_ack")

    async def _status_text(self, s: AsyncSession, user_id: str, say) -> str:
        view = await s.get(SubscriptionView, user_id)
        if view is None:
            return say("status_text_none")
        if view.expires_at is None:
            return say("status_text", status=view.status.lower())
        return say("status_text_until", status=view.status.lower(),
                   until=f"{view.expires_at:%Y-%m-%d}")

    async def _link(self, s, repo, token, sender, chat_id, reply, say):
        row = (await s.execute(
            sa.select(LinkToken).where(LinkToken.token_hash == hash_token(token))
            .with_for_update())).scalar_one_or_none()
        if row is None or row.used_at is not None or row.expires_at < now():
            return "link_refused", await reply(say("link_invalid"))
        if await repo.is_blocked(row.user_id):
            return "blocked", await reply(say("blocked"))
        existing = await repo.link_for_telegram(sender["id"])
        if existing is not None and existing.user_id != row.user_id:
            # A Telegram already linked to another account (typically the one /start made
            # before the customer linked their web account) moves to this one only while that
            # account has nothing on it: no subscription, no trial, no payment.
            if not await self._unused(s, existing.user_id):
                return "link_refused", await reply(say("link_taken"))
            log.info("telegram_link_moved", from_user=existing.user_id, to_user=row.user_id)
            await s.delete(existing)
            await s.flush()
        row.used_at = now()
        current = await repo.link_for_user(row.user_id)
        if current is None:
            s.add(AccountLink(user_id=row.user_id, telegram_user_id=sender["id"],
                              telegram_username=sender.get("username"), chat_id=chat_id))
        else:
            current.telegram_user_id = sender["id"]
            current.telegram_username = sender.get("username")
            current.chat_id = chat_id
        await s.flush()
        await events.add(s, AccountLinkedV1(user_id=row.user_id, telegram_user_id=sender["id"],
                                            telegram_username=sender.get("username"),
                                            linked_at=now()))
        return "linked", await reply(say("linked"))

    @staticmethod
    async def _unused(s: AsyncSession, user_id: str) -> bool:
        """Whether the account has had no subscription, trial or paid invoice, as this service
        learned from provisioning's and billing's events."""
        if await s.get(SubscriptionView, user_id) is not None:
            return False
        facts = await s.get(CustomerFacts, user_id)
        return facts is None or (facts.trial_at is None and facts.paid_at is None)


async def create_link_token(s: AsyncSession, user_id: str, bot_username: str
                            ) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)[:43]
    while token.startswith(DEEP_LINK_PREFIXES):  # `/start ref_…` and `/start pay_…` are not links
        token = secrets.token_urlsafe(32)[:43]
    expires = now() + LINK_TOKEN_TTL
    s.add(LinkToken(token_hash=hash_token(token), user_id=user_id, expires_at=expires))
    await s.flush()
    return f"https://t.me/{bot_username}?start={token}", expires
