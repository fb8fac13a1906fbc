"""Subscription lifecycle: paid invoices applied exactly once, refunds, suspend/resume, expiry,
reminders, reconciliation with the VPN backend, and the events other contexts see.

Every change that affects access follows one pattern: take the user's advisory lock (and, around
the backend call, the account ref's), change the subscription inside the open transaction, bring
the backend to the new state (idempotent, with a timeout), and let the caller's transaction commit
the change together with its outbox events. A backend failure rolls all of it back; the caller
(a `provision` job, the reconciliation, an admin request) retries or reports it. Because backend
operations set a state ("active until X") instead of adding time, a retry after a commit that
never happened converges on the same backend state, and the grant row (unique per invoice) decides
once and for all whether an invoice's time was added.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from contracts import events_of
from contracts.billing import (
    InvoicePaidV1,
    InvoiceRefundedV1,
    ReferralReversedV1,
    ReferralRewardedV1,
)
from contracts.provisioning import (
    ProvisionFailedV1,
    SubscriptionActivatedV1,
    SubscriptionExpiredV1,
    SubscriptionExpiringV1,
    SubscriptionExtendedV1,
    SubscriptionLimitedV1,
    SubscriptionRenewalDueV1,
    SubscriptionResumedV1,
    SubscriptionSuspendedV1,
)
from provisioner.backends import AccessDetails, AccountMissing, BackendError, VpnBackend
from provisioner.backends.base import REF_PREFIX, Usage
from provisioner.links import new_token
from provisioner.metrics import LIFECYCLE, RECONCILIATION_FIXES
from provisioner.models import Grant, Subscription, UserBlock, outbox
from provisioner.repository import ProvisioningRepository, ServerRepository, SubscriptionReader
from provisioner.servers import PoolFull, ServerPool
from runtime.clock import now
from runtime.db import Database
from runtime.errors import (
    Conflict,
    IllegalTransition,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from runtime.identity import Identity
from runtime.jobs import job_id
from runtime.logging import get_logger
from runtime.outbox import Outbox

log = get_logger(__name__)

events = Outbox(outbox, producer="provisioner", publishes=events_of("provisioning"))

ACTIVE, EXPIRED, CANCELED, SUSPENDED = "ACTIVE", "EXPIRED", "CANCELED", "SUSPENDED"
# Shown, never stored: an ACTIVE subscription whose traffic allowance is used up (`limited_at`).
LIMITED = "LIMITED"
PENDING, APPLIED, FAILED = "PENDING", "APPLIED", "FAILED"
# A new subscription's grant while no server of the pool has room; placed when room appears.
WAITING = "WAITING"
REFUND_PENDING, REFUNDED = "REFUND_PENDING", "REFUNDED"
USER_BLOCKED, BY_ADMIN = "USER_BLOCKED", "ADMIN"
# A referral reward's days (kind REFERRAL); SKIPPED: its referrer had no running subscription,
# so it was recorded and nothing was added.
REFERRAL, SKIPPED = "REFERRAL", "SKIPPED"

# Allowed subscription transitions; anything else is refused (409), never applied.
TRANSITIONS = {
    ACTIVE: {SUSPENDED, EXPIRED, CANCELED},
    SUSPENDED: {ACTIVE, EXPIRED, CANCELED},
    EXPIRED: {ACTIVE},
    CANCELED: {ACTIVE},
}

_NAMESPACE = uuid.UUID("5b7f0a52-6f0e-4a1e-9a56-2f6b1c1f4d10")


def subscription_id_for(seed: str) -> str:
    """Deterministic, so a retried first grant re-creates the same subscription (and ref)."""
    return uuid.uuid5(_NAMESPACE, seed).hex


def provision_ref(subscription_id: str) -> str:
    """The opaque account id on the backend (also a valid Marzban username and Outline key id)."""
    return REF_PREFIX + hashlib.sha256(f"ref:{subscription_id}".encode()).hexdigest()[:24]


def referral_grant_key(referred_user_id: str) -> str:
    """A referral reward's grant key (kept in `grants.invoice_id`, unique): one reward per
    referred customer, however often its event comes."""
    return f"referral:{referred_user_id}"


def grant_job_id(invoice_id: str) -> str:
    return job_id("provision", invoice_id)


def refund_job_id(invoice_id: str) -> str:
    return job_id("refund", invoice_id)


def block_job_id(user_id: str, changed_at: datetime) -> str:
    return job_id("user-block", user_id, int(changed_at.timestamp() * 1000))


MAX_YEARS_AHEAD = 10
# Subscriptions read per page by reconciliation (each page its own transaction).
RECONCILE_PAGE = 10_000
GB = 1024 ** 3


def latest_expiry(ts: datetime) -> datetime:
    """The furthest `expires_at` may be: 10 years after `ts` (29 February → 28 February)."""
    try:
        return ts.replace(year=ts.year + MAX_YEARS_AHEAD)
    except ValueError:
        return ts.replace(year=ts.year + MAX_YEARS_AHEAD, day=28)


def add_days(base: datetime, days: int, limit: datetime) -> datetime:
    """`base` + `days`, but never past `limit` (and no overflow for a huge `days`); a `base`
    already past `limit` is kept, not shortened."""
    if days > (limit - base).days:
        return max(base, limit)
    return base + timedelta(days=days)


def extension_base(sub: Subscription | None, ts: datetime) -> datetime:
    """Where added time starts: the current end while the subscription runs, else now."""
    if sub is not None and sub.status in (ACTIVE, SUSPENDED):
        return max(ts, sub.expires_at)
    return ts


TRIAL_PLAN_ID = "trial"  # the plan id of a trial's subscription: nothing to renew it with


def renewal_plan(sub: Subscription) -> str | None:
    """The plan a renewal of `sub` buys: auto-renewal's choice, else the current plan (a trial
    has none)."""
    plan_id = sub.auto_renew_plan_id or sub.plan_id
    return None if plan_id == TRIAL_PLAN_ID else plan_id


def auto_renew_view(*, enabled: bool, plan_id: str | None, status: str, expires_at: datetime,
                    hours_before: int) -> dict:
    """The public `auto_renew` of a subscription; `next_attempt_at` while it will be tried."""
    runs = enabled and status in (ACTIVE, SUSPENDED)
    return {"enabled": enabled, "plan_id": plan_id,
            "next_attempt_at": expires_at - timedelta(hours=hours_before) if runs else None}


def public_status(status: str, limited_at: datetime | None) -> str:
    """The status the customer sees: LIMITED while an ACTIVE subscription's allowance is used
    up (it still runs: time counts, access stays, a renewal lifts it)."""
    return LIMITED if status == ACTIVE and limited_at is not None else status


def _check_plan(event: InvoicePaidV1) -> None:
    if event.plan.duration_days <= 0 or event.plan.max_devices <= 0:
        raise ValueError(f"invoice {event.invoice_id}: plan snapshot has no time to grant")


def mark_refunded(grant: Grant, ts: datetime, taken: timedelta = timedelta(0)) -> None:
    """The grant is REFUNDED at `ts`, with `taken` of the subscription's time taken back."""
    grant.status, grant.refunded_at, grant.updated_at = REFUNDED, ts, ts
    grant.refunded_seconds = int(taken.total_seconds())


def transition(sub: Subscription, to: str) -> None:
    if to not in TRANSITIONS.get(sub.status, set()):
        raise IllegalTransition("subscription", sub.status, to)
    sub.status = to


@dataclass
class GrantResult:
    outcome: str  # activated | extended | duplicate | refunded | missing | skipped
    latency_seconds: float | None = None


@dataclass
class ExpiryBatch:
    due: int  # due rows the batch took (the batch size: more may be due; fewer: none left free)
    expired: int
    failed: int  # their accounts not disabled: left due for the next run


@dataclass
class StaleWork:
    grants: list[tuple[str, str]]  # (job name, invoice id)
    blocks: list[tuple[str, datetime]]  # (user id, changed_at)


class ProvisioningService:
    """`backend` drives every account unless a server `pool` is given; then each subscription's
    account is on the server it was placed on (`backend` is the seeded server's driver)."""

    def __init__(self, backend: VpnBackend, auto_renew_hours_before: int = 24,
                 pool: ServerPool | None = None):
        self.backend = backend
        self.auto_renew_hours_before = auto_renew_hours_before
        self.pool = pool

    async def _driver(self, s: AsyncSession, sub: Subscription) -> VpnBackend:
        """The driver of the server `sub`'s account lives on."""
        return await self._server_driver(s, sub.server_id)

    async def _server_driver(self, s: AsyncSession, server_id: str | None) -> VpnBackend:
        if self.pool is None:
            return self.backend
        return await self.pool.driver(server_id, s)

    def view(self, sub: Subscription) -> dict:
        """A subscription as the public shapes show it (with its `auto_renew`)."""
        out = {c: getattr(sub, c) for c in (
            "id", "plan_id", "status", "started_at", "expires_at", "max_devices", "user_id",
            "backend", "suspend_reason", "created_at", "updated_at")}
        out["auto_renew"] = auto_renew_view(
            enabled=sub.auto_renew_enabled, plan_id=sub.auto_renew_plan_id, status=sub.status,
            expires_at=sub.expires_at, hours_before=self.auto_renew_hours_before)
        out["status"] = public_status(sub.status, sub.limited_at)
        out["limited_until"] = sub.limit_resets_at if out["status"] == LIMITED else None
        return out

    # ------------------------------------------------------------------ backend state

    async def _apply_backend(self, s: AsyncSession, sub: Subscription, ts: datetime) -> None:
        """Make the backend account match the subscription (under the ref's lock)."""
        repo = ProvisioningRepository(s)
        await repo.lock_ref(sub.provision_ref)
        backend = await self._driver(s, sub)
        if sub.status == ACTIVE:
            await backend.ensure_active(sub.provision_ref, expires_at=sub.expires_at,
                                             max_devices=sub.max_devices,
                                             data_limit_bytes=sub.data_limit_bytes,
                                             traffic_reset=sub.traffic_reset or "NONE")
            state = "ACTIVE"
            if self.backend.grant_resets_traffic:  # a used-up allowance is fresh again
                sub.limited_at = sub.limit_resets_at = None
        else:
            await backend.disable(sub.provision_ref)
            state = "DISABLED"
        await repo.record_account(backend=backend.name, ref=sub.provision_ref,
                                  subscription_id=sub.id, state=state, now=ts,
                                  server_id=sub.server_id)

    async def _add_time(self, s: AsyncSession, sub: Subscription | None, *, user_id: str,
                        days: int, ts: datetime, reason: str, invoice_id: str | None,
                        plan: dict | None, blocked: bool) -> tuple[Subscription, str, datetime]:
        """Add `days` to max(now, expires_at), or (re)activate from now; returns the kind.

        Time past `latest_expiry(ts)` is not added: a paid grant is applied up to that bound
        (logged), and `admin_extend` refuses beforehand."""
        if sub is None:
            server = await self.pool.place(s) if self.pool is not None else None
            sid = subscription_id_for(f"invoice:{invoice_id}" if invoice_id else f"user:{user_id}")
            sub = Subscription(id=sid, user_id=user_id, plan_id=plan["plan_id"], plan=plan,
                               status=ACTIVE, started_at=ts, expires_at=ts,
                               max_devices=plan["max_devices"], provision_ref=provision_ref(sid),
                               backend=self.backend.name, reminders_sent=[], created_at=ts,
                               updated_at=ts, server_id=server.id if server else None)
            sub.link_token, sub.link_hash = new_token()
            s.add(sub)
            kind = "activated"
        elif sub.status in (ACTIVE, SUSPENDED):
            kind = "extended"
        else:
            if self.pool is not None:  # an ended one takes room again: its server, if it can
                sub.server_id = (await self.pool.place(s, prefer=sub.server_id)).id
            transition(sub, ACTIVE)
            sub.started_at = ts
            sub.expires_at = ts
            kind = "activated"
        previous = sub.expires_at
        base, limit = max(ts, sub.expires_at), latest_expiry(ts)
        sub.expires_at = add_days(base, days, limit)
        added = days
        if days > (limit - base).days:
            added = (sub.expires_at - base).days
            log.warning("subscription_time_capped", subscription_id=sub.id, reason=reason,
                        invoice_id=invoice_id, days=days, days_added=added)
        if kind == "activated" and blocked:
            sub.status, sub.suspend_reason = SUSPENDED, USER_BLOCKED
        if plan is not None:
            sub.plan_id, sub.plan, sub.max_devices = plan["plan_id"], plan, plan["max_devices"]
            traffic_gb = plan.get("traffic_limit_gb")
            sub.data_limit_bytes = traffic_gb * GB if traffic_gb else None
            sub.traffic_reset = plan.get("traffic_reset") or "NONE"
        sub.backend = (await self._driver(s, sub)).name
        sub.reminders_sent = []
        sub.updated_at = ts
        await s.flush()
        await self._apply_backend(s, sub, ts)
        if kind == "activated":
            await events.add(s, SubscriptionActivatedV1(
                subscription_id=sub.id, user_id=sub.user_id, plan_id=sub.plan_id,
                invoice_id=invoice_id, started_at=sub.started_at, expires_at=sub.expires_at,
                max_devices=sub.max_devices))
            if sub.status == SUSPENDED:
                await events.add(s, SubscriptionSuspendedV1(
                    subscription_id=sub.id, user_id=sub.user_id, reason="user_blocked",
                    suspended_at=ts))
        else:
            await events.add(s, SubscriptionExtendedV1(
                subscription_id=sub.id, user_id=sub.user_id, invoice_id=invoice_id,
                previous_expires_at=previous, expires_at=sub.expires_at, days_added=added,
                reason=reason))
        return sub, kind, previous

    # ------------------------------------------------------------------ paid invoices

    @staticmethod
    def _grant_values(event: InvoicePaidV1, ts: datetime) -> dict:
        return dict(invoice_id=event.invoice_id, kind="INVOICE", user_id=event.user_id,
                    plan_id=event.plan.plan_id, plan=event.plan.model_dump(mode="json"),
                    # A promo code's bonus days come with the plan's, in the one grant.
                    duration_days=event.plan.duration_days + event.bonus_days,
                    max_devices=event.plan.max_devices,
                    status=PENDING, job_id=grant_job_id(event.invoice_id), attempts=0,
                    created_at=ts, updated_at=ts)

    async def record_paid(self, s: AsyncSession, event: InvoicePaidV1, ts: datetime
                          ) -> str | None:
        """Record the grant (once per invoice); returns its job id while it still needs applying."""
        _check_plan(event)
        repo = ProvisioningRepository(s)
        await repo.insert_grant(**self._grant_values(event, ts))
        grant = await repo.grant_by_invoice(event.invoice_id)
        return grant.job_id if grant is not None and grant.status == PENDING else None

    async def record_and_apply(self, s: AsyncSession, event: InvoicePaidV1, ts: datetime
                               ) -> GrantResult | None:
        """The happy path in one transaction: record the grant and apply it at once. None when
        the invoice already had a grant (a duplicate, or one a job owns): nothing was changed
        and the caller takes the queued path."""
        _check_plan(event)
        repo = ProvisioningRepository(s)
        await repo.lock_user(event.user_id)  # same order as apply_grant: user, then grant
        grant = await repo.insert_grant_returning(**self._grant_values(event, ts))
        if grant is None:
            return None
        return await self._apply(s, repo, grant, ts)

    async def apply_grant(self, s: AsyncSession, invoice_id: str, ts: datetime) -> GrantResult:
        repo = ProvisioningRepository(s)
        grant = await repo.grant_by_invoice(invoice_id)
        if grant is None:
            return GrantResult("missing")
        await repo.lock_user(grant.user_id)
        grant = await repo.grant_by_invoice(invoice_id, for_update=True)
        if grant.status == REFUNDED:
            return GrantResult("refunded")
        if grant.status not in (PENDING, FAILED, WAITING):
            return GrantResult("duplicate")
        if grant.kind == REFERRAL:
            return await self._apply_referral(s, repo, grant, ts)
        return await self._apply(s, repo, grant, ts)

    async def _apply(self, s: AsyncSession, repo: ProvisioningRepository, grant: Grant,
                     ts: datetime) -> GrantResult:
        """Add a locked, unapplied grant's time (the user's lock is held)."""
        invoice_id = grant.invoice_id
        blocked = await repo.is_blocked(grant.user_id)
        sub = await repo.subscription_for_user(grant.user_id, for_update=True)
        try:
            sub, kind, previous = await self._add_time(
                s, sub, user_id=grant.user_id, days=grant.duration_days, ts=ts,
                reason="invoice", invoice_id=invoice_id, plan=grant.plan, blocked=blocked)
        except PoolFull as exc:  # nothing was changed but the grant, which now waits
            grant.status, grant.last_error, grant.updated_at = WAITING, exc.message, ts
            return GrantResult("waiting")
        grant.status, grant.subscription_id = APPLIED, sub.id
        grant.previous_expires_at, grant.new_expires_at = previous, sub.expires_at
        grant.applied_at = grant.updated_at = ts
        grant.last_error = None
        return GrantResult(kind, max(0.0, (ts - grant.created_at).total_seconds()))

    async def record_failure(self, s: AsyncSession, invoice_id: str, error: str, attempts: int,
                             final: bool, ts: datetime) -> bool:
        """Note a failed attempt; on the last one mark the grant FAILED and publish it."""
        repo = ProvisioningRepository(s)
        grant = await repo.grant_by_invoice(invoice_id, for_update=True)
        if grant is None or grant.status not in (PENDING, FAILED):
            return False
        grant.attempts, grant.last_error, grant.updated_at = attempts, error[:500], ts
        if not final:
            return False
        grant.status, grant.failed_at = FAILED, ts
        sub = await repo.subscription_for_user(grant.user_id)
        await events.add(s, ProvisionFailedV1(
            invoice_id=invoice_id, user_id=grant.user_id,
            subscription_id=sub.id if sub else None, error=error[:500], attempts=attempts,
            failed_at=ts))
        return True

    async def reopen_failed(self, s: AsyncSession, job: str) -> Grant | None:
        """An admin retry: a FAILED grant goes back to PENDING with a fresh attempt budget."""
        grant = await ProvisioningRepository(s).grant_by_job(job)
        if grant is not None and grant.status == FAILED:
            grant.status, grant.attempts, grant.updated_at = PENDING, 0, now()
        return grant

    # ------------------------------------------------------------------ refunds

    async def record_refund(self, s: AsyncSession, event: InvoiceRefundedV1, ts: datetime
                            ) -> str | None:
        """Mark the invoice refunded; returns a job id when applied time must be taken back."""
        repo = ProvisioningRepository(s)
        inserted = await repo.insert_grant(
            invoice_id=event.invoice_id, kind="INVOICE", user_id=event.user_id,
            plan_id=event.plan.plan_id, plan=event.plan.model_dump(mode="json"),
            duration_days=event.plan.duration_days, max_devices=event.plan.max_devices,
            status=REFUNDED, job_id=grant_job_id(event.invoice_id), attempts=0,
            refund_reason=event.reason, refunded_at=ts, refunded_seconds=0,
            created_at=ts, updated_at=ts)
        if inserted:  # refunded before its payment reached us: it will never be applied
            LIFECYCLE.labels("refunded_before_applied").inc()
            return None
        grant = await repo.grant_by_invoice(event.invoice_id, for_update=True)
        if grant.status in (PENDING, FAILED, WAITING):
            grant.refund_reason = event.reason
            mark_refunded(grant, ts)
            LIFECYCLE.labels("refunded_before_applied").inc()
            return None
        if grant.status == APPLIED:
            grant.status, grant.refund_reason, grant.updated_at = REFUND_PENDING, event.reason, ts
        return refund_job_id(event.invoice_id) if grant.status == REFUND_PENDING else None

    async def apply_refund(self, s: AsyncSession, invoice_id: str, ts: datetime) -> str:
        """Take the bought time back; revoke access (CANCELED) if nothing remains."""
        repo = ProvisioningRepository(s)
        grant = await repo.grant_by_invoice(invoice_id)
        if grant is None:
            return "missing"
        await repo.lock_user(grant.user_id)
        grant = await repo.grant_by_invoice(invoice_id, for_update=True)
        if grant.status != REFUND_PENDING:
            return "duplicate"
        sub = (await repo.subscription(grant.subscription_id, for_update=True)
               if grant.subscription_id else None)
        if grant.kind == REFERRAL:
            return await self._take_back_referral(s, sub, grant, ts)
        taken = timedelta(0)
        outcome = "nothing_left"
        if sub is not None and sub.status in (ACTIVE, SUSPENDED) and sub.expires_at > ts:
            previous = sub.expires_at
            granted = timedelta(days=grant.duration_days)
            if grant.new_expires_at and grant.previous_expires_at and grant.applied_at:
                # a grant capped at the 10-year bound added less than its days
                granted = min(granted, grant.new_expires_at
                              - max(grant.applied_at, grant.previous_expires_at))
            shortened = previous - granted
            sub.updated_at = ts
            if shortened <= ts:
                taken = previous - ts
                sub.expires_at = ts
                transition(sub, CANCELED)
                sub.suspend_reason = None
                await self._apply_backend(s, sub, ts)
                await events.add(s, SubscriptionExpiredV1(
                    subscription_id=sub.id, user_id=sub.user_id, expired_at=ts))
                outcome = "revoked"
            else:
                taken = previous - shortened
                sub.expires_at = shortened
                await self._apply_backend(s, sub, ts)
                await events.add(s, SubscriptionExtendedV1(
                    subscription_id=sub.id, user_id=sub.user_id, invoice_id=invoice_id,
                    previous_expires_at=previous, expires_at=shortened,
                    days_added=-grant.duration_days, reason="refund"))
                outcome = "shortened"
        mark_refunded(grant, ts, taken)
        LIFECYCLE.labels(f"refund_{outcome}").inc()
        return outcome

    # ------------------------------------------------------------------ referral rewards

    async def record_referral(self, s: AsyncSession, event: ReferralRewardedV1, ts: datetime
                              ) -> str | None:
        """Record a referrer's reward days, once per referred customer (a money reward is
        billing's alone: nothing); returns the grant's key while it still needs applying."""
        if event.days <= 0:
            return None
        key = referral_grant_key(event.referred_user_id)
        repo = ProvisioningRepository(s)
        # The subscription's plan is filled in when the days are added to it.
        await repo.insert_grant(invoice_id=key, kind=REFERRAL, user_id=event.referrer_user_id,
                                plan_id="referral", plan={}, duration_days=event.days,
                                max_devices=0, status=PENDING, job_id=grant_job_id(key),
                                attempts=0, created_at=ts, updated_at=ts)
        grant = await repo.grant_by_invoice(key)
        return key if grant is not None and grant.status == PENDING else None

    async def _apply_referral(self, s: AsyncSession, repo: ProvisioningRepository, grant: Grant,
                              ts: datetime) -> GrantResult:
        """Add the days to the referrer's running (ACTIVE or SUSPENDED) subscription. With
        none, the reward is recorded as SKIPPED and adds nothing (it does not start one)."""
        sub = await repo.subscription_for_user(grant.user_id, for_update=True)
        grant.updated_at = ts
        if sub is None or sub.status not in (ACTIVE, SUSPENDED):
            grant.status, grant.subscription_id = SKIPPED, sub.id if sub else None
            log.info("referral_reward_skipped", user_id=grant.user_id, key=grant.invoice_id)
            return GrantResult("skipped")
        sub, kind, previous = await self._add_time(
            s, sub, user_id=grant.user_id, days=grant.duration_days, ts=ts, reason="referral",
            invoice_id=None, plan=None, blocked=False)
        grant.status, grant.subscription_id = APPLIED, sub.id
        grant.plan_id, grant.plan, grant.max_devices = sub.plan_id, sub.plan, sub.max_devices
        grant.previous_expires_at, grant.new_expires_at = previous, sub.expires_at
        grant.applied_at, grant.last_error = ts, None
        return GrantResult(kind, max(0.0, (ts - grant.created_at).total_seconds()))

    async def record_referral_reversal(self, s: AsyncSession, event: ReferralReversedV1,
                                       ts: datetime) -> str | None:
        """The referred customer's invoice was refunded: the days go back. Returns the key
        while applied days must be taken back; a reward not applied yet never will be."""
        if event.days <= 0:
            return None
        key = referral_grant_key(event.referred_user_id)
        repo = ProvisioningRepository(s)
        if await repo.insert_grant(invoice_id=key, kind=REFERRAL, user_id=event.referrer_user_id,
                                   plan_id="referral", plan={}, duration_days=event.days,
                                   max_devices=0, status=REFUNDED, job_id=grant_job_id(key),
                                   attempts=0, refund_reason="referral reversed",
                                   refunded_at=ts, refunded_seconds=0, created_at=ts,
                                   updated_at=ts):
            return None  # reversed before its reward arrived
        grant = await repo.grant_by_invoice(key, for_update=True)
        if grant.status in (PENDING, FAILED, SKIPPED):
            grant.refund_reason = "referral reversed"
            mark_refunded(grant, ts)
            return None
        if grant.status == APPLIED:
            grant.status, grant.refund_reason = REFUND_PENDING, "referral reversed"
            grant.updated_at = ts
        return key if grant.status == REFUND_PENDING else None

    async def _take_back_referral(self, s: AsyncSession, sub: Subscription | None, grant: Grant,
                                  ts: datetime) -> str:
        """Take a reversed reward's days back, never past now (the subscription then ends at
        the next expiry sweep); the user's lock is held."""
        taken = timedelta(0)
        outcome = "nothing_left"
        if sub is not None and sub.status in (ACTIVE, SUSPENDED) and sub.expires_at > ts:
            previous = sub.expires_at
            added = timedelta(days=grant.duration_days)
            if grant.new_expires_at and grant.previous_expires_at:
                added = min(added, grant.new_expires_at - grant.previous_expires_at)
            sub.expires_at = max(ts, previous - added)
            sub.updated_at = ts
            taken = previous - sub.expires_at
            await self._apply_backend(s, sub, ts)
            await events.add(s, SubscriptionExtendedV1(
                subscription_id=sub.id, user_id=sub.user_id, invoice_id=None,
                previous_expires_at=previous, expires_at=sub.expires_at,
                days_added=-grant.duration_days, reason="referral_reversed"))
            outcome = "shortened"
        mark_refunded(grant, ts, taken)
        LIFECYCLE.labels(f"referral_reversal_{outcome}").inc()
        return outcome

    # ------------------------------------------------------------------ blocked users

    async def record_block(self, s: AsyncSession, user_id: str, blocked: bool,
                           changed_at: datetime, ts: datetime) -> str | None:
        """Keep the newest block state; returns the sync job id (None for a stale event)."""
        repo = ProvisioningRepository(s)
        row = await repo.user_block(user_id, for_update=True)
        if row is None:
            s.add(UserBlock(user_id=user_id, blocked=blocked, changed_at=changed_at,
                            synced=False, updated_at=ts))
            await s.flush()
        elif changed_at < row.changed_at:
            return None
        else:
            row.blocked, row.changed_at, row.synced, row.updated_at = (
                blocked, changed_at, False, ts)
        return block_job_id(user_id, changed_at)

    async def sync_user_block(self, s: AsyncSession, user_id: str, ts: datetime) -> str:
        """Suspend a blocked user's subscription on the backend, or resume it after unblock."""
        repo = ProvisioningRepository(s)
        await repo.lock_user(user_id)
        row = await repo.user_block(user_id, for_update=True)
        if row is None or row.synced:
            return "noop"
        sub = await repo.subscription_for_user(user_id, for_update=True)
        outcome = "noop"
        if sub is not None and row.blocked and sub.status == ACTIVE:
            await self._suspend(s, sub, USER_BLOCKED, "user_blocked", ts)
            outcome = "suspended"
        elif (sub is not None and not row.blocked and sub.status == SUSPENDED
              and sub.suspend_reason == USER_BLOCKED and sub.expires_at > ts):
            await self._resume(s, sub, ts)
            outcome = "resumed"
        row.synced, row.updated_at = True, ts
        return outcome

    async def _suspend(self, s: AsyncSession, sub: Subscription, reason: str, label: str,
                       ts: datetime) -> None:
        transition(sub, SUSPENDED)
        sub.suspend_reason, sub.updated_at = reason, ts
        await self._apply_backend(s, sub, ts)
        await events.add(s, SubscriptionSuspendedV1(subscription_id=sub.id, user_id=sub.user_id,
                                                    reason=label, suspended_at=ts))
        LIFECYCLE.labels("suspended").inc()

    async def _resume(self, s: AsyncSession, sub: Subscription, ts: datetime) -> None:
        transition(sub, ACTIVE)
        sub.suspend_reason, sub.updated_at = None, ts
        await self._apply_backend(s, sub, ts)
        await events.add(s, SubscriptionResumedV1(subscription_id=sub.id, user_id=sub.user_id,
                                                  expires_at=sub.expires_at, resumed_at=ts))
        LIFECYCLE.labels("resumed").inc()

    # ------------------------------------------------------------------ queries and admin

    async def list_own(self, db: Database, identity: Identity) -> list[dict]:
        rows = await SubscriptionReader(db).own(identity.user_id)
        for row in rows:
            row["auto_renew"] = auto_renew_view(
                enabled=row.pop("auto_renew_enabled"), plan_id=row.pop("auto_renew_plan_id"),
                status=row["status"], expires_at=row["expires_at"],
                hours_before=self.auto_renew_hours_before)
            row["status"] = public_status(row["status"], row.pop("limited_at"))
            resets_at = row.pop("limit_resets_at")
            row["limited_until"] = resets_at if row["status"] == LIMITED else None
        return rows

    async def set_auto_renew(self, s: AsyncSession, identity: Identity, sub_id: str, *,
                             enabled: bool, plan_id: str | None, ts: datetime) -> Subscription:
        """Turn auto-renewal on or off for the caller's own subscription (another user's is not
        found). The gateway checks that `plan_id` is a plan on sale; a trial needs one."""
        sub = await ProvisioningRepository(s).subscription(sub_id, for_update=True)
        if sub is None or sub.user_id != identity.user_id:
            raise NotFound("Subscription not found")
        if enabled:
            if (plan_id or sub.plan_id) == TRIAL_PLAN_ID:
                raise ValidationFailed("Choose the plan to renew a trial with",
                                       {"plan_id": plan_id})
            if sub.status not in (ACTIVE, SUSPENDED):
                raise Conflict(f"Auto-renewal is for a running subscription (this one is "
                               f"{sub.status}): buy a plan instead", {"status": sub.status})
        sub.auto_renew_enabled = enabled
        if enabled or plan_id is not None:
            sub.auto_renew_plan_id = None if plan_id == sub.plan_id else plan_id
        sub.updated_at = ts
        await s.flush()
        return sub

    async def access(self, s: AsyncSession, identity: Identity, sub_id: str) -> dict:
        """The access config, fetched live from the backend; another user's id is not found."""
        sub = await ProvisioningRepository(s).subscription(sub_id)
        if sub is None or sub.user_id != identity.user_id:
            raise NotFound("Subscription not found")
        if sub.status != ACTIVE:
            raise Conflict(f"Access is available only while the subscription is ACTIVE "
                           f"(it is {sub.status})", {"status": sub.status})
        backend = await self._driver(s, sub)
        try:
            details: AccessDetails = await backend.access(sub.provision_ref)
        except AccountMissing as exc:
            raise ServiceUnavailable("Your access is being set up; try again shortly") from exc
        except BackendError as exc:
            raise ServiceUnavailable("The VPN backend is unavailable") from exc
        return {"backend": backend.name, "access_url": details.access_url,
                "config": details.config, "fetched_at": now()}

    async def usage(self, s: AsyncSession, identity: Identity, sub_id: str) -> dict:
        """The subscription's use, live from the panel; another user's id is not found. What
        the panel says of its allowance is kept (`note_limit`): a used-up one makes it LIMITED."""
        repo = ProvisioningRepository(s)
        sub = await repo.subscription(sub_id)
        if sub is None or sub.user_id != identity.user_id:
            raise NotFound("Subscription not found")
        try:
            used = await (await self._driver(s, sub)).usage(sub.provision_ref)
        except AccountMissing as exc:
            raise ServiceUnavailable("Your access is being set up; try again shortly") from exc
        except BackendError as exc:
            raise ServiceUnavailable("The VPN backend is unavailable") from exc
        if used.limited != (sub.limited_at is not None):
            await repo.lock_user(sub.user_id)
            locked = await repo.subscription(sub_id, for_update=True)
            await self.note_limit(s, locked, used, now())
        return {"used_bytes": used.used_bytes, "limit_bytes": used.limit_bytes,
                "resets_at": used.resets_at, "limited": used.limited,
                "devices": {"limit": used.devices_limit, "used": used.devices_used},
                "fetched_at": now()}

    # ------------------------------------------------------------------ traffic limits

    async def note_limit(self, s: AsyncSession, sub: Subscription, usage: Usage,
                         ts: datetime) -> bool:
        """Keep the LIMITED mark in step with the panel (the row is locked). The first time an
        ACTIVE subscription is seen used up in a limit period it is marked and
        `subscription.limited` is published (the customer's one notice); seen again (another
        read, a redelivered webhook) nothing more happens. Lifted by the panel (its monthly
        reset) the mark goes, so the next period's limit is told again. True when published."""
        if usage.limited and sub.status == ACTIVE and sub.expires_at > ts:
            if sub.limited_at is not None:
                return False
            sub.limited_at, sub.limit_resets_at, sub.updated_at = ts, usage.resets_at, ts
            await s.flush()
            await events.add(s, SubscriptionLimitedV1(
                subscription_id=sub.id, user_id=sub.user_id, limited_at=ts,
                resets_at=usage.resets_at, used_bytes=usage.used_bytes,
                limit_bytes=usage.limit_bytes))
            LIFECYCLE.labels("limited").inc()
            log.info("subscription_limited", subscription_id=sub.id,
                     resets_at=usage.resets_at.isoformat() if usage.resets_at else None)
            return True
        if not usage.limited and sub.limited_at is not None:
            sub.limited_at = sub.limit_resets_at = None
            sub.updated_at = ts
            await s.flush()
        return False

    async def check_limits(self, db: Database, ts: datetime, batch: int) -> int:
        """The periodic limit check: the usage of up to `batch` running subscriptions with an
        allowance (the least recently checked first) read from the panel and noted. A panel
        that does not enforce traffic is not asked. Returns how many became LIMITED."""
        if not self.backend.enforces_traffic:
            return 0
        async with db.transaction() as s:
            due = [(x.id, x.user_id) for x in await ProvisioningRepository(s).due_for_limit_check(
                ts, batch, any_allowance=self.backend.default_data_limit)]
        limited = 0
        for sub_id, user_id in due:
            try:
                async with db.transaction() as s:
                    repo = ProvisioningRepository(s)
                    await repo.lock_user(user_id)
                    sub = await repo.subscription(sub_id, for_update=True)
                    if sub is None or sub.status != ACTIVE:
                        continue
                    sub.usage_checked_at = ts
                    try:
                        used = await self.backend.usage(sub.provision_ref)
                    except AccountMissing:
                        continue  # reconciliation re-creates it
                    limited += await self.note_limit(s, sub, used, ts)
            except Exception as exc:  # one panel failure must not stop the check
                log.warning("limit_check_failed", subscription_id=sub_id, error=str(exc)[:300])
        return limited

    async def panel_limited(self, s: AsyncSession, ref: str, ts: datetime,
                            resets_at: datetime | None) -> bool:
        """The panel said (its webhook) that the account `ref` used up its allowance."""
        repo = ProvisioningRepository(s)
        found = await repo.subscription_by_ref(ref)
        if found is None:
            return False
        await repo.lock_user(found.user_id)
        sub = await repo.subscription(found.id, for_update=True)
        if sub.traffic_reset != "MONTH":
            resets_at = None
        return await self.note_limit(s, sub, Usage(limited=True, resets_at=resets_at), ts)

    async def _locked(self, s: AsyncSession, sub_id: str) -> Subscription:
        repo = ProvisioningRepository(s)
        sub = await repo.subscription(sub_id)
        if sub is None:
            raise NotFound("Subscription not found")
        await repo.lock_user(sub.user_id)
        return await repo.subscription(sub_id, for_update=True)

    async def admin_extend(self, s: AsyncSession, sub_id: str, days: int, actor_id: str,
                           ts: datetime) -> Subscription:
        sub = await self._locked(s, sub_id)
        limit = latest_expiry(ts)
        if days > (limit - extension_base(sub, ts)).days:
            raise Conflict(f"An extension may not take expires_at more than {MAX_YEARS_AHEAD} "
                           "years ahead", {"max_expires_at": limit.isoformat(),
                                           "max_days": max(0, (limit - extension_base(sub, ts))
                                                           .days)})
        blocked = await ProvisioningRepository(s).is_blocked(sub.user_id)
        try:
            sub, _, previous = await self._add_time(
                s, sub, user_id=sub.user_id, days=days, ts=ts, reason="admin", invoice_id=None,
                plan=None, blocked=blocked)
        except BackendError as exc:
            raise ServiceUnavailable("The VPN backend is unavailable; nothing changed") from exc
        s.add(Grant(invoice_id=None, kind="ADMIN", user_id=sub.user_id, subscription_id=sub.id,
                    plan_id=sub.plan_id, plan=sub.plan, duration_days=days,
                    max_devices=sub.max_devices, status=APPLIED, attempts=0, actor_id=actor_id,
                    previous_expires_at=previous, new_expires_at=sub.expires_at, created_at=ts,
                    updated_at=ts, applied_at=ts))
        await s.flush()
        return sub

    async def admin_suspend(self, s: AsyncSession, sub_id: str, ts: datetime) -> Subscription:
        sub = await self._locked(s, sub_id)
        try:
            await self._suspend(s, sub, BY_ADMIN, "admin", ts)
        except BackendError as exc:
            raise ServiceUnavailable("The VPN backend is unavailable; nothing changed") from exc
        return sub

    async def admin_resume(self, s: AsyncSession, sub_id: str, ts: datetime) -> Subscription:
        sub = await self._locked(s, sub_id)
        if sub.status != SUSPENDED:
            raise IllegalTransition("subscription", sub.status, ACTIVE)
        if await ProvisioningRepository(s).is_blocked(sub.user_id):
            raise Conflict("The user is blocked; unblock the user to resume")
        if sub.expires_at <= ts:
            raise Conflict("The subscription has no time left; extend it instead")
        try:
            await self._resume(s, sub, ts)
        except BackendError as exc:
            raise ServiceUnavailable("The VPN backend is unavailable; nothing changed") from exc
        return sub

    # ------------------------------------------------------------------ scheduled work

    async def expire_one(self, s: AsyncSession, sub_id: str, ts: datetime) -> bool:
        """Past expires_at: revoke on the backend, then EXPIRED (one event, once)."""
        repo = ProvisioningRepository(s)
        sub = await repo.subscription(sub_id)
        if sub is None:
            return False
        await repo.lock_user(sub.user_id)
        sub = await repo.subscription(sub_id, for_update=True)
        if sub.status not in (ACTIVE, SUSPENDED) or sub.expires_at > ts:
            return False
        transition(sub, EXPIRED)
        sub.suspend_reason, sub.updated_at = None, ts
        await self._apply_backend(s, sub, ts)
        await events.add(s, SubscriptionExpiredV1(subscription_id=sub.id, user_id=sub.user_id,
                                                  expired_at=sub.expires_at))
        LIFECYCLE.labels("expired").inc()
        return True

    async def expire_batch(self, db: Database, ts: datetime, batch: int,
                           concurrency: int = 4) -> ExpiryBatch:
        """Expire up to `batch` due subscriptions in one transaction, as `expire_one` does each:
        under their users' locks (taken without waiting: a user busy elsewhere is left for a
        later batch) and their refs', the accounts revoked on each server in one bulk call
        (`disable_many`; `concurrency` calls at once where a panel has no bulk call), then the
        rows EXPIRED in one statement, the accounts recorded and one `subscription.expired`
        each in one insert. A subscription whose account the backend did not disable is left
        as it was (due: the next run tries again); the others are expired all the same."""
        async with db.transaction() as s:
            repo = ProvisioningRepository(s)
            due, rows = await repo.lock_due_for_expiry(ts, batch)
            if not rows:
                return ExpiryBatch(due=due, expired=0, failed=0)
            await repo.lock_refs(sorted(r.provision_ref for r in rows))
            servers: dict[str | None, list] = {}
            for r in rows:
                servers.setdefault(r.server_id, []).append(r)
            drivers: dict[str | None, VpnBackend] = {}
            failed: dict[str, Exception] = {}
            for server_id, subs in servers.items():
                try:
                    drivers[server_id] = await self._server_driver(s, server_id)
                except Exception as exc:  # its server's row unreadable: those wait
                    failed.update(dict.fromkeys((r.provision_ref for r in subs), exc))

            async def revoke(server_id: str | None) -> dict[str, BackendError]:
                refs = [r.provision_ref for r in servers[server_id]]
                try:
                    return await drivers[server_id].disable_many(refs, concurrency)
                except BackendError as exc:  # the whole call failed: none of them is off
                    return dict.fromkeys(refs, exc)

            for outcome in await asyncio.gather(*(revoke(x) for x in drivers)):
                failed.update(outcome)
            done = [r for r in rows if r.provision_ref not in failed]
            if done:
                await repo.expire([r.id for r in done], ts)
                await repo.record_accounts(
                    [(drivers[r.server_id].name, r.provision_ref, r.id, r.server_id)
                     for r in done], state="DISABLED", now=ts)
                await events.add_many(s, (SubscriptionExpiredV1(
                    subscription_id=r.id, user_id=r.user_id, expired_at=r.expires_at)
                    for r in done))
        if failed:
            left = [r.id for r in rows if r.provision_ref in failed]
            log.warning("expiry_failed", failed=len(left), subscription_ids=left[:20],
                        error=str(next(iter(failed.values())))[:300])
        LIFECYCLE.labels("expired").inc(len(done))
        return ExpiryBatch(due=due, expired=len(done), failed=len(failed))

    async def expiry_sweep(self, db: Database, ts: datetime, batch: int,
                           concurrency: int = 4) -> int:
        """One batch of `expire_batch`; how many were expired."""
        return (await self.expire_batch(db, ts, batch, concurrency)).expired

    async def send_reminders(self, s: AsyncSession, ts: datetime, days: list[int],
                             batch: int) -> int:
        """Each reminder (e.g. 3 days, 1 day before expiry) once per expiry date."""
        if not days:
            return 0
        sent = 0
        rows = await ProvisioningRepository(s).expiring_within(
            ts, ts + timedelta(days=max(days)), batch, days)
        for sub in rows:
            already = set(sub.reminders_sent or [])
            due = [d for d in days
                   if d not in already and sub.expires_at - ts <= timedelta(days=d)]
            if not due:
                continue
            # When several are due at once (a short plan), only the nearest is worth sending.
            await events.add(s, SubscriptionExpiringV1(
                subscription_id=sub.id, user_id=sub.user_id, expires_at=sub.expires_at,
                days_left=min(due), plan_id=renewal_plan(sub),
                auto_renew=sub.auto_renew_enabled))
            sub.reminders_sent = sorted({*(sub.reminders_sent or []), *due}, reverse=True)
            sub.updated_at = ts
            sent += 1
        return sent

    async def renewal_sweep(self, s: AsyncSession, ts: datetime, batch: int) -> int:
        """Ask billing to charge each renewal that is due, once per period: a subscription
        with auto-renewal on whose `expires_at` is within `auto_renew_hours_before` gets one
        `renewal_due` for that `expires_at` (rows are locked, SKIP LOCKED: sweeps running at
        once share the work and never ask twice)."""
        due = await ProvisioningRepository(s).due_for_renewal(
            ts, ts + timedelta(hours=self.auto_renew_hours_before), batch)
        asked = 0
        for sub in due:
            plan_id = renewal_plan(sub)
            sub.renewal_due_for = sub.expires_at
            sub.updated_at = ts
            if plan_id is None:  # nothing to renew with (cannot be turned on so; kept safe)
                continue
            await events.add(s, SubscriptionRenewalDueV1(
                subscription_id=sub.id, user_id=sub.user_id, plan_id=plan_id,
                expires_at=sub.expires_at))
            asked += 1
        await s.flush()
        return asked

    async def stale_work(self, s: AsyncSession, older_than: datetime, batch: int) -> StaleWork:
        """Work committed but maybe never queued (a crash between commit and enqueue)."""
        repo = ProvisioningRepository(s)
        grants = [("apply_grant" if g.status == PENDING else "apply_refund", g.invoice_id)
                  for g in await repo.stale_grants(older_than, batch) if g.invoice_id]
        blocks = [(b.user_id, b.changed_at) for b in await repo.unsynced_blocks(older_than, batch)]
        return StaleWork(grants, blocks)

    async def place_waiting(self, db: Database, ts: datetime, batch: int) -> int:
        """Apply grants waiting for room, oldest first, each in its own transaction, until one
        still finds no room; returns how many were placed."""
        if self.pool is None:
            return 0
        async with db.transaction() as s:
            waiting = await ProvisioningRepository(s).waiting_grants(batch)
        placed = 0
        for invoice_id in waiting:
            async with db.transaction() as s:
                result = await self.apply_grant(s, invoice_id, ts)
            if result.outcome == "waiting":
                break
            placed += result.outcome in ("activated", "extended")
        return placed

    async def reconcile(self, db: Database, ts: datetime) -> dict[str, int]:
        """Compare subscriptions with the accounts of every server and repair drift: a
        running subscription's missing or disabled account is (re-)created on its server, an
        ended one's is disabled, and an enabled account of ours that no subscription points
        to on that server (an orphan, or what a crashed move left behind) is revoked. A server
        that does not answer is skipped (`unreachable`); a DISABLED one is looked at only
        while subscriptions still point to it."""
        fixes: Counter[str] = Counter()
        for server_id, name, backend in await self._reconciled_servers(db):
            try:
                remote = await backend.accounts()
            except Exception as exc:
                fixes["unreachable"] += 1
                log.warning("reconciliation_server_unreachable", server=name,
                            error=str(exc)[:300])
                continue
            await self._reconcile_server(db, ts, server_id, backend, remote, fixes)
        return dict(fixes)

    async def _reconciled_servers(self, db: Database
                                  ) -> list[tuple[str | None, str, VpnBackend]]:
        if self.pool is None:
            return [(None, self.backend.name, self.backend)]
        await self.pool.adopt()
        async with db.transaction() as s:
            servers = await ServerRepository(s).all()
            held = await ServerRepository(s).loads([x.id for x in servers])
        return [(x.id, x.name, self.pool.driver_for(x)) for x in servers
                if x.status != "DISABLED" or held.get(x.id)]

    async def _reconcile_subscription(self, db: Database, ts: datetime, sub_id: str,
                                      user_id: str, ref: str, want: bool, have: bool | None,
                                      fixes: Counter[str]) -> None:
        """Repair one subscription's account (`have`: enabled, disabled, None: missing) when
        it disagrees with the subscription (`want`: running)."""
        if want == bool(have):
            return
        kind = ("recreated" if have is None else "enabled") if want else "disabled"
        try:
            async with db.transaction() as s:
                repo = ProvisioningRepository(s)
                await repo.lock_user(user_id)
                sub = await repo.subscription(sub_id, for_update=True)
                if (sub is None or (sub.status == ACTIVE and sub.expires_at <= ts)
                        or sub.provision_ref != ref):  # moved meanwhile
                    return
                await self._apply_backend(s, sub, ts)
        except Exception as exc:
            fixes["failed"] += 1
            log.warning("reconciliation_fix_failed", subscription_id=sub_id, kind=kind,
                        error=str(exc)[:300])
            return
        fixes[kind] += 1
        RECONCILIATION_FIXES.labels(kind).inc()
        log.warning("reconciliation_fixed", subscription_id=sub_id, kind=kind)

    async def _reconcile_server(self, db: Database, ts: datetime, server_id: str | None,
                                backend: VpnBackend, remote: dict[str, bool],
                                fixes: Counter[str]) -> None:
        known: set[str] = set()
        after = None
        while True:  # the subscriptions a page at a time, each page its own short read
            async with db.transaction() as s:
                page = await ProvisioningRepository(s).reconciliation_page(
                    server_id, after, RECONCILE_PAGE)
            for sub_id, user_id, ref, status, expires_at in page:
                known.add(ref)
                if status == ACTIVE and expires_at <= ts:
                    continue  # the expiry sweep's job
                await self._reconcile_subscription(db, ts, sub_id, user_id, ref,
                                                   status == ACTIVE, remote.get(ref), fixes)
            if len(page) < RECONCILE_PAGE:
                break
            after = page[-1][0]
        for ref, enabled in remote.items():
            if ref in known or not enabled:
                continue
            try:
                async with db.transaction() as s:
                    repo = ProvisioningRepository(s)
                    await repo.lock_ref(ref)
                    # its first grant, or a move switching to it, committed meanwhile
                    if await repo.ref_known(ref, server_id):
                        continue
                    await backend.disable(ref)
                    await repo.record_account(backend=backend.name, ref=ref,
                                              subscription_id=None, state="DISABLED", now=ts,
                                              server_id=server_id)
            except Exception as exc:
                fixes["failed"] += 1
                log.warning("reconciliation_fix_failed", ref=ref, kind="orphan_disabled",
                            error=str(exc)[:300])
                continue
            fixes["orphan_disabled"] += 1
            RECONCILIATION_FIXES.labels("orphan_disabled").inc()
            log.warning("reconciliation_fixed", ref=ref, kind="orphan_disabled")
