"""Queries on the billing schema (typed, one class per aggregate; sessions come from the caller)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import (
    IdempotencyKey,
    Invoice,
    Payment,
    Plan,
    ProviderEvent,
    SandboxChain,
    SandboxTransfer,
    StarsPayment,
)
from runtime.pagination import keyset_page
from runtime.repository import Repository

OPEN_STATUSES = ("CREATED", "PENDING")


class PlanRepository(Repository[Plan]):
    model = Plan

    async def by_name(self, name: str) -> Plan | None:
        return (await self.session.execute(sa.select(Plan).where(Plan.name == name))
                ).scalar_one_or_none()

    async def list(self, *, active_only: bool) -> list[Plan]:
        stmt = sa.select(Plan).order_by(Plan.price_usd, Plan.name)
        if active_only:
            stmt = stmt.where(Plan.is_active.is_(True))
        return list((await self.session.execute(stmt)).scalars())

    async def insert_if_absent(self, values: dict) -> bool:
        """Insert a plan unless one with the same name exists; True when inserted."""
        result = await self.session.execute(
            insert(Plan).values(**values).on_conflict_do_nothing(index_elements=["name"])
            .returning(Plan.id))
        return result.first() is not None

    async def in_use(self, plan_id: str) -> bool:
        stmt = sa.select(sa.exists().where(Invoice.plan_id == plan_id))
        return bool((await self.session.execute(stmt)).scalar())

    async def delete(self, plan: Plan) -> None:
        await self.session.delete(plan)
        await self.session.flush()


class InvoiceRepository(Repository[Invoice]):
    model = Invoice

    async def get_many(self, invoice_ids: Sequence[str]) -> list[Invoice]:
        if not invoice_ids:
            return []
        stmt = sa.select(Invoice).where(Invoice.id.in_(list(invoice_ids)))
        return list((await self.session.execute(stmt)).scalars())

    async def by_provider_ref(self, provider: str, ref: str) -> Invoice | None:
        stmt = sa.select(Invoice).where(Invoice.provider == provider, Invoice.provider_ref == ref)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list(self, *, user_id: str | None, status: str | None, limit: int,
                   cursor: str | None) -> tuple[list[Invoice], str | None]:
        stmt = sa.select(Invoice)
        if user_id is not None:
            stmt = stmt.where(Invoice.user_id == user_id)
        if status:
            stmt = stmt.where(Invoice.status == status)
        return await keyset_page(self.session, stmt, Invoice, limit, cursor)

    async def payments(self, invoice_id: str) -> list[Payment]:
        stmt = (sa.select(Payment).where(Payment.invoice_id == invoice_id)
                .order_by(Payment.created_at, Payment.id))
        return list((await self.session.execute(stmt)).scalars())

    async def payments_of(self, invoice_ids: Sequence[str]) -> dict[str, list[Payment]]:
        out: dict[str, list[Payment]] = {i: [] for i in invoice_ids}
        if not invoice_ids:
            return out
        stmt = (sa.select(Payment).where(Payment.invoice_id.in_(list(invoice_ids)))
                .order_by(Payment.created_at, Payment.id))
        for p in (await self.session.execute(stmt)).scalars():
            out[p.invoice_id].append(p)
        return out

    async def ids_to_watch(self, provider: str, after: tuple[datetime, str] | None,
                           limit: int) -> list[tuple[datetime, str]]:
        """The open invoices and those with a payment still confirming, `(rate_locked_until,
        id)` in that order after the key `after` (the page before's last): each set read
        through its own index (`ix_invoices_open_lock`, `ix_payments_unsettled`), never the
        whole table."""
        cols = (Invoice.rate_locked_until, Invoice.id)
        mine = Invoice.provider == provider
        later = _after(*cols, after)
        watched = sa.union(
            sa.select(*cols).where(mine, Invoice.status.in_(OPEN_STATUSES), later),
            sa.select(*cols).join(Payment, Payment.invoice_id == Invoice.id)
            .where(mine, Payment.status.in_(("DETECTED", "CONFIRMED")), later),
        ).subquery("watched")
        stmt = (sa.select(watched.c.rate_locked_until, watched.c.id)
                .order_by(watched.c.rate_locked_until, watched.c.id).limit(limit))
        return [(at, i) for at, i in await self.session.execute(stmt)]

    async def ids_closed_lately(self, provider: str, status: str, since: datetime,
                                after: tuple[datetime, str] | None,
                                limit: int) -> list[tuple[datetime, str]]:
        """The invoices `status` (EXPIRED or CANCELED) since `since`, `(closed at, id)` in
        that order after the key `after`, through `ix_invoices_expired_at` or
        `ix_invoices_canceled_at`: a page costs its rows, however many closed lately."""
        closed = Invoice.expired_at if status == "EXPIRED" else Invoice.canceled_at
        stmt = (sa.select(closed, Invoice.id)
                .where(Invoice.provider == provider, Invoice.status == status, closed >= since)
                .order_by(closed, Invoice.id).limit(limit))
        stmt = stmt.where(_after(closed, Invoice.id, after))
        return [(at, i) for at, i in await self.session.execute(stmt)]

    async def ids_past_lock(self, provider: str, now: datetime, limit: int) -> list[str]:
        stmt = (sa.select(Invoice.id)
                .where(Invoice.provider == provider, Invoice.status.in_(OPEN_STATUSES),
                       Invoice.rate_locked_until <= now)
                .order_by(Invoice.rate_locked_until).limit(limit))
        return list((await self.session.execute(stmt)).scalars())


def _after(first, second, key: tuple | None) -> sa.ColumnElement[bool]:
    """Rows after the keyset `key` of `(first, second)` (all rows without one); the first
    column is compared alone as well, so an index on it starts its range there."""
    if key is None:
        return sa.true()
    return sa.and_(first >= key[0], sa.tuple_(first, second) > sa.tuple_(*key))


class IdempotencyRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, *, user_id: str, key: str, request_hash: str, token: str,
                    now: datetime, expired_before: datetime, stale_before: datetime) -> bool:
        """Take the key (INSERT ... ON CONFLICT): new, past its TTL, or abandoned in progress."""
        t = IdempotencyKey.__table__
        stmt = insert(t).values(user_id=user_id, key=key, request_hash=request_hash,
                                status="in_progress", lock_token=token, created_at=now,
                                locked_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.user_id, t.c.key],
            set_={"request_hash": stmt.excluded.request_hash, "status": "in_progress",
                  "lock_token": token, "response_status": None, "response_body": None,
                  "created_at": now, "locked_at": now, "completed_at": None},
            where=sa.or_(
                t.c.created_at < expired_before,
                sa.and_(t.c.status == "in_progress", t.c.locked_at < stale_before,
                        t.c.request_hash == stmt.excluded.request_hash),
            ),
        ).returning(t.c.key)
        return (await self.session.execute(stmt)).first() is not None

    async def get(self, user_id: str, key: str) -> IdempotencyKey | None:
        stmt = sa.select(IdempotencyKey).where(IdempotencyKey.user_id == user_id,
                                               IdempotencyKey.key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def complete(self, *, user_id: str, key: str, token: str, status: int, body: str,
                       now: datetime) -> bool:
        t = IdempotencyKey.__table__
        result = await self.session.execute(
            sa.update(t)
            .where(t.c.user_id == user_id, t.c.key == key, t.c.lock_token == token,
                   t.c.status == "in_progress")
            .values(status="done", response_status=status, response_body=body,
                    completed_at=now))
        return result.rowcount == 1

    async def release(self, *, user_id: str, key: str, token: str) -> None:
        t = IdempotencyKey.__table__
        await self.session.execute(
            sa.delete(t).where(t.c.user_id == user_id, t.c.key == key, t.c.lock_token == token,
                               t.c.status == "in_progress"))


class ProviderEventRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def insert_once(self, values: dict) -> int | None:
        """Store a delivery; None when this provider's delivery id was already stored."""
        t = ProviderEvent.__table__
        result = await self.session.execute(
            insert(t).values(**values)
            .on_conflict_do_nothing(index_elements=[t.c.provider, t.c.delivery_id])
            .returning(t.c.id))
        return result.scalar_one_or_none()

    async def get(self, provider: str, delivery_id: str) -> ProviderEvent | None:
        stmt = sa.select(ProviderEvent).where(ProviderEvent.provider == provider,
                                              ProviderEvent.delivery_id == delivery_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def mark_processed(self, event_id: int, outcome: str, now: datetime) -> None:
        t = ProviderEvent.__table__
        await self.session.execute(sa.update(t).where(t.c.id == event_id)
                                   .values(processed_at=now, outcome=outcome))


class SandboxRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def height(self) -> int:
        value = (await self.session.execute(
            sa.select(SandboxChain.height).where(SandboxChain.id == 1))).scalar_one_or_none()
        return int(value or 0)

    async def advance(self, count: int) -> int:
        t = SandboxChain.__table__
        stmt = insert(t).values(id=1, height=count)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.id],
                                          set_={"height": t.c.height + count}).returning(t.c.height)
        return int((await self.session.execute(stmt)).scalar_one())

    async def include_pending(self, block_height: int) -> None:
        t = SandboxTransfer.__table__
        await self.session.execute(sa.update(t).where(t.c.block_height.is_(None))
                                   .values(block_height=block_height))

    async def transfers_to_many(self, addresses: Sequence[tuple[str, str]]
                                ) -> dict[str, list[SandboxTransfer]]:
        """Transfers to any of the (network, address) pairs, by address."""
        stmt = (sa.select(SandboxTransfer)
                .where(sa.tuple_(SandboxTransfer.network, SandboxTransfer.address)
                       .in_(list(addresses)))
                .order_by(SandboxTransfer.created_at, SandboxTransfer.txid))
        out: dict[str, list[SandboxTransfer]] = {}
        for t in (await self.session.execute(stmt)).scalars():
            out.setdefault(t.address, []).append(t)
        return out


class StarsPaymentRepository:
    """Telegram Stars payments as the bot received them, one row per charge id."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def insert_once(self, values: dict) -> bool:
        """Store a payment; False when its charge id was stored already."""
        t = StarsPayment.__table__
        result = await self.session.execute(
            insert(t).values(**values)
            .on_conflict_do_nothing(index_elements=[t.c.telegram_payment_charge_id])
            .returning(t.c.telegram_payment_charge_id))
        return result.first() is not None

    async def for_invoices(self, invoice_ids: Sequence[str]) -> dict[str, list[StarsPayment]]:
        if not invoice_ids:
            return {}
        stmt = (sa.select(StarsPayment).where(StarsPayment.invoice_id.in_(list(invoice_ids)))
                .order_by(StarsPayment.paid_at, StarsPayment.telegram_payment_charge_id))
        out: dict[str, list[StarsPayment]] = {}
        for p in (await self.session.execute(stmt)).scalars():
            out.setdefault(p.invoice_id, []).append(p)
        return out

    async def by_charge(self, charge_ids: Sequence[str]) -> dict[str, StarsPayment]:
        if not charge_ids:
            return {}
        stmt = sa.select(StarsPayment).where(
            StarsPayment.telegram_payment_charge_id.in_(list(charge_ids)))
        return {p.telegram_payment_charge_id: p
                for p in (await self.session.execute(stmt)).scalars()}
