"""The expiry sweep in set-based batches on real Postgres: thousands due at once expired in one
run, each account revoked and one `subscription.expired` each; renewal grants racing the sweep
end ACTIVE with their account on (or expired, then reactivated), never half of each; a user busy
elsewhere is skipped, not waited for; backend failures for part of a batch leave exactly those
due for the next run; accounts on several servers are revoked per server; and a panel without a
bulk call gets one `disable` per account, a bounded number at once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from contracts.public.servers import ServerCreate
from provisioner.backends.base import AccessDetails, AccountMissing, BackendError, VpnBackend
from provisioner.jobs import schedule_handlers
from provisioner.models import BackendAccount, SandboxAccount, Subscription, outbox
from provisioner.repository import ProvisioningRepository, ServerRepository
from provisioner.service import ProvisioningService, provision_ref, subscription_id_for

from .conftest import paid

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
AT = T0 + timedelta(days=31)  # every monthly plan bought at T0 is past its end


@pytest.fixture
def service(backend):
    return ProvisioningService(backend)


async def running(db, n: int, *, prefix: str = "bulk") -> list[str]:
    """`n` ACTIVE subscriptions that ended at T0 + 30 days, each with its sandbox account on,
    written in bulk (the rows a grant leaves, without a grant each); their user ids."""
    users = [f"{prefix}-{i}" for i in range(n)]
    ends = T0 + timedelta(days=30)
    async with db.transaction() as s:
        for user in users:
            sid = subscription_id_for(f"user:{user}")
            ref = provision_ref(sid)
            s.add(Subscription(id=sid, user_id=user, plan_id="plan-m", plan={}, status="ACTIVE",
                               started_at=T0, expires_at=ends, max_devices=3,
                               provision_ref=ref, backend="sandbox", reminders_sent=[],
                               created_at=T0, updated_at=T0))
            s.add(SandboxAccount(ref=ref, secret=uuid.uuid4().hex, enabled=True,
                                 expires_at=ends, max_devices=3, created_at=T0, updated_at=T0))
            s.add(BackendAccount(backend="sandbox", ref=ref, subscription_id=sid,
                                 state="ACTIVE", created_at=T0, updated_at=T0))
    return users


async def state(db) -> dict[str, tuple[str, datetime, bool, str | None]]:
    """user → (status, expires_at, account on, its backend_accounts state)."""
    async with db.transaction() as s:
        rows = (await s.execute(
            sa.select(Subscription.user_id, Subscription.status, Subscription.expires_at,
                      SandboxAccount.enabled, BackendAccount.state)
            .join(SandboxAccount, SandboxAccount.ref == Subscription.provision_ref)
            .outerjoin(BackendAccount, BackendAccount.ref == Subscription.provision_ref))).all()
    return {r.user_id: (r.status, r.expires_at, r.enabled, r.state) for r in rows}


async def events(db, kind: str) -> Counter[str]:
    """How many `subscription.<kind>` events each user has in the outbox."""
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(outbox.c.envelope).where(
            outbox.c.routing_key == f"provisioning.subscription.{kind}.v1"))).scalars().all()
    return Counter(r["payload"]["user_id"] for r in rows)


async def test_three_thousand_due_at_once_are_expired_in_one_run_each_once(
        db, service, unit_settings, monkeypatch):
    users = await running(db, 3000)
    later = await running(db, 5, prefix="later")
    async with db.transaction() as s:  # these run on past AT
        await s.execute(sa.update(Subscription).where(Subscription.user_id.in_(later))
                        .values(expires_at=AT + timedelta(days=1)))
    handlers = schedule_handlers(db, service, None, unit_settings)
    monkeypatch.setattr("provisioner.jobs.now", lambda: AT)
    assert unit_settings.expiry_batch < 3000  # more than one batch in the run
    assert await handlers["expiry_sweep"](None) == 3000
    after = await state(db)
    assert {after[u][0] for u in users} == {"EXPIRED"}
    assert {after[u][2:] for u in users} == {(False, "DISABLED")}  # revoked, and recorded
    assert {after[u][0:3:2] for u in later} == {("ACTIVE", True)}
    expired = await events(db, "expired")
    assert set(expired) == set(users) and set(expired.values()) == {1}
    assert await handlers["expiry_sweep"](None) == 0  # nothing left, nothing sent again
    assert await events(db, "expired") == expired


async def test_renewals_racing_the_sweep_end_running_never_half_expired(db, service):
    users = await running(db, 400)
    renewing = users[::4]

    async def renew(user: str) -> str:
        ev = paid(user, AT)
        async with db.transaction() as s:
            await service.record_paid(s, ev, AT)
        async with db.transaction() as s:
            return (await service.apply_grant(s, ev.invoice_id, AT)).outcome

    async def sweep() -> int:
        """Batches of 50 until one finds fewer due (a busy user is looked at again)."""
        done = 0
        while True:
            run = await service.expire_batch(db, AT, 50)
            done += run.expired
            if run.due < 50:
                return done

    swept, *outcomes = await asyncio.gather(sweep(), *(renew(u) for u in renewing))
    assert set(outcomes) <= {"extended", "activated"}
    after = await state(db)
    expired, activated = await events(db, "expired"), await events(db, "activated")
    for user in renewing:
        status, expires_at, enabled, recorded = after[user]
        assert (status, enabled, recorded) == ("ACTIVE", True, "ACTIVE")
        assert expires_at == AT + timedelta(days=30)
        # the grant came first (extended: never expired), or after the sweep (reactivated)
        assert (expired[user], activated[user]) in ((0, 0), (1, 1))
    for user in set(users) - set(renewing):
        assert after[user][0:3:2] == ("EXPIRED", False) and expired[user] == 1
    assert swept == sum(expired.values())
    assert await service.expiry_sweep(db, AT, 1000) == 0


async def test_a_user_busy_elsewhere_is_skipped_not_waited_for(db, service):
    busy, *rest = await running(db, 5)
    async with db.transaction() as s:  # a grant, a move or an admin request holds the lock
        await ProvisioningRepository(s).lock_user(busy)
        # waiting for that lock would wait for this very transaction: it would never return
        assert await asyncio.wait_for(service.expiry_sweep(db, AT, 100), 60) == 4
    after = await state(db)
    assert after[busy][0:3:2] == ("ACTIVE", True)
    assert {after[u][0] for u in rest} == {"EXPIRED"}
    assert await service.expiry_sweep(db, AT, 100) == 1  # the lock gone, it is expired
    assert set((await events(db, "expired")).values()) == {1}


async def test_failed_accounts_of_a_batch_are_left_for_the_next_run_exactly_those(
        db, service, backend):
    users = await running(db, 40)
    await backend.add_fault("disable", 7, "panel refused")
    assert await service.expiry_sweep(db, AT, 1000) == 33
    after, expired = await state(db), await events(db, "expired")
    left = [u for u in users if after[u][0] == "ACTIVE"]
    assert len(left) == 7
    for user in users:  # EXPIRED exactly when the account is off, one event each
        status, _, enabled, recorded = after[user]
        assert (status, enabled, recorded, expired[user]) in (
            ("ACTIVE", True, "ACTIVE", 0), ("EXPIRED", False, "DISABLED", 1))
    assert await service.expiry_sweep(db, AT, 1000) == 7  # the next run: those, once
    assert await service.expiry_sweep(db, AT, 1000) == 0
    expired = await events(db, "expired")
    assert set(expired) == set(users) and set(expired.values()) == {1}


async def test_a_backend_refusing_every_account_ends_the_run_and_expires_none(
        db, service, backend, unit_settings, monkeypatch):
    users = await running(db, 30)
    settings = unit_settings.model_copy(update={"expiry_batch": 10})
    handlers = schedule_handlers(db, service, None, settings)
    monkeypatch.setattr("provisioner.jobs.now", lambda: AT)
    await backend.add_fault("disable", None, "panel down")
    assert await handlers["expiry_sweep"](None) == 0  # one batch tried, then the run ends
    assert {v[0:3:2] for v in (await state(db)).values()} == {("ACTIVE", True)}
    assert not await events(db, "expired")
    await backend.clear_faults()
    assert await handlers["expiry_sweep"](None) == 30
    assert set((await events(db, "expired")).values()) == {1} and len(users) == 30


@pytest.fixture
def settings(unit_settings):
    """For the pool: the seeded server holds nothing, so grants go to the servers added."""
    return unit_settings.model_copy(update={"seed_server_capacity": 0})


async def test_accounts_on_several_servers_are_revoked_per_server(db, backend, pool):
    servers = []
    for name in ("de-1", "de-2"):
        async with db.transaction() as s:
            servers.append((await pool.create(s, ServerCreate(
                name=name, location="de-fra", backend="sandbox", capacity=10)))["id"])
    service = ProvisioningService(backend, pool=pool)
    for i in range(8):
        async with db.transaction() as s:
            assert (await service.record_and_apply(s, paid(f"p-{i}", T0), T0)).outcome == (
                "activated")
    async with db.transaction() as s:
        placed = dict((await s.execute(sa.select(Subscription.user_id, Subscription.server_id)))
                      .tuples().all())
        assert await ServerRepository(s).loads(servers) == dict.fromkeys(servers, 4)
    down = await pool.driver(servers[0])
    await down.add_fault("disable", None, "panel down")  # the first server alone fails
    assert await service.expiry_sweep(db, AT, 100) == 4
    after = await state(db)
    for user, server in placed.items():
        want = ("ACTIVE", True) if server == servers[0] else ("EXPIRED", False)
        assert after[user][0:3:2] == want
    async with db.transaction() as s:  # the expired ones' room is free again
        assert await ServerRepository(s).loads(servers) == {servers[0]: 4}
    await down.clear_faults()
    assert await service.expiry_sweep(db, AT, 100) == 4
    assert {v[0:3:2] for v in (await state(db)).values()} == {("EXPIRED", False)}


class OneByOne(VpnBackend):
    """A panel with no bulk call (the interface's default `disable_many`), at the edge: some
    accounts fail, one is missing, and the calls in flight are counted."""

    name = "one-by-one"

    def __init__(self, failing: set[str], missing: set[str]):
        self.failing, self.missing = failing, missing
        self.disabled: list[str] = []
        self.in_flight = self.most_in_flight = 0

    async def disable(self, ref: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let the others start, as a network call would
            if ref in self.failing:
                raise BackendError(self.name, "disable", "503 from the panel", status=503)
            if ref in self.missing:
                raise AccountMissing(self.name, "disable", "no such account", status=404)
            self.disabled.append(ref)
        finally:
            self.in_flight -= 1

    async def ensure_active(self, ref: str, **_) -> None:
        raise NotImplementedError

    async def access(self, ref: str) -> AccessDetails:
        raise NotImplementedError

    async def accounts(self) -> dict[str, bool]:
        return {}


async def test_a_panel_without_a_bulk_call_gets_one_disable_per_account_bounded():
    refs: Sequence[str] = [f"vpn_{i:03d}" for i in range(30)]
    panel = OneByOne(failing={"vpn_003", "vpn_017"}, missing={"vpn_020"})
    failed = await panel.disable_many(refs, concurrency=4)
    assert set(failed) == {"vpn_003", "vpn_017"}
    assert all(isinstance(e, BackendError) and e.status == 503 for e in failed.values())
    assert sorted(panel.disabled) == sorted(set(refs) - {"vpn_003", "vpn_017", "vpn_020"})
    assert panel.most_in_flight == 4  # as many at once as allowed, never more


async def test_the_active_gauge_is_counted_at_most_every_interval_however_often_the_sweep_runs(
        db, service, unit_settings, monkeypatch):
    """A sweep a second (a small EXPIRY_SWEEP_SECONDS) must not count every running
    subscription each time: the gauge is sampled at once by a new worker, then at most every
    ACTIVE_GAUGE_SECONDS."""
    from provisioner import jobs
    from provisioner.metrics import ACTIVE_SUBSCRIPTIONS

    monkeypatch.setattr("provisioner.jobs.now", lambda: T0)  # all of them running, none due
    handlers = schedule_handlers(db, service, None, unit_settings)
    await running(db, 3, prefix=f"gauge-{uuid.uuid4().hex[:6]}")
    await handlers["expiry_sweep"](None)
    counted = ACTIVE_SUBSCRIPTIONS._value.get()
    await running(db, 2, prefix=f"gauge-{uuid.uuid4().hex[:6]}")
    await handlers["expiry_sweep"](None)  # within the interval: not counted again
    assert ACTIVE_SUBSCRIPTIONS._value.get() == counted
    assert jobs.ACTIVE_GAUGE_SECONDS >= 10
    restarted = schedule_handlers(db, service, None, unit_settings)  # a worker started afresh
    await restarted["expiry_sweep"](None)
    assert ACTIVE_SUBSCRIPTIONS._value.get() == counted + 2
