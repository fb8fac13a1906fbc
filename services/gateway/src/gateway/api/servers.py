"""`/admin/servers`: the VPN server pool (ADMIN), routed to the provisioner.

The models are the public contract (`contracts.public.servers`, docs/02-api/servers.md);
credentials are write-only; mutations go through `gateway.actions` (audited, credentials never
recorded).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from contracts.public.common import ErrorOut
from contracts.public.moves import DrainOut
from contracts.public.servers import ServerCreate, ServerEnvelope, ServerList, ServerUpdate
from gateway.api.deps import Actions, AdminCaller, Clients

admin = APIRouter(prefix="/admin", tags=["admin"])

ServerId = Annotated[str, Path(min_length=1, max_length=64)]
REFUSALS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
            404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@admin.get("/servers", response_model=ServerList,
           responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
async def list_servers(clients: Clients, caller: AdminCaller):
    """Every server of the pool with its load (running subscriptions it holds) and health;
    the one `VPN_BACKEND` describes is seeded as `default`."""
    return (await clients.provisioner.servers(caller)).response()


@admin.post("/servers", status_code=201, response_model=ServerEnvelope,
            responses={k: v for k, v in REFUSALS.items() if k != 404})
async def create_server(body: ServerCreate, actions: Actions, caller: AdminCaller):
    """A server of the pool; what its backend kind needs (base URL, driver `settings`,
    `credentials`) is checked (400 naming what is missing). Credentials are stored encrypted
    and never answered."""
    return (await actions.create_server(caller, body)).response()


@admin.patch("/servers/{server_id}", response_model=ServerEnvelope, responses=REFUSALS)
async def update_server(body: ServerUpdate, actions: Actions, caller: AdminCaller,
                        server_id: ServerId):
    """Only the fields sent change: capacity, status (`ACTIVE`, `DRAINING`: no new
    placements and its accesses moved off, as `POST .../drain` does, `DISABLED`), name,
    location, driver settings, credentials (replaced)."""
    return (await actions.update_server(caller, server_id, body)).response()


@admin.post("/servers/{server_id}/drain", status_code=202, response_model=DrainOut,
            responses=REFUSALS)
async def drain_server(actions: Actions, caller: AdminCaller, server_id: ServerId):
    """DRAINING at once (no new placements); every access on it is then moved, exactly once,
    to the least loaded server with room in its location (else in any location), and the
    server becomes DISABLED when nothing is left on it. With no room anywhere the rest wait
    (`progress.waiting`) until capacity is added. Asked again: the same drain, its progress.
    409 `NOTHING_TO_DRAIN` for a DISABLED server that holds nothing."""
    return (await actions.drain_server(caller, server_id)).response()
