"""Records every admin mutation (actor, action, target, request id, outcome) in the audit log."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Request

from gateway.service import audit_service
from runtime.errors import AppError
from runtime.logging import correlation_id


class _Outcome:
    def __init__(self):
        self.value = "error"
        self.details: dict | None = None

    def result(self, status: int, details: dict | None = None) -> None:
        self.value = "success" if status < 400 else f"refused:{status}"
        self.details = details


@asynccontextmanager
async def audited(request: Request, caller, action: str, target_type: str, target_id: str,
                  details: dict | None = None):
    """Run an admin mutation and record it with its outcome, whether it succeeded or not."""
    outcome = _Outcome()
    try:
        yield outcome
    except AppError as exc:
        outcome.value = f"refused:{exc.status}"
        raise
    finally:
        async with request.app.state.db.transaction() as s:
            await audit_service.record(
                s, actor_id=caller.id, actor_role=caller.role, action=action,
                target_type=target_type, target_id=target_id, request_id=correlation_id.get(),
                outcome=outcome.value, details=outcome.details or details,
            )
