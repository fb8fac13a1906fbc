"""The tickets worker process: consumes Telegram events and relays the outbox."""

from __future__ import annotations

from runtime.service import WorkerContext
from tickets.consumers import build_subscription
from tickets.service import events


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db))
