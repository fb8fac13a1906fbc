"""The sweeps with more due than one batch: reminders reach past the soonest batch (never the
same soonest rows read again each run), the expiry sweep revokes each due subscription once
with several at a time, and one scheduled run works batch after batch until none is left."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, PlanSnapshot
from provisioner.backends.sandbox import SandboxBackend
from provisioner.jobs import schedule_handlers
from provisioner.models import SandboxAccount, Subscription, outbox
from provisioner.service import ProvisioningService
from runtime.faults import FaultSwitch
from runtime.jobs import JobQueue
from runtime.testing import test_slot as slot

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def faults():
    """The sandbox's fault switch under a key of its own (a Redis database that exists for
    every slot)."""
    switch = FaultSwitch(f"redis://127.0.0.1:6379/{min(1 + slot(), 15)}",
                         f"test-{uuid.uuid4().hex}:sandbox-faults")
    yield switch
    await switch.clear()
    await switch.close()


@pytest.fixture
def service(db, faults):
    return ProvisioningService(SandboxBackend(db, host="vpn.sandbox.test", port=8388,
                                              faults=faults))


async def buy(db, service, user_id: str, days: int) -> None:
    ev = InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=days, max_devices=3,
                          price_usd=Decimal("9.99")),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=T0)
    async with db.transaction() as s:
        await service.record_paid(s, ev, T0)
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, T0)).outcome == "activated"


async def payloads(db, event: str) -> list[dict]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(outbox.c.routing_key, outbox.c.envelope)
                                .order_by(outbox.c.id))).all()
    return [r.envelope["payload"] for r in rows if r.routing_key.endswith(f"{event}.v1")]


async def test_reminders_reach_past_the_soonest_batch(db, service):
    for user, days in (("a", 30), ("b", 30), ("c", 31), ("d", 31), ("e", 31)):
        await buy(db, service, user, days)
    at = T0 + 29.5 * DAY  # a, b: their 1-day reminder; c, d, e: their 3-day one

    async def remind() -> int:
        async with db.transaction() as s:
            return await service.send_reminders(s, at, [3, 1], 2)

    assert [await remind() for _ in range(4)] == [2, 2, 1, 0]
    sent = {p["user_id"]: p["days_left"] for p in await payloads(db, "expiring")}
    assert sent == {"a": 1, "b": 1, "c": 3, "d": 3, "e": 3}
    assert len(await payloads(db, "expiring")) == 5  # each once


async def test_expiry_several_at_a_time_revokes_each_once(db, service):
    users = [f"x{i}" for i in range(7)]
    for user in users:
        await buy(db, service, user, 2)
    await buy(db, service, "later", 30)
    at = T0 + 3 * DAY
    assert [await service.expiry_sweep(db, at, 3, concurrency=3) for _ in range(4)] == \
        [3, 3, 1, 0]
    expired = await payloads(db, "expired")
    assert sorted(p["user_id"] for p in expired) == users
    async with db.transaction() as s:
        subs = (await s.execute(sa.select(Subscription))).scalars().all()
        enabled = dict((await s.execute(sa.select(SandboxAccount.ref, SandboxAccount.enabled)))
                       .tuples().all())
    assert {s.user_id: s.status for s in subs} == {**dict.fromkeys(users, "EXPIRED"),
                                                   "later": "ACTIVE"}
    assert {s.user_id: enabled[s.provision_ref] for s in subs} == {
        **dict.fromkeys(users, False), "later": True}


async def test_one_scheduled_run_works_batch_after_batch(db, service, unit_settings,
                                                         monkeypatch):
    for i in range(5):
        await buy(db, service, f"y{i}", 2)
    for i in range(5):
        await buy(db, service, f"z{i}", 30)
    settings = unit_settings.model_copy(update={"sweep_batch": 2, "reminder_days": [3, 1],
                                                "expiry_batch": 2, "expiry_concurrency": 2})
    handlers = schedule_handlers(db, service, None, settings)
    monkeypatch.setattr("provisioner.jobs.now", lambda: T0 + 3 * DAY)
    assert await handlers["expiry_sweep"](None) == 5
    assert await handlers["expiry_sweep"](None) == 0
    monkeypatch.setattr("provisioner.jobs.now", lambda: T0 + 28 * DAY)
    assert await handlers["expiry_reminders"](None) == 5
    assert await handlers["expiry_reminders"](None) == 0
    assert len(await payloads(db, "expired")) == 5
    assert len(await payloads(db, "expiring")) == 5


async def test_a_run_the_budget_ends_queues_the_next_run_at_once(db, service, unit_settings,
                                                                  monkeypatch):
    """More due than one run's budget covers: the run queues a follow-up now instead of
    leaving the rest until the schedule's next tick; a run that finishes queues nothing."""
    for i in range(5):
        await buy(db, service, f"b{i}", 2)
    queue = JobQueue("provisioner-schedules-test", f"redis://127.0.0.1:6379/{min(1 + slot(), 15)}",
                     prefix=f"test-{uuid.uuid4().hex}")
    try:
        settings = unit_settings.model_copy(update={"expiry_batch": 2,
                                                    "sweep_budget_seconds": 0.000001})
        handlers = schedule_handlers(db, service, None, settings, queue)
        monkeypatch.setattr("provisioner.jobs.now", lambda: T0 + 3 * DAY)
        assert await handlers["expiry_sweep"](None) == 2
        waiting = await queue.queue.getJobs(["waiting", "delayed"])
        assert [j.name for j in waiting] == ["expiry_sweep"]
        assert await handlers["expiry_sweep"](None) == 2
        assert await handlers["expiry_sweep"](None) == 1  # a short batch: the run is over
        assert len(await queue.queue.getJobs(["waiting", "delayed"])) == 2
        assert len(await payloads(db, "expired")) == 5
    finally:
        await queue.queue.obliterate(force=True)
        await queue.close()
