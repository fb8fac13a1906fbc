"""Internal HTTP API of broadcasts (ADMIN, through the gateway's `/admin/broadcasts`); the
logic is `telegram.broadcasts`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from contracts.public.broadcasts import (
    BroadcastCreate,
    BroadcastEnvelope,
    BroadcastList,
    PreviewBody,
    PreviewOut,
)
from runtime.deps import Admin
from telegram.broadcasts import BroadcastService

router = APIRouter(prefix="/internal/admin/broadcasts")

BroadcastId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _service(request: Request) -> BroadcastService:
    return request.app.state.broadcasts


@router.post("", status_code=201, response_model=BroadcastEnvelope)
async def create(body: BroadcastCreate, request: Request, ident: Admin):
    return {"broadcast": await _service(request).create(body, ident.user_id)}


@router.get("", response_model=BroadcastList)
async def latest(request: Request, ident: Admin,
                 limit: Annotated[int, Query(ge=1, le=100)] = 50):
    return {"broadcasts": await _service(request).latest(limit)}


@router.get("/{broadcast_id}", response_model=BroadcastEnvelope)
async def one(broadcast_id: BroadcastId, request: Request, ident: Admin):
    return {"broadcast": await _service(request).get(broadcast_id)}


@router.post("/{broadcast_id}/preview", response_model=PreviewOut)
async def preview(broadcast_id: BroadcastId, body: PreviewBody, request: Request, ident: Admin):
    return await _service(request).preview(request.app.state.bot, broadcast_id,
                                           body.telegram_user_id)


@router.post("/{broadcast_id}/{action}", response_model=BroadcastEnvelope)
async def transition(broadcast_id: BroadcastId,
                     action: Literal["send", "pause", "resume", "cancel"], request: Request,
                     ident: Admin):
    return {"broadcast": await _service(request).transition(broadcast_id, action)}
