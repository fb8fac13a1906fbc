"""`/admin/broadcasts` (ADMIN): a message to a segment of the linked customers in the bot,
previewed to one Telegram account, then sent, paused, resumed or cancelled; routed to the
telegram service through `gateway.broadcasts` (audited)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from contracts.public.broadcasts import (
    BroadcastCreate,
    BroadcastEnvelope,
    BroadcastList,
    PreviewBody,
    PreviewOut,
)
from contracts.public.common import ErrorOut
from gateway import broadcasts
from gateway.api.deps import Actions, AdminCaller, Clients, Limits

router = APIRouter(prefix="/admin", tags=["admin"])

BroadcastId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
Action = Literal["send", "pause", "resume", "cancel"]
REFUSALS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
            404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 429: {"model": ErrorOut},
            503: {"model": ErrorOut}}


@router.get("/broadcasts", response_model=BroadcastList,
            responses={k: REFUSALS[k] for k in (400, 401, 403, 503)})
async def list_broadcasts(clients: Clients, caller: AdminCaller,
                          limit: Annotated[int, Query(ge=1, le=100)] = 50):
    """The newest broadcasts first, with their progress."""
    return (await clients.telegram.broadcasts(caller, limit)).response()


@router.post("/broadcasts", status_code=201, response_model=BroadcastEnvelope,
             responses={k: v for k, v in REFUSALS.items() if k not in (404, 409)})
async def create_broadcast(body: BroadcastCreate, actions: Actions, limits: Limits,
                           caller: AdminCaller):
    """A DRAFT: the text in English and Russian (each recipient gets their language), a
    segment, and up to 6 URL buttons (http and https only)."""
    return (await broadcasts.create(actions, limits, caller, body)).response()


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastEnvelope,
            responses={k: REFUSALS[k] for k in (401, 403, 404, 503)})
async def get_broadcast(broadcast_id: BroadcastId, clients: Clients, caller: AdminCaller):
    """Its status and progress: total planned, sent, failed, blocked_by_user."""
    return (await clients.telegram.broadcast(caller, broadcast_id)).response()


@router.post("/broadcasts/{broadcast_id}/preview", response_model=PreviewOut,
             responses={k: v for k, v in REFUSALS.items() if k != 409})
async def preview_broadcast(broadcast_id: BroadcastId, body: PreviewBody, actions: Actions,
                            limits: Limits, caller: AdminCaller):
    """Sends it now to one Telegram account, in that account's language (not counted); 400
    when Telegram refuses it (the account blocked the bot, or never started it)."""
    return (await broadcasts.preview(actions, limits, caller, broadcast_id, body)).response()


@router.post("/broadcasts/{broadcast_id}/{action}", response_model=BroadcastEnvelope,
             responses={k: REFUSALS[k] for k in (401, 403, 404, 409, 503)})
async def change_broadcast(broadcast_id: BroadcastId, action: Action, actions: Actions,
                           caller: AdminCaller):
    """`send` (DRAFT → SENDING), `pause` (SENDING → PAUSED), `resume` (PAUSED → SENDING),
    `cancel` (DRAFT, SENDING or PAUSED → CANCELED); any other is 409 `CONFLICT`."""
    return (await broadcasts.change(actions, caller, broadcast_id, action)).response()
