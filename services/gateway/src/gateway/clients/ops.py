"""Calls to a service's ops endpoints (`runtime.operations`): its queues, a retry, a replay.

Every service serves the same three, so one set of calls works with any `ServiceClient`.
"""

from __future__ import annotations

from typing import Any

from gateway.clients.base import ServiceClient, Who
from gateway.upstream import segment


async def overview(client: ServiceClient, who: Who) -> dict[str, Any]:
    """`{jobs, failed_jobs, dead_letters}` of the service's own queues."""
    return await client.call_json("GET", "/internal/admin/ops", who)


async def retry_job(client: ServiceClient, who: Who, queue: str, job_id: str) -> dict[str, Any]:
    path = f"/internal/admin/jobs/{segment(queue)}/{segment(job_id)}/retry"
    return await client.call_json("POST", path, who)


async def replay(client: ServiceClient, who: Who, dead_letter_id: str) -> dict[str, Any]:
    path = f"/internal/admin/dead-letters/{segment(dead_letter_id)}/replay"
    return await client.call_json("POST", path, who)
