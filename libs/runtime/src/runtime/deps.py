"""FastAPI dependencies every internal API shares: the request's transaction and the caller.

All are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, which
costs a thread hand-off on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.identity import HEADER, Identity, require_admin, require_staff, verify


async def transaction(request: Request):
    """The request's transaction, for a handler that passes its session on: committed when the
    handler returns, rolled back on an error (docs/01-architecture/transactions.md)."""
    async with request.app.state.db.transaction() as s:
        yield s


async def identity(request: Request) -> Identity:
    """The caller, from the gateway's signed identity header (401 when missing or bad)."""
    settings = request.app.state.settings
    return verify(settings.internal_signing_key, request.headers.get(HEADER),
                  audience=settings.service_name)


async def staff(ident: Annotated[Identity, Depends(identity)]) -> Identity:
    require_staff(ident)
    return ident


async def admin(ident: Annotated[Identity, Depends(identity)]) -> Identity:
    require_admin(ident)
    return ident


# scope="function": commit before the response is sent, so a client that got its answer
# always finds the write (FastAPI's default for yield dependencies ends after sending).
Session = Annotated[AsyncSession, Depends(transaction, scope="function")]
Ident = Annotated[Identity, Depends(identity)]
Staff = Annotated[Identity, Depends(staff)]
Admin = Annotated[Identity, Depends(admin)]
