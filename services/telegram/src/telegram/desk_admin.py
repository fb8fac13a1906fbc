"""The support desk's ADMIN-only commands in a ticket's topic: `/extend <days>` and `/resend`.

An operator (`TELEGRAM_OPERATOR_IDS`) may use them when their Telegram is linked to a web
account whose role is ADMIN (`account_links`, and the role from identity's events in
`customer_view`); anyone else is refused in the topic. Each command is recorded once per update
in `desk_actions` with the operator's Telegram id and name and their ADMIN account: the desk's
own audit of these commands.

`/extend` goes through the provisioner's admin extension (`POST /admin/subscriptions/{id}/extend`
as the operator's ADMIN account, which the provisioner records as the grant's actor) on the
customer's newest subscription. It runs in the notify job, not in the update's transaction (an
update batch can be rolled back and run again), and at most once: RUNNING is committed before
the call, so a call cut short is told as "may have been applied" and never repeated.
`/resend` sends the customer their access (the bot's access message, fetched live) in their
language, from the update itself (a rerun batch makes its rows again, not more of them).
"""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.clock import now
from runtime.db import Database
from telegram.desk import parse
from telegram.models import CustomerView, DeskAction, Outgoing, TicketThread
from telegram.repository import ShopRepository, TelegramRepository
from telegram.shop import Calls, access_message
from telegram.shopapi import ShopApi, ShopApiError
from telegram.texts import language_of

ADMIN_COMMANDS = {"extend", "resend"}
DAYS_RE = re.compile(r"^\d{1,4}$")
MAX_DAYS = 3650
# A transport error after which the provisioner may have applied the call.
NOT_SENT = {"ConnectError", "ConnectTimeout", "PoolTimeout"}

REFUSED = ("⛔ /extend and /resend are for ADMINs: link your Telegram to your ADMIN account "
           "(web panel → Settings → Link Telegram).")
DAYS_HELP = f"ℹ️ Give the days to add: /extend <days> (1–{MAX_DAYS})."


def cut_short(exc: ShopApiError) -> bool:
    """The call went out and no answer came back (a timeout, a dropped connection)."""
    return (exc.status == 503 and exc.message not in NOT_SENT
            and isinstance(getattr(httpx, exc.message, None), type))


class DeskAdmin:
    def __init__(self, api: ShopApi):
        self.api = api

    async def admin_of(self, s: AsyncSession, telegram_id: int) -> str | None:
        """The active ADMIN account the operator's Telegram is linked to, if any."""
        repo = TelegramRepository(s)
        link = await repo.link_for_telegram(telegram_id)
        if link is None or await repo.is_blocked(link.user_id):
            return None
        view = await s.get(CustomerView, link.user_id)
        return link.user_id if view is not None and view.role == "ADMIN" else None

    async def command(self, s: AsyncSession, *, update_id: int, thread: TicketThread,
                      message: dict, sender: dict, text: str) -> tuple[str, list[int]] | None:
        """`/extend` or `/resend` in the ticket's topic; None for any other text."""
        parsed = parse(text)
        if parsed is None or parsed[0] not in ADMIN_COMMANDS:
            return None
        command, argument = parsed
        repo = TelegramRepository(s)
        chat_id, topic = message["chat"]["id"], message.get("message_thread_id")

        async def answer(body: str) -> list[int]:
            oid = await repo.add_outgoing(event_id=f"update-{update_id}", ticket_id=None,
                                          chat_id=chat_id, thread_id=topic, kind="desk_answer",
                                          seq=0, text=body)
            return [oid] if oid else []

        admin = await self.admin_of(s, sender["id"])
        if admin is None:
            return "desk:admin_refused", await answer(REFUSED)
        if command == "extend" and not (DAYS_RE.match(argument)
                                        and 1 <= int(argument) <= MAX_DAYS):
            return "desk:help", await answer(DAYS_HELP)
        name = " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")])) or None
        inserted = (await s.execute(insert(DeskAction).values(
            update_id=update_id, ticket_id=thread.ticket_id, customer_id=thread.user_id,
            command=command, argument=argument or None, operator_telegram_id=sender["id"],
            operator_name=name, actor_id=admin, status="PENDING", created_at=now(),
        ).on_conflict_do_nothing().returning(DeskAction.update_id))).scalar_one_or_none()
        if inserted is None:
            return f"desk:{command}_known", []
        if command == "extend":  # carried out by the notify job (`run_extend`)
            oid = await repo.add_outgoing(event_id=f"update-{update_id}", ticket_id=None,
                                          chat_id=chat_id, thread_id=topic, kind="desk_extend",
                                          seq=0, params={"update_id": update_id})
            return "desk:extend", [oid] if oid else []
        body, ids = await self._resend(s, thread.user_id, update_id)
        await s.execute(sa.update(DeskAction).where(DeskAction.update_id == update_id).values(
            status="DONE" if ids else "FAILED", result=body, finished_at=now()))
        return "desk:resend", ids + await answer(body)

    async def _resend(self, s: AsyncSession, customer: str, update_id: int
                      ) -> tuple[str, list[int]]:
        repo = TelegramRepository(s)
        link = await repo.link_for_user(customer)
        if link is None:
            return "ℹ️ The customer's Telegram is not linked: nothing was sent.", []
        user = await ShopRepository(s).bot_user_by_chat(link.chat_id)
        if user is not None and user.bot_blocked_at is not None:
            return "ℹ️ The customer has blocked the bot: nothing was sent.", []
        lang = language_of(user.language if user else None, user.language_code if user else None)
        calls = Calls(repo, f"update-{update_id}", link.chat_id)
        try:
            sent = await access_message(self.api, calls, customer, lang, None)
        except ShopApiError as exc:
            if exc.unavailable:
                raise  # the update is tried again
            sent = False
        if not sent:
            return "ℹ️ The customer has no active subscription: nothing was sent.", []
        return "✅ Access link sent to the customer in the bot.", calls.ids

    async def run_extend(self, db: Database, row: Outgoing) -> str:
        """Carry out a `/extend` once; the answer for the topic."""
        update_id = int((row.params or {})["update_id"])
        async with db.transaction() as s:
            action = await s.get(DeskAction, update_id, with_for_update=True)
            assert action is not None
            if action.status == "RUNNING":  # cut short before: never called twice
                action.status, action.finished_at = "UNKNOWN", now()
                action.result = ("⚠️ /extend was interrupted and may have been applied: check "
                                 "the subscription in the admin panel before trying again.")
            if action.status != "PENDING":
                return action.result or ""
            action.status = "RUNNING"
            customer, days, actor = action.customer_id, int(action.argument or 0), action.actor_id
        status, result = await self._extend(customer, days, actor)
        async with db.transaction() as s:
            action = await s.get(DeskAction, update_id, with_for_update=True)
            assert action is not None
            action.status, action.result, action.finished_at = status, result, now()
        return result

    async def _extend(self, customer: str, days: int, actor: str) -> tuple[str, str]:
        try:
            subs = await self.api.subscriptions(customer)
        except ShopApiError as exc:
            return "FAILED", f"⚠️ Nothing was extended: the provisioner answered {exc.code}."
        if not subs:
            return "FAILED", "ℹ️ The customer has no subscription to extend."
        sub = max(subs, key=lambda x: x["expires_at"])
        try:
            out = await self.api.admin_extend(actor, sub["id"], days)
        except ShopApiError as exc:
            if cut_short(exc):
                return "UNKNOWN", ("⚠️ The provisioner did not answer: the extension may have "
                                   "been applied. Check the subscription in the admin panel "
                                   "before trying again.")
            return "FAILED", (f"⚠️ Nothing was extended: {exc.message or exc.code}"[:500])
        return "DONE", f"✅ Extended by {days} days: now until {out['expires_at'][:10]}."
