"""`/subscriptions/*` and `/admin/subscriptions/*`: routed to the provisioner.

The models below are the public contract (docs/02-api/subscriptions.md); the provisioner's
answers are passed through unchanged, and every admin mutation is recorded in the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.billing import Whole
from gateway.api.deps import AdminCaller, CurrentCaller
from gateway.audit import audited

router = APIRouter(tags=["subscriptions"])
admin = APIRouter(prefix="/admin", tags=["admin"])

SubscriptionStatus = Literal["ACTIVE", "EXPIRED", "CANCELED", "SUSPENDED"]
SubscriptionId = Annotated[str, Path(min_length=1, max_length=64)]


class SubscriptionOut(BaseModel):
    id: str
    plan_id: str
    status: SubscriptionStatus
    started_at: datetime
    expires_at: datetime
    max_devices: int


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class AccessOut(BaseModel):
    backend: str
    access_url: str = Field(description="The access key / subscription URL to import in a client")
    config: dict[str, Any] = Field(description="Backend-specific details of the access config")
    fetched_at: datetime


class AdminSubscriptionOut(SubscriptionOut):
    user_id: str
    backend: str
    suspend_reason: str | None
    created_at: datetime
    updated_at: datetime


class AdminSubscriptionList(BaseModel):
    subscriptions: list[AdminSubscriptionOut]
    next_cursor: str | None


class AdminSubscriptionEnvelope(BaseModel):
    subscription: AdminSubscriptionOut


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    days: Whole = Field(ge=1, le=3650)


def _provisioner(request: Request):
    return request.app.state.upstreams["provisioner"]


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(request: Request, caller: CurrentCaller):
    return await _provisioner(request).relay("GET", "/internal/subscriptions",
                                             user_id=caller.id, role=caller.role)


@router.get("/subscriptions/{subscription_id}/access", response_model=AccessOut)
async def subscription_access(request: Request, caller: CurrentCaller,
                              subscription_id: SubscriptionId):
    return await _provisioner(request).relay(
        "GET", f"/internal/subscriptions/{subscription_id}/access",
        user_id=caller.id, role=caller.role)


@admin.get("/subscriptions", response_model=AdminSubscriptionList)
async def admin_list(request: Request, caller: AdminCaller,
                     user_id: str | None = Query(None, min_length=1, max_length=64),
                     status: SubscriptionStatus | None = None,
                     limit: int = Query(20, ge=1, le=100),
                     cursor: str | None = Query(None, max_length=200)):
    return await _provisioner(request).relay(
        "GET", "/internal/admin/subscriptions",
        params={"user_id": user_id, "status": status, "limit": limit, "cursor": cursor or None},
        user_id=caller.id, role=caller.role)


async def _mutate(request: Request, caller, action: str, subscription_id: str, path: str,
                  body: dict | None = None):
    async with audited(request, caller, action, "subscription", subscription_id, body) as audit:
        resp = await _provisioner(request).relay(
            "POST", f"/internal/admin/subscriptions/{subscription_id}/{path}", json=body,
            user_id=caller.id, role=caller.role)
        audit.result(resp.status_code, body)
    return resp


@admin.post("/subscriptions/{subscription_id}/extend", response_model=AdminSubscriptionEnvelope)
async def admin_extend(body: ExtendBody, request: Request, caller: AdminCaller,
                       subscription_id: SubscriptionId):
    return await _mutate(request, caller, "subscription.extend", subscription_id, "extend",
                         body.model_dump())


@admin.post("/subscriptions/{subscription_id}/suspend", response_model=AdminSubscriptionEnvelope)
async def admin_suspend(request: Request, caller: AdminCaller,
                        subscription_id: SubscriptionId):
    return await _mutate(request, caller, "subscription.suspend", subscription_id, "suspend")


@admin.post("/subscriptions/{subscription_id}/resume", response_model=AdminSubscriptionEnvelope)
async def admin_resume(request: Request, caller: AdminCaller,
                       subscription_id: SubscriptionId):
    return await _mutate(request, caller, "subscription.resume", subscription_id, "resume")
