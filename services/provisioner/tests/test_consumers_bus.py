"""The provisioner worker's consumers on FastStream's in-memory broker (the worker's subscribers,
filters and `Delivery` middleware; the database, the sandbox backend and the `provision` queue
in Redis real, no RabbitMQ): each contract is applied once per event, and one its contract
refuses is rejected before any handler."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts import make_envelope
from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from contracts.identity import UserBlockedV1, UserUnblockedV1
from provisioner.backends import build_backend
from provisioner.consumers import (
    InlineGate,
    build_billing_subscription,
    build_identity_subscription,
)
from provisioner.jobs import PROVISION, ProvisionJobs
from provisioner.service import ProvisioningService, block_job_id, grant_job_id, refund_job_id
from runtime.clock import now
from runtime.jobs import JobQueue
from runtime.metrics import MESSAGES_HANDLED
from runtime.testing import in_memory_bus
from runtime.testing import test_slot as slot

from .conftest import make_settings

PLAN = PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=3,
                    price_usd=Decimal("9.99"))


@pytest.fixture
async def worker(db):
    """(bus, jobs): the consumers as worker.py builds them, under a jobs prefix of this test's."""
    settings = make_settings().model_copy(update={
        "redis_url": f"redis://127.0.0.1:6379/{1 + slot()}",
        "jobs_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    backend = build_backend(settings, db)  # the sandbox: its VPN accounts live in the database
    service = ProvisioningService(backend)
    jobs = ProvisionJobs(JobQueue(PROVISION, settings.redis_url, settings.jobs_prefix), settings)
    gate = InlineGate(settings.provision_inline, settings.provision_inline_cooldown_seconds,
                      settings.provision_inline_concurrency)
    async with in_memory_bus(build_billing_subscription(db, service, jobs, gate),
                             build_identity_subscription(db, service, jobs)) as bus:
        yield bus, jobs
    await jobs.queue.queue.obliterate({"force": True})
    await jobs.queue.close()
    await backend.close()


def paid(user_id: str) -> InvoicePaidV1:
    return InvoicePaidV1(invoice_id=uuid.uuid4().hex, user_id=user_id, plan=PLAN,
                         amount_usd=PLAN.price_usd, asset="USDT", network="TRON",
                         amount_asset=PLAN.price_usd, amount_paid_asset=PLAN.price_usd,
                         paid_at=now())


def refunded(event: InvoicePaidV1) -> InvoiceRefundedV1:
    return InvoiceRefundedV1(invoice_id=event.invoice_id, user_id=event.user_id, plan=PLAN,
                             reason="customer asked", refunded_at=now())


async def rows(db, sql: str, **params) -> list[tuple]:
    async with db.transaction() as s:
        return [tuple(r) for r in await s.execute(sa.text(sql), params)]


async def run(db, sql: str) -> None:
    async with db.transaction() as s:
        await s.execute(sa.text(sql))


async def inboxed(db, env) -> int:
    return (await rows(db, "SELECT count(*) FROM provisioning.inbox WHERE event_id = :e",
                       e=env.event_id))[0][0]


async def test_a_paid_invoice_is_applied_once(db, worker):
    bus, jobs = worker
    env = make_envelope(paid("u-paid"), producer="billing")
    await bus.publish(env)
    await bus.publish(env)  # redelivered: one grant, one activation, nothing queued
    assert await rows(db, "SELECT status FROM provisioning.grants") == [("APPLIED",)]
    assert await rows(db, "SELECT user_id, status FROM provisioning.subscriptions") == [
        ("u-paid", "ACTIVE")]
    assert await rows(db, "SELECT routing_key FROM provisioning.outbox") == [
        ("provisioning.subscription.activated.v1",)]
    assert await jobs.get(grant_job_id(env.payload["invoice_id"])) is None
    assert await inboxed(db, env) == 1


async def test_a_refund_is_recorded_once(db, worker):
    bus, jobs = worker
    invoice = paid("u-refund")
    await bus.publish(make_envelope(invoice, producer="billing"))
    env = make_envelope(refunded(invoice), producer="billing")
    await bus.publish(env)
    assert await rows(db, "SELECT status FROM provisioning.grants") == [("REFUND_PENDING",)]
    assert await jobs.get(refund_job_id(invoice.invoice_id)) is not None
    # redelivered after the grant changed again: the inbox has the event, it is not recorded
    await run(db, "UPDATE provisioning.grants SET status = 'APPLIED'")
    await bus.publish(env)
    assert await rows(db, "SELECT status FROM provisioning.grants") == [("APPLIED",)]
    assert await inboxed(db, env) == 1


@pytest.mark.parametrize("blocked", [True, False])
async def test_a_block_change_is_recorded_once(db, worker, blocked):
    bus, jobs = worker
    at = now()
    event = (UserBlockedV1(user_id="u-block", blocked_at=at) if blocked
             else UserUnblockedV1(user_id="u-block", unblocked_at=at))
    env = make_envelope(event, producer="gateway")
    await bus.publish(env)
    assert await rows(db, "SELECT user_id, blocked, synced FROM provisioning.user_blocks") == [
        ("u-block", blocked, False)]
    assert await jobs.get(block_job_id("u-block", at)) is not None
    # redelivered after its row went: the inbox has the event, nothing is recorded again
    await run(db, "DELETE FROM provisioning.user_blocks")
    await bus.publish(env)
    assert await rows(db, "SELECT * FROM provisioning.user_blocks") == []
    assert await inboxed(db, env) == 1


@pytest.mark.parametrize("event", [
    paid("u-bad"), refunded(paid("u-bad")),
    UserBlockedV1(user_id="u-bad", blocked_at=now()),
    UserUnblockedV1(user_id="u-bad", unblocked_at=now())],
    ids=["paid", "refunded", "blocked", "unblocked"])
async def test_an_event_its_contract_refuses_is_rejected(db, worker, event):
    bus, jobs = worker
    env = make_envelope(event, producer="test")
    body = env.model_dump(mode="json")
    del body["payload"]["user_id"]
    [queue] = [s.queue for s in bus.broker.subscriptions if env.routing_key in s.handlers]
    rejected = MESSAGES_HANDLED.labels(queue, env.routing_key, "rejected")
    before = rejected._value.get()
    await bus.publish_raw(env.routing_key, body)
    assert rejected._value.get() == before + 1
    assert await rows(db, "SELECT * FROM provisioning.grants") == []
    assert await rows(db, "SELECT * FROM provisioning.user_blocks") == []
    assert not any((await jobs.queue.queue.getJobCounts()).values())
    assert await inboxed(db, env) == 0
