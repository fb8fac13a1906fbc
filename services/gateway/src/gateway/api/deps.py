"""Request dependencies: the transaction, the signed-in user, roles, CSRF, rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.repository import SignedInUser
from gateway.security import csrf_valid
from runtime.errors import Forbidden, Unauthenticated

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


async def db_session(request: Request):
    """The one place that commits: the request's transaction."""
    async with request.app.state.db.transaction() as s:
        yield s


# scope="function": commit before the response is sent, so a client that got its answer
# always finds the write (FastAPI's default for yield dependencies ends after sending).
DB = Annotated[AsyncSession, Depends(db_session, scope="function")]


@dataclass
class Caller:
    user: SignedInUser
    token: str

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def role(self) -> str:
        return self.user.role


def session_token(request: Request) -> str | None:
    return request.cookies.get(request.app.state.settings.session_cookie)


def check_csrf(request: Request, token: str) -> None:
    """Cookie-authenticated writes must be JSON (or carry the session's CSRF token)."""
    if request.method not in UNSAFE:
        return
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return
    key = request.app.state.settings.internal_signing_key
    if csrf_valid(key, token, request.headers.get("x-csrf-token")):
        return
    raise Forbidden("Cross-site request refused: send Content-Type: application/json")


async def _caller(request: Request, allow_blocked: bool) -> Caller:
    token = session_token(request)
    if not token:
        raise Unauthenticated()
    user = await request.app.state.auth.user_for_token(request.app.state.db, token)
    if user is None:
        raise Unauthenticated("Session expired or signed out")
    check_csrf(request, token)
    if user.is_blocked and not allow_blocked:
        raise Forbidden("Account blocked")
    request.state.user_id = user.id
    return Caller(user, token)


async def current_caller(request: Request) -> Caller:
    return await _caller(request, allow_blocked=False)


async def current_caller_even_blocked(request: Request) -> Caller:
    return await _caller(request, allow_blocked=True)


async def staff_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if caller.role not in {"SUPPORT", "ADMIN"}:
        raise Forbidden("Support or admin role required")
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if caller.role != "ADMIN":
        raise Forbidden("Admin role required")
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
StaffCaller = Annotated[Caller, Depends(staff_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
