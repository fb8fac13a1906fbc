"""Customers' balances: an append-only ledger in which every entry carries the idempotency key of
what caused it, so a retried request or a redelivered event moves money once.

One rule orders a customer's entries: the balance row is locked first (`SELECT ... FOR UPDATE`),
then the entry is written with the balance after it, then the balance. So `balance_after_usd`
is the running sum of the customer's entries in id order, and the balance is their sum. The
database refuses a negative balance and any UPDATE or DELETE of an entry; the checks here give
the clear error first. What is taken back but the balance cannot cover (a reversed referral
reward) is recorded as owed (`balances.owed_usd`, the balance then being zero), and the next
credits pay it first. Functions here take the caller's session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.exceptions import InsufficientBalance
from billing.models import Balance, BalanceEntry
from contracts.billing import BalanceCreditedV1, BalanceDebitedV1
from runtime.clock import now as utcnow
from runtime.errors import Conflict
from runtime.outbox import Outbox
from runtime.pagination import decode_int_cursor

ZERO = Decimal("0.00")
# What `numeric(12,2)` holds: a balance never grows past it.
MAX_BALANCE = Decimal("9999999999.99")
DEBT_PAID_NOTE = "Owed: a referral reward that was taken back"


@dataclass(frozen=True)
class Movement:
    entry: BalanceEntry
    applied: bool  # False: the key had moved money already, `entry` is that first entry
    # A credit that paid what the balance owed: the second entry, which took it.
    debt_entry: BalanceEntry | None = None

    @property
    def balance_usd(self) -> Decimal:
        return (self.debt_entry or self.entry).balance_after_usd


class Ledger:
    """The ledger; each movement publishes `billing.balance.credited/debited` on `events`."""

    def __init__(self, events: Outbox):
        self.events = events

    async def balance(self, session: AsyncSession, user_id: str) -> Decimal:
        value = await session.scalar(sa.select(Balance.balance_usd)
                                     .where(Balance.user_id == user_id))
        return value if value is not None else ZERO

    async def owed(self, session: AsyncSession, user_id: str) -> Decimal:
        value = await session.scalar(sa.select(Balance.owed_usd)
                                     .where(Balance.user_id == user_id))
        return value if value is not None else ZERO

    async def entries(self, session: AsyncSession, user_id: str, *, limit: int,
                      cursor: str | None) -> tuple[list[BalanceEntry], str | None]:
        """Newest first; the cursor is the last entry's id."""
        stmt = sa.select(BalanceEntry).where(BalanceEntry.user_id == user_id)
        before = decode_int_cursor(cursor)
        if before is not None:
            stmt = stmt.where(BalanceEntry.id < before)
        rows = list((await session.scalars(stmt.order_by(BalanceEntry.id.desc())
                                           .limit(limit + 1))).all())
        if len(rows) <= limit:
            return rows, None
        return rows[:limit], str(rows[limit - 1].id)

    async def _locked(self, session: AsyncSession, user_id: str) -> tuple[Decimal, Decimal]:
        """The balance and what it owes, its row locked (created at zero when missing)."""
        await session.execute(insert(Balance).values(user_id=user_id, balance_usd=ZERO,
                                                     owed_usd=ZERO, updated_at=utcnow())
                              .on_conflict_do_nothing(index_elements=[Balance.user_id]))
        row = (await session.execute(sa.select(Balance.balance_usd, Balance.owed_usd)
                                     .where(Balance.user_id == user_id)
                                     .with_for_update())).one()
        return row.balance_usd, row.owed_usd

    async def move(self, session: AsyncSession, *, user_id: str, amount: Decimal, kind: str,
                   key: str, invoice_id: str | None = None, note: str | None = None,
                   actor_id: str | None = None) -> Movement:
        """Add `amount` (negative: take it) to the balance, once per `key`. Taking more than
        the balance holds is `InsufficientBalance` (409) and changes nothing. A credit to a
        balance that owes money pays the debt first, with a second entry (key `<key>:debt`)."""
        if amount == 0:
            raise ValueError("a ledger entry moves money")
        current, owed = await self._locked(session, user_id)
        first = await session.scalar(sa.select(BalanceEntry)
                                     .where(BalanceEntry.idempotency_key == key))
        if first is not None:
            if first.user_id != user_id or first.amount_usd != amount:
                raise Conflict("This ledger key already moved other money", {"key": key})
            return Movement(first, applied=False)
        after = current + amount
        if after < 0:
            raise InsufficientBalance(balance=current, needed=-amount)
        if after > MAX_BALANCE:
            raise Conflict("The balance cannot hold this much", {"balance_usd": format(
                current, "f"), "max_usd": format(MAX_BALANCE, "f")})
        entry = await self._write(session, user_id=user_id, before=current, amount=amount,
                                  kind=kind, key=key, invoice_id=invoice_id, note=note,
                                  actor_id=actor_id)
        if amount < 0 or owed == 0:
            return Movement(entry, applied=True)
        paid = min(owed, after)
        debt = await self._write(session, user_id=user_id, before=after, amount=-paid,
                                 kind="ADJUSTMENT", key=f"{key}:debt", invoice_id=invoice_id,
                                 note=DEBT_PAID_NOTE, actor_id=None, owed=owed - paid)
        return Movement(entry, applied=True, debt_entry=debt)

    async def take_back(self, session: AsyncSession, *, user_id: str, amount: Decimal,
                        key: str, invoice_id: str | None = None,
                        note: str | None = None) -> Decimal:
        """Take `amount` back, never below zero: an ADJUSTMENT entry of what the balance
        covers, and the rest recorded as owed (the next credits pay it). Returns what is owed
        from it. The entry's `key` makes a repeat take nothing twice from the balance; the
        caller's own state makes sure it is asked once (what is owed has no entry)."""
        current, owed = await self._locked(session, user_id)
        if await session.scalar(sa.select(sa.exists().where(
                BalanceEntry.idempotency_key == key))):
            return ZERO
        taken = min(current, amount)
        rest = amount - taken
        if taken > 0:
            await self._write(session, user_id=user_id, before=current, amount=-taken,
                              kind="ADJUSTMENT", key=key, invoice_id=invoice_id, note=note,
                              actor_id=None, owed=owed + rest)
        elif rest > 0:
            await session.execute(sa.update(Balance).where(Balance.user_id == user_id)
                                  .values(owed_usd=owed + rest, updated_at=utcnow()))
        return rest

    async def _write(self, session: AsyncSession, *, user_id: str, before: Decimal,
                     amount: Decimal, kind: str, key: str, invoice_id: str | None,
                     note: str | None, actor_id: str | None,
                     owed: Decimal | None = None) -> BalanceEntry:
        """One entry and the balance after it (the balance row is locked)."""
        now = utcnow()
        after = before + amount
        entry = BalanceEntry(user_id=user_id, kind=kind, amount_usd=amount,
                             balance_after_usd=after, idempotency_key=key, invoice_id=invoice_id,
                             note=note, actor_id=actor_id, created_at=now)
        session.add(entry)
        values: dict = {"balance_usd": after, "updated_at": now}
        if owed is not None:
            values["owed_usd"] = owed
        await session.execute(sa.update(Balance).where(Balance.user_id == user_id)
                              .values(**values))
        await session.flush()
        event = BalanceCreditedV1 if amount > 0 else BalanceDebitedV1
        await self.events.add(session, event(user_id=user_id, entry_id=entry.id, kind=kind,
                                        amount_usd=abs(amount), balance_usd=after,
                                        invoice_id=invoice_id, created_at=now))
        return entry
