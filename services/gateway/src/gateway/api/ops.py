"""`/admin/queues`, `/admin/dead-letters/{id}/replay`, failed-job retry (ADMIN only).

Every service's jobs and dead letters, put together by `gateway.ops`; the shapes are
`contracts.public.ops`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from contracts.public.ops import QueuesOut, ReplayOut, RetryOut
from gateway.api.deps import AdminCaller

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/queues", response_model=QueuesOut)
async def queues(request: Request, caller: AdminCaller):
    return await request.app.state.ops.overview(caller)


@router.post("/dead-letters/{dead_letter_id}/replay", response_model=ReplayOut)
async def replay(dead_letter_id: str, request: Request, caller: AdminCaller):
    return await request.app.state.ops.replay(caller, dead_letter_id)


@router.post("/jobs/{queue}/{job_id}/retry", response_model=RetryOut)
async def retry_job(queue: str, job_id: str, request: Request, caller: AdminCaller):
    return await request.app.state.ops.retry_job(caller, queue, job_id)
