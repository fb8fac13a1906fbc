"""`/subscriptions/*` and `/admin/subscriptions/*`: routed to the provisioner.

The models are the public contract (`contracts.public.subscriptions`, docs/02-api/subscriptions.md);
the provisioner's answers are handed on unchanged; admin mutations go through `gateway.actions`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from contracts.public.billing import InvoiceEnvelope
from contracts.public.common import ErrorOut, WebhookAck
from contracts.public.moves import LocationBody, LocationChange
from contracts.public.subscriptions import (
    AccessOut,
    AdminSubscriptionEnvelope,
    AdminSubscriptionList,
    AutoRenewBody,
    ExtendBody,
    SubscriptionEnvelope,
    SubscriptionList,
    SubscriptionStatus,
    UsageOut,
)
from gateway.api.billing import WEBHOOK_HEADERS_DROPPED
from gateway.api.deps import Actions, AdminCaller, Clients, CurrentCaller, Limits, PageLimit
from gateway.commerce import set_auto_renew, start_trial

router = APIRouter(tags=["subscriptions"])
admin = APIRouter(prefix="/admin", tags=["admin"])

SubscriptionId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("/trial", status_code=201, response_model=SubscriptionEnvelope,
             responses={202: {"model": InvoiceEnvelope,
                              "description": "granted; the subscription is still being set up"},
                        401: {"model": ErrorOut}, 409: {"model": ErrorOut},
                        429: {"model": ErrorOut}})
async def trial(clients: Clients, limits: Limits, caller: CurrentCaller):
    """The free trial (`TRIAL_DAYS`, `TRIAL_MAX_DEVICES`), once per person: 409
    `TRIAL_UNAVAILABLE` when this account, or the Telegram account linked to it, ever had a
    trial or a paid plan."""
    await limits.invoice(caller.id)
    status, body = await start_trial(clients, caller)
    return JSONResponse(body, status_code=status)


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(clients: Clients, caller: CurrentCaller):
    return (await clients.provisioner.subscriptions(caller)).response()


@router.get("/subscriptions/{subscription_id}/access", response_model=AccessOut)
async def subscription_access(clients: Clients, caller: CurrentCaller,
                              subscription_id: SubscriptionId):
    return (await clients.provisioner.access(caller, subscription_id)).response()


@router.get("/subscriptions/{subscription_id}/usage", response_model=UsageOut,
            responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut},
                       503: {"model": ErrorOut}})
async def subscription_usage(clients: Clients, caller: CurrentCaller,
                             subscription_id: SubscriptionId):
    """Traffic used and allowed, when it resets, and devices, live from the VPN panel (null
    where the panel cannot tell); 503 while the panel cannot be reached."""
    return (await clients.provisioner.usage(caller, subscription_id)).response()


@router.put("/subscriptions/{subscription_id}/location", response_model=LocationChange,
            responses={202: {"model": LocationChange,
                             "description": "the access is moving (or already was, there)"},
                       400: {"model": ErrorOut}, 401: {"model": ErrorOut},
                       404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                       429: {"model": ErrorOut}})
async def change_location(body: LocationBody, clients: Clients, limits: Limits,
                          caller: CurrentCaller, subscription_id: SubscriptionId):
    """Move the access to a server of `location_id` (`GET /locations`), exactly once: the
    account is made on the new server, the subscription switched to it, then the old one
    revoked. 202 with the move (asked again while it runs: the same move); 200 with `move:
    null` when the access is in that location already. 404 for another's subscription or an
    unknown location; 409 `SUBSCRIPTION_ENDED`, `MOVE_IN_PROGRESS` (to another location) or
    `POOL_FULL` (no room there), nothing changed."""
    await limits.location_change(caller.id)
    return (await clients.provisioner.change_location(caller, subscription_id, body)
            ).response()


@router.put("/subscriptions/{subscription_id}/auto-renew", response_model=SubscriptionEnvelope,
            responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut},
                       404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                       429: {"model": ErrorOut}})
async def auto_renew(body: AutoRenewBody, clients: Clients, limits: Limits,
                     caller: CurrentCaller, subscription_id: SubscriptionId):
    """Auto-renewal on or off (opt-in): `AUTO_RENEW_HOURS_BEFORE` (24) before `expires_at` the
    renewal is charged from the balance, once per period; when the balance is short, one
    RENEWAL invoice is made and its pay link sent. A trial's subscription names the plan to
    renew with (`plan_id`, 400 otherwise); an ended one is 409."""
    await limits.auto_renew(caller.id)
    return await set_auto_renew(clients, caller, subscription_id, body)


@router.post("/vpn/webhooks/remnawave", response_model=WebhookAck, tags=["webhooks"],
             responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}})
async def remnawave_webhook(request: Request, clients: Clients):
    """The Remnawave panel's webhook (`WEBHOOK_URL` in the panel): relayed to the provisioner
    as raw bytes, which checks `X-Remnawave-Signature` (401 and nothing changed when it does
    not match); `user.limited` marks the customer's subscription LIMITED, once."""
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in WEBHOOK_HEADERS_DROPPED}
    headers.setdefault("content-type", "application/json")
    return (await clients.provisioner.remnawave_webhook(await request.body(), headers)
            ).response()


@admin.get("/subscriptions", response_model=AdminSubscriptionList)
async def admin_list(clients: Clients, caller: AdminCaller,
                     user_id: str | None = Query(None, min_length=1, max_length=64),
                     status: SubscriptionStatus | None = None,
                     limit: int = PageLimit,
                     cursor: str | None = Query(None, max_length=200)):
    return (await clients.provisioner.admin_subscriptions(
        caller, user_id=user_id, status=status, limit=limit, cursor=cursor)).response()


@admin.post("/subscriptions/{subscription_id}/extend", response_model=AdminSubscriptionEnvelope)
async def admin_extend(body: ExtendBody, actions: Actions, caller: AdminCaller,
                       subscription_id: SubscriptionId):
    return (await actions.change_subscription(caller, subscription_id, "extend",
                                              body)).response()


@admin.post("/subscriptions/{subscription_id}/suspend", response_model=AdminSubscriptionEnvelope)
async def admin_suspend(actions: Actions, caller: AdminCaller, subscription_id: SubscriptionId):
    return (await actions.change_subscription(caller, subscription_id, "suspend")).response()


@admin.post("/subscriptions/{subscription_id}/resume", response_model=AdminSubscriptionEnvelope)
async def admin_resume(actions: Actions, caller: AdminCaller, subscription_id: SubscriptionId):
    return (await actions.change_subscription(caller, subscription_id, "resume")).response()
