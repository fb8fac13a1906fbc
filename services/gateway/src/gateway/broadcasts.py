"""Broadcasts from the API and the admin panel: each mutation is audited with its outcome (as
`gateway.actions` does for every mutation) and made by the telegram service, which plans and
sends them (`telegram.broadcasts`)."""

from __future__ import annotations

from contracts.public.broadcasts import (
    BroadcastCreate,
    BroadcastEnvelope,
    PreviewBody,
    PreviewOut,
)
from gateway.actions import AdminActions
from gateway.audit import audited
from gateway.clients import Reply, Who
from gateway.ratelimit import Limits

ACTIONS = ("send", "pause", "resume", "cancel")


async def create(actions: AdminActions, limits: Limits, caller: Who,
                 body: BroadcastCreate) -> Reply[BroadcastEnvelope]:
    await limits.broadcast_write(caller.id)
    details = {"segment": body.segment, "buttons": len(body.buttons)}
    async with audited(actions.db, caller, "broadcast.create", "broadcast", "new",
                       details) as audit:
        reply = await actions.clients.telegram.create_broadcast(caller, body)
        audit.result(reply.status_code, {**details, "broadcast_id": reply.data.broadcast.id})
    return reply


async def preview(actions: AdminActions, limits: Limits, caller: Who, broadcast_id: str,
                  body: PreviewBody) -> Reply[PreviewOut]:
    await limits.broadcast_write(caller.id)
    return await actions._remote(
        caller, "broadcast.preview", "broadcast", broadcast_id,
        lambda: actions.clients.telegram.preview_broadcast(caller, broadcast_id, body),
        {"telegram_user_id": body.telegram_user_id})


async def change(actions: AdminActions, caller: Who, broadcast_id: str,
                 action: str) -> Reply[BroadcastEnvelope]:
    """`send`, `pause`, `resume` or `cancel` (409 when the status does not allow it)."""
    return await actions._remote(
        caller, f"broadcast.{action}", "broadcast", broadcast_id,
        lambda: actions.clients.telegram.broadcast_action(caller, broadcast_id, action))
