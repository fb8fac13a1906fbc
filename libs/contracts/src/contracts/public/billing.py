"""Billing's public shapes: plans, invoices, payments, the sandbox chain, statuses."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from contracts.public.common import Code, Ident, Money, NotNull, Strict, Text, Whole, integral

InvoiceStatus = Literal["CREATED", "PENDING", "PAID", "EXPIRED", "CANCELED", "REFUNDED"]
PaymentStatus = Literal["CREATED", "PENDING", "DETECTED", "CONFIRMED", "SETTLED", "FAILED",
                        "EXPIRED", "REFUNDED"]
OPEN_INVOICE_STATUSES = frozenset({"CREATED", "PENDING"})

# Prices and amounts are positive: "0" and "0.00" are refused by the pattern.
UsdIn = Annotated[str, StringConstraints(pattern=r"^(?!0+(\.0{1,2})?$)\d{1,10}(\.\d{1,2})?$"),
                  Field(examples=["9.99"])]
AssetAmountIn = Annotated[str,
                          StringConstraints(pattern=r"^(?!0+(\.0{1,8})?$)\d{1,16}(\.\d{1,8})?$"),
                          Field(examples=["9.99000000"])]


PromoKind = Literal["PERCENT", "AMOUNT", "DAYS"]
PromoRefusal = Literal["unknown", "expired", "not_started", "used_up", "already_used",
                       "not_for_plan", "inactive"]
PromoCodeIn = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,32}$"),
                        Field(examples=["SPRING25"], description="case-insensitive")]
# The bounds before the whole-number coercion, so the schema names them as minimum/maximum.
# A moment in a strict body: an ISO 8601 string with its offset, as JSON carries it.
Moment = Annotated[AwareDatetime, Field(strict=False)]
MaxUses = Annotated[int, Field(ge=1, le=10_000_000), BeforeValidator(integral)]
InvoiceKind = Literal["PLAN", "TOP_UP", "TRIAL", "RENEWAL"]
BalanceEntryKind = Literal["TOP_UP", "PURCHASE", "REFUND", "REFERRAL_REWARD", "ADJUSTMENT"]
PayWith = Literal["balance"]

# A signed adjustment: "-5.00" takes from the balance, "5.00" adds to it; never zero, and at
# most 9,999,999.99 either way.
SignedUsdIn = Annotated[str,
                        StringConstraints(pattern=r"^-?(?!0+(\.0{1,2})?$)\d{1,7}(\.\d{1,2})?$"),
                        Field(examples=["5.00", "-2.50"])]


# A price in Telegram Stars: whole Stars (XTR has no decimals).
StarsIn = Annotated[int, Field(ge=1, le=1_000_000, examples=[250]), BeforeValidator(integral)]

# A plan's traffic allowance in whole GB, and how it renews.
TrafficGb = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(integral)]
TrafficReset = Literal["NONE", "MONTH"]

ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", examples=["btcpay"])]


class InvoiceCreate(Strict):
    plan_id: Ident
    asset: Code
    network: Code
    provider: ProviderName | None = Field(
        None, description="an enabled provider (`GET /payment-options`); missing: the first "
                          "that accepts `asset` and `network`")
    promo_code: PromoCodeIn | None = Field(
        None, description="a refused code is 422 `PROMO_CODE_INVALID` with `details.reason`")
    pay_with: PayWith | None = Field(
        None, description="`balance`: paid from the balance at once (201, status PAID) or 409 "
                          "`INSUFFICIENT_BALANCE`; `asset` and `network` are checked as always")


class TopUpCreate(Strict):
    amount_usd: UsdIn = Field(description="between TOP_UP_MIN_USD (1) and TOP_UP_MAX_USD (1000)")
    asset: Code
    network: Code
    provider: ProviderName | None = None


class PromoCodeCreate(Strict):
    code: PromoCodeIn
    kind: PromoKind
    value: UsdIn = Field(description="PERCENT: 1-100; AMOUNT: USD off; DAYS: whole days added")
    plan_ids: list[Ident] | None = Field(None, max_length=100, description="null: every plan")
    max_uses: MaxUses | None = None
    max_uses_per_user: Whole = Field(1, ge=1, le=1000)
    starts_at: Moment | None = None
    ends_at: Moment | None = None
    first_purchase_only: bool = False

    @model_validator(mode="after")
    def _coherent(self) -> PromoCodeCreate:
        value = Decimal(self.value)
        if self.kind == "PERCENT" and value > 100:
            raise ValueError("a PERCENT code takes 1 to 100")
        if self.kind in ("PERCENT", "DAYS") and value != value.to_integral_value():
            raise ValueError(f"a {self.kind} code takes a whole number")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PromoCodeUpdate(Strict):
    """Only the fields sent change; a used code is deactivated, never deleted."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra={"minProperties": 1})
    is_active: bool = NotNull()
    max_uses: MaxUses | None = None
    ends_at: Moment | None = None

    @model_validator(mode="after")
    def _something(self) -> PromoCodeUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class AdjustmentBody(Strict):
    amount_usd: SignedUsdIn
    note: Text = Field(min_length=1, max_length=500)


class PlanCreate(Strict):
    name: Text = Field(min_length=1, max_length=80)
    description: Text | None = Field(None, max_length=1000)
    price_usd: UsdIn
    duration_days: Whole = Field(ge=1, le=3650)
    max_devices: Whole = Field(ge=1, le=100)
    is_active: bool = True
    price_stars: StarsIn | None = Field(
        None, description="the price in Telegram Stars; null: USD × STARS_PER_USD, rounded up")
    traffic_limit_gb: TrafficGb | None = Field(None, description="null: unlimited")
    traffic_reset: TrafficReset = Field("NONE", description="how the allowance renews")


class PlanUpdate(Strict):
    """Only the fields sent change; `description: null` clears it, other fields are never null."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra={"minProperties": 1})
    name: Text = NotNull(min_length=1, max_length=80)
    description: Text | None = Field(None, max_length=1000)
    price_usd: UsdIn = NotNull()
    duration_days: Whole = NotNull(ge=1, le=3650)
    max_devices: Whole = NotNull(ge=1, le=100)
    is_active: bool = NotNull()
    price_stars: StarsIn | None = Field(None, description="null: priced from USD again")
    traffic_limit_gb: TrafficGb | None = Field(None, description="null: unlimited")
    traffic_reset: TrafficReset = NotNull()

    @model_validator(mode="after")
    def _something(self) -> PlanUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class RefundBody(Strict):
    reason: Text = Field(min_length=1, max_length=500)
    to: Literal["original", "balance"] = Field(
        "original", description="`balance`: the amount paid is credited to the customer's "
                                "balance (an invoice paid from the balance always goes back to it)")


class TransferBody(Strict):
    address: Text = Field(min_length=1, max_length=128)
    amount_asset: AssetAmountIn
    asset: Code
    network: Code


class BlocksBody(Strict):
    count: Whole = Field(ge=1, le=100)


class PlanOut(BaseModel):
    id: str
    name: str
    description: str | None
    price_usd: Money
    duration_days: int
    max_devices: int
    price_stars: int | None = Field(None, description="the price in Telegram Stars when set")
    traffic_limit_gb: int | None = Field(None, description="the traffic allowance; null: "
                                                           "unlimited")
    traffic_reset: TrafficReset = "NONE"


class AdminPlanOut(PlanOut):
    is_active: bool
    created_at: datetime
    updated_at: datetime


class PlanList(BaseModel):
    plans: list[PlanOut]


class AdminPlanList(BaseModel):
    plans: list[AdminPlanOut]


class AdminPlanEnvelope(BaseModel):
    plan: AdminPlanOut


class PlanDeleted(BaseModel):
    plan: AdminPlanOut
    deleted: bool = Field(description="false when the plan is in use and was only deactivated")


class PaymentOption(BaseModel):
    provider: str = Field(description="the payment method, as `POST /invoices` takes it")
    asset: str
    network: str
    label: str = Field(description="how the option is shown to the customer")


class PaymentOptions(BaseModel):
    options: list[PaymentOption]


class PaymentOut(BaseModel):
    id: str
    status: PaymentStatus
    txid: str | None
    amount_asset: Money
    confirmations: int
    detected_at: datetime | None
    confirmed_at: datetime | None
    settled_at: datetime | None


class AdminPaymentOut(PaymentOut):
    late: bool


class InvoiceOut(BaseModel):
    id: str
    status: InvoiceStatus
    kind: InvoiceKind = Field("PLAN", description="`TOP_UP`: adds to the balance, no plan")
    plan_id: str | None = Field(description="null for a `TOP_UP`")
    promo_code: str | None = None
    discount_usd: Money = Field(Decimal("0.00"), description="taken off the plan price")
    bonus_days: int = Field(0, description="added to what the plan grants")
    amount_usd: Money
    asset: str
    network: str
    # Optional only so that an answer stored under an Idempotency-Key before the field existed
    # still reads; billing always sets it.
    provider: str | None = Field(None, description="the payment method it is paid with "
                                 "(`sandbox`, `cryptopay`, ...; `balance` and `promo` when "
                                 "paid at once, `trial` for the trial)")
    amount_asset: Money
    address: str | None
    payment_url: str | None
    rate_locked_until: datetime
    created_at: datetime
    paid_at: datetime | None
    payments: list[PaymentOut]
    amount_stars: int | None = Field(
        None, description="Telegram Stars: the Stars to pay (`payment_url` opens the invoice "
                          "in Telegram); null for other providers")


class AdminInvoiceOut(InvoiceOut):
    user_id: str
    plan_name: str | None
    plan_duration_days: int | None
    plan_max_devices: int | None
    provider_ref: str | None
    rate_usd: Money
    amount_received_asset: Money
    overpaid_asset: Money
    underpaid_asset: Money
    late_amount_asset: Money
    needs_review: bool = Field(description="a late payment arrived: support should look")
    expired_at: datetime | None
    canceled_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str | None
    payments: list[AdminPaymentOut]


class InvoiceEnvelope(BaseModel):
    invoice: InvoiceOut


class AdminInvoiceEnvelope(BaseModel):
    invoice: AdminInvoiceOut


class InvoiceList(BaseModel):
    invoices: list[InvoiceOut]
    next_cursor: str | None


class AdminInvoiceList(BaseModel):
    invoices: list[AdminInvoiceOut]
    next_cursor: str | None


class TransferOut(BaseModel):
    txid: str


class BlocksOut(BaseModel):
    height: int


class BalanceEntryOut(BaseModel):
    id: int
    kind: BalanceEntryKind
    amount_usd: Money = Field(description="signed: negative for what was taken")
    balance_after_usd: Money
    invoice_id: str | None
    created_at: datetime
    note: str | None


class BalanceOut(BaseModel):
    balance_usd: Money
    entries: list[BalanceEntryOut]
    next_cursor: str | None


class RenewalCoverOut(BaseModel):
    """Whether the balance pays a renewal of `plan_id` now (auto-renewal charges it then)."""

    plan_id: str | None
    price_usd: Money | None = Field(description="None: the plan is not on sale")
    balance_usd: Money
    covered: bool


class BalanceEntryEnvelope(BaseModel):
    entry: BalanceEntryOut
    balance_usd: Money


class PromoPreview(BaseModel):
    code: str
    kind: PromoKind
    value: Money
    plan_ids: list[str] | None
    valid: bool
    reason: PromoRefusal | None
    price_usd: Money | None = Field(description="the plan's price after the discount")
    discount_usd: Money
    bonus_days: int


class AdminPromoCodeOut(BaseModel):
    id: str
    code: str
    kind: PromoKind
    value: Money
    plan_ids: list[str] | None
    max_uses: int | None
    max_uses_per_user: int
    starts_at: datetime | None
    ends_at: datetime | None
    first_purchase_only: bool
    is_active: bool
    uses_reserved: int
    uses_counted: int
    created_at: datetime
    updated_at: datetime


class AdminPromoCodeEnvelope(BaseModel):
    promo_code: AdminPromoCodeOut


class AdminPromoCodeList(BaseModel):
    promo_codes: list[AdminPromoCodeOut]


class ReferralsOut(BaseModel):
    code: str = Field(description="your referral code (case-insensitive)")
    link: str = Field(description="`APP_BASE_URL/r/<code>`: the sign-up page with your code")
    invited: int = Field(description="customers who signed up with your code")
    paid: int = Field(description="of them, those whose first paid invoice rewarded you")
    reward_total_usd: Money = Field(description="credited to your balance, less any taken back")
    reward_total_days: int = Field(description="days added to your subscription, likewise")
