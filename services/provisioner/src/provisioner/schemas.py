"""Request and response models of the provisioner's internal API.

The public shapes (subscriptions, access, statuses) come from `contracts.public.subscriptions`,
which the gateway declares too; what only the internal API has is defined here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.public.common import Strict, WebhookAck
from contracts.public.subscriptions import (
    AccessOut,
    AdminSubscriptionEnvelope,
    AdminSubscriptionList,
    AdminSubscriptionOut,
    AutoRenewBody,
    BackendCapabilities,
    ExtendBody,
    GrantOut,
    SubscriptionEnvelope,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionStatus,
    UsageOut,
)

__all__ = ["AccessOut", "AdminSubscriptionEnvelope", "AdminSubscriptionList",
           "AdminSubscriptionOut", "AutoRenewBody", "BackendCapabilities", "ExtendBody",
           "FailedJobList", "FailedJobOut", "GrantOut", "RetriedJob", "SandboxFaultBody",
           "SandboxTrafficBody", "SubscriptionEnvelope", "SubscriptionList", "SubscriptionOut",
           "SubscriptionStatus", "UsageOut", "WebhookAck"]


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
    operation: Literal["*", "ensure_active", "disable", "access", "accounts", "usage"] = "*"
    count: int | None = Field(None, ge=1, le=1000, description="None: until removed")
    message: str = Field("injected sandbox failure", min_length=1, max_length=200)


class SandboxTrafficBody(Strict):
    used_bytes: int = Field(ge=0, le=2**62)
