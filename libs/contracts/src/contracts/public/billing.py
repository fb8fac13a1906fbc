"""Billing's public shapes: plans, invoices, payments, the sandbox chain, statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.public.common import Code, Ident, Money, NotNull, Strict, Text, Whole

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


InvoiceKind = Literal["PLAN", "TOP_UP", "TRIAL", "RENEWAL"]
BalanceEntryKind = Literal["TOP_UP", "PURCHASE", "REFUND", "REFERRAL_REWARD", "ADJUSTMENT"]
PayWith = Literal["balance"]

# A signed adjustment: "-5.00" takes from the balance, "5.00" adds to it; never zero.
SignedUsdIn = Annotated[str,
                        StringConstraints(pattern=r"^-?(?!0+(\.0{1,2})?$)\d{1,10}(\.\d{1,2})?$"),
                        Field(examples=["5.00", "-2.50"])]


class InvoiceCreate(Strict):
    plan_id: Ident
    asset: Code
    network: Code
    pay_with: PayWith | None = Field(
        None, description="`balance`: paid from the balance at once (201, status PAID) or 409 "
                          "`INSUFFICIENT_BALANCE`; `asset` and `network` are checked as always")


class TopUpCreate(Strict):
    amount_usd: UsdIn = Field(description="between TOP_UP_MIN_USD (1) and TOP_UP_MAX_USD (1000)")
    asset: Code
    network: Code


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


class PlanUpdate(Strict):
    """Only the fields sent change; `description: null` clears it, other fields are never null."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra={"minProperties": 1})
    name: Text = NotNull(min_length=1, max_length=80)
    description: Text | None = Field(None, max_length=1000)
    price_usd: UsdIn = NotNull()
    duration_days: Whole = NotNull(ge=1, le=3650)
    max_devices: Whole = NotNull(ge=1, le=100)
    is_active: bool = NotNull()

    @model_validator(mode="after")
    def _something(self) -> PlanUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class RefundBody(Strict):
    reason: Text = Field(min_length=1, max_length=500)


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
    asset: str
    network: str


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
    amount_usd: Money
    asset: str
    network: str
    amount_asset: Money
    address: str | None
    payment_url: str | None
    rate_locked_until: datetime
    created_at: datetime
    paid_at: datetime | None
    payments: list[PaymentOut]


class AdminInvoiceOut(InvoiceOut):
    user_id: str
    plan_name: str | None
    plan_duration_days: int | None
    plan_max_devices: int | None
    provider: str
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


class BalanceEntryEnvelope(BaseModel):
    entry: BalanceEntryOut
    balance_usd: Money
