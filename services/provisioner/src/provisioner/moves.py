"""Moving a subscription's access to another server, exactly once: the customer changing
location (`PUT /subscriptions/{id}/location`) or an admin draining a server.

A move is a row of `moves` advanced one step at a time, each step in a transaction of its own
under the user's lock (which every change of the subscription takes), so a crash anywhere
resumes from the last committed step and the subscription is never moved twice:

1. WAITING → PENDING: a target is placed (`ServerPool.place`, never the server it leaves); the
   PENDING move holds the target's room (`ServerRepository.loads` counts it) until it switches,
   so moves and new grants together never oversubscribe a server.
2. PENDING → SWITCHED: the account is created on the target under its ref's lock, then, in the
   same transaction, the subscription points to it (server, ref, backend) and it is recorded.
   Its ref is `server_ref(subscription, target)`: every driver creates "if missing (same ref =
   same account)", so a crash before this commit leaves the move PENDING and its retry creates
   no second account. A subscription not ACTIVE gets no account (its resume creates one).
3. SWITCHED → DONE: the old account is revoked (`disable`: idempotent, a missing account is
   already disabled), retried until it is; reconciliation revokes it too (it is an account no
   subscription points to).

A move is run at once by a `move_access` job; an open move its job did not finish (a crash, a
lost enqueue, attempts run out, no room yet) is resumed by the `move_sweep` schedule. A drain marks
the server DRAINING (no placements), starts a move for every subscription holding room on it
in bounded batches (to the least loaded server with room in its location, else in any), and
marks it DISABLED once nothing is left on it; with no room anywhere the rest wait as WAITING
moves, shown by the drain's progress.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.backends.base import REF_PREFIX
from provisioner.metrics import MOVES, MOVES_OPEN
from provisioner.models import Move, Server, Subscription
from provisioner.repository import (
    HOLDING,
    MoveRepository,
    ProvisioningRepository,
    ServerRepository,
)
from provisioner.servers import ACTIVE, DISABLED, DRAINING, PoolFull, ServerPool
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, NotFound
from runtime.identity import Identity
from runtime.logging import get_logger

log = get_logger(__name__)

WAITING, PENDING, SWITCHED, DONE, CANCELED = "WAITING", "PENDING", "SWITCHED", "DONE", "CANCELED"
LOCATION, DRAIN = "LOCATION", "DRAIN"


def server_ref(subscription_id: str, server_id: str) -> str:
    """The ref of a subscription's account on `server_id` (one account per subscription per
    server: a retried create makes the same one)."""
    digest = hashlib.sha256(f"ref:{subscription_id}:{server_id}".encode()).hexdigest()
    return REF_PREFIX + digest[:24]


class MoveService:
    def __init__(self, pool: ServerPool):
        self.pool = pool

    # ---- views ------------------------------------------------------------------------------
    async def view(self, s: AsyncSession, move: Move) -> dict:
        repo = ServerRepository(s)

        async def location(server_id: str | None) -> str | None:
            server = await repo.get(server_id) if server_id else None
            return server.location if server is not None else None

        return {"id": move.id, "subscription_id": move.subscription_id, "reason": move.reason,
                "status": move.status, "from_location": await location(move.from_server_id),
                "to_location": await location(move.to_server_id) or move.location,
                "created_at": move.created_at, "updated_at": move.updated_at,
                "done_at": move.done_at}

    # ---- the customer -----------------------------------------------------------------------
    async def change_location(self, s: AsyncSession, ident: Identity, sub_id: str,
                              location: str, ts: datetime) -> tuple[Move | None, str]:
        """Start moving the caller's subscription to `location`. Returns (the move, what
        happened): `started`, `in_progress` (a move there is under way: the same one), or
        `already_there` (no move). 404 for another's subscription or a location with no server
        taking customers, 409 for an ended one, a move elsewhere under way, or no room."""
        prov = ProvisioningRepository(s)
        found = await prov.subscription(sub_id)
        if found is None or found.user_id != ident.user_id:
            raise NotFound("Subscription not found")
        await prov.lock_user(found.user_id)
        sub = await prov.subscription(sub_id, for_update=True)
        if sub.status not in HOLDING:
            raise Conflict("The subscription has ended; renew it first",
                           {"status": sub.status}, code="SUBSCRIPTION_ENDED")
        servers = ServerRepository(s)
        if not any(x.location == location and x.status == ACTIVE for x in await servers.all()):
            raise NotFound("No such location", {"location_id": location})
        moves = MoveRepository(s)
        current = await moves.open_for(sub.id)
        if current is not None:
            target = current.location or (await self.view(s, current))["to_location"]
            if target == location:
                return current, "in_progress"
            raise Conflict("The access is already moving to another location",
                           {"move_id": current.id, "to_location": target},
                           code="MOVE_IN_PROGRESS")
        here = await servers.get(sub.server_id) if sub.server_id else None
        if here is not None and here.location == location:
            return None, "already_there"
        server = await self.pool.place(s, location, exclude=sub.server_id)
        move = self._new(sub, LOCATION, location, server, ident.user_id, ts)
        moves.add(move)
        await s.flush()
        MOVES.labels(LOCATION, "started").inc()
        log.info("move_started", move_id=move.id, subscription_id=sub.id, reason=LOCATION,
                 to_location=location)
        return move, "started"

    @staticmethod
    def _new(sub: Subscription, reason: str, location: str | None, server: Server | None,
             actor_id: str | None, ts: datetime) -> Move:
        return Move(id=uuid.uuid4().hex, subscription_id=sub.id, user_id=sub.user_id,
                    reason=reason, location=location, from_server_id=sub.server_id,
                    from_ref=sub.provision_ref, to_server_id=server.id if server else None,
                    to_ref=server_ref(sub.id, server.id) if server else None,
                    status=PENDING if server else WAITING, attempts=0, actor_id=actor_id,
                    created_at=ts, updated_at=ts)

    # ---- steps ------------------------------------------------------------------------------
    async def _target(self, s: AsyncSession, move: Move) -> Server:
        """Where a move may go: a LOCATION move to its location; a drain's to the drained
        server's location, else anywhere with room (raises `PoolFull`)."""
        if move.location is not None:
            return await self.pool.place(s, move.location, exclude=move.from_server_id)
        home = await ServerRepository(s).get(move.from_server_id) if move.from_server_id else None
        return await self.pool.place(s, home.location if home else None,
                                     exclude=move.from_server_id, anywhere=True)

    async def advance(self, s: AsyncSession, move_id: str, ts: datetime) -> str:
        """Take the move one step further (in the caller's transaction); returns its status.
        Backend failures propagate (nothing of the step is committed)."""
        moves, prov = MoveRepository(s), ProvisioningRepository(s)
        move = await moves.get(move_id)
        if move is None or move.status in (DONE, CANCELED):
            return move.status if move is not None else CANCELED
        await prov.lock_user(move.user_id)
        move = await moves.get(move_id, for_update=True)
        sub = await prov.subscription(move.subscription_id, for_update=True)
        if move.status == WAITING:
            if sub is None or sub.status not in HOLDING or sub.server_id != move.from_server_id:
                return self._close(move, CANCELED, ts)
            try:
                server = await self._target(s, move)
            except PoolFull as exc:
                move.last_error, move.updated_at = exc.message, ts
                return WAITING
            move.to_server_id, move.to_ref = server.id, server_ref(sub.id, server.id)
            move.status, move.updated_at, move.last_error = PENDING, ts, None
            MOVES.labels(move.reason, "placed").inc()
            return PENDING
        if move.status == PENDING:
            if sub is None or sub.server_id != move.from_server_id:  # placed anew meanwhile
                return self._close(move, CANCELED, ts)
            await self._create_and_switch(s, move, sub, ts)
            return SWITCHED
        # SWITCHED: revoke the old account
        await prov.lock_ref(move.from_ref)
        old = await self.pool.driver(move.from_server_id, s)
        await old.disable(move.from_ref)
        await prov.record_account(backend=old.name, ref=move.from_ref,
                                  subscription_id=move.subscription_id, state="DISABLED",
                                  now=ts, server_id=move.from_server_id)
        log.info("move_done", move_id=move.id, subscription_id=move.subscription_id)
        return self._close(move, DONE, ts)

    async def _create_and_switch(self, s: AsyncSession, move: Move, sub: Subscription,
                                 ts: datetime) -> None:
        prov = ProvisioningRepository(s)
        await prov.lock_ref(move.to_ref)
        new = await self.pool.driver(move.to_server_id, s)
        if sub.status == "ACTIVE" and sub.expires_at > ts:
            await new.ensure_active(move.to_ref, expires_at=sub.expires_at,
                                    max_devices=sub.max_devices,
                                    data_limit_bytes=sub.data_limit_bytes,
                                    traffic_reset=sub.traffic_reset or "NONE")
            await prov.record_account(backend=new.name, ref=move.to_ref,
                                      subscription_id=sub.id, state="ACTIVE", now=ts,
                                      server_id=move.to_server_id)
            sub.limited_at = sub.limit_resets_at = None  # a fresh account, its traffic counted anew
        sub.server_id, sub.provision_ref, sub.backend = move.to_server_id, move.to_ref, new.name
        sub.updated_at = ts
        move.status, move.switched_at, move.updated_at, move.last_error = SWITCHED, ts, ts, None
        await s.flush()
        MOVES.labels(move.reason, "switched").inc()
        log.info("move_switched", move_id=move.id, subscription_id=sub.id)

    @staticmethod
    def _close(move: Move, status: str, ts: datetime) -> str:
        move.status, move.updated_at = status, ts
        move.done_at = ts
        MOVES.labels(move.reason, status.lower()).inc()
        return status

    async def run(self, db: Database, move_id: str, ts: datetime | None = None) -> str:
        """Advance the move, one transaction per step, until it is DONE, CANCELED or WAITING
        for room; a failure propagates after being noted on the move."""
        status = None
        while status not in (DONE, CANCELED, WAITING):
            try:
                async with db.transaction() as s:
                    status = await self.advance(s, move_id, ts or now())
            except Exception as exc:
                await self._note_failure(db, move_id, exc, ts or now())
                raise
        return status

    @staticmethod
    async def _note_failure(db: Database, move_id: str, exc: Exception, ts: datetime) -> None:
        MOVES.labels("any", "failed").inc()
        log.warning("move_step_failed", move_id=move_id, error=str(exc)[:300])
        try:
            async with db.transaction() as s:
                move = await MoveRepository(s).get(move_id, for_update=True)
                if move is not None:
                    move.attempts += 1
                    move.last_error = str(exc)[:500]
                    move.updated_at = ts
        except Exception as note_exc:  # the move stays open and is resumed anyway
            log.warning("move_failure_not_recorded", move_id=move_id,
                        error=str(note_exc)[:200])

    # ---- draining ---------------------------------------------------------------------------
    async def drain(self, s: AsyncSession, server_id: str, ts: datetime) -> dict:
        """Mark the server DRAINING (no new placements); its moves are started by the
        `drain_server` job and the sweep. Draining a DRAINING server again changes nothing; a
        DISABLED one that still holds subscriptions is drained too."""
        repo = ServerRepository(s)
        server = await repo.get(server_id, for_update=True)
        if server is None:
            raise NotFound("No such server")
        progress = await MoveRepository(s).progress(server.id)
        if server.status == DISABLED and not progress["holding"]:
            raise Conflict("The server is disabled and holds nothing to move",
                           code="NOTHING_TO_DRAIN")
        if server.status != DRAINING:
            server.status, server.updated_at = DRAINING, ts
            await s.flush()
            log.info("server_draining", server=server.name, holding=progress["holding"])
        return {"server": self.pool.view(server, (await repo.loads([server.id])).get(
            server.id, 0)), "progress": progress}

    async def drain_batch(self, db: Database, server_id: str, batch: int,
                          ts: datetime | None = None) -> tuple[int, int]:
        """Start (and run) moves for up to `batch` subscriptions still on the draining server;
        returns how many it found and how many it started (WAITING ones included; fewer when
        another pass started some first)."""
        await self.pool.adopt()  # every subscription on the server has its row say so
        async with db.transaction() as s:
            server = await ServerRepository(s).get(server_id)
            if server is None or server.status != DRAINING:
                return 0, 0
            todo = await MoveRepository(s).unmoved_on(server_id, batch)
        started = 0
        for sub_id, user_id in todo:
            stamp = ts or now()
            async with db.transaction() as s:
                move_id = await self._start_drain_move(s, sub_id, user_id, server_id, stamp)
            if move_id is None:
                continue
            started += 1
            try:
                await self.run(db, move_id, ts)
            except Exception:  # noted on the move; the sweep resumes it
                continue
        return len(todo), started

    async def _start_drain_move(self, s: AsyncSession, sub_id: str, user_id: str,
                                server_id: str, ts: datetime) -> str | None:
        prov, moves = ProvisioningRepository(s), MoveRepository(s)
        await prov.lock_user(user_id)
        sub = await prov.subscription(sub_id, for_update=True)
        if (sub is None or sub.server_id != server_id or sub.status not in HOLDING
                or await moves.open_for(sub.id) is not None):
            return None
        move = self._new(sub, DRAIN, None, None, None, ts)
        try:
            server = await self._target(s, move)
        except PoolFull as exc:
            move.last_error = exc.message
        else:
            move.to_server_id, move.to_ref = server.id, server_ref(sub.id, server.id)
            move.status = PENDING
        moves.add(move)
        await s.flush()
        MOVES.labels(DRAIN, "started" if move.status == PENDING else "waiting").inc()
        log.info("move_started", move_id=move.id, subscription_id=sub.id, reason=DRAIN,
                 status=move.status)
        return move.id

    async def finish_drain(self, db: Database, server_id: str, ts: datetime | None = None
                           ) -> bool:
        """A draining server with nothing left on it (no subscription holding room, no open
        move off it) becomes DISABLED; True when it did."""
        await self.pool.adopt()
        async with db.transaction() as s:
            server = await ServerRepository(s).get(server_id, for_update=True)
            if server is None or server.status != DRAINING:
                return False
            progress = await MoveRepository(s).progress(server_id)
            if any(progress.values()):
                return False
            server.status, server.updated_at = DISABLED, ts or now()
        log.info("server_drained", server=server.name)
        return True

    async def drain_all(self, db: Database, batch: int, budget_batches: int = 10,
                        ts: datetime | None = None, budget_seconds: float | None = None) -> int:
        """One bounded pass over every DRAINING server (the sweep and the drain job): up to
        `budget_batches` batches each, none started after `budget_seconds`, then DISABLED when
        drained; returns moves started (the next pass goes on)."""
        async with db.transaction() as s:
            draining = [x.id for x in await ServerRepository(s).all() if x.status == DRAINING]
        deadline = time.monotonic() + budget_seconds if budget_seconds else None
        started = 0
        for server_id in draining:
            for _ in range(budget_batches):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                found, n = await self.drain_batch(db, server_id, batch, ts)
                started += n
                if found < batch:
                    break
            await self.finish_drain(db, server_id, ts)
        return started

    async def resume(self, db: Database, older_than: datetime, batch: int,
                     ts: datetime | None = None) -> int:
        """Resume open moves not advanced since `older_than` (WAITING ones try for room
        again); returns how many finished."""
        async with db.transaction() as s:
            due = await MoveRepository(s).due(older_than, batch)
        finished = 0
        for move_id in due:
            try:
                finished += await self.run(db, move_id, ts) in (DONE, CANCELED)
            except Exception:  # noted on the move; tried again next time
                continue
        async with db.transaction() as s:
            for status, n in (await MoveRepository(s).open_counts()).items():
                MOVES_OPEN.labels(status).set(n)
        return finished
