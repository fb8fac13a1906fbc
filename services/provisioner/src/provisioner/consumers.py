"""Events the provisioner consumes: paid/refunded invoices and referral reward days (billing),
and blocked users (identity).

A paid invoice is applied inline: one transaction claims the inbox row, records the grant,
brings the backend to the new state and commits with the outbox events, so the happy path
needs no job at all. If that fails (the backend is away, say), the transaction has rolled back
and the message takes the queued path below. After a backend failure, paid invoices go
straight to it for `PROVISION_INLINE_COOLDOWN_SECONDS` rather than each waiting on the backend
first.

The queued path (refunds, referral rewards and blocks always take it): the handler records the
work in its inbox transaction and queues the `provision` job only after that commits. A
redelivered message (inbox says "seen") still re-queues work that is not done yet, because a
crash between commit and enqueue must not lose it; the periodic `provision_sweep` covers the
case where no redelivery comes.
"""

from __future__ import annotations

import asyncio
import time

from contracts import Envelope
from contracts.billing import (
    InvoicePaidV1,
    InvoiceRefundedV1,
    ReferralReversedV1,
    ReferralRewardedV1,
)
from contracts.identity import UserBlockedV1, UserUnblockedV1
from provisioner.backends import BackendError
from provisioner.jobs import ProvisionJobs, describe, observe_grant
from provisioner.metrics import PROVISIONS
from provisioner.models import inbox
from provisioner.repository import ProvisioningRepository
from provisioner.service import REFUND_PENDING, ProvisioningService
from runtime.broker import Subscription
from runtime.clock import now
from runtime.db import Database
from runtime.jobs import database_away
from runtime.logging import get_logger

log = get_logger(__name__)

BILLING_QUEUE = "provisioner.billing-events"
IDENTITY_QUEUE = "provisioner.identity-events"


class InlineGate:
    """Whether paid invoices are applied inline: yes, except for a cool-down after a backend
    failure; and at most `concurrency` at once, since each holds a database connection across
    its backend call (the consumer takes up to the broker's prefetch of messages at once)."""

    def __init__(self, enabled: bool, cooldown_seconds: float, concurrency: int = 5):
        self.enabled = enabled
        self.cooldown = cooldown_seconds
        self.slots = asyncio.Semaphore(concurrency)
        self._closed_until = 0.0

    def open(self) -> bool:
        return self.enabled and time.monotonic() >= self._closed_until

    def failed(self) -> None:
        self._closed_until = time.monotonic() + self.cooldown


def build_billing_subscription(db: Database, service: ProvisioningService, jobs: ProvisionJobs,
                               gate: InlineGate) -> Subscription:
    sub = Subscription(BILLING_QUEUE, db=db, inbox=inbox,
                       description="Paid invoices granted or extended, refunds revoked, "
                                   "referral reward days added and taken back.")

    async def apply_inline(env: Envelope, event: InvoicePaidV1) -> bool:
        """True when the invoice's grant was recorded and applied here (and committed)."""
        try:
            async with gate.slots, db.transaction() as s:
                if not await sub.claim(s, env):
                    return False
                result = await service.record_and_apply(s, event, now())
                if result is None:  # the invoice already had a grant: the queued path decides
                    return False
        except Exception as exc:
            if database_away(exc):
                raise  # the broker retries the message without spending a delivery
            if isinstance(exc, BackendError):  # not for a bad message: the backend is fine
                gate.failed()
            PROVISIONS.labels("inline_failed").inc()
            log.warning("provision_inline_failed", invoice_id=event.invoice_id,
                        error=describe(exc))
            return False
        observe_grant(event.invoice_id, result)
        return True

    @sub.on(InvoicePaidV1)
    async def on_invoice_paid(env: Envelope, event: InvoicePaidV1) -> None:
        if gate.open() and await apply_inline(env, event):
            return
        async with db.transaction() as s:
            await sub.claim(s, env)
            # Idempotent by invoice id, so a duplicate (same or new event id) changes nothing.
            pending = await service.record_paid(s, event, now())
        if pending:
            await jobs.grant(event.invoice_id)

    @sub.on(InvoiceRefundedV1)
    async def on_invoice_refunded(env: Envelope, event: InvoiceRefundedV1) -> None:
        async with db.transaction() as s:
            if await sub.claim(s, env):
                pending = await service.record_refund(s, event, now())
            else:
                grant = await ProvisioningRepository(s).grant_by_invoice(event.invoice_id)
                pending = grant is not None and grant.status == REFUND_PENDING
        if pending:
            await jobs.refund(event.invoice_id)

    # A referral reward in days, and its reversal, take the queued path. Both are idempotent by
    # the referred customer (a redelivery or a duplicate changes nothing), so they run on a
    # redelivery too, to re-queue work whose enqueue was lost.
    @sub.on(ReferralRewardedV1)
    async def on_referral_rewarded(env: Envelope, event: ReferralRewardedV1) -> None:
        async with db.transaction() as s:
            await sub.claim(s, env)
            key = await service.record_referral(s, event, now())
        if key:
            await jobs.grant(key)

    @sub.on(ReferralReversedV1)
    async def on_referral_reversed(env: Envelope, event: ReferralReversedV1) -> None:
        async with db.transaction() as s:
            await sub.claim(s, env)
            key = await service.record_referral_reversal(s, event, now())
        if key:
            await jobs.refund(key)

    return sub


def build_identity_subscription(db: Database, service: ProvisioningService,
                                jobs: ProvisionJobs) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE, db=db, inbox=inbox,
                       description="Blocked users' access suspended, unblocked users' resumed.")

    async def on_block_change(env: Envelope, user_id: str, blocked: bool, changed_at) -> None:
        async with db.transaction() as s:
            if await sub.claim(s, env):
                await service.record_block(s, user_id, blocked, changed_at, now())
            row = await ProvisioningRepository(s).user_block(user_id)
            pending = row is not None and not row.synced
        if pending:
            await jobs.user_block(user_id, row.changed_at)

    @sub.on(UserBlockedV1)
    async def on_user_blocked(env: Envelope, event: UserBlockedV1) -> None:
        await on_block_change(env, event.user_id, True, event.blocked_at)

    @sub.on(UserUnblockedV1)
    async def on_user_unblocked(env: Envelope, event: UserUnblockedV1) -> None:
        await on_block_change(env, event.user_id, False, event.unblocked_at)

    return sub
