"""Referral reward days on a real database: added once to the referrer's running subscription
however often the event comes, nothing for a money reward or a referrer with no subscription,
and taken back on reversal (never past now), also when the reversal comes first."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts import make_envelope
from contracts.billing import (
    InvoicePaidV1,
    PlanSnapshot,
    ReferralReversedV1,
    ReferralRewardedV1,
)
from provisioner.backends.sandbox import SandboxBackend
from provisioner.consumers import InlineGate, build_billing_subscription
from provisioner.jobs import ProvisionJobs
from provisioner.models import Grant, SandboxAccount, Subscription
from provisioner.service import ProvisioningService, grant_job_id, referral_grant_key
from runtime.jobs import JobQueue

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"


@pytest.fixture
def service(db, faults):
    return ProvisioningService(SandboxBackend(db, host="vpn.sandbox.test", port=8388,
                                              faults=faults))


@pytest.fixture
async def jobs(unit_settings):
    queue = JobQueue("provision", REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield ProvisionJobs(queue, unit_settings)
    await queue.queue.obliterate({"force": True})
    await queue.close()


def rewarded(referrer: str, referred: str, days: int = 7) -> ReferralRewardedV1:
    return ReferralRewardedV1(referrer_user_id=referrer, referred_user_id=referred,
                              invoice_id=uuid.uuid4().hex, amount_usd=Decimal("0.00"), days=days,
                              rewarded_at=T0)


def reversed_(event: ReferralRewardedV1) -> ReferralReversedV1:
    return ReferralReversedV1(referrer_user_id=event.referrer_user_id,
                              referred_user_id=event.referred_user_id,
                              invoice_id=event.invoice_id, amount_usd=event.amount_usd,
                              days=event.days, reversed_at=T0)


async def subscribe(db, service, user_id: str, days: int = 30, at: datetime = T0) -> None:
    event = InvoicePaidV1(
        invoice_id=uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=days, max_devices=3,
                          price_usd=Decimal("9.99")),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=at)
    async with db.transaction() as s:
        await service.record_and_apply(s, event, at)


async def subscription(db, user_id: str) -> Subscription | None:
    async with db.transaction() as s:
        return await s.scalar(sa.select(Subscription).where(Subscription.user_id == user_id))


async def grant(db, referred: str) -> Grant | None:
    async with db.transaction() as s:
        return await s.scalar(sa.select(Grant)
                              .where(Grant.invoice_id == referral_grant_key(referred)))


async def reward(db, service, event: ReferralRewardedV1, at: datetime = T0) -> str | None:
    """What the consumer and then the `provision` job do; the job's outcome."""
    async with db.transaction() as s:
        key = await service.record_referral(s, event, at)
    if key is None:
        return None
    async with db.transaction() as s:
        return (await service.apply_grant(s, key, at)).outcome


async def reverse(db, service, event: ReferralReversedV1, at: datetime = T0) -> str | None:
    async with db.transaction() as s:
        key = await service.record_referral_reversal(s, event, at)
    if key is None:
        return None
    async with db.transaction() as s:
        return await service.apply_refund(s, key, at)


async def test_the_days_are_added_once_however_often_the_reward_comes(db, service, jobs):
    await subscribe(db, service, "referrer-1")
    event = rewarded("referrer-1", "friend-1")
    deliver = build_billing_subscription(db, service, jobs, InlineGate(True, 60)).handlers[
        ReferralRewardedV1.routing_key()]
    env = make_envelope(event, producer="billing")
    await deliver(env, event)
    await deliver(env, event)  # redelivered
    await deliver(make_envelope(event, producer="billing"), event)  # duplicated
    queued = await jobs.get(grant_job_id(referral_grant_key("friend-1")))
    assert queued is not None and queued.name == "apply_grant"
    async with db.transaction() as s:  # the job, and a second run of it
        assert (await service.apply_grant(s, referral_grant_key("friend-1"), T0)
                ).outcome == "extended"
    async with db.transaction() as s:
        assert (await service.apply_grant(s, referral_grant_key("friend-1"), T0)
                ).outcome == "duplicate"
    await deliver(make_envelope(event, producer="billing"), event)  # applied: nothing queued
    sub = await subscription(db, "referrer-1")
    assert sub.expires_at == T0 + 37 * DAY
    async with db.transaction() as s:  # the backend was told
        assert (await s.get(SandboxAccount, sub.provision_ref)).expires_at == T0 + 37 * DAY
    g = await grant(db, "friend-1")
    assert (g.kind, g.status, g.user_id, g.duration_days, g.subscription_id, g.plan_id) == (
        "REFERRAL", "APPLIED", "referrer-1", 7, sub.id, "plan-m")
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Grant)
                              .where(Grant.kind == "REFERRAL")) == 1


async def test_a_money_reward_and_a_referrer_without_subscription_add_nothing(db, service):
    await subscribe(db, service, "referrer-2")
    assert await reward(db, service, rewarded("referrer-2", "friend-2", days=0)) is None
    assert await grant(db, "friend-2") is None
    assert (await subscription(db, "referrer-2")).expires_at == T0 + 30 * DAY

    assert await reward(db, service, rewarded("nobody", "friend-3")) == "skipped"
    assert (await grant(db, "friend-3")).status == "SKIPPED"
    assert await subscription(db, "nobody") is None
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SandboxAccount)) == 1


async def test_a_reversal_takes_the_days_back_never_past_now(db, service):
    await subscribe(db, service, "referrer-4", days=30)
    event = rewarded("referrer-4", "friend-4")
    assert await reward(db, service, event) == "extended"
    assert await reverse(db, service, reversed_(event), T0 + DAY) == "shortened"
    sub = await subscription(db, "referrer-4")
    assert sub.expires_at == T0 + 30 * DAY and sub.status == "ACTIVE"
    assert (await grant(db, "friend-4")).status == "REFUNDED"
    assert await reverse(db, service, reversed_(event), T0 + DAY) is None  # once

    await subscribe(db, service, "referrer-5", days=2)
    near = rewarded("referrer-5", "friend-5", days=7)
    assert await reward(db, service, near) == "extended"  # runs until T0 + 9 days
    later = T0 + 5 * DAY
    assert await reverse(db, service, reversed_(near), later) == "shortened"
    sub = await subscription(db, "referrer-5")
    assert sub.expires_at == later  # not T0 + 2 days: the days already used are not taken
    assert (await grant(db, "friend-5")).refunded_seconds == int((4 * DAY).total_seconds())


async def test_a_reversal_before_its_reward_means_the_days_are_never_added(db, service):
    await subscribe(db, service, "referrer-6")
    event = rewarded("referrer-6", "friend-6")
    assert await reverse(db, service, reversed_(event)) is None
    assert await reward(db, service, event) is None
    assert (await grant(db, "friend-6")).status == "REFUNDED"
    assert (await subscription(db, "referrer-6")).expires_at == T0 + 30 * DAY
