"""Request and response models of the billing internal API (money in and out as decimal strings).

The public shapes (plans, invoices, payments, statuses) come from `contracts.public.billing`, the
one source the gateway declares too; what only billing's internal API has is defined here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from contracts.public.billing import (
    AdjustmentBody,
    AdminInvoiceEnvelope,
    AdminInvoiceList,
    AdminInvoiceOut,
    AdminPaymentOut,
    AdminPlanEnvelope,
    AdminPlanList,
    AdminPlanOut,
    AdminPromoCodeEnvelope,
    AdminPromoCodeList,
    AdminPromoCodeOut,
    BalanceEntryEnvelope,
    BalanceEntryKind,
    BalanceEntryOut,
    BalanceOut,
    BlocksBody,
    BlocksOut,
    InvoiceCreate,
    InvoiceEnvelope,
    InvoiceList,
    InvoiceOut,
    InvoiceStatus,
    PaymentOptions,
    PaymentOut,
    PlanCreate,
    PlanDeleted,
    PlanList,
    PlanOut,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    PromoPreview,
    RefundBody,
    RenewalCoverOut,
    TopUpCreate,
    TransferBody,
    TransferOut,
)
from contracts.public.common import Strict, WebhookAck

CURSOR_PATTERN = r"^[A-Za-z0-9_=-]{1,512}$"

__all__ = ["AdjustmentBody", "AdminInvoiceEnvelope", "AdminInvoiceList", "AdminPlanEnvelope",
           "AdminPlanList", "AdminPromoCodeEnvelope", "AdminPromoCodeList",
           "BalanceEntryEnvelope", "BalanceEntryKind", "BalanceOut", "BlocksBody", "BlocksOut",
           "CURSOR_PATTERN", "InvoiceCreate", "InvoiceEnvelope", "InvoiceList", "InvoiceStatus",
           "PayableOut",
           "PaymentOptions", "PlanCreate", "PlanDeleted", "PlanList", "PlanUpdate",
           "PromoCodeCreate", "PromoCodeUpdate", "PromoPreview", "RefundBody", "RenewalCoverOut",
           "SandboxFaultBody",
           "SandboxFaultOut", "TopUpCreate", "TransferBody", "TransferOut", "WebhookAck",
           "entry_view", "invoice_view", "plan_view", "promo_view"]


class SandboxFaultBody(Strict):
    operation: Literal["*", "create_checkout", "observe"] = "*"
    for_seconds: float | None = Field(None, gt=0, le=3600, description="None: until removed")
    delay_ms: int = Field(0, ge=0, le=30_000, description="how long each call hangs first")
    message: str = Field("sandbox provider timed out", min_length=1, max_length=200)


class SandboxFaultOut(BaseModel):
    id: int


class PayableOut(BaseModel):
    """Whether an invoice takes this payment now (asked before a payment is taken)."""

    payable: bool
    reason: Literal["unknown_invoice", "other_provider", "already_paid", "closed", "expired",
                    "wrong_currency", "wrong_amount"] | None = Field(
        description="why not, when not")


# Telegram Stars' currency: an invoice in it shows its amount as whole `amount_stars`.
STARS_ASSET = "XTR"


def _fields(model: type[BaseModel], obj: object, skip: frozenset[str] = frozenset({"payments"})
            ) -> dict:
    return {name: getattr(obj, name) for name in model.model_fields if name not in skip}


def invoice_view(invoice: object, payments: list, *, admin: bool = False) -> dict:
    """The invoice (with its payments) as the JSON the API answers and idempotency stores."""
    model, payment_model = (AdminInvoiceOut, AdminPaymentOut) if admin else (InvoiceOut, PaymentOut)
    data = _fields(model, invoice, frozenset({"payments", "amount_stars"}))
    data["amount_stars"] = int(data["amount_asset"]) if data["asset"] == STARS_ASSET else None
    data["payments"] = [payment_model.model_validate(_fields(payment_model, p)) for p in payments]
    return model.model_validate(data).model_dump(mode="json")


def plan_view(plan: object, *, admin: bool = False) -> dict:
    model = AdminPlanOut if admin else PlanOut
    return model.model_validate(_fields(model, plan)).model_dump(mode="json")


def entry_view(entry: object) -> dict:
    return BalanceEntryOut.model_validate(_fields(BalanceEntryOut, entry)).model_dump(mode="json")


def promo_view(promo: object) -> dict:
    return AdminPromoCodeOut.model_validate(_fields(AdminPromoCodeOut, promo)).model_dump(
        mode="json")
