"""`/admin/queues`, `/admin/dead-letters/{id}/replay`, failed-job retry (ADMIN only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from gateway.api.deps import AdminCaller
from gateway.audit import audited

router = APIRouter(prefix="/admin", tags=["admin"])


class JobQueueOut(BaseModel):
    queue: str
    waiting: int
    active: int
    delayed: int
    failed: int
    completed: int


class FailedJobOut(BaseModel):
    queue: str
    id: str
    name: str
    reason: str
    attempts: int


class DeadLetterOut(BaseModel):
    id: str
    queue: str
    routing_key: str
    event_type: str | None
    occurred_at: str | None
    reason: str | None
    delivery_count: int


class QueuesOut(BaseModel):
    jobs: list[JobQueueOut]
    failed_jobs: list[FailedJobOut]
    dead_letters: list[DeadLetterOut]


class ReplayOut(BaseModel):
    id: str
    queue: str
    replayed: bool


class RetryOut(BaseModel):
    queue: str
    id: str
    retried: bool


@router.get("/queues", response_model=QueuesOut)
async def queues(request: Request, caller: AdminCaller):
    return await request.app.state.ops.overview()


@router.post("/dead-letters/{dead_letter_id}/replay", response_model=ReplayOut)
async def replay(dead_letter_id: str, request: Request, caller: AdminCaller):
    async with audited(request, caller, "dead_letter.replay", "message", dead_letter_id) as a:
        result = await request.app.state.ops.replay(dead_letter_id)
        a.result(200, {"queue": result["queue"]})
    return result


@router.post("/jobs/{queue}/{job_id}/retry", response_model=RetryOut)
async def retry_job(queue: str, job_id: str, request: Request, caller: AdminCaller):
    async with audited(request, caller, "job.retry", "job", f"{queue}/{job_id}") as a:
        result = await request.app.state.ops.retry_job(queue, job_id)
        a.result(200)
    return result
