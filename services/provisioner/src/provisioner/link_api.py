"""Internal HTTP API of the stable subscription link and the public locations
(`provisioner.links`); the gateway calls it with a signed identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from contracts.public.subscriptions import LinkEnvelope, LocationList
from provisioner.links import LinkService
from runtime.deps import Ident, Session, Staff

router = APIRouter(prefix="/internal")

SubId = Annotated[str, Path(min_length=1, max_length=64)]


async def links(request: Request) -> LinkService:
    return request.app.state.links


Links = Annotated[LinkService, Depends(links)]


@router.get("/sub/{token}")
async def subscription_content(token: Annotated[str, Path(max_length=200)], ident: Ident,
                               svc: Links):
    """The subscription behind a token, from the server that holds the access now."""
    out = await svc.content(token)
    return Response(content=out.body, media_type=out.media_type, headers=out.headers)


@router.post("/subscriptions/{sub_id}/link", response_model=LinkEnvelope)
async def rotate_own(sub_id: SubId, s: Session, ident: Ident, svc: Links):
    return {"link": await svc.rotate(s, sub_id, ident)}


@router.delete("/subscriptions/{sub_id}/link", status_code=204)
async def revoke_own(sub_id: SubId, s: Session, ident: Ident, svc: Links):
    await svc.revoke(s, sub_id, ident)
    return Response(status_code=204)


@router.post("/admin/subscriptions/{sub_id}/link", response_model=LinkEnvelope)
async def rotate_any(sub_id: SubId, s: Session, ident: Staff, svc: Links):
    return {"link": await svc.rotate(s, sub_id, None)}


@router.delete("/admin/subscriptions/{sub_id}/link", status_code=204)
async def revoke_any(sub_id: SubId, s: Session, ident: Staff, svc: Links):
    await svc.revoke(s, sub_id, None)
    return Response(status_code=204)


@router.get("/locations", response_model=LocationList)
async def locations(s: Session, ident: Ident, svc: Links):
    return {"locations": await svc.locations(s)}
