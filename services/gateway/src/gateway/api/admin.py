"""`/admin/users`, `/admin/audit-log`: user administration and the audit log (ADMIN only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gateway.api.auth import user_out
from gateway.api.deps import DB, AdminCaller
from gateway.audit import audited
from gateway.repository import AuditRepository, UserRepository
from gateway.schemas import AdminUserEnvelope, AdminUserList, AuditEntryOut, AuditLog, RoleBody
from gateway.service import user_admin_service
from runtime.pagination import decode_int_cursor

router = APIRouter(prefix="/admin", tags=["admin"])


def admin_user_out(user) -> dict:
    return {**user_out(user), "is_blocked": user.is_blocked}


@router.get("/users", response_model=AdminUserList)
async def search_users(s: DB, caller: AdminCaller, q: str | None = Query(None, max_length=254),
                       limit: int = Query(20, ge=1, le=100), cursor: str | None = None):
    users = await UserRepository(s).search(q, limit, cursor)
    nxt = users[limit - 1].id if len(users) > limit else None
    return {"users": [admin_user_out(u) for u in users[:limit]], "next_cursor": nxt}


async def _set_blocked(request: Request, user_id: str, caller, blocked: bool):
    action = "user.block" if blocked else "user.unblock"
    async with audited(request, caller, action, "user", user_id) as audit:
        async with request.app.state.db.transaction() as s:
            user = await user_admin_service.set_blocked(s, user_id, blocked, caller.id)
            await audit.record_in(s)
    return {"user": admin_user_out(user)}


@router.post("/users/{user_id}/block", response_model=AdminUserEnvelope)
async def block_user(user_id: str, request: Request, caller: AdminCaller):
    return await _set_blocked(request, user_id, caller, True)


@router.post("/users/{user_id}/unblock", response_model=AdminUserEnvelope)
async def unblock_user(user_id: str, request: Request, caller: AdminCaller):
    return await _set_blocked(request, user_id, caller, False)


@router.put("/users/{user_id}/role", response_model=AdminUserEnvelope)
async def change_role(user_id: str, body: RoleBody, request: Request, caller: AdminCaller):
    async with audited(request, caller, "user.role", "user", user_id, {"role": body.role}) as a:
        async with request.app.state.db.transaction() as s:
            user = await user_admin_service.set_role(s, user_id, body.role, caller.id)
            await a.record_in(s, details={"role": body.role})
    return {"user": admin_user_out(user)}


@router.get("/audit-log", response_model=AuditLog)
async def audit_log(s: DB, caller: AdminCaller, limit: int = Query(50, ge=1, le=100),
                    cursor: str | None = None):
    rows = await AuditRepository(s).page(limit, decode_int_cursor(cursor))
    nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    return {"entries": [AuditEntryOut.model_validate(e, from_attributes=True)
                        for e in rows[:limit]],
            "next_cursor": nxt}
