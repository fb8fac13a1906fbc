"""Request dependencies: the signed-in caller, roles, CSRF, and the gateway's parts (clients,
actions, limits, account) for the JSON API and the web pages alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.account import AccountService
from gateway.actions import AdminActions
from gateway.clients import Clients as ServiceClients
from gateway.ratelimit import Limits as RateLimits
from gateway.repository import SignedInUser
from gateway.security import csrf_valid
from runtime.errors import Forbidden, Unauthenticated

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
STAFF = frozenset({"SUPPORT", "ADMIN"})  # the roles that may work the support queue
# The page size every list of the JSON API takes (`?limit=`).
PageLimit = Query(20, ge=1, le=100)


async def db_session(request: Request):
    """A read-only view for a handler that queries the gateway's own tables itself; writes go
    through a service taking the database (docs/01-architecture/gateway.md, "Transactions")."""
    async with request.app.state.db.transaction() as s:
        yield s


# scope="function": the transaction ends before the response is sent (FastAPI's default for
# yield dependencies ends after sending).
DB = Annotated[AsyncSession, Depends(db_session, scope="function")]


def _clients(request: Request) -> ServiceClients:
    return request.app.state.clients


def _actions(request: Request) -> AdminActions:
    return request.app.state.actions


def _limits(request: Request) -> RateLimits:
    return request.app.state.limits


def _account(request: Request) -> AccountService:
    return request.app.state.account


Clients = Annotated[ServiceClients, Depends(_clients)]
Actions = Annotated[AdminActions, Depends(_actions)]
Limits = Annotated[RateLimits, Depends(_limits)]
Account = Annotated[AccountService, Depends(_account)]


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
    if caller.role not in STAFF:
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
