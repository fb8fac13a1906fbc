"""The provisioner worker process."""

from __future__ import annotations

from provisioner.models import outbox
from runtime.outbox import Outbox
from runtime.service import WorkerContext

events = Outbox(outbox, producer="provisioner")


async def build_worker(ctx: WorkerContext) -> None:
    ctx.outbox = events
