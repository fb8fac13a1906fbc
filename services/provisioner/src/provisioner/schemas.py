"""Request and response models of the provisioner's internal API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SubscriptionStatus = Literal["ACTIVE", "EXPIRED", "CANCELED", "SUSPENDED"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubscriptionOut(BaseModel):
    id: str
    plan_id: str
    status: SubscriptionStatus
    started_at: datetime
    expires_at: datetime
    max_devices: int


class AdminSubscriptionOut(SubscriptionOut):
    user_id: str
    backend: str
    suspend_reason: str | None
    created_at: datetime
    updated_at: datetime


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class AdminSubscriptionList(BaseModel):
    subscriptions: list[AdminSubscriptionOut]
    next_cursor: str | None


class AdminSubscriptionEnvelope(BaseModel):
    subscription: AdminSubscriptionOut


class AccessOut(BaseModel):
    backend: str
    access_url: str
    config: dict[str, Any]
    fetched_at: datetime


class ExtendBody(Strict):
    days: int = Field(ge=1, le=3650)


class FailedJobOut(BaseModel):
    id: str
    name: str
    data: dict[str, Any]
    attempts_made: int
    failed_reason: str | None
    failed_at: int | None = Field(description="unix milliseconds")
    grant_status: str | None


class FailedJobList(BaseModel):
    jobs: list[FailedJobOut]


class RetriedJob(BaseModel):
    id: str
    state: str


class SandboxFaultBody(Strict):
    operation: Literal["*", "ensure_active", "disable", "access", "accounts"] = "*"
    count: int | None = Field(None, ge=1, le=1000, description="None: until removed")
    message: str = Field("injected sandbox failure", min_length=1, max_length=200)
