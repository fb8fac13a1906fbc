"""The paid-invoice consumer on a real database and a real Redis: applied inline when the
backend answers, handed to the `provision` queue when it does not, exactly once either way."""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts import Envelope, make_envelope
from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from provisioner.backends.sandbox import SandboxBackend
from provisioner.consumers import InlineGate, build_billing_subscription
from provisioner.jobs import ProvisionJobs
from provisioner.metrics import PROVISIONS
from provisioner.models import Grant, SandboxAccount, Subscription, inbox, outbox
from provisioner.service import ProvisioningService, grant_job_id
from runtime.clock import now
from runtime.jobs import JobQueue

REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"
PLAN = PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=3,
                    price_usd=Decimal("9.99"))


def paid(user_id: str) -> InvoicePaidV1:
    return InvoicePaidV1(invoice_id=uuid.uuid4().hex, user_id=user_id, plan=PLAN,
                         amount_usd=PLAN.price_usd, asset="USDT", network="TRON",
                         amount_asset=PLAN.price_usd, amount_paid_asset=PLAN.price_usd,
                         paid_at=now())


class CountingBackend(SandboxBackend):
    """The sandbox backend, counting the calls that reach it."""

    calls = 0
    in_flight = 0
    most_in_flight = 0

    async def ensure_active(self, ref, *, expires_at, max_devices, data_limit_bytes=None,
                            traffic_reset="NONE"):
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)  # a backend that takes a moment
            return await super().ensure_active(ref, expires_at=expires_at,
                                               max_devices=max_devices)
        finally:
            self.in_flight -= 1


@pytest.fixture
def backend(db, faults):
    return CountingBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)


@pytest.fixture
async def jobs(unit_settings):
    queue = JobQueue("provision", REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield ProvisionJobs(queue, unit_settings)
    await queue.queue.obliterate({"force": True})
    await queue.close()


@pytest.fixture
def gate():
    return InlineGate(enabled=True, cooldown_seconds=60, concurrency=2)


@pytest.fixture
def handle(db, backend, jobs, gate):
    sub = build_billing_subscription(db, ProvisioningService(backend), jobs, gate)
    handler = sub.handlers[InvoicePaidV1.routing_key()]

    async def deliver(event: InvoicePaidV1, event_id: uuid.UUID | None = None) -> Envelope:
        env = make_envelope(event, producer="billing")
        if event_id is not None:
            env = env.model_copy(update={"event_id": event_id})
        await handler(env, event)
        return env

    return deliver


async def scalar(db, stmt):
    async with db.transaction() as s:
        return await s.scalar(stmt)


async def grant_of(db, invoice_id: str) -> Grant:
    async with db.transaction() as s:
        return await s.scalar(sa.select(Grant).where(Grant.invoice_id == invoice_id))


def count(model, *where):
    return sa.select(sa.func.count()).select_from(model).where(*where)


async def test_a_paid_invoice_is_applied_inline_without_a_job(db, handle, jobs, backend):
    ev = paid("u-inline")
    before = PROVISIONS.labels("activated")._value.get()
    env = await handle(ev)
    grant = await grant_of(db, ev.invoice_id)
    assert grant.status == "APPLIED" and grant.applied_at is not None
    sub = await scalar(db, sa.select(Subscription).where(Subscription.user_id == "u-inline"))
    assert sub.status == "ACTIVE" and sub.expires_at == grant.new_expires_at
    assert await scalar(db, count(SandboxAccount, SandboxAccount.ref == sub.provision_ref)) == 1
    assert await scalar(db, count(inbox, inbox.c.event_id == env.event_id)) == 1
    assert await scalar(db, count(outbox, outbox.c.routing_key
                                  == "provisioning.subscription.activated.v1")) == 1
    assert await jobs.get(grant_job_id(ev.invoice_id)) is None  # nothing was queued
    assert backend.calls == 1
    assert PROVISIONS.labels("activated")._value.get() == before + 1


async def test_redeliveries_and_new_event_ids_change_nothing(db, handle, jobs, backend):
    ev = paid("u-dup")
    env = await handle(ev)
    await handle(ev, env.event_id)  # the same message again
    await handle(ev)  # the same invoice under a new event id
    assert await scalar(db, count(Grant, Grant.invoice_id == ev.invoice_id)) == 1
    assert (await grant_of(db, ev.invoice_id)).status == "APPLIED"
    assert await scalar(db, count(outbox)) == 1
    assert await jobs.get(grant_job_id(ev.invoice_id)) is None
    assert backend.calls == 1


async def test_a_failing_backend_hands_the_invoice_to_the_queue_and_closes_the_gate(
        db, handle, jobs, backend, gate):
    first, second = paid("u-f1"), paid("u-f2")
    await backend.add_fault("ensure_active", 1, "backend down")
    failed_before = PROVISIONS.labels("inline_failed")._value.get()
    await handle(first)
    # the inline transaction rolled back; the queued path recorded the grant and queued its job
    grant = await grant_of(db, first.invoice_id)
    assert grant.status == "PENDING" and grant.applied_at is None
    assert await scalar(db, count(Subscription)) == 0
    assert await scalar(db, count(outbox)) == 0
    job = await jobs.get(grant_job_id(first.invoice_id))
    assert job is not None and job.data["invoice_id"] == first.invoice_id
    assert PROVISIONS.labels("inline_failed")._value.get() == failed_before + 1
    assert not gate.open()
    # while the gate is closed, the next invoice goes straight to the queue: no backend call
    calls = backend.calls
    await handle(second)
    assert backend.calls == calls
    assert (await grant_of(db, second.invoice_id)).status == "PENDING"
    assert await jobs.get(grant_job_id(second.invoice_id)) is not None
    # the queued job applies it once; a redelivered message afterwards changes nothing
    service = ProvisioningService(backend)
    async with db.transaction() as s:
        assert (await service.apply_grant(s, first.invoice_id, now())).outcome == "activated"
    await handle(first)
    assert await scalar(db, count(Grant, Grant.invoice_id == first.invoice_id)) == 1
    assert (await grant_of(db, first.invoice_id)).status == "APPLIED"


async def test_the_gate_closes_on_a_failure_and_reopens_after_its_cool_down():
    gate = InlineGate(enabled=True, cooldown_seconds=0.3)
    assert gate.open()
    gate.failed()
    assert not gate.open()  # closed for the cool-down
    await asyncio.sleep(0.35)
    assert gate.open()
    assert not InlineGate(enabled=False, cooldown_seconds=0).open()


async def test_a_refund_recorded_first_means_the_payment_is_never_applied(db, handle, jobs,
                                                                         backend):
    ev = paid("u-refund-first")
    refund = InvoiceRefundedV1(invoice_id=ev.invoice_id, user_id=ev.user_id, plan=ev.plan,
                               reason="customer asked", refunded_at=now())
    async with db.transaction() as s:
        await ProvisioningService(backend).record_refund(s, refund, now())
    await handle(ev)
    assert (await grant_of(db, ev.invoice_id)).status == "REFUNDED"
    assert await scalar(db, count(Subscription)) == 0
    assert await jobs.get(grant_job_id(ev.invoice_id)) is None
    assert backend.calls == 0


async def test_at_most_the_gates_concurrency_applies_inline_at_once(db, handle, jobs, backend):
    events = [paid(f"u-many-{i}") for i in range(8)]
    await asyncio.gather(*(handle(ev) for ev in events))
    assert backend.calls == 8 and backend.most_in_flight == 2
    for ev in events:
        assert (await grant_of(db, ev.invoice_id)).status == "APPLIED"
        assert await jobs.get(grant_job_id(ev.invoice_id)) is None


async def test_a_bad_message_fails_without_closing_the_gate(db, handle, jobs, gate):
    ev = paid("u-bad")
    ev = ev.model_copy(update={"plan": PLAN.model_copy(update={"duration_days": 0})})
    with pytest.raises(ValueError, match="no time to grant"):
        await handle(ev)  # the broker redelivers it, and dead-letters it at its delivery limit
    assert gate.open()
    assert await scalar(db, count(Grant, Grant.invoice_id == ev.invoice_id)) == 0
    assert await jobs.get(grant_job_id(ev.invoice_id)) is None
