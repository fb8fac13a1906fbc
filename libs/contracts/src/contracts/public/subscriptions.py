"""The provisioner's public shapes: subscriptions, access, statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.public.common import Strict, Whole

SubscriptionStatus = Literal["ACTIVE", "EXPIRED", "CANCELED", "SUSPENDED"]


class SubscriptionOut(BaseModel):
    id: str
    plan_id: str
    status: SubscriptionStatus
    started_at: datetime
    expires_at: datetime
    max_devices: int


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class SubscriptionEnvelope(BaseModel):
    subscription: SubscriptionOut


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


class ExtendBody(Strict):
    days: Whole = Field(ge=1, le=3650)
