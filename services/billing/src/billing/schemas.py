"""Request and response models of the billing internal API (money in and out as decimal strings)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from contracts.common import Money

InvoiceStatus = Literal["CREATED", "PENDING", "PAID", "EXPIRED", "CANCELED", "REFUNDED"]
PaymentStatus = Literal["CREATED", "PENDING", "DETECTED", "CONFIRMED", "SETTLED", "FAILED",
                        "EXPIRED", "REFUNDED"]

UsdIn = Annotated[str, StringConstraints(pattern=r"^\d{1,10}(\.\d{1,2})?$")]
AssetAmountIn = Annotated[str, StringConstraints(pattern=r"^\d{1,16}(\.\d{1,8})?$")]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CURSOR_PATTERN = r"^[A-Za-z0-9_=-]{1,512}$"


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it as invalid input
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _positive(value: str | None, field: str) -> None:
    if value is not None and Decimal(value) <= 0:
        raise ValueError(f"{field} must be greater than 0")


class InvoiceCreate(Strict):
    plan_id: Ident
    asset: Code
    network: Code


class PlanCreate(Strict):
    name: Text = Field(min_length=1, max_length=80)
    description: Text | None = Field(None, max_length=1000)
    price_usd: UsdIn
    duration_days: int = Field(ge=1, le=3650)
    max_devices: int = Field(ge=1, le=100)
    is_active: bool = True

    @model_validator(mode="after")
    def _price_positive(self) -> PlanCreate:
        _positive(self.price_usd, "price_usd")
        return self


class PlanUpdate(Strict):
    name: Text | None = Field(None, min_length=1, max_length=80)
    description: Text | None = Field(None, max_length=1000)
    price_usd: UsdIn | None = None
    duration_days: int | None = Field(None, ge=1, le=3650)
    max_devices: int | None = Field(None, ge=1, le=100)
    is_active: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> PlanUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for name in ("name", "price_usd", "duration_days", "max_devices", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        _positive(self.price_usd, "price_usd")
        return self


class RefundBody(Strict):
    reason: Text = Field(min_length=1, max_length=500)


class TransferBody(Strict):
    address: Text = Field(min_length=1, max_length=128)
    amount_asset: AssetAmountIn
    asset: Code
    network: Code

    @model_validator(mode="after")
    def _amount_positive(self) -> TransferBody:
        _positive(self.amount_asset, "amount_asset")
        return self


class BlocksBody(Strict):
    count: int = Field(ge=1, le=100)


class SandboxFaultBody(Strict):
    operation: Literal["*", "create_checkout", "observe"] = "*"
    for_seconds: float | None = Field(None, gt=0, le=3600, description="None: until removed")
    delay_ms: int = Field(0, ge=0, le=30_000, description="how long each call hangs first")
    message: str = Field("sandbox provider timed out", min_length=1, max_length=200)


class SandboxFaultOut(BaseModel):
    id: int


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
    plan_id: str
    amount_usd: Money
    asset: str
    network: str
    amount_asset: Money
    address: str | None
    payment_url: str | None
    rate_locked_until: datetime
    created_at: datetime
    paid_at: datetime | None
    payments: list[PaymentOut] = []


class AdminInvoiceOut(InvoiceOut):
    user_id: str
    plan_name: str
    plan_duration_days: int
    plan_max_devices: int
    provider: str
    provider_ref: str | None
    rate_usd: Money
    amount_received_asset: Money
    overpaid_asset: Money
    underpaid_asset: Money
    late_amount_asset: Money
    needs_review: bool
    expired_at: datetime | None
    canceled_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str | None
    payments: list[AdminPaymentOut] = []


class PlanList(BaseModel):
    plans: list[PlanOut]


class AdminPlanList(BaseModel):
    plans: list[AdminPlanOut]


class AdminPlanEnvelope(BaseModel):
    plan: AdminPlanOut


class PlanDeleted(BaseModel):
    plan: AdminPlanOut
    deleted: bool


class PaymentOption(BaseModel):
    asset: str
    network: str


class PaymentOptions(BaseModel):
    options: list[PaymentOption]


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


class WebhookAck(BaseModel):
    ok: bool


def _fields(model: type[BaseModel], obj: object) -> dict:
    return {name: getattr(obj, name) for name in model.model_fields if name != "payments"}


def invoice_view(invoice: object, payments: list, *, admin: bool = False) -> dict:
    """The invoice (with its payments) as the JSON the API answers and idempotency stores."""
    model, payment_model = (AdminInvoiceOut, AdminPaymentOut) if admin else (InvoiceOut, PaymentOut)
    data = _fields(model, invoice)
    data["payments"] = [payment_model.model_validate(_fields(payment_model, p)) for p in payments]
    return model.model_validate(data).model_dump(mode="json")


def plan_view(plan: object, *, admin: bool = False) -> dict:
    model = AdminPlanOut if admin else PlanOut
    return model.model_validate(_fields(model, plan)).model_dump(mode="json")
