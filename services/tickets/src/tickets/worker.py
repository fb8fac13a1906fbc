"""The tickets worker process: consumes Telegram events, relays the outbox and samples the open
tickets by age."""

from __future__ import annotations

from runtime.service import WorkerContext
from tickets.consumers import build_subscription
from tickets.desk import open_tickets_sampler
from tickets.service import events


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db))

    async def open_tickets():
        await open_tickets_sampler(ctx.db)

    ctx.background.append(open_tickets)
