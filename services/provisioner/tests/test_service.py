"""Subscription lifecycle rules on a real database, with the sandbox backend and a fake clock
(auto-renewal last: the switch, the renewal sweep once per period, reminders)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

import provisioner.service
from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from provisioner.backends.sandbox import SandboxBackend
from provisioner.metrics import RECONCILIATION_FIXES
from provisioner.models import Grant, SandboxAccount, Subscription, outbox
from provisioner.repository import ProvisioningRepository
from provisioner.service import ProvisioningService, block_job_id, latest_expiry
from runtime.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from runtime.identity import Identity

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def backend(db, faults):
    return SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)


@pytest.fixture
def service(backend):
    return ProvisioningService(backend)


def paid(user_id: str, invoice_id: str | None = None, days: int = 30, plan: str = "plan-m",
         devices: int = 3) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=invoice_id or uuid.uuid4().hex, user_id=user_id,
        plan=PlanSnapshot(plan_id=plan, name="Monthly", duration_days=days, max_devices=devices,
                          price_usd=Decimal("9.99")),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=T0)


def refunded(event: InvoicePaidV1) -> InvoiceRefundedV1:
    return InvoiceRefundedV1(invoice_id=event.invoice_id, user_id=event.user_id, plan=event.plan,
                             reason="customer asked", refunded_at=T0)


async def events(db) -> list[tuple[str, dict]]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(outbox.c.routing_key, outbox.c.envelope)
                                .order_by(outbox.c.id))).all()
    return [(r.routing_key, r.envelope["payload"]) for r in rows]


async def keys(db) -> list[str]:
    return [k for k, _ in await events(db)]


async def sandbox_account(db, ref: str) -> SandboxAccount | None:
    async with db.transaction() as s:
        return await s.get(SandboxAccount, ref)


async def buy(db, service, event: InvoicePaidV1, at: datetime) -> str:
    async with db.transaction() as s:
        await service.record_paid(s, event, at)
    async with db.transaction() as s:
        return (await service.apply_grant(s, event.invoice_id, at)).outcome


async def subscription(db, user_id: str) -> Subscription:
    async with db.transaction() as s:
        return (await s.execute(sa.select(Subscription)
                                .where(Subscription.user_id == user_id))).scalar_one()


async def test_first_payment_activates_with_a_backend_account(db, service):
    ev = paid("u1")
    assert await buy(db, service, ev, T0) == "activated"
    sub = await subscription(db, "u1")
    assert (sub.status, sub.started_at, sub.expires_at) == ("ACTIVE", T0, T0 + 30 * DAY)
    assert (sub.plan_id, sub.max_devices) == ("plan-m", 3)
    account = await sandbox_account(db, sub.provision_ref)
    assert account.enabled and account.expires_at == T0 + 30 * DAY
    assert await keys(db) == ["provisioning.subscription.activated.v1"]


async def test_a_promo_codes_bonus_days_come_with_the_plans_in_one_grant(db, service):
    ev = paid("u-bonus").model_copy(update={"bonus_days": 7})
    assert await buy(db, service, ev, T0) == "activated"
    assert (await subscription(db, "u-bonus")).expires_at == T0 + 37 * DAY
    async with db.transaction() as s:
        grant = await s.scalar(sa.select(Grant).where(Grant.invoice_id == ev.invoice_id))
    assert grant.duration_days == 37  # a refund takes back all of it


async def test_an_invoice_is_applied_once_however_often_it_arrives(db, service):
    ev = paid("u2")
    await buy(db, service, ev, T0)
    again = InvoicePaidV1.model_validate(ev.model_dump())
    async with db.transaction() as s:
        assert await service.record_paid(s, again, T0 + DAY) is None  # nothing left to do
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, T0 + DAY)).outcome == "duplicate"
    assert (await subscription(db, "u2")).expires_at == T0 + 30 * DAY
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Grant)) == 1


async def test_second_invoice_extends_from_the_later_of_now_and_expiry(db, service):
    await buy(db, service, paid("u3"), T0)
    assert await buy(db, service, paid("u3", days=10), T0 + 5 * DAY) == "extended"
    assert (await subscription(db, "u3")).expires_at == T0 + 40 * DAY  # from expires_at
    # after expiry (not swept yet) the new time counts from now
    assert await buy(db, service, paid("u3", days=7), T0 + 50 * DAY) == "extended"
    assert (await subscription(db, "u3")).expires_at == T0 + 57 * DAY
    extended = [p for k, p in await events(db) if k.endswith("extended.v1")]
    assert [p["days_added"] for p in extended] == [10, 7]


async def test_payment_after_expiry_reactivates_from_now(db, service):
    await buy(db, service, paid("u4", days=3), T0)
    async with db.transaction() as s:
        sub = await subscription(db, "u4")
        assert await service.expire_one(s, sub.id, T0 + 4 * DAY)
    assert not (await sandbox_account(db, sub.provision_ref)).enabled
    assert await buy(db, service, paid("u4", days=30), T0 + 10 * DAY) == "activated"
    sub = await subscription(db, "u4")
    assert (sub.status, sub.started_at, sub.expires_at) == (
        "ACTIVE", T0 + 10 * DAY, T0 + 40 * DAY)
    assert (await sandbox_account(db, sub.provision_ref)).enabled


async def test_backend_failure_leaves_nothing_and_the_last_attempt_publishes(db, service,
                                                                            backend):
    ev = paid("u5")
    async with db.transaction() as s:
        await service.record_paid(s, ev, T0)
    await backend.add_fault("ensure_active", 1, "backend down")
    with pytest.raises(Exception, match="backend down"):
        async with db.transaction() as s:
            await service.apply_grant(s, ev.invoice_id, T0)
    async with db.transaction() as s:  # rolled back: no subscription, grant still pending
        assert await s.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0
        assert not await service.record_failure(s, ev.invoice_id, "backend down", 1, False, T0)
    async with db.transaction() as s:
        assert await service.record_failure(s, ev.invoice_id, "backend down", 3, True, T0)
    failed = [p for k, p in await events(db) if k == "provisioning.provision.failed.v1"]
    assert failed == [{"invoice_id": ev.invoice_id, "user_id": "u5", "subscription_id": None,
                       "error": "backend down", "attempts": 3,
                       "failed_at": T0.isoformat().replace("+00:00", "Z")}]
    # the fault is gone: a retry of the FAILED grant succeeds exactly once
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, T0)).outcome == "activated"
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, T0)).outcome == "duplicate"


async def test_refund_takes_the_bought_time_back(db, service):
    first, second = paid("u6", days=30), paid("u6", days=10)
    await buy(db, service, first, T0)
    await buy(db, service, second, T0)
    async with db.transaction() as s:
        assert await service.record_refund(s, refunded(second), T0 + DAY)
    async with db.transaction() as s:
        assert await service.apply_refund(s, second.invoice_id, T0 + DAY) == "shortened"
    sub = await subscription(db, "u6")
    assert (sub.status, sub.expires_at) == ("ACTIVE", T0 + 30 * DAY)
    assert (await sandbox_account(db, sub.provision_ref)).expires_at == T0 + 30 * DAY
    async with db.transaction() as s:  # the same refund again changes nothing
        assert await service.record_refund(s, refunded(second), T0 + DAY) is None
        assert await service.apply_refund(s, second.invoice_id, T0 + DAY) == "duplicate"
    # refunding the rest leaves nothing: access is revoked
    async with db.transaction() as s:
        await service.record_refund(s, refunded(first), T0 + 2 * DAY)
    async with db.transaction() as s:
        assert await service.apply_refund(s, first.invoice_id, T0 + 2 * DAY) == "revoked"
    sub = await subscription(db, "u6")
    assert (sub.status, sub.expires_at) == ("CANCELED", T0 + 2 * DAY)
    assert not (await sandbox_account(db, sub.provision_ref)).enabled
    assert (await keys(db))[-2:] == ["provisioning.subscription.extended.v1",
                                     "provisioning.subscription.expired.v1"]


async def test_refund_before_the_grant_is_applied_means_it_never_is(db, service):
    ev = paid("u7")
    async with db.transaction() as s:
        await service.record_paid(s, ev, T0)
        assert await service.record_refund(s, refunded(ev), T0) is None
    async with db.transaction() as s:
        assert (await service.apply_grant(s, ev.invoice_id, T0)).outcome == "refunded"
    late = paid("u7b")  # refund seen before the payment event
    async with db.transaction() as s:
        assert await service.record_refund(s, refunded(late), T0) is None
        assert await service.record_paid(s, late, T0) is None
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


async def test_block_suspends_and_unblock_resumes(db, service):
    await buy(db, service, paid("u8"), T0)
    async with db.transaction() as s:
        assert await service.record_block(s, "u8", True, T0 + DAY, T0 + DAY) == block_job_id(
            "u8", T0 + DAY)
    async with db.transaction() as s:
        assert await service.sync_user_block(s, "u8", T0 + DAY) == "suspended"
    sub = await subscription(db, "u8")
    assert (sub.status, sub.suspend_reason) == ("SUSPENDED", "USER_BLOCKED")
    assert not (await sandbox_account(db, sub.provision_ref)).enabled
    # a payment while blocked adds time but gives no access
    assert await buy(db, service, paid("u8", days=5), T0 + 2 * DAY) == "extended"
    assert (await subscription(db, "u8")).status == "SUSPENDED"
    async with db.transaction() as s:  # a stale (older) event is ignored
        assert await service.record_block(s, "u8", False, T0, T0 + 3 * DAY) is None
        await service.record_block(s, "u8", False, T0 + 3 * DAY, T0 + 3 * DAY)
    async with db.transaction() as s:
        assert await service.sync_user_block(s, "u8", T0 + 3 * DAY) == "resumed"
        assert await service.sync_user_block(s, "u8", T0 + 3 * DAY) == "noop"
    sub = await subscription(db, "u8")
    assert (sub.status, sub.expires_at) == ("ACTIVE", T0 + 35 * DAY)
    assert (await sandbox_account(db, sub.provision_ref)).enabled
    assert "provisioning.subscription.resumed.v1" in await keys(db)


async def test_admin_suspend_is_not_undone_by_unblock_and_transitions_are_checked(db, service):
    await buy(db, service, paid("u9"), T0)
    sub = await subscription(db, "u9")
    async with db.transaction() as s:
        await service.admin_suspend(s, sub.id, T0)
    with pytest.raises(IllegalTransition):
        async with db.transaction() as s:
            await service.admin_suspend(s, sub.id, T0)
    async with db.transaction() as s:
        await service.record_block(s, "u9", False, T0, T0)
        assert await service.sync_user_block(s, "u9", T0) == "noop"
    async with db.transaction() as s:
        resumed = await service.admin_resume(s, sub.id, T0 + DAY)
    assert resumed.status == "ACTIVE"
    async with db.transaction() as s:
        extended = await service.admin_extend(s, sub.id, 5, "admin-1", T0 + DAY)
    assert extended.expires_at == T0 + 35 * DAY
    with pytest.raises(NotFound):
        async with db.transaction() as s:
            await service.admin_extend(s, "nope", 5, "admin-1", T0)


async def test_access_only_for_the_owner_and_only_while_active(db, service):
    await buy(db, service, paid("u10"), T0)
    sub = await subscription(db, "u10")
    async with db.transaction() as s:
        out = await service.access(s, Identity("u10", "USER"), sub.id)
        assert out["backend"] == "sandbox" and out["access_url"].startswith("ss://")
        with pytest.raises(NotFound):
            await service.access(s, Identity("someone-else", "USER"), sub.id)
        await service.admin_suspend(s, sub.id, T0)
    async with db.transaction() as s:
        with pytest.raises(Conflict):
            await service.access(s, Identity("u10", "USER"), sub.id)


async def test_expiry_sweep_revokes_once(db, service):
    await buy(db, service, paid("u11", days=2), T0)
    await buy(db, service, paid("u12", days=30), T0)
    assert await service.expiry_sweep(db, T0 + DAY, 100) == 0
    assert await service.expiry_sweep(db, T0 + 3 * DAY, 100) == 1
    assert await service.expiry_sweep(db, T0 + 3 * DAY, 100) == 0
    expired = await subscription(db, "u11")
    assert expired.status == "EXPIRED"
    assert not (await sandbox_account(db, expired.provision_ref)).enabled
    assert (await subscription(db, "u12")).status == "ACTIVE"
    assert [p["subscription_id"] for k, p in await events(db)
            if k.endswith("expired.v1")] == [expired.id]


async def test_reminders_three_days_and_one_day_before_each_once(db, service):
    await buy(db, service, paid("u13", days=30), T0)
    expires = T0 + 30 * DAY

    async def remind(at):
        async with db.transaction() as s:
            return await service.send_reminders(s, at, [3, 1], 100)

    assert await remind(expires - 5 * DAY) == 0
    assert await remind(expires - 2.5 * DAY) == 1
    assert await remind(expires - 2 * DAY) == 0
    assert await remind(expires - 0.5 * DAY) == 1
    assert await remind(expires - 0.1 * DAY) == 0
    reminders = [p["days_left"] for k, p in await events(db) if k.endswith("expiring.v1")]
    assert reminders == [3, 1]
    # extending re-arms them for the new expiry date
    await buy(db, service, paid("u13", days=30), expires - 0.1 * DAY)
    assert await remind(expires + 28 * DAY) == 1


async def test_short_plan_gets_only_the_nearest_reminder(db, service):
    await buy(db, service, paid("u14", days=1), T0)
    async with db.transaction() as s:
        assert await service.send_reminders(s, T0 + DAY / 2, [3, 1], 100) == 1
        assert await service.send_reminders(s, T0 + DAY / 2, [3, 1], 100) == 0
    assert [p["days_left"] for k, p in await events(db) if k.endswith("expiring.v1")] == [1]


async def test_reconciliation_repairs_drift(db, service, backend):
    await buy(db, service, paid("u15"), T0)
    await buy(db, service, paid("u16", days=1), T0)
    now = datetime.now(UTC)
    active, gone = await subscription(db, "u15"), await subscription(db, "u16")
    async with db.transaction() as s:  # drift: an active account vanished, an expired one is on
        await s.execute(sa.update(Subscription).where(Subscription.id == active.id)
                        .values(expires_at=now + 30 * DAY))
        await s.execute(sa.update(Subscription).where(Subscription.id == gone.id)
                        .values(status="EXPIRED"))
        await s.execute(sa.delete(SandboxAccount).where(SandboxAccount.ref == active.provision_ref))
    await backend.ensure_active("vpn_orphan000", expires_at=now + DAY, max_devices=1)
    before = {k: RECONCILIATION_FIXES.labels(k)._value.get()
              for k in ("recreated", "disabled", "orphan_disabled")}
    fixes = await service.reconcile(db, now)
    assert fixes == {"recreated": 1, "disabled": 1, "orphan_disabled": 1}
    assert (await sandbox_account(db, active.provision_ref)).enabled
    assert not (await sandbox_account(db, gone.provision_ref)).enabled
    assert not (await sandbox_account(db, "vpn_orphan000")).enabled
    after = {k: RECONCILIATION_FIXES.labels(k)._value.get() for k in before}
    assert all(after[k] == before[k] + 1 for k in before)
    assert await service.reconcile(db, now) == {}  # nothing left to fix


async def test_reconciliation_reads_the_subscriptions_a_page_at_a_time(db, service, backend,
                                                                      monkeypatch):
    """Pages of 2 over 5 subscriptions: drift on every page is repaired, and the account of
    each subscription is known (not revoked as an orphan) whichever page it came on."""
    monkeypatch.setattr(provisioner.service, "RECONCILE_PAGE", 2)
    now = datetime.now(UTC)
    subs = []
    for i in range(5):
        await buy(db, service, paid(f"u-page-{i}"), T0)
        subs.append(await subscription(db, f"u-page-{i}"))
    async with db.transaction() as s:
        await s.execute(sa.update(Subscription).where(Subscription.id.in_([x.id for x in subs]))
                        .values(expires_at=now + 30 * DAY))
        await s.execute(sa.update(SandboxAccount).values(enabled=False)
                        .where(SandboxAccount.ref.in_([x.provision_ref for x in subs[::2]])))
    pages: list[int] = []
    read = ProvisioningRepository.reconciliation_page

    async def counted(self, *args):
        page = await read(self, *args)
        pages.append(len(page))
        return page

    monkeypatch.setattr(ProvisioningRepository, "reconciliation_page", counted)
    assert await service.reconcile(db, now) == {"enabled": 3}
    assert pages == [2, 2, 1]
    assert all([(await sandbox_account(db, x.provision_ref)).enabled for x in subs])


async def test_stale_work_finds_what_was_never_queued(db, service):
    ev = paid("u17")
    async with db.transaction() as s:
        await service.record_paid(s, ev, T0)
        await service.record_block(s, "u18", True, T0, T0)
    async with db.transaction() as s:
        work = await service.stale_work(s, T0 + DAY, 10)
    assert work.grants == [("apply_grant", ev.invoice_id)]
    assert work.blocks == [("u18", T0)]
    async with db.transaction() as s:
        assert (await service.stale_work(s, T0, 10)).grants == []  # still within the grace


async def test_a_crash_between_the_backend_call_and_the_commit_is_retried_to_one_account(
        db, service):
    """The job dies after the backend call, before its transaction commits; the retry makes
    no second account and no second grant, and the subscription ends where it should."""

    class ProcessDied(Exception):
        pass

    ev = paid("u-crash")
    async with db.transaction() as s:
        await service.record_paid(s, ev, T0)
        before = await s.scalar(sa.select(sa.func.count()).select_from(SandboxAccount))
    with pytest.raises(ProcessDied):
        async with db.transaction() as s:
            await service.apply_grant(s, ev.invoice_id, T0)
            raise ProcessDied  # the commit never happens
    async with db.transaction() as s:  # the backend (outside the transaction) already acted
        assert await s.scalar(sa.select(sa.func.count()).select_from(SandboxAccount)) == before + 1
    for _ in range(2):  # the retried job, then a redelivered one
        async with db.transaction() as s:
            await service.apply_grant(s, ev.invoice_id, T0)
    sub = await subscription(db, "u-crash")
    assert (sub.status, sub.expires_at) == ("ACTIVE", T0 + 30 * DAY)
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(SandboxAccount)) == before + 1
        assert await s.scalar(sa.select(sa.func.count()).select_from(Grant).where(
            Grant.invoice_id == ev.invoice_id)) == 1
    account = await sandbox_account(db, sub.provision_ref)
    assert account.enabled and account.expires_at == T0 + 30 * DAY


async def test_expires_at_never_passes_ten_years_ahead(db, service):
    """Admin extends past the bound are refused and change nothing; a paid grant is applied up
    to the bound (a paid invoice is never lost), and its refund takes back only what it added."""
    limit = latest_expiry(T0)
    assert limit == datetime(2036, 1, 10, 12, 0, tzinfo=UTC)
    assert latest_expiry(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2038, 2, 28, tzinfo=UTC)
    await buy(db, service, paid("u-bound", days=3000), T0)
    sub = await subscription(db, "u-bound")
    room = (limit - sub.expires_at).days  # 652 days
    before = await keys(db)
    for days in (room + 1, 3650, 10**12):
        with pytest.raises(Conflict) as refused:
            async with db.transaction() as s:
                await service.admin_extend(s, sub.id, days, "admin-1", T0)
        assert refused.value.details["max_days"] == room
    assert (await subscription(db, "u-bound")).expires_at == sub.expires_at
    assert await keys(db) == before
    async with db.transaction() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Grant).where(
            Grant.user_id == "u-bound", Grant.kind == "ADMIN")) == 0
    async with db.transaction() as s:  # up to the bound is fine
        assert (await service.admin_extend(s, sub.id, room - 2, "admin-1", T0)).expires_at \
            == limit - 2 * DAY
    # a paid grant that would pass the bound: applied, capped at the bound
    capped = paid("u-bound", days=365)
    assert await buy(db, service, capped, T0) == "extended"
    sub = await subscription(db, "u-bound")
    assert sub.expires_at == limit
    assert (await sandbox_account(db, sub.provision_ref)).expires_at == limit
    assert (await events(db))[-1][1]["days_added"] == 2
    async with db.transaction() as s:
        grant = (await s.execute(sa.select(Grant).where(
            Grant.invoice_id == capped.invoice_id))).scalar_one()
        assert (grant.status, grant.new_expires_at) == ("APPLIED", limit)
    async with db.transaction() as s:
        await service.record_refund(s, refunded(capped), T0)
    async with db.transaction() as s:
        assert await service.apply_refund(s, capped.invoice_id, T0) == "shortened"
    assert (await subscription(db, "u-bound")).expires_at == limit - 2 * DAY


# ---------------------------------------------------------------- auto-renewal

HOUR = timedelta(hours=1)


def me(user_id: str) -> Identity:
    return Identity(user_id=user_id, role="USER")


async def switch(db, service, user_id: str, sub_id: str, enabled: bool, plan_id=None):
    async with db.transaction() as s:
        sub = await service.set_auto_renew(s, me(user_id), sub_id, enabled=enabled,
                                           plan_id=plan_id, ts=T0)
        return service.view(sub)


async def renewals_asked(db) -> list[dict]:
    return [p for k, p in await events(db) if k.endswith("subscription.renewal_due.v1")]


async def sweep(db, service, at) -> int:
    async with db.transaction() as s:
        return await service.renewal_sweep(s, at, 100)


async def test_auto_renew_is_switched_on_own_subscription_and_shows_next_attempt(db, service):
    await buy(db, service, paid("ar1", days=30), T0)
    sub = await subscription(db, "ar1")
    view = await switch(db, service, "ar1", sub.id, True)
    assert view["auto_renew"] == {"enabled": True, "plan_id": None,
                                  "next_attempt_at": sub.expires_at - 24 * HOUR}
    view = await switch(db, service, "ar1", sub.id, True, plan_id="plan-y")
    assert view["auto_renew"]["plan_id"] == "plan-y"
    listed = await service.list_own(db, me("ar1"))
    assert listed[0]["auto_renew"]["enabled"] is True
    view = await switch(db, service, "ar1", sub.id, False)
    assert view["auto_renew"] == {"enabled": False, "plan_id": "plan-y", "next_attempt_at": None}
    with pytest.raises(NotFound):  # another customer's subscription does not exist for them
        await switch(db, service, "someone-else", sub.id, True)


async def test_a_trial_needs_a_plan_and_an_expired_subscription_cannot_renew(db, service):
    await buy(db, service, paid("ar2", days=3, plan="trial"), T0)
    sub = await subscription(db, "ar2")
    with pytest.raises(ValidationFailed):
        await switch(db, service, "ar2", sub.id, True)
    assert (await switch(db, service, "ar2", sub.id, True, "plan-m"))["auto_renew"]["enabled"]
    async with db.transaction() as s:
        await service.expire_one(s, sub.id, T0 + 4 * DAY)
    with pytest.raises(Conflict):
        await switch(db, service, "ar2", sub.id, True, "plan-m")


async def test_the_sweep_asks_once_per_period_even_when_two_run_at_once(db, service):
    await buy(db, service, paid("ar3", days=30), T0)
    sub = await subscription(db, "ar3")
    await switch(db, service, "ar3", sub.id, True)
    assert await sweep(db, service, sub.expires_at - 25 * HOUR) == 0  # not due yet
    at = sub.expires_at - 23 * HOUR
    counts = await asyncio.gather(*(sweep(db, service, at) for _ in range(4)))
    assert sorted(counts) == [0, 0, 0, 1]
    assert await sweep(db, service, at + HOUR) == 0
    asked = await renewals_asked(db)
    assert [(a["subscription_id"], a["plan_id"]) for a in asked] == [(sub.id, "plan-m")]
    assert asked[0]["expires_at"].startswith(sub.expires_at.isoformat()[:19])
    # The renewal is paid: the new period is asked once again, near its own end.
    await buy(db, service, paid("ar3", days=30), at)
    renewed = await subscription(db, "ar3")
    assert renewed.expires_at == sub.expires_at + 30 * DAY
    assert await sweep(db, service, at + HOUR) == 0
    assert await sweep(db, service, renewed.expires_at - 2 * HOUR) == 1
    assert len(await renewals_asked(db)) == 2


async def test_no_renewal_is_asked_when_auto_renew_is_off(db, service):
    await buy(db, service, paid("ar4", days=30), T0)
    sub = await subscription(db, "ar4")
    assert await sweep(db, service, sub.expires_at - HOUR) == 0
    await switch(db, service, "ar4", sub.id, True)
    await switch(db, service, "ar4", sub.id, False)
    assert await sweep(db, service, sub.expires_at - HOUR) == 0
    assert await renewals_asked(db) == []


async def test_reminders_carry_the_renewal_plan_and_whether_auto_renew_is_on(db, service):
    await buy(db, service, paid("ar5", days=10), T0)
    sub = await subscription(db, "ar5")
    await switch(db, service, "ar5", sub.id, True, plan_id="plan-y")
    async with db.transaction() as s:
        assert await service.send_reminders(s, sub.expires_at - 6 * DAY, [7, 3, 1], 100) == 1
    reminder = [p for k, p in await events(db) if k.endswith("expiring.v1")][-1]
    assert (reminder["days_left"], reminder["plan_id"], reminder["auto_renew"]) == (
        7, "plan-y", True)
    async with db.transaction() as s:
        row = await s.scalar(sa.select(Subscription).where(Subscription.id == sub.id))
        assert row.reminders_sent == [7]


async def test_a_trials_traffic_limit_reaches_the_backend_and_a_paid_plan_lifts_it(db, service):
    trial = paid("tl1", days=3, plan="trial")
    trial.plan.traffic_limit_gb = 5
    await buy(db, service, trial, T0)
    sub = await subscription(db, "tl1")
    assert sub.data_limit_bytes == 5 * 1024 ** 3
    assert (await sandbox_account(db, sub.provision_ref)).data_limit_bytes == 5 * 1024 ** 3
    await buy(db, service, paid("tl1"), T0 + DAY)
    assert (await subscription(db, "tl1")).data_limit_bytes is None
    assert (await sandbox_account(db, sub.provision_ref)).data_limit_bytes is None


async def test_a_plans_monthly_allowance_is_kept_on_the_subscription(db, service):
    bought = paid("tl2")
    bought.plan.traffic_limit_gb, bought.plan.traffic_reset = 50, "MONTH"
    await buy(db, service, bought, T0)
    sub = await subscription(db, "tl2")
    assert (sub.data_limit_bytes, sub.traffic_reset) == (50 * 1024 ** 3, "MONTH")


async def test_usage_comes_live_from_the_backend_for_the_owner_only(db, service):
    bought = paid("us1", devices=2)
    bought.plan.traffic_limit_gb = 5
    await buy(db, service, bought, T0)
    sub = await subscription(db, "us1")
    async with db.transaction() as s:
        used = await service.usage(s, Identity("us1", "USER"), sub.id)
        with pytest.raises(NotFound):
            await service.usage(s, Identity("someone-else", "USER"), sub.id)
    assert (used["limit_bytes"], used["used_bytes"], used["devices"]) == (
        5 * 1024 ** 3, None, {"limit": 2, "used": None})
    assert used["limited"] is False
