"""Auto-renewal and renewal reminders.

The provisioner asks for a renewal once per period (`provisioning.subscription.renewal_due`);
billing charges it once per period whatever is delivered twice: the RENEWAL invoice carries the
period's key (`renewal:<subscription>:<expires_at>`), unique in the database. When the balance
covers the plan's price the invoice is paid from it in the transaction that creates it (the
same paid path as any invoice: `billing.invoice.paid`, and the provisioner adds the time to
max(now, expires_at)); otherwise one open RENEWAL invoice is made on the payment provider and
the customer gets its pay link. Reminders (`provisioning.subscription.expiring`) are passed on
to the customer (`billing.renewal.reminder`) unless auto-renewal will cover them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.exceptions import InsufficientBalance
from billing.metrics import INVOICE_TRANSITIONS
from billing.models import Invoice, Plan
from billing.rates import asset_amount
from billing.repository import PlanRepository
from billing.service import (
    BALANCE_ASSET,
    BALANCE_NETWORK,
    BALANCE_PROVIDER,
    CREATED,
    OPEN,
    PAID,
    RENEWAL_KIND,
    BillingService,
    events,
    ledger,
    new_id,
)
from contracts.billing import InvoiceCreatedV1, RenewalReminderV1
from contracts.provisioning import SubscriptionExpiringV1, SubscriptionRenewalDueV1
from runtime.clock import now as utcnow
from runtime.db import Database
from runtime.errors import ServiceUnavailable
from runtime.logging import get_logger

log = get_logger(__name__)

ZERO = Decimal("0.00")


def renewal_key(subscription_id: str, expires_at: datetime) -> str:
    """The period a renewal pays for: the subscription and the `expires_at` it renews."""
    return f"renewal:{subscription_id}:{expires_at.isoformat()}"


@dataclass(frozen=True)
class Cover:
    """Whether the balance pays a renewal of `plan_id` (None: nothing to renew with)."""

    plan_id: str | None
    price_usd: Decimal | None
    balance_usd: Decimal

    @property
    def covered(self) -> bool:
        return self.price_usd is not None and self.balance_usd >= self.price_usd


class RenewalService:
    def __init__(self, billing: BillingService):
        self.billing = billing
        self.base_url = billing.settings.app_base_url.rstrip("/")

    async def cover(self, s: AsyncSession, user_id: str, plan_id: str | None) -> Cover:
        plan = await self._plan(s, plan_id)
        return Cover(plan.id if plan else plan_id, plan.price_usd if plan else None,
                     await ledger.balance(s, user_id))

    async def renew(self, db: Database, event: SubscriptionRenewalDueV1) -> str:
        """Charge the renewal once for its period: `charged` (paid from the balance),
        `invoiced` (an open RENEWAL invoice, its pay link sent), `duplicate` (this period was
        handled already) or `plan_unavailable` (the plan is no longer on sale: the customer
        gets the reminders instead)."""
        key = renewal_key(event.subscription_id, event.expires_at)
        now = utcnow()
        try:
            async with db.transaction() as s:
                if await self._renewal(s, key) is not None:
                    return "duplicate"
                plan = await self._plan(s, event.plan_id)
                if plan is None:
                    log.warning("renewal_plan_unavailable", subscription_id=event.subscription_id,
                                plan_id=event.plan_id)
                    return "plan_unavailable"
                if await ledger.balance(s, event.user_id) >= plan.price_usd:
                    invoice = self._invoice(event, key, plan, now, asset=BALANCE_ASSET,
                                            network=BALANCE_NETWORK, provider=BALANCE_PROVIDER)
                    invoice.amount_received_asset = invoice.amount_asset
                    s.add(invoice)
                    await s.flush()  # the key's unique index: one invoice per period
                    await self._created(s, invoice, now)
                    await self.billing.pay_from_balance(s, invoice, now)
                    return "charged"
        except InsufficientBalance:  # spent meanwhile: the customer pays the invoice instead
            pass
        except IntegrityError:
            return "duplicate"
        return await self._invoice_on_provider(db, event, key, now)

    async def _invoice_on_provider(self, db: Database, event: SubscriptionRenewalDueV1,
                                   key: str, now: datetime) -> str:
        async with db.transaction() as s:
            plan = await self._plan(s, event.plan_id)
            provider, asset, network = await self._payment_choice(s, event.user_id)
        if plan is None:
            return "plan_unavailable"
        billing = self.billing
        adapter = billing.providers.choose(asset, network, provider)
        invoice = self._invoice(event, key, plan, now, asset=asset, network=network,
                                provider=adapter.name)
        invoice.rate_locked_until = now + timedelta(minutes=billing.settings.rate_lock_minutes)
        try:  # a failure raises: the message is delivered again later
            checkout, invoice.rate_usd, invoice.amount_asset = await billing.checkout(
                adapter, invoice_id=invoice.id, amount_usd=invoice.amount_usd, asset=asset,
                network=network, expires_at=invoice.rate_locked_until, plan=plan)
        except ServiceUnavailable:
            log.warning("renewal_checkout_failed", subscription_id=event.subscription_id)
            raise
        invoice.address, invoice.payment_url = checkout.address, checkout.payment_url
        invoice.provider_ref = checkout.provider_ref
        try:
            async with db.transaction() as s:
                s.add(invoice)
                await s.flush()
                await self._created(s, invoice, now)
                await events.add(s, self._reminder(
                    event.user_id, event.subscription_id, event.expires_at, now, plan,
                    await ledger.balance(s, event.user_id), auto_renew=True, invoice=invoice))
        except IntegrityError:  # a redelivery got there first; its checkout is the one paid
            return "duplicate"
        return "invoiced"

    async def remind(self, s: AsyncSession, event: SubscriptionExpiringV1) -> bool:
        """Pass an expiry reminder on to the customer, unless auto-renewal will pay it."""
        cover = await self.cover(s, event.user_id, event.plan_id)
        if event.auto_renew and cover.covered:
            return False
        plan = await self._plan(s, cover.plan_id)
        invoice = await self._renewal(s, renewal_key(event.subscription_id, event.expires_at))
        if invoice is not None and invoice.status not in OPEN:
            invoice = None
        await events.add(s, self._reminder(
            event.user_id, event.subscription_id, event.expires_at, utcnow(), plan,
            cover.balance_usd, auto_renew=event.auto_renew, invoice=invoice,
            days_left=event.days_left))
        return True

    # ---------------------------------------------------------------- parts

    def _reminder(self, user_id: str, subscription_id: str, expires_at: datetime, now: datetime,
                  plan: Plan | None, balance: Decimal, *, auto_renew: bool,
                  invoice: Invoice | None, days_left: int | None = None) -> RenewalReminderV1:
        if invoice is not None:
            pay_url = f"{self.base_url}/app/invoices/{invoice.id}"
        elif plan is not None:
            pay_url = f"{self.base_url}/app/buy/{plan.id}"
        else:
            pay_url = f"{self.base_url}/app/buy"
        if days_left is None:
            days_left = max(0, math.ceil((expires_at - now) / timedelta(days=1)))
        return RenewalReminderV1(
            user_id=user_id, subscription_id=subscription_id, expires_at=expires_at,
            days_left=days_left, plan_id=plan.id if plan else None,
            price_usd=plan.price_usd if plan else None, balance_usd=balance,
            auto_renew=auto_renew, invoice_id=invoice.id if invoice else None, pay_url=pay_url)

    @staticmethod
    async def _renewal(s: AsyncSession, key: str) -> Invoice | None:
        return await s.scalar(sa.select(Invoice).where(Invoice.renewal_key == key))

    @staticmethod
    async def _plan(s: AsyncSession, plan_id: str | None) -> Plan | None:
        plan = await PlanRepository(s).get(plan_id) if plan_id else None
        return plan if plan is not None and plan.is_active else None

    async def _payment_choice(self, s: AsyncSession, user_id: str) -> tuple[str, str, str]:
        """(provider, asset, network) the customer last paid with, while it is offered; else
        the first option."""
        options = self.billing.options()
        rows = await s.execute(sa.select(Invoice.provider, Invoice.asset, Invoice.network)
                               .where(Invoice.user_id == user_id, Invoice.status == PAID,
                                      Invoice.provider.in_([p for p, _, _ in options]))
                               .order_by(Invoice.paid_at.desc()).limit(1))
        last = rows.first()
        if last is not None and tuple(last) in options:
            return last.provider, last.asset, last.network
        return options[0]

    @staticmethod
    def _invoice(event: SubscriptionRenewalDueV1, key: str, plan: Plan, now: datetime, *,
                 asset: str, network: str, provider: str, rate: Decimal = Decimal(1)) -> Invoice:
        """A RENEWAL invoice of the period `key` (priced at `rate`; the checkout may reprice)."""
        price = plan.price_usd
        return Invoice(
            id=new_id(), user_id=event.user_id, kind=RENEWAL_KIND, plan_id=plan.id,
            plan_name=plan.name, plan_duration_days=plan.duration_days,
            plan_max_devices=plan.max_devices, plan_price_usd=price,
            plan_traffic_limit_gb=plan.traffic_limit_gb, plan_traffic_reset=plan.traffic_reset,
            status=CREATED,
            amount_usd=price, asset=asset, network=network, rate_usd=rate,
            amount_asset=asset_amount(price, rate), address=None,
            payment_url=None, provider=provider, provider_ref=None, rate_locked_until=now,
            created_at=now, updated_at=now, amount_received_asset=ZERO, overpaid_asset=ZERO,
            underpaid_asset=ZERO, late_amount_asset=ZERO, needs_review=False,
            subscription_id=event.subscription_id, renewal_key=key)

    @staticmethod
    async def _created(s: AsyncSession, invoice: Invoice, now: datetime) -> None:
        INVOICE_TRANSITIONS.labels(CREATED).inc()
        await events.add(s, InvoiceCreatedV1(
            invoice_id=invoice.id, user_id=invoice.user_id, plan_id=invoice.plan_id,
            amount_usd=invoice.amount_usd, asset=invoice.asset, network=invoice.network,
            amount_asset=invoice.amount_asset, rate_locked_until=invoice.rate_locked_until,
            provider=invoice.provider))
