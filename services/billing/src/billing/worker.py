"""The billing worker process."""

from __future__ import annotations

from billing.models import outbox
from runtime.outbox import Outbox
from runtime.service import WorkerContext

events = Outbox(outbox, producer="billing")


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
