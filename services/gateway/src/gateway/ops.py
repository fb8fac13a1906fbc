"""The admins' operations view across the services: job queues, failed jobs, dead letters.

Each service administers its own jobs and dead letters (`runtime.operations`, behind its
internal `/internal/admin/ops` endpoints, ADMIN only): the gateway puts their answers together
and sends an action to the service that owns its target. Its own consumer's dead letters
(`gateway.identity-projections`) it reads with the same runtime code, without a call.

* The overview asks everyone at once. One that cannot answer is named in `unavailable`, and what
  the others answered is still shown.
* A job retry goes to the service that runs the queue, and is that service's own retry (the
  provisioner's reopens the failed grant). A service refuses a queue it does not run (404 with
  `details.reason` `unknown_queue`), so the first that does not refuse it owns it.
* A replay goes to whoever holds the dead letter: the gateway's own queues first, then each
  service in turn until one has it (404 from the others).

Both actions are recorded in the audit log (`job.retry`, `dead_letter.replay`) with the outcome,
here, so the API and the admin panel record them alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from contracts.public.ops import OpsOut
from gateway import consumers
from gateway.audit import audited
from gateway.clients import Clients, Who
from gateway.clients import ops as client_ops
from gateway.config import Settings
from runtime.db import Database
from runtime.errors import AppError, NotFound, ServiceUnavailable
from runtime.logging import get_logger
from runtime.operations import Operations

log = get_logger(__name__)

OWN = "gateway"


class Ops:
    def __init__(self, settings: Settings, db: Database, clients: Clients):
        self.own = Operations(settings, consumer_queues=[consumers.QUEUE])
        self.db = db
        self.clients = clients

    async def overview(self, who: Who) -> dict[str, Any]:
        """Every service's job queues, failed jobs and dead letters; `unavailable` names those
        that could not be read."""
        sources: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            (OWN, self.own.overview),
            *((c.name, partial(client_ops.overview, c, who)) for c in self.clients.all())]
        answers = await asyncio.gather(*(_read(name, fetch) for name, fetch in sources))
        out: dict[str, Any] = {"jobs": [], "failed_jobs": [], "dead_letters": [],
                               "unavailable": []}
        for name, answer in answers:
            if answer is None:
                out["unavailable"].append(name)
                continue
            for key in ("jobs", "failed_jobs", "dead_letters"):
                out[key] += answer[key]
        return out

    async def retry_job(self, who: Who, queue: str, job_id: str) -> dict[str, Any]:
        """Retry a failed job through the service that runs its queue (audited)."""
        async with audited(self.db, who, "job.retry", "job", f"{queue}/{job_id}") as audit:
            result = await self._retry(who, queue, job_id)
            audit.result(200)
        return result

    async def _retry(self, who: Who, queue: str, job_id: str) -> dict[str, Any]:
        unreachable = []
        for client in self.clients.all():
            try:
                return await client_ops.retry_job(client, who, queue, job_id)
            except ServiceUnavailable:
                unreachable.append(client.name)
            except AppError as exc:
                if not _unknown_queue(exc):
                    raise
        if unreachable:
            raise ServiceUnavailable(f"The queue {queue!r} is not run by any service that "
                                     f"answered ({', '.join(unreachable)} did not)",
                                     {"unavailable": unreachable})
        raise NotFound(f"No service runs a job queue {queue!r}", {"queue": queue})

    async def replay(self, who: Who, dead_letter_id: str) -> dict[str, Any]:
        """Replay a dead letter from whichever dead-letter queue holds it (audited)."""
        async with audited(self.db, who, "dead_letter.replay", "message",
                           dead_letter_id) as audit:
            result = await self._replay(who, dead_letter_id)
            audit.result(200, {"queue": result["queue"]})
        return result

    async def _replay(self, who: Who, dead_letter_id: str) -> dict[str, Any]:
        sources: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            (OWN, partial(self.own.replay, dead_letter_id)),
            *((c.name, partial(client_ops.replay, c, who, dead_letter_id))
              for c in self.clients.all())]
        unreachable = []
        for name, attempt in sources:
            try:
                return await attempt()
            except ServiceUnavailable:
                unreachable.append(name)
            except AppError as exc:
                if exc.status != 404:
                    raise
        if unreachable:
            raise ServiceUnavailable(f"Dead letter not found in the queues that could be read "
                                     f"({', '.join(unreachable)} could not)",
                                     {"unavailable": unreachable})
        raise NotFound("Dead letter not found")


async def _read(name: str, fetch: Callable[[], Awaitable[dict[str, Any]]]
                ) -> tuple[str, dict[str, Any] | None]:
    """One source's view, or None when it cannot be read now: a read-only overview leaves out
    whatever fails, whatever the failure, and shows the rest."""
    try:
        return name, OpsOut.model_validate(await fetch()).model_dump()
    except Exception as exc:
        log.warning("ops_source_unreadable", source=name, error_type=type(exc).__name__,
                    status=getattr(exc, "status", None))
        return name, None


def _unknown_queue(exc: AppError) -> bool:
    return (exc.status == 404 and isinstance(exc.details, dict)
            and exc.details.get("reason") == "unknown_queue")
