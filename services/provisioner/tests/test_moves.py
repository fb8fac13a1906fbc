"""Moving an access to another server exactly once, on a real database with sandbox servers:
a location change and its refusals, each crash point of a move resuming to one working account
on the new server and none left on the old, a drain of 30 subscriptions racing new grants
(each moved once, none lost, no server over capacity), a drain that finds no room waiting
until there is, and reconciliation looking at every server of the pool."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from contracts.public.servers import ServerCreate, ServerUpdate
from provisioner.app import create_api
from provisioner.backends import BackendError
from provisioner.backends.sandbox import SandboxBackend
from provisioner.models import Move, SandboxAccount, Server, Subscription, outbox
from provisioner.moves import DONE, PENDING, SWITCHED, WAITING, MoveService, server_ref
from provisioner.repository import ServerRepository
from provisioner.servers import PoolFull, ServerPool
from provisioner.service import ProvisioningService, provision_ref
from runtime import identity
from runtime.db import Database
from runtime.errors import Conflict, NotFound
from runtime.identity import Identity

from .conftest import paid

T0 = datetime.now(UTC).replace(microsecond=0)


class ProcessDied(Exception):
    """The process stops here: the open transaction never commits."""




@pytest.fixture
def settings(unit_settings):
    """The seeded server holds nothing here: only the servers a test adds take customers, new
    ones in `de-fra`."""
    return unit_settings.model_copy(update={"seed_server_capacity": 0,
                                            "server_default_location": "de-fra"})


@pytest.fixture
def service(backend, pool):
    return ProvisioningService(backend, pool=pool)


@pytest.fixture
def moves(pool):
    return MoveService(pool)


async def add_server(db, pool, name: str, capacity: int, location: str) -> str:
    async with db.transaction() as s:
        out = await pool.create(s, ServerCreate(
            name=name, location=location, backend="sandbox", capacity=capacity,
            settings={"host": f"{name}.vpn.test"}))
    return out["id"]


async def buy(db, service, user_id: str) -> Subscription:
    async with db.transaction() as s:
        assert (await service.record_and_apply(s, paid(user_id, T0), T0)).outcome == "activated"
    return await subscription(db, user_id)


async def subscription(db, user_id: str) -> Subscription:
    async with db.transaction() as s:
        return (await s.execute(sa.select(Subscription)
                                .where(Subscription.user_id == user_id))).scalar_one()


async def accounts_of(db, sub_id: str, server_ids: list[str]) -> dict[str, dict[str, bool]]:
    """Server id → {ref: enabled} of the subscription's accounts (by ref) on each server."""
    refs = {provision_ref(sub_id), *(server_ref(sub_id, x) for x in server_ids)}
    async with db.transaction() as s:
        sub = await s.get(Subscription, sub_id)
        refs.add(sub.provision_ref)
        rows = (await s.execute(sa.select(Server.id).where(Server.id.in_(server_ids)))).all()
        found = (await s.execute(sa.select(SandboxAccount.server, SandboxAccount.ref,
                                           SandboxAccount.enabled)
                                 .where(SandboxAccount.ref.in_(refs)))).all()
    out: dict[str, dict[str, bool]] = {r.id: {} for r in rows}
    for server, ref, enabled in found:
        out.setdefault(server, {})[ref] = enabled
    return out


async def one_working_account(db, sub_id: str, a: str, b: str) -> None:
    """The subscription points to one enabled account on `b`; `a` has none enabled."""
    sub = (await subscription_by_id(db, sub_id))
    got = await accounts_of(db, sub_id, [a, b])
    assert sub.server_id == b and sub.provision_ref == server_ref(sub_id, b)
    assert got[b] == {sub.provision_ref: True}
    assert not any(got[a].values()), got[a]


async def subscription_by_id(db, sub_id: str) -> Subscription:
    async with db.transaction() as s:
        return await s.get(Subscription, sub_id)


async def move_row(db, move_id: str) -> Move:
    async with db.transaction() as s:
        return await s.get(Move, move_id)


@pytest.fixture
async def two_locations(db, pool):
    return (await add_server(db, pool, "de-1", 10, "de-fra"),
            await add_server(db, pool, "nl-1", 10, "nl-ams"))


async def start(db, moves, sub, location: str = "nl-ams"):
    async with db.transaction() as s:
        return await moves.change_location(s, Identity(sub.user_id, "USER"), sub.id, location,
                                           T0)


async def test_a_location_change_moves_the_access_once_and_revokes_the_old(
        db, service, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-move")
    assert sub.server_id == a
    move, what = await start(db, moves, sub)
    assert what == "started" and move.status == PENDING and move.to_server_id == b
    again, what = await start(db, moves, sub)  # asked again while it runs: the same move
    assert (again.id, what) == (move.id, "in_progress")
    with pytest.raises(Conflict) as err:  # elsewhere while one is under way
        await start(db, moves, sub, "de-fra")
    assert err.value.code == "MOVE_IN_PROGRESS"
    assert await moves.run(db, move.id, T0) == DONE
    await one_working_account(db, sub.id, a, b)
    async with db.transaction() as s:
        access = await service.access(s, Identity(sub.user_id, "USER"), sub.id)
        view = await moves.view(s, await s.get(Move, move.id))
    assert "nl-1.vpn.test" in access["access_url"]
    assert (view["from_location"], view["to_location"], view["status"]) == (
        "de-fra", "nl-ams", "DONE")
    assert await moves.run(db, move.id, T0) == DONE  # a redelivered job changes nothing
    assert await start(db, moves, await subscription_by_id(db, sub.id)) == (None,
                                                                             "already_there")


async def test_a_location_change_is_refused_for_anothers_subscription_and_bad_places(
        db, service, pool, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-own")
    with pytest.raises(NotFound):
        async with db.transaction() as s:
            await moves.change_location(s, Identity("intruder", "USER"), sub.id, "nl-ams", T0)
    with pytest.raises(NotFound):
        await start(db, moves, sub, "xx-nowhere")
    async with db.transaction() as s:
        await pool.update(s, b, ServerUpdate(capacity=0))
    with pytest.raises(PoolFull):
        await start(db, moves, sub)
    async with db.transaction() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Move))).scalar() == 0
        (await s.get(Subscription, sub.id)).status = "EXPIRED"
    with pytest.raises(Conflict) as err:
        await start(db, moves, sub)
    assert err.value.code == "SUBSCRIPTION_ENDED"


async def test_a_crash_after_the_create_before_the_switch_resumes_to_one_account(
        db, service, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-crash-1")
    move, _ = await start(db, moves, sub)
    with pytest.raises(ProcessDied):
        async with db.transaction() as s:
            assert await moves.advance(s, move.id, T0) == SWITCHED
            raise ProcessDied  # the account exists on the new server; the switch is lost
    assert (await move_row(db, move.id)).status == PENDING
    assert (await subscription_by_id(db, sub.id)).server_id == a
    assert (await accounts_of(db, sub.id, [a, b]))[b] == {server_ref(sub.id, b): True}
    assert await moves.run(db, move.id, T0) == DONE  # the retry creates the same account
    await one_working_account(db, sub.id, a, b)


async def test_a_crash_after_the_switch_before_the_revoke_resumes_to_one_account(
        db, service, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-crash-2")
    move, _ = await start(db, moves, sub)
    async with db.transaction() as s:
        assert await moves.advance(s, move.id, T0) == SWITCHED
    # the process dies here: the old account is still enabled, no subscription points to it
    assert (await accounts_of(db, sub.id, [a, b]))[a] == {sub.provision_ref: True}
    fixes = await service.reconcile(db, T0)  # reconciliation revokes the leftover ...
    assert fixes == {"orphan_disabled": 1}
    assert await moves.run(db, move.id, T0) == DONE  # ... and the resumed move finishes
    await one_working_account(db, sub.id, a, b)
    assert await service.reconcile(db, T0) == {}


async def test_a_revoke_that_fails_or_crashes_is_retried_until_done(
        db, service, pool, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-crash-3")
    move, _ = await start(db, moves, sub)
    old = await pool.driver(a)
    await old.add_fault("disable", 2, "old panel down")
    for _ in range(2):
        with pytest.raises(BackendError, match="old panel down"):
            await moves.run(db, move.id, T0)
    row = await move_row(db, move.id)
    assert (row.status, row.attempts) == (SWITCHED, 2) and "old panel down" in row.last_error
    with pytest.raises(ProcessDied):  # revoked, but the process dies before recording it
        async with db.transaction() as s:
            assert await moves.advance(s, move.id, T0) == DONE
            raise ProcessDied
    assert (await move_row(db, move.id)).status == SWITCHED
    assert await moves.resume(db, T0 + timedelta(hours=1), 10, T0) == 1  # the sweep
    await one_working_account(db, sub.id, a, b)
    assert (await move_row(db, move.id)).status == DONE


async def test_a_suspended_subscription_moves_without_an_account_until_resumed(
        db, service, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-suspended")
    async with db.transaction() as s:
        await service.admin_suspend(s, sub.id, T0)
    move, _ = await start(db, moves, sub)
    assert await moves.run(db, move.id, T0) == DONE
    got = await accounts_of(db, sub.id, [a, b])
    assert got[b] == {} and not any(got[a].values())
    async with db.transaction() as s:
        await service.admin_resume(s, sub.id, T0)
    await one_working_account(db, sub.id, a, b)


async def test_a_move_whose_subscription_was_placed_anew_meanwhile_is_canceled(
        db, service, moves, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-replaced")
    move, _ = await start(db, moves, sub)
    async with db.transaction() as s:  # ended and bought again elsewhere before the move ran
        (await s.get(Subscription, sub.id)).server_id = None
    assert await moves.run(db, move.id, T0) == "CANCELED"
    async with db.transaction() as s:
        assert (await ServerRepository(s).loads([b])).get(b, 0) == 0  # its room is given back
    assert (await accounts_of(db, sub.id, [a, b]))[b] == {}


@pytest.fixture
async def wide_db(db, settings):
    """A connection for each concurrent transaction, so they wait on locks, not the pool."""
    wide = Database(settings, pool_size=25)
    yield wide
    await wide.dispose()


async def test_a_drain_of_thirty_racing_new_grants_moves_each_once_and_loses_none(
        wide_db, settings, faults):
    db = wide_db
    backend = SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)
    pool = ServerPool(db, settings.model_copy(update={"server_default_location": ""}), backend)
    service, moves = ProvisioningService(backend, pool=pool), MoveService(pool)
    a = await add_server(db, pool, "de-1", 30, "de-fra")
    subs = [await buy(db, service, f"u-drain-{i}") for i in range(30)]
    assert {x.server_id for x in subs} == {a}
    b = await add_server(db, pool, "de-2", 25, "de-fra")
    c = await add_server(db, pool, "nl-1", 20, "nl-ams")
    capacity = {b: 25, c: 20}
    async with db.transaction() as s:
        out = await moves.drain(s, a, T0)
    assert out["server"]["status"] == "DRAINING" and out["progress"]["holding"] == 30
    over: list[dict] = []
    stop = asyncio.Event()

    async def watch():  # what each server holds (placed or moving in), all along
        while not stop.is_set():
            async with db.transaction() as s:
                held = await ServerRepository(s).loads([b, c])
            over.extend(held for sid, n in held.items() if n > capacity[sid])
            await asyncio.sleep(0.01)

    async def grant(i: int) -> str:
        async with db.transaction() as s:
            return (await service.record_and_apply(s, paid(f"u-new-{i}", T0), T0)).outcome

    watcher = asyncio.create_task(watch())
    drains = [moves.drain_all(db, 7, ts=T0) for _ in range(2)]  # two passes at once
    results = await asyncio.gather(*drains, *(grant(i) for i in range(15)))
    stop.set()
    await watcher
    outcomes = results[2:]
    assert sum(results[:2]) == 30
    assert over == []
    async with db.transaction() as s:
        done = (await s.execute(sa.select(Move.subscription_id, sa.func.count())
                                .where(Move.status == DONE)
                                .group_by(Move.subscription_id))).all()
        waiting = (await s.execute(sa.select(sa.func.count()).select_from(Move)
                                   .where(Move.status == WAITING))).scalar()
        loads = await ServerRepository(s).loads([a, b, c])
    # 45 places for 30 moves and 15 grants: every one is placed, none waits
    assert outcomes.count("activated") == 15 and waiting == 0
    assert sorted(n for _, n in done) == [1] * 30  # each moved exactly once
    assert loads.get(a, 0) == 0 and loads[b] + loads[c] == 45
    assert loads[b] <= 25 and loads[c] <= 20
    assert await moves.finish_drain(db, a, T0) is False  # already DISABLED by the pass
    async with db.transaction() as s:
        assert (await s.get(Server, a)).status == "DISABLED"
        activated = (await s.execute(
            sa.select(sa.func.count()).select_from(outbox)
            .where(outbox.c.routing_key == "provisioning.subscription.activated.v1"))).scalar()
    assert activated == 45  # none lost, none twice
    for sub in subs:
        moved = await subscription_by_id(db, sub.id)
        await one_working_account(db, sub.id, a, moved.server_id)
    assert await service.reconcile(db, T0) == {}
    await pool.close()


async def test_a_drain_with_no_room_leaves_the_rest_waiting_until_there_is(
        db, service, pool, moves):
    a = await add_server(db, pool, "de-1", 10, "de-fra")
    subs = [await buy(db, service, f"u-full-{i}") for i in range(3)]
    b = await add_server(db, pool, "nl-1", 1, "nl-ams")  # room for one, in another location
    async with db.transaction() as s:
        await moves.drain(s, a, T0)
    assert await moves.drain_all(db, 10, ts=T0) == 3
    async with db.transaction() as s:
        progress = (await moves.drain(s, a, T0))["progress"]  # asked again: no change
        assert (await s.get(Server, a)).status == "DRAINING"
    assert progress == {"holding": 2, "waiting": 2, "pending": 0, "switched": 0}
    assert await moves.resume(db, T0 + timedelta(hours=1), 10, T0) == 0  # still no room
    async with db.transaction() as s:
        await pool.update(s, b, ServerUpdate(capacity=3))
    assert await moves.resume(db, T0 + timedelta(hours=1), 10, T0) == 2
    assert await moves.drain_all(db, 10, ts=T0) == 0
    async with db.transaction() as s:
        assert (await s.get(Server, a)).status == "DISABLED"
    for sub in subs:
        await one_working_account(db, sub.id, a, b)


async def test_reconciliation_covers_every_server(db, service, pool, moves, two_locations):
    a, b = two_locations
    on_a = await buy(db, service, "u-rec-a")
    on_b = await buy(db, service, "u-rec-b")
    move, _ = await start(db, moves, on_b)
    await moves.run(db, move.id, T0)
    on_b = await subscription_by_id(db, on_b.id)
    async with db.transaction() as s:  # B lost the account; an unknown one turned up on B
        await s.execute(sa.delete(SandboxAccount).where(SandboxAccount.ref == on_b.provision_ref))
    stray = await pool.driver(b)
    await stray.ensure_active("vpn_stray_on_b", expires_at=T0 + timedelta(days=1),
                              max_devices=1)
    assert await service.reconcile(db, T0) == {"recreated": 1, "orphan_disabled": 1}
    got = await accounts_of(db, on_b.id, [a, b])
    assert got[b] == {on_b.provision_ref: True}
    assert (await stray.accounts())["vpn_stray_on_b"] is False
    enabled_on_a = {k for k, v in (await (await pool.driver(a)).accounts()).items() if v}
    assert enabled_on_a == {on_a.provision_ref}
    await stray.add_fault("accounts", 1, "panel down")  # one server away: the rest still done
    assert await service.reconcile(db, T0) == {"unreachable": 1}


REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"


async def test_the_internal_api_moves_and_drains(db, unit_settings, service, two_locations):
    a, b = two_locations
    sub = await buy(db, service, "u-api")
    settings = unit_settings.model_copy(update={"redis_url": REDIS_URL,
                                                "jobs_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    app = create_api(settings)

    def client(user: str, role: str) -> httpx.AsyncClient:
        header = identity.sign(settings.internal_signing_key, user, role,
                               audience="provisioner")
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p",
                                 headers={identity.HEADER: header})

    path = f"/internal/subscriptions/{sub.id}/location"
    async with app.router.lifespan_context(app), client("u-api", "USER") as me, \
            client("u-other", "USER") as other, client("admin-1", "ADMIN") as admin:
        assert (await other.put(path, json={"location_id": "nl-ams"})).status_code == 404
        bad = await me.put(path, json={"location_id": "NL AMS"})
        assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
        r = await me.put(path, json={"location_id": "de-fra"})
        assert (r.status_code, r.json()["move"]) == (200, None)
        r = await me.put(path, json={"location_id": "nl-ams"})
        assert r.status_code == 202, r.text
        moving = r.json()["move"]
        assert (moving["status"], moving["to_location"]) == ("PENDING", "nl-ams")
        again = await me.put(path, json={"location_id": "nl-ams"})
        assert (again.status_code, again.json()["move"]["id"]) == (202, moving["id"])
        drain = f"/internal/admin/servers/{b}/drain"
        assert (await me.post(drain)).status_code == 403
        assert (await admin.post("/internal/admin/servers/nope/drain")).status_code == 404
        r = await admin.post(drain)
        assert r.status_code == 202, r.text
        assert r.json()["server"]["status"] == "DRAINING"
        assert r.json()["progress"]["pending"] == 0
