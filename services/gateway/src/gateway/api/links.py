"""`/sub/{token}` (the stable subscription link), its rotation and revocation, and
`/locations`: routed to the provisioner (`provisioner.links`, docs/02-api/subscriptions.md).

The link's content is handed on as the provisioner serves it (body, Content-Type, the headers
VPN clients read); staff changes go through `gateway.actions` (audited).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from contracts.public.common import ErrorOut
from contracts.public.subscriptions import LinkEnvelope, Locations
from gateway.api.deps import Actions, Clients, CurrentCaller, Limits, StaffCaller, client_ip

router = APIRouter(tags=["subscriptions"])
admin = APIRouter(prefix="/admin", tags=["admin"])

SubscriptionId = Annotated[str, Path(min_length=1, max_length=64)]
Token = Annotated[str, Path(min_length=1, max_length=200)]
# The provisioner's headers a VPN client reads, passed on.
CLIENT_HEADERS = ("subscription-userinfo", "profile-update-interval", "content-disposition",
                  "profile-title", "profile-web-page-url", "support-url", "announce")
REFUSALS = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 429: {"model": ErrorOut}}


@router.get("/sub/{token}", response_class=Response,
            responses={200: {"content": {"text/plain": {}},
                             "description": "the subscription, as the server's panel serves it"},
                       404: {"model": ErrorOut}, 429: {"model": ErrorOut},
                       503: {"model": ErrorOut}})
async def subscription_link(request: Request, token: Token, clients: Clients, limits: Limits):
    """The subscription behind a link, from whichever server holds the access now: the body
    and Content-Type as its panel serves them, with `subscription-userinfo`,
    `profile-update-interval` and `content-disposition` (the app's User-Agent goes on to the
    panel, which picks the format by it). No sign-in: the token is the key.
    Unknown or revoked: 404 (the same answer); rate limited per address and per token; 503
    with Retry-After while the server cannot answer."""
    await limits.sub_link(client_ip(request), token)
    r = await clients.provisioner.subscription_content(
        token, request.headers.get("user-agent", ""))
    headers = {k: r.headers[k] for k in CLIENT_HEADERS if k in r.headers}
    headers["Cache-Control"] = "no-store"
    return Response(content=r.content, headers=headers,
                    media_type=r.headers.get("content-type", "text/plain; charset=utf-8"))


@router.post("/subscriptions/{subscription_id}/link", response_model=LinkEnvelope,
             responses=REFUSALS)
async def rotate_link(clients: Clients, limits: Limits, caller: CurrentCaller,
                      subscription_id: SubscriptionId):
    """A new link for your subscription; the old one is 404 from now on (apps that have it
    need the new one). Also makes one after a revocation."""
    await limits.link_change(caller.id)
    return (await clients.provisioner.rotate_link(caller, subscription_id)).response()


@router.delete("/subscriptions/{subscription_id}/link", status_code=204, response_class=Response,
               responses=REFUSALS)
async def revoke_link(clients: Clients, limits: Limits, caller: CurrentCaller,
                      subscription_id: SubscriptionId):
    """Your link is refused (404) from now on, until you rotate a new one."""
    await limits.link_change(caller.id)
    await clients.provisioner.revoke_link(caller, subscription_id)
    return Response(status_code=204)


@router.get("/locations", response_model=Locations)
async def locations(clients: Clients) -> Locations:
    """Locations with at least one server taking new customers now (ACTIVE, healthy, with
    room); no sign-in needed. A bare list, as api.md gives it."""
    return Locations((await clients.provisioner.locations()).data.locations)


@admin.post("/subscriptions/{subscription_id}/link", response_model=LinkEnvelope,
            responses={**REFUSALS, 403: {"model": ErrorOut}})
async def admin_rotate_link(actions: Actions, caller: StaffCaller,
                            subscription_id: SubscriptionId):
    """A customer's link rotated by support or an admin (audited: `subscription.link_rotate`)."""
    return (await actions.link(caller, subscription_id, "rotate")).response()


@admin.delete("/subscriptions/{subscription_id}/link", status_code=204, response_class=Response,
              responses={**REFUSALS, 403: {"model": ErrorOut}})
async def admin_revoke_link(actions: Actions, caller: StaffCaller,
                            subscription_id: SubscriptionId):
    """A customer's link revoked by support or an admin (audited: `subscription.link_revoke`)."""
    await actions.link(caller, subscription_id, "revoke")
    return Response(status_code=204)
