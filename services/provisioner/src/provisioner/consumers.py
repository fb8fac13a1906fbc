"""Events the provisioner consumes: paid/refunded invoices (billing) and blocked users (identity).

Each handler records the work in its inbox transaction and queues the `provision` job only after
that commits. A redelivered message (inbox says "seen") still re-queues work that is not done
yet, because a crash between commit and enqueue must not lose it; the periodic
`provision_sweep` covers the case where no redelivery comes.
"""

from __future__ import annotations

from contracts import Envelope
from contracts.billing import InvoicePaidV1, InvoiceRefundedV1
from contracts.identity import UserBlockedV1, UserUnblockedV1
from provisioner.jobs import ProvisionJobs
from provisioner.models import inbox
from provisioner.repository import ProvisioningRepository
from provisioner.service import REFUND_PENDING, ProvisioningService, now
from runtime.broker import Subscription
from runtime.db import Database
from runtime.inbox import claim

BILLING_QUEUE = "provisioner.billing-events"
IDENTITY_QUEUE = "provisioner.identity-events"


def build_billing_subscription(db: Database, service: ProvisioningService,
                               jobs: ProvisionJobs) -> Subscription:
    sub = Subscription(BILLING_QUEUE)

    @sub.on(InvoicePaidV1)
    async def on_invoice_paid(env: Envelope, event: InvoicePaidV1) -> None:
        async with db.transaction() as s:
            await claim(s, inbox, env.event_id, BILLING_QUEUE, env.routing_key)
            # Idempotent by invoice id, so a duplicate (same or new event id) changes nothing.
            pending = await service.record_paid(s, event, now())
        if pending:
            await jobs.grant(event.invoice_id)

    @sub.on(InvoiceRefundedV1)
    async def on_invoice_refunded(env: Envelope, event: InvoiceRefundedV1) -> None:
        async with db.transaction() as s:
            if await claim(s, inbox, env.event_id, BILLING_QUEUE, env.routing_key):
                pending = await service.record_refund(s, event, now())
            else:
                grant = await ProvisioningRepository(s).grant_by_invoice(event.invoice_id)
                pending = grant is not None and grant.status == REFUND_PENDING
        if pending:
            await jobs.refund(event.invoice_id)

    return sub


def build_identity_subscription(db: Database, service: ProvisioningService,
                                jobs: ProvisionJobs) -> Subscription:
    sub = Subscription(IDENTITY_QUEUE)

    async def on_block_change(env: Envelope, user_id: str, blocked: bool, changed_at) -> None:
        async with db.transaction() as s:
            if await claim(s, inbox, env.event_id, IDENTITY_QUEUE, env.routing_key):
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
