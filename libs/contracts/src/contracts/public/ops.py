"""The operations view's shapes: job queue depths, failed jobs, dead letters, retry and replay.

Each service answers `OpsOut` about its own queues (`runtime.operations`); the gateway's
`GET /api/v1/admin/queues` answers `QueuesOut`, every service's view put together.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class OpsOut(BaseModel):
    jobs: list[JobQueueOut]
    failed_jobs: list[FailedJobOut]
    dead_letters: list[DeadLetterOut]


class QueuesOut(OpsOut):
    unavailable: list[str] = Field(
        default_factory=list,
        description="Services whose queues could not be read just now (the rest are shown)")


class ReplayOut(BaseModel):
    id: str
    queue: str
    replayed: bool


class RetryOut(BaseModel):
    queue: str
    id: str
    retried: bool
