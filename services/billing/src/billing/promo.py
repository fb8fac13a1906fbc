"""Promo codes: their limits, the discount or bonus days they give a plan, and their uses.

A use is reserved in the transaction that creates the invoice, under the code's row lock, so
`uses_reserved + uses_counted` never exceeds `max_uses` however many invoices are created at
once (a check constraint is the backstop); it is counted when the invoice is PAID and released
when it expires or is canceled. Functions here take the caller's session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.exceptions import PromoCodeInvalid
from billing.models import Invoice, Plan, PromoCode, PromoRedemption
from contracts.billing import PromoCodeRedeemedV1
from contracts.public.billing import PromoCodeCreate, PromoCodeUpdate
from runtime.errors import Conflict, NotFound
from runtime.outbox import Outbox

CENT = Decimal("0.01")
RESERVED, COUNTED, RELEASED = "RESERVED", "COUNTED", "RELEASED"
MESSAGES = {
    "unknown": "There is no such promo code",
    "inactive": "This promo code is no longer offered",
    "not_started": "This promo code is not valid yet",
    "expired": "This promo code has expired",
    "not_for_plan": "This promo code is not for this plan",
    "used_up": "This promo code has been used up",
    "already_used": "You have already used this promo code",
    "first_purchase": "This promo code is for a first purchase only",
}


@dataclass(frozen=True)
class Offer:
    """What a code gives a plan: the discount and the bonus days, or why it gives nothing."""

    promo: PromoCode | None
    discount_usd: Decimal
    bonus_days: int
    reason: str | None  # None: the code applies

    def refuse(self) -> None:
        if self.reason is not None:
            # A first-purchase code refused to a returning customer reads as already used.
            public = "already_used" if self.reason == "first_purchase" else self.reason
            raise PromoCodeInvalid(public, MESSAGES[self.reason])


def normalize(code: str) -> str:
    return code.strip().lower()


class PromoService:
    def __init__(self, events: Outbox):
        self.events = events

    # ---- evaluating and using ---------------------------------------------------------------
    async def offer(self, session: AsyncSession, code: str, plan: Plan, user_id: str,
                    now: datetime, *, lock: bool = False) -> Offer:
        stmt = sa.select(PromoCode).where(PromoCode.code == normalize(code))
        promo = await session.scalar(stmt.with_for_update() if lock else stmt)
        if promo is None:
            return Offer(None, Decimal("0.00"), 0, "unknown")
        reason = await self._refusal(session, promo, plan, user_id, now)
        discount, days = Decimal("0.00"), 0
        if promo.kind == "PERCENT":
            discount = (plan.price_usd * promo.value / 100).quantize(CENT, ROUND_HALF_UP)
        elif promo.kind == "AMOUNT":
            discount = min(promo.value, plan.price_usd)
        else:
            days = int(promo.value)
        return Offer(promo, discount, days, reason)

    async def _refusal(self, session: AsyncSession, promo: PromoCode, plan: Plan, user_id: str,
                       now: datetime) -> str | None:
        if not promo.is_active:
            return "inactive"
        if promo.starts_at is not None and now < promo.starts_at:
            return "not_started"
        if promo.ends_at is not None and now >= promo.ends_at:
            return "expired"
        if promo.plan_ids and plan.id not in promo.plan_ids:
            return "not_for_plan"
        taken = promo.uses_reserved + promo.uses_counted
        if promo.max_uses is not None and taken >= promo.max_uses:
            return "used_up"
        mine = await session.scalar(
            sa.select(sa.func.count()).select_from(PromoRedemption)
            .where(PromoRedemption.code_id == promo.id, PromoRedemption.user_id == user_id,
                   PromoRedemption.status.in_((RESERVED, COUNTED))))
        if mine >= promo.max_uses_per_user:
            return "already_used"
        if promo.first_purchase_only and await session.scalar(sa.select(sa.exists().where(
                Invoice.user_id == user_id, Invoice.kind == "PLAN",
                Invoice.status.in_(("PAID", "REFUNDED"))))):
            return "first_purchase"
        return None

    async def reserve(self, session: AsyncSession, offer: Offer, invoice: Invoice,
                      now: datetime) -> None:
        """Reserve the use for `invoice` (flushed already); the code row is locked."""
        promo = offer.promo
        assert promo is not None and offer.reason is None
        promo.uses_reserved += 1
        promo.updated_at = now
        session.add(PromoRedemption(invoice_id=invoice.id, code_id=promo.id,
                                    user_id=invoice.user_id, status=RESERVED, created_at=now,
                                    updated_at=now))
        await session.flush()

    async def _settle(self, session: AsyncSession, invoice: Invoice, status: str,
                      now: datetime) -> PromoCode | None:
        """End the invoice's reservation as `status` (COUNTED or RELEASED); its code, locked,
        or None when there was no reservation left to end."""
        row = await session.scalar(sa.select(PromoRedemption)
                                   .where(PromoRedemption.invoice_id == invoice.id)
                                   .with_for_update())
        if row is None or row.status != RESERVED:
            return None  # no code, or already counted or released: nothing happens twice
        promo = await session.scalar(sa.select(PromoCode).where(PromoCode.id == row.code_id)
                                     .with_for_update())
        row.status, row.updated_at = status, now
        promo.uses_reserved -= 1
        promo.updated_at = now
        return promo

    async def count(self, session: AsyncSession, invoice: Invoice, now: datetime) -> None:
        """The invoice was paid: its reserved use is counted, once."""
        promo = await self._settle(session, invoice, COUNTED, now)
        if promo is None:
            return
        promo.uses_counted += 1
        await self.events.add(session, PromoCodeRedeemedV1(
            code_id=promo.id, code=promo.code, user_id=invoice.user_id, invoice_id=invoice.id,
            discount_usd=invoice.discount_usd, bonus_days=invoice.bonus_days, redeemed_at=now))

    async def release(self, session: AsyncSession, invoice: Invoice, now: datetime) -> None:
        """The invoice expired or was canceled: its reserved use is free again, once."""
        await self._settle(session, invoice, RELEASED, now)

    # ---- admin ------------------------------------------------------------------------------
    async def create(self, session: AsyncSession, body: PromoCodeCreate, code_id: str,
                     now: datetime) -> PromoCode:
        promo = PromoCode(id=code_id, code=normalize(body.code), kind=body.kind,
                          value=Decimal(body.value), plan_ids=body.plan_ids,
                          max_uses=body.max_uses, max_uses_per_user=body.max_uses_per_user,
                          starts_at=body.starts_at, ends_at=body.ends_at,
                          first_purchase_only=body.first_purchase_only, is_active=True,
                          uses_reserved=0, uses_counted=0, created_at=now, updated_at=now)
        session.add(promo)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict("A promo code with this code exists", {"code": body.code}) from exc
        return promo

    async def update(self, session: AsyncSession, code_id: str, body: PromoCodeUpdate,
                     now: datetime) -> PromoCode:
        promo = await session.scalar(sa.select(PromoCode).where(PromoCode.id == code_id)
                                     .with_for_update())
        if promo is None:
            raise NotFound("Promo code not found")
        changes = body.model_dump(exclude_unset=True)
        if changes.get("max_uses") is not None and \
                changes["max_uses"] < promo.uses_reserved + promo.uses_counted:
            raise Conflict("max_uses is below the uses already taken",
                           {"taken": promo.uses_reserved + promo.uses_counted})
        for name, value in changes.items():
            setattr(promo, name, value)
        promo.updated_at = now
        await session.flush()
        return promo

    async def list(self, session: AsyncSession) -> list[PromoCode]:
        return list((await session.scalars(sa.select(PromoCode)
                                           .order_by(PromoCode.created_at.desc()))).all())
