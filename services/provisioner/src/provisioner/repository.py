"""Queries on the provisioning schema (no commits here: the caller's transaction owns them)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.models import BackendAccount, Grant, Move, Server, Subscription, UserBlock
from runtime.db import Database
from runtime.pagination import keyset_page
from runtime.repository import select_one


def _texts(name: str, values: list[str]) -> sa.BindParameter:
    """One array parameter (`= ANY(...)`): a statement of one shape whatever the count, where
    an IN list would be a new statement of one parameter per value."""
    return sa.bindparam(name, values, type_=ARRAY(sa.Text))


class ProvisioningRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    # locks (transaction-scoped; released at commit or rollback)
    async def lock_user(self, user_id: str) -> None:
        """Serialises everything that changes one user's subscription."""
        await self._advisory(f"user:{user_id}")

    async def lock_ref(self, ref: str) -> None:
        """Held around every backend change of an account (reconciliation takes it too)."""
        await self._advisory(f"ref:{ref}")

    async def _advisory(self, key: str) -> None:
        await self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(key, 0))))

    # subscriptions
    async def subscription(self, sub_id: str, *, for_update: bool = False) -> Subscription | None:
        stmt = sa.select(Subscription).where(Subscription.id == sub_id)
        return await select_one(self.session, stmt, for_update)

    async def subscription_for_user(self, user_id: str, *, for_update: bool = False
                                    ) -> Subscription | None:
        stmt = sa.select(Subscription).where(Subscription.user_id == user_id)
        return await select_one(self.session, stmt, for_update)

    async def page(self, *, user_id: str | None, status: str | None, limit: int,
                   cursor: str | None) -> tuple[list[Subscription], str | None]:
        stmt = sa.select(Subscription)
        if user_id:
            stmt = stmt.where(Subscription.user_id == user_id)
        if status == "LIMITED":  # shown, not stored: ACTIVE with its allowance used up
            stmt = stmt.where(Subscription.status == "ACTIVE",
                              Subscription.limited_at.is_not(None))
        elif status:
            stmt = stmt.where(Subscription.status == status)
        return await keyset_page(self.session, stmt, Subscription, limit, cursor)

    async def lock_due_for_expiry(self, now: datetime, limit: int
                                  ) -> tuple[int, list[sa.Row]]:
        """Up to `limit` subscriptions past `expires_at` (ACTIVE or SUSPENDED), their rows
        locked (a row another transaction holds is skipped: a second sweep takes the next
        ones) and each one's user lock tried without waiting: (how many rows were taken, the
        rows of those whose user lock this transaction got).

        A user whose lock another transaction holds (a grant, a move, an admin request in
        flight) is left for a later batch, so a batch never waits for one; that transaction
        waits for this one's row lock if it gets that far (this one never waits for anything
        it holds, so the two cannot deadlock). A grant arriving after the user lock was taken
        here waits for this transaction, as it would for any other. The rows come as locked
        (the newest version, its conditions checked again), so what the last holder of a
        user's lock committed is what is seen: nobody can change a row between its lock here
        and the user lock's."""
        due = (sa.select(Subscription.id, Subscription.user_id, Subscription.provision_ref,
                         Subscription.server_id, Subscription.expires_at)
               .where(Subscription.status.in_(["ACTIVE", "SUSPENDED"]),
                      Subscription.expires_at <= now)
               .limit(limit).with_for_update(skip_locked=True)
               .cte("due").prefix_with("MATERIALIZED"))
        taken = (await self.session.execute(sa.select(
            due, sa.func.pg_try_advisory_xact_lock(
                sa.func.hashtextextended(sa.literal("user:") + due.c.user_id, 0))
            .label("mine")))).all()
        return len(taken), [r for r in taken if r.mine]

    async def lock_refs(self, refs: list[str]) -> None:
        """`lock_ref` for many accounts in one statement."""
        ref = sa.func.unnest(_texts("refs", refs)).alias("ref")
        await self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(sa.literal("ref:") + sa.column("ref", sa.Text), 0)))
            .select_from(ref))

    async def expire(self, sub_ids: list[str], now: datetime) -> int:
        """Mark the subscriptions EXPIRED (their rows locked by the caller)."""
        result = await self.session.execute(
            sa.update(Subscription).where(Subscription.id == sa.any_(_texts("ids", sub_ids)))
            .values(status="EXPIRED", suspend_reason=None, updated_at=now)
            .execution_options(synchronize_session=False))
        return result.rowcount or 0

    async def expiring_within(self, now: datetime, until: datetime, limit: int,
                              days: list[int] | None = None) -> list[Subscription]:
        """Running subscriptions ending by `until`; with `days`, only those with one of those
        reminders due and not sent yet (so a window holding more than `limit` is worked
        through, not the same soonest `limit` read again each run)."""
        stmt = (sa.select(Subscription)
                .where(Subscription.status == "ACTIVE", Subscription.expires_at > now,
                       Subscription.expires_at <= until)
                .order_by(Subscription.expires_at).limit(limit)
                .with_for_update(skip_locked=True))
        if days:
            stmt = stmt.where(sa.text(
                "EXISTS (SELECT 1 FROM unnest(CAST(:days AS integer[])) AS d WHERE "
                "subscriptions.expires_at <= CAST(:now AS timestamptz) + make_interval(days => d)"
                " AND NOT d = ANY(subscriptions.reminders_sent))").bindparams(days=days, now=now))
        return list((await self.session.execute(stmt)).scalars())

    async def due_for_renewal(self, now: datetime, until: datetime, limit: int
                              ) -> list[Subscription]:
        """Running subscriptions with auto-renewal on, ending by `until`, not yet asked for
        this `expires_at` (locked; rows another sweep holds are skipped)."""
        stmt = (sa.select(Subscription)
                .where(Subscription.auto_renew_enabled, Subscription.status == "ACTIVE",
                       Subscription.expires_at > now, Subscription.expires_at <= until,
                       Subscription.renewal_due_for.is_distinct_from(Subscription.expires_at))
                .order_by(Subscription.expires_at).limit(limit)
                .with_for_update(skip_locked=True))
        return list((await self.session.execute(stmt)).scalars())

    async def due_for_limit_check(self, now: datetime, limit: int, *, any_allowance: bool
                                  ) -> list[Subscription]:
        """Running subscriptions whose allowance the panel may have used up or lifted (with
        an allowance of their own, or every one when the backend has a default), least
        recently checked first."""
        stmt = sa.select(Subscription).where(Subscription.status == "ACTIVE",
                                             Subscription.expires_at > now)
        if not any_allowance:
            stmt = stmt.where(sa.or_(Subscription.data_limit_bytes.is_not(None),
                                     Subscription.limited_at.is_not(None)))
        stmt = stmt.order_by(Subscription.usage_checked_at.asc().nulls_first(),
                             Subscription.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def subscription_by_ref(self, ref: str) -> Subscription | None:
        stmt = sa.select(Subscription).where(Subscription.provision_ref == ref)
        return await select_one(self.session, stmt)

    async def reconciliation_page(self, server_id: str | None, after: str | None, limit: int
                                  ) -> list[tuple[str, str, str, str, datetime]]:
        """(id, user, ref, status, expiry) of up to `limit` subscriptions after the id `after`
        (from the first when None), in id order: all of them, or those whose access lives on
        `server_id`."""
        stmt = (sa.select(Subscription.id, Subscription.user_id, Subscription.provision_ref,
                          Subscription.status, Subscription.expires_at)
                .order_by(Subscription.id).limit(limit))
        if after is not None:
            stmt = stmt.where(Subscription.id > after)
        if server_id is not None:
            stmt = stmt.where(Subscription.server_id == server_id)
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]

    async def ref_known(self, ref: str, server_id: str | None = None) -> bool:
        """A subscription's access is the account `ref` (on `server_id`, when given), or a
        move to `server_id` is creating it."""
        stmt = sa.select(sa.literal(1)).where(Subscription.provision_ref == ref)
        if server_id is not None:
            stmt = stmt.where(Subscription.server_id == server_id)
            moving = sa.select(sa.literal(1)).where(
                Move.to_ref == ref, Move.to_server_id == server_id, Move.status == "PENDING")
            stmt = stmt.union_all(moving)
        return (await self.session.execute(stmt)).first() is not None

    # grants
    async def insert_grant(self, **values) -> bool:
        """Insert unless the invoice already has a grant; True when this call inserted it."""
        result = await self.session.execute(
            insert(Grant).values(**values)
            .on_conflict_do_nothing(index_elements=[Grant.invoice_id]).returning(Grant.id))
        return result.first() is not None

    async def insert_grant_returning(self, **values) -> Grant | None:
        """Insert unless the invoice already has a grant; the new grant (in this session), or
        None when it was there already."""
        result = await self.session.scalars(
            insert(Grant).values(**values)
            .on_conflict_do_nothing(index_elements=[Grant.invoice_id]).returning(Grant))
        return result.first()

    async def grant_by_invoice(self, invoice_id: str, *, for_update: bool = False
                               ) -> Grant | None:
        stmt = sa.select(Grant).where(Grant.invoice_id == invoice_id)
        return await select_one(self.session, stmt, for_update)

    async def grant_by_job(self, job_id: str) -> Grant | None:
        stmt = sa.select(Grant).where(Grant.job_id == job_id).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def waiting_grants(self, limit: int) -> list[str]:
        """Invoices whose grant waits for a server with room, oldest first."""
        stmt = (sa.select(Grant.invoice_id).where(Grant.status == "WAITING")
                .order_by(Grant.created_at, Grant.id).limit(limit))
        return list((await self.session.execute(stmt)).scalars())

    async def stale_grants(self, older_than: datetime, limit: int) -> list[Grant]:
        stmt = (sa.select(Grant)
                .where(Grant.status.in_(["PENDING", "REFUND_PENDING"]),
                       Grant.updated_at < older_than)
                .order_by(Grant.updated_at).limit(limit))
        return list((await self.session.execute(stmt)).scalars())

    # user blocks
    async def user_block(self, user_id: str, *, for_update: bool = False) -> UserBlock | None:
        stmt = sa.select(UserBlock).where(UserBlock.user_id == user_id)
        return await select_one(self.session, stmt, for_update)

    async def is_blocked(self, user_id: str) -> bool:
        row = await self.user_block(user_id)
        return bool(row and row.blocked)

    async def unsynced_blocks(self, older_than: datetime, limit: int) -> list[UserBlock]:
        stmt = (sa.select(UserBlock)
                .where(UserBlock.synced.is_(False), UserBlock.updated_at < older_than)
                .limit(limit))
        return list((await self.session.execute(stmt)).scalars())

    # backend accounts
    async def record_account(self, *, backend: str, ref: str, subscription_id: str | None,
                             state: str, now: datetime, server_id: str | None = None) -> None:
        stmt = insert(BackendAccount).values(backend=backend, ref=ref,
                                             subscription_id=subscription_id, state=state,
                                             server_id=server_id, created_at=now, updated_at=now)
        await self.session.execute(stmt.on_conflict_do_update(
            constraint="uq_backend_accounts_ref",
            set_={"state": state, "updated_at": now,
                  "subscription_id": sa.func.coalesce(stmt.excluded.subscription_id,
                                                      BackendAccount.subscription_id),
                  "server_id": sa.func.coalesce(stmt.excluded.server_id,
                                                BackendAccount.server_id)},
        ))

    async def record_accounts(self, accounts: list[tuple[str, str, str, str | None]], *,
                              state: str, now: datetime) -> None:
        """`record_account` for many accounts in one statement: (backend, ref,
        subscription id, server id) each, all in `state`."""
        if not accounts:
            return
        backends, refs, subs, servers = (list(c) for c in zip(*accounts, strict=True))
        rows = sa.func.unnest(
            _texts("backends", backends),
            _texts("refs", refs),
            _texts("subs", subs),
            _texts("servers", servers),
        ).table_valued("backend", "ref", "subscription_id", "server_id").render_derived()
        stmt = insert(BackendAccount).from_select(
            ["backend", "ref", "subscription_id", "server_id", "state", "created_at",
             "updated_at"],
            sa.select(rows.c.backend, rows.c.ref, rows.c.subscription_id, rows.c.server_id,
                      sa.literal(state), sa.literal(now, sa.DateTime(timezone=True)),
                      sa.literal(now, sa.DateTime(timezone=True))))
        await self.session.execute(stmt.on_conflict_do_update(
            constraint="uq_backend_accounts_ref",
            set_={"state": state, "updated_at": now,
                  "subscription_id": sa.func.coalesce(stmt.excluded.subscription_id,
                                                      BackendAccount.subscription_id),
                  "server_id": sa.func.coalesce(stmt.excluded.server_id,
                                                BackendAccount.server_id)},
        ))

    def add(self, obj) -> None:
        self.session.add(obj)


# the statuses whose subscriptions hold room on their server
HOLDING = ("ACTIVE", "SUSPENDED")


class ServerRepository:
    """The server pool's rows and what each server holds."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, server_id: str, *, for_update: bool = False) -> Server | None:
        stmt = sa.select(Server).where(Server.id == server_id)
        return await select_one(self.session, stmt, for_update)

    async def by_name(self, name: str) -> Server | None:
        stmt = sa.select(Server).where(Server.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def all(self) -> list[Server]:
        stmt = sa.select(Server).order_by(Server.location, Server.name)
        return list((await self.session.execute(stmt)).scalars())

    async def lock_placeable(self, location: str | None) -> list[Server]:
        """The servers taking placements (ACTIVE, healthy), locked in id order (so concurrent
        placements queue rather than deadlock) until the transaction ends."""
        stmt = sa.select(Server).where(Server.status == "ACTIVE", Server.healthy)
        if location:
            stmt = stmt.where(Server.location == location)
        stmt = (stmt.order_by(Server.id).with_for_update()
                .execution_options(populate_existing=True))
        return list((await self.session.execute(stmt)).scalars())

    async def loads(self, server_ids: list[str]) -> dict[str, int]:
        """How many running subscriptions each server holds, and the room moves to it hold
        until they switch (read after its lock is taken, so every placement committed before
        is counted)."""
        if not server_ids:
            return {}
        subs = (sa.select(Subscription.server_id.label("sid"))
                .where(Subscription.server_id.in_(server_ids),
                       Subscription.status.in_(HOLDING)))
        moving = (sa.select(Move.to_server_id.label("sid"))
                  .where(Move.to_server_id.in_(server_ids), Move.status == "PENDING"))
        held = sa.union_all(subs, moving).subquery()
        stmt = sa.select(held.c.sid, sa.func.count()).group_by(held.c.sid)
        return {sid: n for sid, n in (await self.session.execute(stmt)).all()}

    async def insert_if_absent(self, **values) -> str:
        """Insert the server unless one has its name; the id of the server of that name."""
        await self.session.execute(insert(Server).values(**values)
                                   .on_conflict_do_nothing(index_elements=[Server.name]))
        stmt = sa.select(Server.id).where(Server.name == values["name"])
        return (await self.session.execute(stmt)).scalar_one()

    async def adopt_unplaced(self, server_id: str, batch: int) -> int:
        """Up to `batch` subscriptions and `batch` accounts made before the pool move onto
        `server_id` (rows another transaction is adopting are skipped); how many moved."""
        moved = 0
        for model in (Subscription, BackendAccount):
            picked = (sa.select(model.id).where(model.server_id.is_(None)).limit(batch)
                      .with_for_update(skip_locked=True))
            result = await self.session.execute(
                sa.update(model).where(model.id.in_(picked.scalar_subquery()))
                .values(server_id=server_id))
            moved += result.rowcount or 0
        return moved

    async def set_health(self, server_id: str, healthy: bool, ts: datetime) -> None:
        """The health check's outcome (its `updated_at` stays: the driver is unchanged)."""
        await self.session.execute(sa.update(Server).where(Server.id == server_id)
                                   .values(healthy=healthy, checked_at=ts))

    def add(self, obj) -> None:
        self.session.add(obj)


class SubscriptionReader:
    """A customer's own subscriptions, read on every panel load: one statement on the driver's
    connections (`Database.fetch`), no ORM and no transaction."""

    OWN = ("SELECT id, plan_id, status, started_at, expires_at, max_devices, auto_renew_enabled,"
           " auto_renew_plan_id, limited_at, limit_resets_at FROM subscriptions"
           " WHERE user_id = $1 ORDER BY created_at DESC")

    def __init__(self, db: Database):
        self.db = db

    async def own(self, user_id: str) -> list[dict]:
        return [dict(r) for r in await self.db.fetch(self.OWN, user_id)]


OPEN_MOVES = ("WAITING", "PENDING", "SWITCHED")


class MoveRepository:
    """Moves of an access to another server (`provisioner.moves`)."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, move_id: str, *, for_update: bool = False) -> Move | None:
        stmt = sa.select(Move).where(Move.id == move_id)
        return await select_one(self.session, stmt, for_update)

    async def open_for(self, subscription_id: str) -> Move | None:
        stmt = sa.select(Move).where(Move.subscription_id == subscription_id,
                                     Move.status.in_(OPEN_MOVES))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def unmoved_on(self, server_id: str, limit: int) -> list[tuple[str, str]]:
        """(subscription, user) of up to `limit` subscriptions holding room on `server_id`
        with no open move."""
        open_move = sa.select(sa.literal(1)).where(Move.subscription_id == Subscription.id,
                                                   Move.status.in_(OPEN_MOVES))
        stmt = (sa.select(Subscription.id, Subscription.user_id)
                .where(Subscription.server_id == server_id, Subscription.status.in_(HOLDING),
                       ~open_move.exists())
                .order_by(Subscription.id).limit(limit))
        return [(r.id, r.user_id) for r in (await self.session.execute(stmt)).all()]

    async def progress(self, server_id: str) -> dict[str, int]:
        """What a drain of `server_id` has left: subscriptions it holds, and the open moves off
        it by status."""
        holding = await self.session.scalar(
            sa.select(sa.func.count()).select_from(Subscription)
            .where(Subscription.server_id == server_id, Subscription.status.in_(HOLDING)))
        rows = (await self.session.execute(
            sa.select(Move.status, sa.func.count())
            .where(Move.from_server_id == server_id, Move.status.in_(OPEN_MOVES))
            .group_by(Move.status))).all()
        out = {"holding": int(holding or 0)}
        out.update({status.lower(): 0 for status in OPEN_MOVES})
        out.update({status.lower(): n for status, n in rows})
        return out

    async def due(self, older_than: datetime, limit: int) -> list[str]:
        """Open moves not advanced since `older_than` (their job lost, failed or out of
        attempts; WAITING ones waiting for room), the least recently tried first."""
        stmt = (sa.select(Move.id).where(Move.status.in_(OPEN_MOVES),
                                         Move.updated_at < older_than)
                .order_by(Move.updated_at, Move.id).limit(limit))
        return list((await self.session.execute(stmt)).scalars())

    async def open_counts(self) -> dict[str, int]:
        rows = (await self.session.execute(
            sa.select(Move.status, sa.func.count()).where(Move.status.in_(OPEN_MOVES))
            .group_by(Move.status))).all()
        return {status: 0 for status in OPEN_MOVES} | dict(rows)

    def add(self, move: Move) -> None:
        self.session.add(move)
