"""Moving an access to another server: the customer's location change
(`PUT /subscriptions/{id}/location`) and an admin's drain (`POST /admin/servers/{id}/drain`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from contracts.public.common import Strict
from contracts.public.servers import Location, ServerOut

MoveStatus = Literal["WAITING", "PENDING", "SWITCHED", "DONE", "CANCELED"]


class LocationBody(Strict):
    location_id: Location = Field(description="A location's id, as `GET /locations` lists them")


class MoveOut(BaseModel):
    id: str
    subscription_id: str
    reason: Literal["LOCATION", "DRAIN"]
    status: MoveStatus = Field(description=(
        "WAITING: no server with room yet; PENDING: the new server chosen; SWITCHED: the "
        "access is on the new server, the old account not revoked yet; DONE; CANCELED: the "
        "subscription ended, or was placed anew, before it could move"))
    from_location: str | None
    to_location: str | None
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None


class LocationChange(BaseModel):
    """`move` is null when the access is in that location already (200, nothing changed);
    otherwise the move under way (202; asked again, the same move)."""

    location_id: str
    move: MoveOut | None


class DrainProgress(BaseModel):
    holding: int = Field(description="Subscriptions it still holds")
    waiting: int = Field(description="Moves off it waiting for a server with room")
    pending: int
    switched: int = Field(description="Moved; the old account not revoked yet")


class DrainOut(BaseModel):
    server: ServerOut
    progress: DrainProgress
