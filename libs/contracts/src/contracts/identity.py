"""identity.* events, produced by the gateway."""

from __future__ import annotations

from datetime import datetime

from contracts.common import Role
from contracts.envelope import EventPayload


class UserRegisteredV1(EventPayload):
    event_type = "identity.user.registered"
    user_id: str
    # Empty for an account made from Telegram (`telegram.account.created.v1`): it has none.
    email: str
    role: Role
    registered_at: datetime
    # The referral code the customer signed up with, as given (billing checks it; released in
    # v1 without it: optional).
    referral_code: str | None = None


class UserBlockedV1(EventPayload):
    event_type = "identity.user.blocked"
    user_id: str
    blocked_at: datetime
    actor_id: str | None = None
    reason: str | None = None


class UserUnblockedV1(EventPayload):
    event_type = "identity.user.unblocked"
    user_id: str
    unblocked_at: datetime
    actor_id: str | None = None


class UserRoleChangedV1(EventPayload):
    """A user's role changed (an admin's change, or `create-admin`)."""

    event_type = "identity.user.role_changed"
    user_id: str
    role: Role
    changed_at: datetime
    actor_id: str | None = None
