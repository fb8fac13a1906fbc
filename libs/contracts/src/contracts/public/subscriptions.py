"""The provisioner's public shapes: subscriptions, access, statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from contracts.public.common import Strict, Whole

# LIMITED: running, but its traffic allowance is used up until `limited_until`.
SubscriptionStatus = Literal["ACTIVE", "LIMITED", "EXPIRED", "CANCELED", "SUSPENDED"]


class AutoRenewOut(BaseModel):
    enabled: bool = False
    plan_id: str | None = Field(None, description="The plan a renewal buys (None: the current)")
    next_attempt_at: datetime | None = Field(
        None, description="When the renewal is charged from the balance (while enabled)")


class SubscriptionOut(BaseModel):
    id: str
    plan_id: str
    status: SubscriptionStatus
    started_at: datetime
    expires_at: datetime
    max_devices: int
    auto_renew: AutoRenewOut = Field(default_factory=AutoRenewOut)
    limited_until: datetime | None = Field(
        None, description="While LIMITED: when the traffic allowance renews (null: at the "
                          "next renewal)")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class SubscriptionEnvelope(BaseModel):
    subscription: SubscriptionOut


class GrantOut(BaseModel):
    """What became of a paid invoice's time: `APPLIED` once it is on the subscription, with
    the `expires_at` it gave; `WAITING` while no VPN server has room for a new subscription."""

    invoice_id: str
    status: Literal["PENDING", "APPLIED", "FAILED", "REFUND_PENDING", "REFUNDED", "SKIPPED",
                    "WAITING"]
    subscription_id: str | None
    new_expires_at: datetime | None


class DevicesOut(BaseModel):
    limit: int | None
    used: int | None


class BackendCapabilities(BaseModel):
    """What the configured VPN backend enforces itself (the plan pages promise only that)."""

    backend: str
    enforces_devices: bool
    enforces_traffic: bool


class UsageOut(BaseModel):
    """An account's use, live from the VPN panel; null where the panel cannot tell."""

    used_bytes: int | None
    limit_bytes: int | None = Field(description="null: unlimited (or unknown)")
    resets_at: datetime | None = Field(description="when a monthly allowance renews")
    devices: DevicesOut
    limited: bool = Field(False, description="the allowance is used up until it resets")
    fetched_at: datetime


class AppLink(BaseModel):
    """One VPN client app's "import" button for the subscription link."""

    id: str = Field(description="e.g. `happ`, `v2rayng`")
    name: str
    platforms: list[str] = Field(description="`ios`, `android`, `macos`, `windows`, `linux`, "
                                             "`tvos`, `androidtv`")
    import_url: str = Field(description="The app's own deep link (a custom scheme)")
    open_url: str = Field(description="An https page of ours that opens `import_url` (for "
                                      "places that take only http(s) links, like Telegram)")


class LinkOut(BaseModel):
    subscription_url: str | None = Field(
        None, description="Ours and stable for life: `APP_BASE_URL/api/v1/sub/<token>`, "
                          "serving the subscription from whichever server holds the access "
                          "now (null: revoked)")
    apps: list[AppLink] = Field(default_factory=list,
                                description="Import buttons (none while revoked)")


class AccessOut(LinkOut):
    backend: str
    access_url: str = Field(description="The access key / subscription URL to import in a client")
    config: dict[str, Any] = Field(description="Backend-specific details of the access config")
    fetched_at: datetime


class LinkEnvelope(BaseModel):
    link: LinkOut


class LocationOut(BaseModel):
    id: str = Field(description="The location code servers are placed by, e.g. `de-fra`")
    name: str
    country: str | None = Field(description="ISO 3166-1 alpha-2, from the code's first part")


class LocationList(BaseModel):
    locations: list[LocationOut]


class Locations(RootModel[list[LocationOut]]):
    """`GET /locations` on the public API: a bare list, as api.md gives it (the provisioner's
    internal answer is the `LocationList` envelope)."""


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


class AutoRenewBody(Strict):
    enabled: bool
    plan_id: str | None = Field(None, min_length=1, max_length=64,
                                description="The plan to renew with (default: the current one)")


class ExtendBody(Strict):
    days: Whole = Field(ge=1, le=3650)
