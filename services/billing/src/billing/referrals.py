"""Referrals: each customer's code, the customers who signed up with it, and the one reward per
referred customer for their first paid invoice, taken back when that invoice is refunded.

A referral is recorded from `identity.user.registered.v1` (its `referral_code`); an unknown code
or the customer's own is ignored. The reward is given in the transaction in which the referred
customer's first invoice of kind PLAN or RENEWAL with an amount above zero becomes PAID: the
referral row goes PENDING → REWARDED under its row lock, so it is given once however often the
paid path runs, and the ledger key `referral:<referred>:reward` backs that up. A referral
recorded after such an invoice was paid (its event came late) is rewarded when it is recorded:
both steps take the referred customer's advisory lock, so one of them always sees the other.

Money (`REFERRAL_REWARD_PERCENT` of what was paid, rounded half up to the cent) goes to the
referrer's balance as a `REFERRAL_REWARD` entry; with `REFERRAL_REWARD_DAYS` set, the days go to
the provisioner in `billing.referral.rewarded.v1` (published in both modes). A referrer whose
linked Telegram account is the referred customer's is the same person: refused when recorded and
again when rewarded (a link may come later). Functions here take the caller's session and never
commit.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.ledger import Ledger
from billing.models import Invoice, Referral, ReferralCode, TelegramLink
from contracts.billing import ReferralReversedV1, ReferralRewardedV1
from runtime.errors import ServiceUnavailable
from runtime.outbox import Outbox

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
PENDING, REWARDED, REVERSED, REFUSED = "PENDING", "REWARDED", "REVERSED", "REFUSED"
# What a first paid invoice is: a purchase of time with money (not a trial, a top-up, a free one).
REWARDED_KINDS = ("PLAN", "RENEWAL")
# Lower-case letters and digits without the look-alikes (l, o, 0, 1): 31 ** 10 codes.
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
CODE_LENGTH = 10
CODE_SHAPE = re.compile(r"^[a-z0-9]{4,32}$")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize(code: str | None) -> str | None:
    """The code as stored, or None for something that cannot be one (ignored, never an error)."""
    if not code:
        return None
    code = code.strip().lower()
    return code if CODE_SHAPE.match(code) else None


def reward_amount(paid_usd: Decimal, percent: Decimal) -> Decimal:
    return (paid_usd * percent / 100).quantize(CENT, ROUND_HALF_UP)


def link_for(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/r/{code}"


class ReferralService:
    def __init__(self, events: Outbox, ledger: Ledger):
        self.events = events
        self.ledger = ledger

    # ---- the referrer's code and counts -----------------------------------------------------
    async def code_for(self, session: AsyncSession, user_id: str, now: datetime) -> str:
        """The customer's code, made the first time it is asked for."""
        for _ in range(5):
            existing = await session.scalar(sa.select(ReferralCode.code)
                                            .where(ReferralCode.user_id == user_id))
            if existing is not None:
                return existing
            # Nothing on conflict: another request made this customer's code at the same
            # moment (read it on the next turn), or the new code is taken (try another).
            made = await session.scalar(
                insert(ReferralCode).values(user_id=user_id, code=new_code(), created_at=now)
                .on_conflict_do_nothing().returning(ReferralCode.code))
            if made is not None:
                return made
        raise ServiceUnavailable("No referral code could be made; try again")

    async def summary(self, session: AsyncSession, user_id: str, now: datetime, *,
                      base_url: str) -> dict:
        code = await self.code_for(session, user_id, now)
        rewarded = Referral.status == REWARDED
        row = (await session.execute(
            sa.select(sa.func.count().filter(Referral.status != REFUSED),
                      sa.func.count().filter(rewarded),
                      sa.func.coalesce(sa.func.sum(Referral.reward_usd).filter(rewarded), ZERO),
                      sa.func.coalesce(sa.func.sum(Referral.reward_days).filter(rewarded), 0))
            .where(Referral.referrer_user_id == user_id))).one()
        return {"code": code, "link": link_for(base_url, code), "invited": row[0],
                "paid": row[1], "reward_total_usd": row[2], "reward_total_days": int(row[3])}

    # ---- recording a referral ---------------------------------------------------------------
    async def attach(self, session: AsyncSession, *, referred_user_id: str, code: str | None,
                     now: datetime, settings: Settings) -> Referral | None:
        """Record who referred a new customer, once; None when the code is unknown, the
        customer's own, or they were referred already."""
        code = normalize(code)
        if code is None:
            return None
        referrer = await session.scalar(sa.select(ReferralCode.user_id)
                                        .where(ReferralCode.code == code))
        if referrer is None or referrer == referred_user_id:
            return None
        await self._lock(session, referred_user_id)
        same = await self._same_person(session, referrer, referred_user_id)
        row = await session.scalar(
            insert(Referral).values(referred_user_id=referred_user_id, referrer_user_id=referrer,
                                    code=code, status=REFUSED if same else PENDING,
                                    reward_usd=ZERO, reward_days=0, created_at=now)
            .on_conflict_do_nothing(index_elements=[Referral.referred_user_id])
            .returning(Referral))
        if row is None or row.status != PENDING:
            return row
        paid = await session.scalar(
            sa.select(Invoice).where(Invoice.user_id == referred_user_id,
                                     Invoice.kind.in_(REWARDED_KINDS), Invoice.amount_usd > 0,
                                     Invoice.status == "PAID")
            .order_by(Invoice.paid_at, Invoice.id).limit(1))
        if paid is not None:  # paid before this event arrived: rewarded now
            await self._reward(session, row, paid, now, settings)
        return row

    # ---- the reward and its reversal --------------------------------------------------------
    async def on_paid(self, session: AsyncSession, invoice: Invoice, now: datetime,
                      settings: Settings) -> None:
        """In the transaction in which `invoice` became PAID: the referrer's reward, once."""
        if invoice.kind not in REWARDED_KINDS or invoice.amount_usd <= 0:
            return
        await self._lock(session, invoice.user_id)
        row = await session.scalar(sa.select(Referral)
                                   .where(Referral.referred_user_id == invoice.user_id)
                                   .with_for_update())
        if row is not None and row.status == PENDING:
            await self._reward(session, row, invoice, now, settings)

    async def on_refunded(self, session: AsyncSession, invoice: Invoice, now: datetime) -> None:
        """In the transaction in which `invoice` is refunded: the reward it gave is taken back
        (money: from the balance, the rest owed; days: by the provisioner)."""
        row = await session.scalar(sa.select(Referral)
                                   .where(Referral.referred_user_id == invoice.user_id)
                                   .with_for_update())
        if row is None or row.status != REWARDED or row.invoice_id != invoice.id:
            return
        if row.reward_usd > 0:
            await self.ledger.take_back(
                session, user_id=row.referrer_user_id, amount=row.reward_usd,
                key=f"referral:{row.referred_user_id}:reversal", invoice_id=invoice.id,
                note="Referral reward taken back: the invoice was refunded")
        row.status, row.reversed_at = REVERSED, now
        await self.events.add(session, ReferralReversedV1(
            referrer_user_id=row.referrer_user_id, referred_user_id=row.referred_user_id,
            invoice_id=invoice.id, amount_usd=row.reward_usd, days=row.reward_days,
            reversed_at=now))

    async def _reward(self, session: AsyncSession, row: Referral, invoice: Invoice,
                      now: datetime, settings: Settings) -> None:
        if await self._same_person(session, row.referrer_user_id, row.referred_user_id):
            row.status = REFUSED
            return
        days = settings.referral_reward_days
        amount = ZERO if days > 0 else reward_amount(invoice.amount_usd,
                                                     settings.referral_reward_percent)
        if amount > 0:
            await self.ledger.move(session, user_id=row.referrer_user_id, amount=amount,
                                   kind="REFERRAL_REWARD",
                                   key=f"referral:{row.referred_user_id}:reward",
                                   invoice_id=invoice.id, note="Referral reward")
        row.status, row.invoice_id, row.rewarded_at = REWARDED, invoice.id, now
        row.reward_usd, row.reward_days = amount, days
        await self.events.add(session, ReferralRewardedV1(
            referrer_user_id=row.referrer_user_id, referred_user_id=row.referred_user_id,
            invoice_id=invoice.id, amount_usd=amount, days=days, rewarded_at=now))

    @staticmethod
    async def _lock(session: AsyncSession, referred_user_id: str) -> None:
        """Orders recording a customer's referral against their invoices becoming PAID."""
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(f"billing.referral:{referred_user_id}", 0))))

    @staticmethod
    async def _same_person(session: AsyncSession, referrer: str, referred: str) -> bool:
        """Both accounts linked to one Telegram account."""
        ids = (await session.execute(sa.select(TelegramLink.user_id,
                                               TelegramLink.telegram_user_id)
                                     .where(TelegramLink.user_id.in_((referrer, referred))))).all()
        found = dict(ids)
        return referrer in found and found.get(referred) == found[referrer]
