"""The gateway worker process: identity outbox relay and identity projections."""

from __future__ import annotations

from gateway.consumers import build_subscription
from gateway.service import events
from runtime.service import WorkerContext


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db))
