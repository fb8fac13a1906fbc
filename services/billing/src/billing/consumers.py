"""Events billing consumes: Telegram account links, kept as `telegram_links` (which Telegram
account each customer linked: a trial is once per person, across accounts); the provisioner's
renewals due (charged once per period) and expiry reminders (passed on unless auto-renewal
covers them); the referral code a new account signed up with (`billing.referrals`); the
Telegram Stars payments the bot received (stored once per charge, then the invoice settled)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.models import TelegramLink, inbox
from billing.renewals import RenewalService
from billing.repository import StarsPaymentRepository
from billing.service import referrals
from billing.watch import PaymentWatcher
from contracts import Envelope
from contracts.identity import UserRegisteredV1
from contracts.provisioning import SubscriptionExpiringV1, SubscriptionRenewalDueV1
from contracts.telegram import AccountLinkedV1, StarsPaymentReceivedV1
from runtime.broker import Subscription
from runtime.clock import now as utcnow
from runtime.db import Database
from runtime.logging import get_logger

log = get_logger(__name__)

QUEUE = "billing.telegram-links"
PROVISIONING_QUEUE = "billing.provisioning-events"


def build_subscription(db: Database) -> Subscription:
    sub = Subscription(QUEUE, db=db, inbox=inbox,
                       description="Telegram account links, for the once-per-person trial.")

    @sub.once(AccountLinkedV1)
    async def on_linked(s: AsyncSession, env: Envelope, event: AccountLinkedV1) -> None:
        values = {"telegram_user_id": event.telegram_user_id, "linked_at": event.linked_at}
        await s.execute(insert(TelegramLink).values(user_id=event.user_id, **values)
                        .on_conflict_do_update(index_elements=[TelegramLink.user_id],
                                               set_=values))

    return sub


def build_provisioning_subscription(db: Database, renewals: RenewalService) -> Subscription:
    sub = Subscription(PROVISIONING_QUEUE, db=db, inbox=inbox,
                       description="Renewals due charged once per period; expiry reminders "
                                   "passed on to the customer unless auto-renewal covers them.")

    @sub.on(SubscriptionRenewalDueV1)
    async def on_renewal_due(env: Envelope, event: SubscriptionRenewalDueV1) -> None:
        # Not claimed in the inbox: it calls the payment provider outside a transaction. The
        # period's unique key makes a redelivery change nothing.
        outcome = await renewals.renew(db, event)
        log.info("renewal", subscription_id=event.subscription_id, outcome=outcome)

    @sub.once(SubscriptionExpiringV1)
    async def on_expiring(s: AsyncSession, env: Envelope, event: SubscriptionExpiringV1) -> None:
        await renewals.remind(s, event)

    return sub


IDENTITY_QUEUE = "billing.identity-events"


def build_identity_subscription(db: Database, settings: Settings) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE, db=db, inbox=inbox,
                       description="New accounts' referral codes: who referred whom, once.")

    @sub.once(UserRegisteredV1)
    async def on_registered(s: AsyncSession, env: Envelope, event: UserRegisteredV1) -> None:
        if event.referral_code:
            await referrals.attach(s, referred_user_id=event.user_id, code=event.referral_code,
                                   now=utcnow(), settings=settings)

    return sub


STARS_QUEUE = "billing.stars-payments"


def build_stars_subscription(db: Database, watcher: PaymentWatcher) -> Subscription:
    sub = Subscription(STARS_QUEUE, db=db, inbox=inbox,
                       description="Telegram Stars payments the bot received: stored once per "
                                   "charge, then the invoice they pay is settled.")

    @sub.on(StarsPaymentReceivedV1)
    async def on_stars_payment(env: Envelope, event: StarsPaymentReceivedV1) -> None:
        # Not claimed in the inbox: the settle step runs after the payment is committed, in
        # transactions of its own. The charge id's key makes a redelivery store nothing, and
        # the settle step changes nothing the second time.
        async with db.transaction() as s:
            new = await StarsPaymentRepository(s).insert_once({
                "telegram_payment_charge_id": event.telegram_payment_charge_id,
                "invoice_id": event.invoice_id, "amount_stars": event.total_amount,
                "currency": event.currency, "telegram_user_id": event.telegram_user_id,
                "paid_at": event.paid_at, "received_at": utcnow()})
        outcome = await watcher.watch_one(event.invoice_id)
        if outcome in ("missing", "provider_not_active"):
            log.error("stars_payment_not_applied", invoice_id=event.invoice_id,
                      charge_id=event.telegram_payment_charge_id, outcome=outcome)
        else:
            log.info("stars_payment", invoice_id=event.invoice_id, new=new, outcome=outcome)

    return sub
