"""The customer's notices in the bot, and the `/status` projection.

Subscription changes (provisioner), renewal reminders and invoice events (billing) become
messages to the linked customer, each once (the event's id keys its rows), in the customer's
language (`bot_users`), with the button that helps next (Access, Renew, Buy). A customer who
blocked the bot is told nothing until they write again. An invoice created in the bot has its
message's status line edited as the payment is detected, settles, expires or is refunded; when
its subscription is active, the access message follows (key, import buttons, QR), fetched live.

A used-up traffic allowance (`provisioning.subscription.limited`, once per limit period) is
told with the date it renews and the Renew button.

Expiry reminders come from billing (`billing.renewal.reminder`), which leaves out the ones
auto-renewal will pay; the provisioner's own `expiring` event tells nothing here.

Every one of these events (and `billing.invoice.created`, which tells nothing) also makes the
customer's cards in the support chat due for an edit (telegram.card).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.billing import (
    InvoiceCreatedV1,
    InvoiceExpiredV1,
    InvoicePaidV1,
    InvoiceRefundedV1,
    PaymentDetectedV1,
    RenewalReminderV1,
)
from contracts.provisioning import (
    SubscriptionActivatedV1,
    SubscriptionExpiredV1,
    SubscriptionExpiringV1,
    SubscriptionExtendedV1,
    SubscriptionLimitedV1,
    SubscriptionResumedV1,
    SubscriptionSuspendedV1,
)
from runtime.broker import Subscription
from runtime.db import Database
from runtime.logging import get_logger
from telegram import broadcasts
from telegram.card import touch
from telegram.models import AccountLink, SubscriptionView, inbox
from telegram.repository import ShopRepository, TelegramRepository
from telegram.shop import Calls, access_message, button, invoice_markup, invoice_text, keyboard
from telegram.shopapi import ShopApi, ShopApiError
from telegram.texts import language_of, t

log = get_logger(__name__)

QUEUE = "telegram.notifications"

INVOICE_STATUS = {PaymentDetectedV1: "DETECTED", InvoicePaidV1: "PAID",
                  InvoiceExpiredV1: "EXPIRED", InvoiceRefundedV1: "REFUNDED"}


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d")


def status_of(event) -> str | None:
    """The subscription status the event leaves (for `/status`), None: no change."""
    return {SubscriptionActivatedV1: "ACTIVE", SubscriptionExtendedV1: "ACTIVE",
            SubscriptionResumedV1: "ACTIVE", SubscriptionExpiredV1: "EXPIRED",
            SubscriptionSuspendedV1: "SUSPENDED"}.get(type(event))


def reminder_text(lang: str, event: RenewalReminderV1) -> str:
    ends = t(lang, "notice_expiring_one" if event.days_left == 1 else "notice_expiring",
             days=event.days_left, until=_day(event.expires_at))
    if event.auto_renew and event.price_usd is not None:
        return ends + "\n" + t(lang, "notice_short", price=f"{event.price_usd:.2f}",
                               balance=f"{event.balance_usd:.2f}")
    return ends


def notice(lang: str, event, base_url: str) -> tuple[str | None, dict | None]:
    """(text, buttons) telling the customer about the event; no text: nothing to tell."""
    access = keyboard([button(t(lang, "btn_access"), "a")])
    renew = keyboard([button(t(lang, "btn_renew"), "b")],
                     [{"text": t(lang, "btn_web"), "url": f"{base_url.rstrip('/')}/app/buy"}])
    if isinstance(event, RenewalReminderV1):
        return reminder_text(lang, event), keyboard(
            [{"text": t(lang, "btn_renew"), "url": event.pay_url}],
            [button(t(lang, "btn_buy"), "b")])
    if isinstance(event, SubscriptionActivatedV1):
        return t(lang, "notice_activated", until=_day(event.expires_at)), access
    if isinstance(event, SubscriptionExtendedV1):
        return t(lang, "notice_extended", until=_day(event.expires_at)), access
    if isinstance(event, SubscriptionExpiredV1):
        return t(lang, "notice_expired"), renew
    if isinstance(event, SubscriptionSuspendedV1):
        return t(lang, "notice_suspended"), None
    if isinstance(event, SubscriptionResumedV1):
        return t(lang, "notice_resumed", until=_day(event.expires_at)), access
    if isinstance(event, SubscriptionLimitedV1):
        if event.resets_at is None:
            return t(lang, "notice_limited_renewal"), renew
        return t(lang, "notice_limited", until=_day(event.resets_at)), renew
    if isinstance(event, InvoicePaidV1) and event.kind != "TRIAL":
        return t(lang, "notice_paid", id=event.invoice_id), None
    if isinstance(event, InvoiceRefundedV1):
        return t(lang, "notice_refunded", id=event.invoice_id), None
    return None, None  # the provisioner's expiring (billing's reminder says it), the rest


async def project(s: AsyncSession, user_id: str, status: str, expires_at: datetime | None
                  ) -> None:
    values = {"user_id": user_id, "status": status, "expires_at": expires_at}
    await s.execute(insert(SubscriptionView).values(**values).on_conflict_do_update(
        index_elements=[SubscriptionView.user_id],
        set_={"status": status, "expires_at": expires_at}))


class Notices:
    """What one event tells its linked customer in the bot, as outgoing rows."""

    def __init__(self, api: ShopApi, base_url: str):
        self.api = api
        self.base_url = base_url

    async def tell(self, s: AsyncSession, env: Envelope, event, link: AccountLink) -> list[int]:
        shop = ShopRepository(s)
        user = await shop.bot_user_by_chat(link.chat_id)
        if user is not None and user.bot_blocked_at is not None:
            log.info("notice_skipped_bot_blocked", event_id=str(env.event_id))
            return []
        lang = language_of(user.language if user else None,
                           user.language_code if user else None)
        calls = Calls(TelegramRepository(s), str(env.event_id), link.chat_id)
        status = INVOICE_STATUS.get(type(event))
        if status is not None:
            await self._invoice_status(s, calls, lang, event.invoice_id, status)
        text, markup = notice(lang, event, self.base_url)
        if text is not None:
            await calls.send(text, markup)
        if isinstance(event, SubscriptionActivatedV1 | SubscriptionExtendedV1):
            await self._access_after_purchase(s, calls, lang, event.user_id, event.invoice_id)
        return calls.ids

    async def _invoice_status(self, s: AsyncSession, calls: Calls, lang: str, invoice_id: str,
                              status: str) -> None:
        """The invoice message's status line, edited (an event older than what the message
        shows changes nothing)."""
        mine = await ShopRepository(s).invoice(invoice_id, for_update=True)
        if mine is None or mine.status == status or (mine.status, status) in {
                ("PAID", "DETECTED"), ("REFUNDED", "PAID"), ("REFUNDED", "DETECTED")}:
            return
        invoice = await self.api.invoice(mine.user_id, invoice_id)  # outage: redelivered
        mine.status = status
        await calls.edit(mine.message_id, invoice_text(lang, invoice, mine.title, status),
                         invoice_markup(lang, invoice, status))

    async def _access_after_purchase(self, s: AsyncSession, calls: Calls, lang: str,
                                     user_id: str, invoice_id: str | None) -> None:
        """After a purchase in the bot, its access message, once."""
        due = await ShopRepository(s).access_due(user_id, invoice_id)
        if not due:
            return
        try:
            sent = await access_message(self.api, calls, user_id, lang, None)
        except ShopApiError as exc:
            if exc.unavailable:
                raise  # the event is redelivered and tried again
            sent = False
        for row in due:
            row.access_sent = sent or row.access_sent


def build_subscription(db: Database, jobs, base_url: str, api: ShopApi) -> Subscription:
    """`base_url`: the web panel's (APP_BASE_URL); `api`: billing and the provisioner, for the
    invoice messages and the access message."""
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Subscription changes, renewal reminders and invoice "
                                   "events, told to linked customers in the bot.")
    notices = Notices(api, base_url)

    async def on_event(env: Envelope, event) -> None:
        ids: list[int] = []
        async with db.transaction() as s:
            if not await sub.claim(s, env):
                return
            await broadcasts.record_facts(s, event)  # what broadcast segments read
            dues = await touch(s, event.user_id, jobs.card_delay)  # the customer's cards
            status = status_of(event)
            if status is not None:
                await project(s, event.user_id, status, getattr(event, "expires_at", None))
            link = await TelegramRepository(s).link_for_user(event.user_id)
            if link is not None:
                ids = await notices.tell(s, env, event, link)
        await jobs.enqueue_outgoing([(i, None) for i in ids])
        await jobs.enqueue_cards(dues)

    for contract in (SubscriptionActivatedV1, SubscriptionExtendedV1, SubscriptionExpiringV1,
                     SubscriptionExpiredV1, SubscriptionSuspendedV1, SubscriptionResumedV1,
                     RenewalReminderV1, PaymentDetectedV1, InvoicePaidV1, InvoiceExpiredV1,
                     InvoiceRefundedV1, SubscriptionLimitedV1, InvoiceCreatedV1):
        sub.on(contract)(on_event)
    return sub
