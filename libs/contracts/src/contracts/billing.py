"""billing.* events, produced by the billing service."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.common import Money
from contracts.envelope import EventPayload


class PlanSnapshot(BaseModel):
    plan_id: str
    name: str
    duration_days: int
    max_devices: int
    price_usd: Money
    # Traffic the grant allows, in GB (the plan's, or the trial's `TRIAL_TRAFFIC_GB`); None:
    # the backend's default (`VPN_DATA_LIMIT_BYTES`). Released in v1 without it: optional.
    traffic_limit_gb: int | None = None
    # How that allowance renews: NONE, or MONTH (every month from the grant).
    traffic_reset: str = "NONE"


class InvoiceCreatedV1(EventPayload):
    event_type = "billing.invoice.created"
    invoice_id: str
    user_id: str
    plan_id: str
    amount_usd: Money
    asset: str
    network: str
    amount_asset: Money
    rate_locked_until: datetime
    provider: str


class PaymentDetectedV1(EventPayload):
    event_type = "billing.payment.detected"
    invoice_id: str
    payment_id: str
    user_id: str
    txid: str | None
    amount_asset: Money
    asset: str
    network: str
    detected_at: datetime


class InvoicePaidV1(EventPayload):
    event_type = "billing.invoice.paid"
    invoice_id: str
    user_id: str
    plan: PlanSnapshot
    amount_usd: Money
    asset: str
    network: str
    amount_asset: Money
    amount_paid_asset: Money
    paid_at: datetime
    # Days a promo code adds to what the plan grants (released in v1 without it: optional).
    bonus_days: int = 0
    # PLAN, TRIAL or RENEWAL (an auto-renewal; `subscription_id` is the one it renews).
    kind: str = "PLAN"
    subscription_id: str | None = None


class InvoiceExpiredV1(EventPayload):
    event_type = "billing.invoice.expired"
    invoice_id: str
    user_id: str
    amount_received_asset: Money
    expired_at: datetime


class InvoiceRefundedV1(EventPayload):
    event_type = "billing.invoice.refunded"
    invoice_id: str
    user_id: str
    plan: PlanSnapshot
    reason: str
    refunded_at: datetime
    actor_id: str | None = None


class BalanceMovement(EventPayload):
    """One ledger entry of a customer's balance (`amount_usd` as a positive amount)."""

    user_id: str
    entry_id: int
    kind: str
    amount_usd: Money
    balance_usd: Money = Field(description="the balance after it")
    invoice_id: str | None = None
    created_at: datetime


class BalanceCreditedV1(BalanceMovement):
    """Money added to a customer's balance: a top-up, a refund, a reward or an adjustment."""

    event_type = "billing.balance.credited"


class BalanceDebitedV1(BalanceMovement):
    """Money taken from a customer's balance: a purchase paid from it, or an adjustment."""

    event_type = "billing.balance.debited"


class PromoCodeRedeemedV1(EventPayload):
    """A promo code counted: the invoice that used it was paid."""

    event_type = "billing.promo_code.redeemed"
    code_id: str
    code: str
    user_id: str
    invoice_id: str
    discount_usd: Money
    bonus_days: int
    redeemed_at: datetime


class ReferralRewardedV1(EventPayload):
    """A referrer rewarded, once, for the first paid invoice of a customer they referred:
    `amount_usd` credited to their balance (a `REFERRAL_REWARD` entry), or `days` for the
    provisioner to add to their subscription; the other one is zero."""

    event_type = "billing.referral.rewarded"
    referrer_user_id: str
    referred_user_id: str
    invoice_id: str
    amount_usd: Money
    days: int
    rewarded_at: datetime


class ReferralReversedV1(EventPayload):
    """That invoice was refunded: the reward is taken back (`amount_usd` from the balance, the
    rest owed; or `days` for the provisioner to take back, never past now)."""

    event_type = "billing.referral.reversed"
    referrer_user_id: str
    referred_user_id: str
    invoice_id: str
    amount_usd: Money
    days: int
    reversed_at: datetime


class RenewalReminderV1(EventPayload):
    """Tell the customer to renew: a subscription ends in `days_left` days and auto-renewal will
    not cover it (off, or the balance is short). `pay_url` renews in one click: the RENEWAL
    invoice when auto-renewal opened one (`invoice_id`), else the plan's checkout."""

    event_type = "billing.renewal.reminder"
    user_id: str
    subscription_id: str
    expires_at: datetime
    days_left: int
    plan_id: str | None
    price_usd: Money | None
    balance_usd: Money
    auto_renew: bool
    invoice_id: str | None = None
    pay_url: str
