"""Subscription events turned into bot messages to linked users, and the `/status` projection.

Expiry reminders come from billing (`billing.renewal.reminder`), which leaves out the ones
auto-renewal will pay; the provisioner's own `expiring` event tells nothing here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Envelope
from contracts.billing import RenewalReminderV1
from contracts.provisioning import (
    SubscriptionActivatedV1,
    SubscriptionExpiredV1,
    SubscriptionExpiringV1,
    SubscriptionExtendedV1,
    SubscriptionResumedV1,
    SubscriptionSuspendedV1,
)
from runtime.broker import Subscription
from runtime.db import Database
from telegram.models import SubscriptionView, inbox
from telegram.repository import TelegramRepository

QUEUE = "telegram.notifications"


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d")


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def reminder_text(event: RenewalReminderV1) -> str:
    ends = f"⏳ Your subscription ends in {_days(event.days_left)} ({_day(event.expires_at)})."
    if event.auto_renew and event.price_usd is not None:
        return (f"{ends} Auto-renewal needs ${event.price_usd:.2f} and your balance holds "
                f"${event.balance_usd:.2f}: top up, or pay the renewal here: {event.pay_url}")
    return f"{ends} Renew in one click: {event.pay_url}"


def notice_text(event, base_url: str) -> tuple[str | None, str | None]:
    """(bot message, status for the projection) for a subscription event; no message: None."""
    if isinstance(event, RenewalReminderV1):
        return reminder_text(event), None
    if isinstance(event, SubscriptionActivatedV1):
        return (f"✅ Your VPN subscription is active until {_day(event.expires_at)}. "
                "Open the web panel to get your access key.", "ACTIVE")
    if isinstance(event, SubscriptionExtendedV1):
        return f"➕ Your subscription now runs until {_day(event.expires_at)}.", "ACTIVE"
    if isinstance(event, SubscriptionExpiringV1):
        return None, None  # billing's reminder says it, when auto-renewal will not pay
    if isinstance(event, SubscriptionExpiredV1):
        return (f"⌛ Your subscription has expired. Renew it in one click: "
                f"{base_url.rstrip('/')}/app/buy", "EXPIRED")
    if isinstance(event, SubscriptionSuspendedV1):
        return "⏸ Your subscription is suspended. Contact support if this is unexpected.", \
            "SUSPENDED"
    if isinstance(event, SubscriptionResumedV1):
        return f"▶️ Your subscription is active again until {_day(event.expires_at)}.", "ACTIVE"
    raise TypeError(type(event))


async def project(s: AsyncSession, user_id: str, status: str, expires_at: datetime | None
                  ) -> None:
    values = {"user_id": user_id, "status": status, "expires_at": expires_at}
    await s.execute(insert(SubscriptionView).values(**values).on_conflict_do_update(
        index_elements=[SubscriptionView.user_id],
        set_={"status": status, "expires_at": expires_at}))


def build_subscription(db: Database, jobs, base_url: str) -> Subscription:
    """`base_url`: the web panel's (APP_BASE_URL), for the links the messages carry."""
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Subscription changes and renewal reminders, told to "
                                   "linked customers in the bot.")

    async def on_event(env: Envelope, event) -> None:
        ids: list[int] = []
        async with db.transaction() as s:
            if not await sub.claim(s, env):
                return
            text, status = notice_text(event, base_url)
            if status is not None:
                await project(s, event.user_id, status, getattr(event, "expires_at", None))
            link = await TelegramRepository(s).link_for_user(event.user_id)
            if link is not None and text is not None:
                oid = await TelegramRepository(s).add_outgoing(
                    event_id=str(env.event_id), ticket_id=None, chat_id=link.chat_id,
                    kind="user_notice", seq=0, text=text)
                ids = [oid] if oid else []
        await jobs.enqueue_outgoing([(i, None) for i in ids])

    for contract in (SubscriptionActivatedV1, SubscriptionExtendedV1, SubscriptionExpiringV1,
                     SubscriptionExpiredV1, SubscriptionSuspendedV1, SubscriptionResumedV1,
                     RenewalReminderV1):
        sub.on(contract)(on_event)
    return sub
