"""provisioning.* events, produced by the provisioner."""

from __future__ import annotations

from datetime import datetime

from contracts.envelope import EventPayload


class SubscriptionActivatedV1(EventPayload):
    event_type = "provisioning.subscription.activated"
    subscription_id: str
    user_id: str
    plan_id: str
    invoice_id: str | None
    started_at: datetime
    expires_at: datetime
    max_devices: int


class SubscriptionExtendedV1(EventPayload):
    event_type = "provisioning.subscription.extended"
    subscription_id: str
    user_id: str
    invoice_id: str | None
    previous_expires_at: datetime
    expires_at: datetime
    days_added: int
    reason: str


class SubscriptionExpiringV1(EventPayload):
    """An expiry reminder is due (once per reminder day and expiry date)."""

    event_type = "provisioning.subscription.expiring"
    subscription_id: str
    user_id: str
    expires_at: datetime
    days_left: int
    # The plan a renewal would buy (auto-renewal's plan when set, else the current one) and
    # whether auto-renewal is on: billing tells the customer only when it will not cover it.
    plan_id: str | None = None
    auto_renew: bool = False


class SubscriptionRenewalDueV1(EventPayload):
    """Auto-renewal is on and the period ends within `AUTO_RENEW_HOURS_BEFORE`: billing charges
    the renewal once for this `expires_at` (published once per period)."""

    event_type = "provisioning.subscription.renewal_due"
    subscription_id: str
    user_id: str
    plan_id: str
    expires_at: datetime


class SubscriptionExpiredV1(EventPayload):
    event_type = "provisioning.subscription.expired"
    subscription_id: str
    user_id: str
    expired_at: datetime


class SubscriptionSuspendedV1(EventPayload):
    event_type = "provisioning.subscription.suspended"
    subscription_id: str
    user_id: str
    reason: str
    suspended_at: datetime


class SubscriptionResumedV1(EventPayload):
    event_type = "provisioning.subscription.resumed"
    subscription_id: str
    user_id: str
    expires_at: datetime
    resumed_at: datetime


class SubscriptionLimitedV1(EventPayload):
    """The subscription's traffic allowance is used up: the VPN panel refuses connections
    until `resets_at` (None: until the next renewal). Published once per limit period."""

    event_type = "provisioning.subscription.limited"
    subscription_id: str
    user_id: str
    limited_at: datetime
    resets_at: datetime | None
    used_bytes: int | None = None
    limit_bytes: int | None = None


class ProvisionFailedV1(EventPayload):
    event_type = "provisioning.provision.failed"
    invoice_id: str
    user_id: str
    subscription_id: str | None
    error: str
    attempts: int
    failed_at: datetime
