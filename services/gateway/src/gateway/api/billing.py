"""`/plans`, `/payment-options`, `/invoices/*`, `/sandbox/*`, `/payments/webhooks/*`, admin billing.

Everything is relayed to the billing service; bodies are validated here first, and the
`Idempotency-Key` header goes through unchanged (billing owns the idempotency semantics, and its
`Idempotent-Replayed` answer header comes back to the client). Provider webhooks are forwarded
as raw bytes with their signature header, so billing verifies the signature on the exact body.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from gateway.api.deps import AdminCaller, CurrentCaller
from gateway.audit import audited
from gateway.schemas import ErrorOut, WebhookAck
from runtime.errors import ValidationFailed

router = APIRouter(tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin"])

InvoiceStatus = Literal["CREATED", "PENDING", "PAID", "EXPIRED", "CANCELED", "REFUNDED"]
PaymentStatus = Literal["CREATED", "PENDING", "DETECTED", "CONFIRMED", "SETTLED", "FAILED",
                        "EXPIRED", "REFUNDED"]
Money = Annotated[str, Field(description="Decimal amount as a string", examples=["9.99"])]
# Prices are positive: billing refuses "0" and "0.00", so the pattern does too.
UsdIn = Annotated[str, StringConstraints(pattern=r"^(?!0+(\.0{1,2})?$)\d{1,10}(\.\d{1,2})?$"),
                  Field(examples=["9.99"])]
AssetAmountIn = Annotated[str,
                          StringConstraints(pattern=r"^(?!0+(\.0{1,8})?$)\d{1,16}(\.\d{1,8})?$"),
                          Field(examples=["9.99000000"])]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
IdText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CursorQuery = Query(None, pattern=r"^[A-Za-z0-9_=-]{0,512}$")  # empty: the first page


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


def _integral(value):
    """JSON Schema's `integer` includes 2.0: accept a float that is a whole number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field of a strict model that takes `2.0` too, as the document's `integer` promises.
Whole = Annotated[int, BeforeValidator(_integral)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def NotNull(**constraints):  # noqa: N802 - used like a type
    """A PATCH field that may be left out but not set to null (the document says so)."""
    return Field(None, json_schema_extra=_no_default, **constraints)

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
ADMIN_ERRORS = {**ERRORS, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}}
IDEMPOTENCY_HEADER = {"parameters": [{
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "1 to 255 printable ASCII characters. The first request's status and body "
                   "are kept 24 h and replayed (with `Idempotent-Replayed: true`) for the same "
                   "key and body.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}]}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class InvoiceCreate(Strict):
    plan_id: IdText
    asset: Code
    network: Code


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
    payments: list[PaymentOut]


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


def _billing(request: Request):
    return request.app.state.upstreams["billing"]


async def limit_invoice(request: Request, user_id: str) -> None:
    """429 `RATE_LIMITED` past INVOICES_PER_USER_PER_HOUR (the API and the web panel)."""
    await request.app.state.limiter.hit(
        "invoice-user", user_id, request.app.state.settings.invoices_per_user_per_hour, 3600)


def _created_id(resp, key: str) -> dict | None:
    try:
        return {f"{key}_id": json.loads(resp.body)[key]["id"]}
    except (ValueError, KeyError, TypeError):
        return None


@router.get("/plans", response_model=PlanList)
async def list_plans(request: Request):
    """Active plans; no sign-in needed."""
    return await _billing(request).relay("GET", "/internal/plans", user_id="anonymous",
                                         role="SERVICE")


@router.get("/payment-options", response_model=PaymentOptions, responses=ERRORS)
async def payment_options(request: Request, caller: CurrentCaller):
    return await _billing(request).relay("GET", "/internal/payment-options", user_id=caller.id,
                                         role=caller.role)


@router.post("/invoices", status_code=201, response_model=InvoiceEnvelope,
             openapi_extra=IDEMPOTENCY_HEADER,
             responses={**ERRORS, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def create_invoice(body: InvoiceCreate, request: Request, caller: CurrentCaller):
    await limit_invoice(request, caller.id)
    key = request.headers.get("Idempotency-Key")
    # HTTP header values are ASCII; anything else would arrive re-encoded (latin-1) upstream.
    # A missing, empty or over-long key stays billing's IDEMPOTENCY_KEY_REQUIRED.
    if key and len(key) <= 255 and not (key.isascii() and key.isprintable()):
        raise ValidationFailed(
            "Idempotency-Key must be printable ASCII (letters, digits, punctuation, "
            "spaces); use e.g. a UUID",
            {"header": "Idempotency-Key"})
    return await _billing(request).relay(
        "POST", "/internal/invoices", json=body.model_dump(),
        headers={"Idempotency-Key": key} if key is not None else None,
        user_id=caller.id, role=caller.role)


@router.get("/invoices", response_model=InvoiceList, responses=ERRORS)
async def list_invoices(request: Request, caller: CurrentCaller,
                        limit: int = Query(20, ge=1, le=100),
                        cursor: str | None = CursorQuery):
    return await _billing(request).relay("GET", "/internal/invoices",
                                         params={"limit": limit, "cursor": cursor or None},
                                         user_id=caller.id, role=caller.role)


@router.get("/invoices/{invoice_id}", response_model=InvoiceEnvelope, responses=ERRORS)
async def get_invoice(invoice_id: Id, request: Request, caller: CurrentCaller):
    return await _billing(request).relay("GET", f"/internal/invoices/{invoice_id}",
                                         user_id=caller.id, role=caller.role)


@router.post("/invoices/{invoice_id}/cancel", response_model=InvoiceEnvelope,
             responses={**ERRORS, 409: {"model": ErrorOut}})
async def cancel_invoice(invoice_id: Id, request: Request, caller: CurrentCaller):
    return await _billing(request).relay("POST", f"/internal/invoices/{invoice_id}/cancel",
                                         user_id=caller.id, role=caller.role)


@router.post("/sandbox/transfers", status_code=201, response_model=TransferOut,
             responses=ERRORS)
async def sandbox_transfer(body: TransferBody, request: Request, caller: CurrentCaller):
    """A transfer on the simulated chain (only when PAYMENT_PROVIDER=sandbox; 404 otherwise)."""
    return await _billing(request).relay("POST", "/internal/sandbox/transfers",
                                         json=body.model_dump(), user_id=caller.id,
                                         role=caller.role)


@router.post("/sandbox/blocks", response_model=BlocksOut, responses=ERRORS)
async def sandbox_blocks(body: BlocksBody, request: Request, caller: CurrentCaller):
    """Mine blocks on the simulated chain (only when PAYMENT_PROVIDER=sandbox)."""
    return await _billing(request).relay("POST", "/internal/sandbox/blocks",
                                         json=body.model_dump(), user_id=caller.id,
                                         role=caller.role)


WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["deliveryId", "type"],
            "properties": {"deliveryId": {"type": "string"}, "type": {"type": "string"},
                           "invoiceId": {"type": "string"}},
            # The provider's other fields; as everywhere, no NUL (the input guard's 400).
            "propertyNames": {"pattern": "^[^\\x00]*$"},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"],
                                     "pattern": "^[^\\x00]*$"},
        }}},
    },
    "parameters": [{"name": "BTCPay-Sig", "in": "header", "required": False,
                    "description": "sha256=<hex HMAC-SHA256(secret, raw body)> (btcpay)",
                    "schema": {"type": "string"}}],
}


@router.post("/payments/webhooks/{provider}", response_model=WebhookAck,
             openapi_extra=WEBHOOK_BODY, responses=ERRORS)
async def payment_webhook(request: Request,
                          provider: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,32}$")]):
    """Provider webhooks: verified on the raw body by billing; bad signatures are 401."""
    headers = {"Content-Type": request.headers.get("content-type", "application/json")}
    signature = request.headers.get("BTCPay-Sig")
    if signature is not None:
        headers["BTCPay-Sig"] = signature
    return await _billing(request).relay("POST", f"/internal/webhooks/{provider}",
                                         content=await request.body(), headers=headers,
                                         user_id=provider, role="SERVICE")


@admin.get("/plans", response_model=AdminPlanList, responses=ADMIN_ERRORS)
async def admin_list_plans(request: Request, caller: AdminCaller):
    return await _billing(request).relay("GET", "/internal/admin/plans", user_id=caller.id,
                                         role=caller.role)


@admin.post("/plans", status_code=201, response_model=AdminPlanEnvelope,
            responses=ADMIN_ERRORS)
async def admin_create_plan(body: PlanCreate, request: Request, caller: AdminCaller):
    async with audited(request, caller, "plan.create", "plan", "new",
                       {"name": body.name}) as audit:
        resp = await _billing(request).relay("POST", "/internal/admin/plans",
                                             json=body.model_dump(), user_id=caller.id,
                                             role=caller.role)
        audit.result(resp.status_code, _created_id(resp, "plan"))
    return resp


@admin.patch("/plans/{plan_id}", response_model=AdminPlanEnvelope, responses=ADMIN_ERRORS)
async def admin_update_plan(plan_id: Id, body: PlanUpdate, request: Request,
                            caller: AdminCaller):
    changes = body.model_dump(exclude_unset=True)
    async with audited(request, caller, "plan.update", "plan", plan_id, changes) as audit:
        resp = await _billing(request).relay("PATCH", f"/internal/admin/plans/{plan_id}",
                                             json=changes, user_id=caller.id, role=caller.role)
        audit.result(resp.status_code, changes)
    return resp


@admin.delete("/plans/{plan_id}", response_model=PlanDeleted, responses=ADMIN_ERRORS)
async def admin_delete_plan(plan_id: Id, request: Request, caller: AdminCaller):
    """Delete a plan; a plan used by any invoice is deactivated instead, never deleted."""
    async with audited(request, caller, "plan.delete", "plan", plan_id) as audit:
        resp = await _billing(request).relay("DELETE", f"/internal/admin/plans/{plan_id}",
                                             user_id=caller.id, role=caller.role)
        audit.result(resp.status_code)
    return resp


@admin.get("/invoices", response_model=AdminInvoiceList, responses=ADMIN_ERRORS)
async def admin_list_invoices(request: Request, caller: AdminCaller,
                              status: InvoiceStatus | None = None,
                              user_id: str | None = Query(None,
                                                          pattern=r"^[A-Za-z0-9_-]{1,64}$"),
                              limit: int = Query(20, ge=1, le=100),
                              cursor: str | None = CursorQuery):
    return await _billing(request).relay(
        "GET", "/internal/admin/invoices",
        params={"status": status, "user_id": user_id, "limit": limit, "cursor": cursor or None},
        user_id=caller.id, role=caller.role)


@admin.post("/invoices/{invoice_id}/refund", response_model=AdminInvoiceEnvelope,
            responses=ADMIN_ERRORS)
async def admin_refund(invoice_id: Id, body: RefundBody, request: Request, caller: AdminCaller):
    """`PAID` → `REFUNDED`; emits billing.invoice.refunded.v1 (the provisioner takes time back)."""
    async with audited(request, caller, "invoice.refund", "invoice", invoice_id,
                       {"reason": body.reason}) as audit:
        resp = await _billing(request).relay(
            "POST", f"/internal/admin/invoices/{invoice_id}/refund", json=body.model_dump(),
            user_id=caller.id, role=caller.role)
        audit.result(resp.status_code, {"reason": body.reason})
    return resp
