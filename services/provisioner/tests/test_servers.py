"""The server pool on a real database: servers as data (credentials encrypted at rest and never
answered), the seeded server adopting what came before, and placement: least loaded first, a
full pool leaves the grant WAITING, and concurrent grants never oversubscribe a server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1
from contracts.public.servers import ServerCreate, ServerUpdate
from provisioner import servers
from provisioner.app import create_api
from provisioner.backends.sandbox import SandboxBackend
from provisioner.config import Settings
from provisioner.metrics import SERVER_UP
from provisioner.models import BackendAccount, Grant, Server, Subscription, outbox
from provisioner.servers import CredentialBox, PoolFull, ServerPool
from provisioner.service import ProvisioningService
from runtime import identity
from runtime.db import Database
from runtime.errors import Conflict, ValidationFailed
from runtime.testing import production_settings

from .conftest import paid

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)




@pytest.fixture
def settings(unit_settings):
    """The seeded server holds nothing here, so only the servers a test adds take grants."""
    return unit_settings.model_copy(update={"seed_server_capacity": 0})


@pytest.fixture
def service(backend, pool):
    return ProvisioningService(backend, pool=pool)


async def add_server(db, pool, name: str, capacity: int, location: str = "de-fra",
                     **more) -> str:
    async with db.transaction() as s:
        out = await pool.create(s, ServerCreate(name=name, location=location, backend="sandbox",
                                                capacity=capacity, **more))
    return out["id"]


async def grants_by_status(db) -> dict[str, int]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(Grant.status, sa.func.count())
                                .group_by(Grant.status))).all()
    return dict(rows)


async def loads(db) -> dict[str, int]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(Server.name, sa.func.count(Subscription.id))
                                .join(Subscription, Subscription.server_id == Server.id)
                                .group_by(Server.name))).all()
    return dict(rows)


async def test_credentials_are_stored_encrypted_and_never_answered(db, pool):
    async with db.transaction() as s:
        out = await pool.create(s, ServerCreate(
            name="nl-1", location="nl-ams", backend="marzban", base_url="https://panel.test",
            settings={"proxies": ["vless"]},
            credentials={"username": "root", "password": "s3cret-panel-password"}, capacity=5))
    assert out["has_credentials"] is True
    assert "credentials" not in out and "s3cret-panel-password" not in repr(out)
    async with db.transaction() as s:
        stored = (await s.execute(sa.select(Server.credentials)
                                  .where(Server.id == out["id"]))).scalar_one()
        listed = await pool.list(s)
    assert "s3cret" not in stored and "root" not in stored
    assert pool.box.open(stored) == {"username": "root", "password": "s3cret-panel-password"}
    assert all("credentials" not in x for x in listed)
    driver = await pool.driver(out["id"])
    assert driver.name == "marzban"


async def test_a_server_kind_refuses_a_row_missing_what_its_driver_needs(db, pool):
    with pytest.raises(ValidationFailed) as err:
        async with db.transaction() as s:
            await pool.create(s, ServerCreate(name="rw-1", location="de-fra",
                                              backend="remnawave", capacity=5))
    assert err.value.details == {"missing": ["base_url", "settings.squads",
                                             "credentials.api_token"]}
    await add_server(db, pool, "de-1", 5)
    with pytest.raises(Conflict):
        await add_server(db, pool, "de-1", 5)


async def test_the_seeded_server_is_created_once_and_adopts_older_accounts_in_batches(
        db, settings, backend, monkeypatch):
    monkeypatch.setattr(servers, "ADOPT_BATCH", 2)
    async with db.transaction() as s:
        for i in range(5):
            s.add(Subscription(id=f"old-{i}", user_id=f"u-old-{i}", plan_id="p", plan={},
                               status="ACTIVE", started_at=T0, expires_at=T0, max_devices=1,
                               provision_ref=f"vpn_old_{i}", backend="sandbox",
                               reminders_sent=[], created_at=T0, updated_at=T0))
            s.add(BackendAccount(backend="sandbox", ref=f"vpn_old_{i}",
                                 subscription_id=f"old-{i}", state="ACTIVE", created_at=T0,
                                 updated_at=T0))
    first, second = ServerPool(db, settings, backend), ServerPool(db, settings, backend)
    ids = await asyncio.gather(first.seed(), second.seed())
    assert ids[0] == ids[1]

    async def placements() -> list:
        async with db.transaction() as s:
            return sorted([*(await s.execute(sa.select(Subscription.server_id))).scalars(),
                           *(await s.execute(sa.select(BackendAccount.server_id))).scalars()],
                          key=str)

    # seeding places nothing (a request may seed): the rows without a server use its driver
    assert await placements() == [None] * 10
    assert await first.driver(None) is backend
    # the adoption: batches of 2 rows of each table, two processes at once, each row once
    statements: list[str] = []

    @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    adopted = await asyncio.gather(first.adopt(), second.adopt())
    sa.event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert sum(adopted) == 10
    assert await placements() == [ids[0]] * 10
    assert all("LIMIT" in x for x in statements) and len(statements) >= 6
    assert await first.adopt() == 0 and await second.adopt() == 0
    async with db.transaction() as s:
        servers_ = (await s.execute(sa.select(Server))).scalars().all()
    assert [(x.name, x.backend, x.settings) for x in servers_] == [
        ("default", "sandbox", {"from_env": True})]
    assert await first.driver(ids[0]) is backend
    with pytest.raises(Conflict):  # its driver comes from the environment
        async with db.transaction() as s:
            await first.update(s, ids[0], ServerUpdate(base_url="https://elsewhere.test"))


async def test_a_new_subscription_goes_to_the_least_loaded_active_server(db, pool, service):
    a = await add_server(db, pool, "de-1", 10)
    b = await add_server(db, pool, "de-2", 10)
    await add_server(db, pool, "de-3", 10, status="DRAINING")
    for i in range(4):
        event = paid(f"user-{i}", T0)
        async with db.transaction() as s:
            assert (await service.record_and_apply(s, event, T0)).outcome == "activated"
    assert await loads(db) == {"de-1": 2, "de-2": 2}
    async with db.transaction() as s:
        accounts = (await s.execute(sa.select(BackendAccount.server_id))).scalars().all()
    assert sorted(accounts) == sorted([a, a, b, b])


async def test_a_full_pool_leaves_the_grant_waiting_then_places_it_once(db, pool, service):
    server = await add_server(db, pool, "de-1", 1)
    first, second = paid("user-a", T0), paid("user-b", T0)
    async with db.transaction() as s:
        assert (await service.record_and_apply(s, first, T0)).outcome == "activated"
    async with db.transaction() as s:
        assert (await service.record_and_apply(s, second, T0)).outcome == "waiting"
    async with db.transaction() as s:
        waiting = (await s.execute(sa.select(Grant)
                                   .where(Grant.invoice_id == second.invoice_id))).scalar_one()
        assert (await s.execute(sa.select(Subscription)
                                .where(Subscription.user_id == "user-b"))).first() is None
    assert waiting.status == "WAITING" and "has room" in waiting.last_error
    assert await service.place_waiting(db, T0, 10) == 0  # still full: it keeps waiting
    async with db.transaction() as s:
        await pool.update(s, server, ServerUpdate(capacity=2))
    assert await service.place_waiting(db, T0, 10) == 1
    assert await service.place_waiting(db, T0, 10) == 0
    assert await grants_by_status(db) == {"APPLIED": 2}


async def test_admin_extend_of_an_ended_subscription_with_no_room_is_refused(db, pool,
                                                                              service):
    server = await add_server(db, pool, "de-1", 1)
    event = paid("user-a", T0)
    async with db.transaction() as s:
        await service.record_and_apply(s, event, T0)
    async with db.transaction() as s:
        sub = (await s.execute(sa.select(Subscription))).scalar_one()
        sub.status = "EXPIRED"
        await pool.update(s, server, ServerUpdate(capacity=0))
    with pytest.raises(PoolFull):
        async with db.transaction() as s:
            await service.admin_extend(s, sub.id, 5, "admin-1", T0)


async def test_the_health_check_never_lists_every_account(db, pool, backend, monkeypatch):
    async def every_account():
        raise AssertionError("the health check read every account")

    monkeypatch.setattr(backend, "accounts", every_account)
    assert await pool.check_health(T0) == {"default": True}


async def test_a_server_that_does_not_answer_takes_no_new_placements_until_it_does(
        db, pool, service):
    first = await add_server(db, pool, "de-1", 10)
    await add_server(db, pool, "de-2", 10)
    await add_server(db, pool, "de-3", 10, status="DISABLED")  # not probed
    down = await pool.driver(first)
    await down.add_fault("accounts", None, "panel down")  # this sandbox server alone fails
    try:
        assert await pool.check_health(T0) == {"default": True, "de-1": False, "de-2": True}
        assert SERVER_UP.labels("de-1")._value.get() == 0
        for i in range(3):
            async with db.transaction() as s:
                assert (await service.record_and_apply(s, paid(f"u-{i}", T0), T0)).outcome == (
                    "activated")
        assert await loads(db) == {"de-2": 3}
    finally:
        await down.clear_faults()
    assert (await pool.check_health(T0))["de-1"] is True
    assert SERVER_UP.labels("de-1")._value.get() == 1
    async with db.transaction() as s:
        await service.record_and_apply(s, paid("u-next", T0), T0)
        checked = (await s.execute(sa.select(Server.checked_at)
                                   .where(Server.id == first))).scalar_one()
    assert await loads(db) == {"de-1": 1, "de-2": 3} and checked == T0


@pytest.fixture
async def wide_db(db, settings):
    """A database handle with a connection for each of the 50 grants at once, so they all
    wait on the servers' row locks together (not on the connection pool)."""
    wide = Database(settings, pool_size=25)
    yield wide
    await wide.dispose()


async def test_fifty_concurrent_grants_into_two_servers_of_twenty_never_oversubscribe(
        wide_db, settings, faults):
    db = wide_db
    backend = SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)
    pool = ServerPool(db, settings, backend)
    service = ProvisioningService(backend, pool=pool)
    await pool.seed()
    first = await add_server(db, pool, "de-1", 20)
    await add_server(db, pool, "de-2", 20)
    events = [paid(f"user-{i}", T0) for i in range(50)]

    async def grant(event: InvoicePaidV1) -> str:
        async with db.transaction() as s:
            await service.record_paid(s, event, T0)
        async with db.transaction() as s:
            return (await service.apply_grant(s, event.invoice_id, T0)).outcome

    outcomes = await asyncio.gather(*(grant(e) for e in events))
    assert sorted(set(outcomes)) == ["activated", "waiting"]
    assert outcomes.count("activated") == 40 and outcomes.count("waiting") == 10
    assert await loads(db) == {"de-1": 20, "de-2": 20}
    assert await grants_by_status(db) == {"APPLIED": 40, "WAITING": 10}

    async with db.transaction() as s:
        await pool.update(s, first, ServerUpdate(capacity=30))
    placed = await asyncio.gather(*(service.place_waiting(db, T0, 50) for _ in range(3)))
    assert sum(placed) == 10
    assert await loads(db) == {"de-1": 30, "de-2": 20}
    assert await grants_by_status(db) == {"APPLIED": 50}
    async with db.transaction() as s:
        activated = (await s.execute(
            sa.select(outbox.c.envelope["payload"]["user_id"].astext)
            .where(outbox.c.routing_key == "provisioning.subscription.activated.v1"))
        ).scalars().all()
        accounts = (await s.execute(sa.select(sa.func.count()).select_from(BackendAccount))
                    ).scalar_one()
    assert sorted(activated) == sorted(e.user_id for e in events)  # each placed exactly once
    assert accounts == 50


@pytest.fixture
async def api(unit_settings, db):
    app = create_api(unit_settings)
    async with app.router.lifespan_context(app):
        yield app


def client(app, role: str) -> httpx.AsyncClient:
    header = identity.sign(app.state.settings.internal_signing_key, "admin-1", role,
                           audience="provisioner")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://prov",
                             headers={identity.HEADER: header})


async def test_the_internal_admin_api_manages_servers_and_never_answers_credentials(api):
    async with client(api, "ADMIN") as c, client(api, "USER") as user:
        assert (await user.get("/internal/admin/servers")).status_code == 403
        listed = (await c.get("/internal/admin/servers")).json()["servers"]
        assert [x["name"] for x in listed] == ["default"]  # seeded from VPN_BACKEND
        r = await c.post("/internal/admin/servers", json={
            "name": "nl-1", "location": "nl-ams", "backend": "xui",
            "base_url": "https://xui.test/panel", "capacity": 50,
            "settings": {"inbound_ids": [1], "sub_base_url": "https://sub.test/sub"},
            "credentials": {"username": "admin", "password": "xui-secret-password"}})
        assert r.status_code == 201, r.text
        server = r.json()["server"]
        assert server["has_credentials"] and "xui-secret-password" not in r.text
        bad = await c.post("/internal/admin/servers", json={
            "name": "x", "location": "NL AMS", "backend": "sandbox", "capacity": -1})
        assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
        r = await c.patch(f"/internal/admin/servers/{server['id']}",
                          json={"status": "DRAINING", "capacity": 60})
        assert r.status_code == 200 and r.json()["server"]["status"] == "DRAINING"
        assert r.json()["server"]["capacity"] == 60
        assert (await c.patch(f"/internal/admin/servers/{server['id']}",
                              json={})).status_code == 400
        assert (await c.patch("/internal/admin/servers/nope",
                              json={"capacity": 1})).status_code == 404
        one = (await c.get(f"/internal/admin/servers/{server['id']}")).json()["server"]
        assert one["load"] == 0 and "credentials" not in one


def test_production_stores_no_credentials_under_the_development_key(db, backend):
    prod = Settings(**production_settings("provisioner"), VPN_BACKEND="sandbox",
                    ALLOW_SANDBOX_IN_PRODUCTION="true")
    with pytest.raises(Conflict, match="SERVER_CREDENTIALS_KEY"):
        ServerPool(db, prod, backend).box.seal({"password": "p"})
    keyed = prod.model_copy(update={"server_credentials_key": "k" * 40})
    box = ServerPool(db, keyed, backend).box
    assert box.open(box.seal({"password": "p"})) == {"password": "p"}
    with pytest.raises(RuntimeError, match="cannot be decrypted"):
        CredentialBox("another-key-of-16+").open(box.seal({"password": "p"}))
