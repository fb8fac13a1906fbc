"""`/admin/users`, `/admin/audit-log`: user administration and the audit log (ADMIN only)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from gateway.api.auth import user_out
from gateway.api.deps import DB, Actions, AdminCaller, PageLimit
from gateway.repository import AuditRepository, UserRepository
from gateway.schemas import AdminUserEnvelope, AdminUserList, AuditEntryOut, AuditLog, RoleBody
from runtime.pagination import decode_id_cursor, decode_int_cursor

router = APIRouter(prefix="/admin", tags=["admin"])


def admin_user_out(user) -> dict:
    return {**user_out(user), "is_blocked": user.is_blocked}


@router.get("/users", response_model=AdminUserList)
async def search_users(s: DB, caller: AdminCaller, q: str | None = Query(None, max_length=254),
                       limit: int = PageLimit, cursor: str | None = None):
    users = await UserRepository(s).search(q, limit, decode_id_cursor(cursor))
    nxt = users[limit - 1].id if len(users) > limit else None
    return {"users": [admin_user_out(u) for u in users[:limit]], "next_cursor": nxt}


@router.post("/users/{user_id}/block", response_model=AdminUserEnvelope)
async def block_user(user_id: str, actions: Actions, caller: AdminCaller):
    return {"user": admin_user_out(await actions.set_blocked(caller, user_id, True))}


@router.post("/users/{user_id}/unblock", response_model=AdminUserEnvelope)
async def unblock_user(user_id: str, actions: Actions, caller: AdminCaller):
    return {"user": admin_user_out(await actions.set_blocked(caller, user_id, False))}


@router.put("/users/{user_id}/role", response_model=AdminUserEnvelope)
async def change_role(user_id: str, body: RoleBody, actions: Actions, caller: AdminCaller):
    return {"user": admin_user_out(await actions.set_role(caller, user_id, body.role))}


@router.get("/audit-log", response_model=AuditLog)
async def audit_log(s: DB, caller: AdminCaller, limit: int = Query(50, ge=1, le=100),
                    cursor: str | None = None):
    rows = await AuditRepository(s).page(limit, decode_int_cursor(cursor))
    nxt = str(rows[limit - 1].id) if len(rows) > limit else None
    return {"entries": [AuditEntryOut.model_validate(e, from_attributes=True)
                        for e in rows[:limit]],
            "next_cursor": nxt}
