"""The gateway worker process: identity outbox relay and identity projections."""

from __future__ import annotations

from runtime.service import WorkerContext

from gateway.consumers import build_subscription
from gateway.service import events


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
    ctx.subscriptions.append(build_subscription(ctx.db))
