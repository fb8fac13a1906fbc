"""Records every admin mutation (actor, action, target, request id, outcome) in the audit log.

A mutation the gateway applies itself is recorded in the same transaction as the change
(`record_in`), so neither can exist without the other. A mutation applied by another service is
recorded right after that service answers, with the outcome it gave.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.service import audit_service
from runtime.db import Database
from runtime.errors import AppError
from runtime.logging import correlation_id


class AuditScope:
    def __init__(self, caller, action: str, target_type: str, target_id: str,
                 details: dict | None):
        self.caller = caller
        self.action = action
        self.target_type = target_type
        self.target_id = target_id
        self.value = "error"
        self.details = details
        self.written = False

    def result(self, status: int, details: dict | None = None) -> None:
        self.value = "success" if status < 400 else f"refused:{status}"
        if details is not None:
            self.details = details

    async def record_in(self, s: AsyncSession, status: int = 200,
                        details: dict | None = None) -> None:
        """Record the outcome inside the caller's (domain) transaction."""
        self.result(status, details)
        await self._write(s)

    async def _write(self, s: AsyncSession) -> None:
        await audit_service.record(
            s, actor_id=self.caller.id, actor_role=self.caller.role, action=self.action,
            target_type=self.target_type, target_id=self.target_id,
            request_id=correlation_id.get(), outcome=self.value, details=self.details)
        self.written = True


@asynccontextmanager
async def audited(db: Database, caller, action: str, target_type: str, target_id: str,
                  details: dict | None = None):
    """Run an admin mutation and record it with its outcome, whether it succeeded or not."""
    scope = AuditScope(caller, action, target_type, target_id, details)
    try:
        yield scope
    except AppError as exc:
        scope.value = f"refused:{exc.status}"
        scope.written = False  # the domain transaction (and any entry in it) was rolled back
        raise
    finally:
        if not scope.written:
            async with db.transaction() as s:
                await scope._write(s)
