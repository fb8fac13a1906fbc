"""`/plans`, `/payment-options`, `/invoices/*`, `/balance/*`, `/referrals`, `/sandbox/*`,
`/payments/webhooks/*`, admin billing.

Thin: bodies are validated against the public schemas, then the billing client is called and its
answer handed on unchanged. The `Idempotency-Key` header goes through as sent (billing owns the
idempotency semantics, and its `Idempotent-Replayed` answer header comes back to the client).
Provider webhooks are forwarded as raw bytes with the provider's headers, so billing verifies the
signature on the exact body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from contracts.public.billing import (
    AdjustmentBody,
    AdminInvoiceEnvelope,
    AdminInvoiceList,
    AdminPlanEnvelope,
    AdminPlanList,
    AdminPromoCodeEnvelope,
    AdminPromoCodeList,
    BalanceEntryEnvelope,
    BalanceOut,
    BlocksBody,
    BlocksOut,
    InvoiceCreate,
    InvoiceEnvelope,
    InvoiceList,
    InvoiceStatus,
    PaymentOptions,
    PlanCreate,
    PlanDeleted,
    PlanList,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    PromoPreview,
    ReferralsOut,
    RefundBody,
    TopUpCreate,
    TransferBody,
    TransferOut,
)
from contracts.public.common import ErrorOut, WebhookAck
from gateway.api.deps import Actions, AdminCaller, Clients, CurrentCaller, Limits, PageLimit
from runtime.errors import ValidationFailed

router = APIRouter(tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin"])

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CursorQuery = Query(None, pattern=r"^[A-Za-z0-9_=-]{0,512}$")  # empty: the first page

ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
ADMIN_ERRORS = {**ERRORS, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}}
IDEMPOTENCY_HEADER = {"parameters": [{
    "name": "Idempotency-Key", "in": "header", "required": True,
    "description": "1 to 255 printable ASCII characters. The first request's status and body "
                   "are kept 24 h and replayed (with `Idempotent-Replayed: true`) for the same "
                   "key and body.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}]}
# What a provider's delivery may carry besides its body: passed to billing, which asks the
# provider's module whether the delivery is genuine. Everything else of the request stays here.
WEBHOOK_HEADERS_DROPPED = frozenset({"cookie", "authorization", "host", "content-length",
                                     "connection", "transfer-encoding", "x-forwarded-for",
                                     "x-real-ip", "x-request-id"})


@router.get("/plans", response_model=PlanList)
async def list_plans(clients: Clients):
    """Active plans; no sign-in needed."""
    return (await clients.billing.plans()).response()


@router.get("/payment-options", response_model=PaymentOptions, responses=ERRORS)
async def payment_options(clients: Clients, caller: CurrentCaller):
    return (await clients.billing.payment_options(caller)).response()


@router.post("/invoices", status_code=201, response_model=InvoiceEnvelope,
             openapi_extra=IDEMPOTENCY_HEADER,
             responses={**ERRORS, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def create_invoice(body: InvoiceCreate, request: Request, clients: Clients,
                         limits: Limits, caller: CurrentCaller):
    """`pay_with: "balance"` pays at once from the balance (201 PAID) or is 409
    `INSUFFICIENT_BALANCE`."""
    await limits.invoice(caller.id)
    key = idempotency_key(request)
    return (await clients.billing.create_invoice(caller, body, key)).response()


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, handed to billing (which owns the semantics)."""
    key = request.headers.get("Idempotency-Key")
    # HTTP header values are ASCII; anything else would arrive re-encoded (latin-1) upstream.
    # A missing, empty or over-long key stays billing's IDEMPOTENCY_KEY_REQUIRED.
    if key and len(key) <= 255 and not (key.isascii() and key.isprintable()):
        raise ValidationFailed(
            "Idempotency-Key must be printable ASCII (letters, digits, punctuation, "
            "spaces); use e.g. a UUID",
            {"header": "Idempotency-Key"})
    return key


@router.get("/promo-codes/{code}", response_model=PromoPreview, responses=ERRORS)
async def preview_promo_code(clients: Clients, caller: CurrentCaller,
                             code: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{3,32}$")],
                             plan_id: str = Query(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")):
    """What the code gives this plan for you: `valid`, or the `reason` it does not; unknown: 404."""
    return (await clients.billing.promo_preview(caller, code, plan_id)).response()


@router.get("/balance", response_model=BalanceOut, responses=ERRORS)
async def get_balance(clients: Clients, caller: CurrentCaller,
                      limit: int = PageLimit,
                      cursor: str | None = CursorQuery):
    """The balance and its ledger, newest first (`amount_usd` signed)."""
    return (await clients.billing.balance(caller, limit, cursor)).response()


@router.get("/referrals", response_model=ReferralsOut, responses=ERRORS)
async def get_referrals(clients: Clients, caller: CurrentCaller):
    """Your referral code and link (`APP_BASE_URL/r/<code>`), how many signed up with it, how
    many paid, and what you were rewarded (taken back when their invoice was refunded)."""
    return (await clients.billing.referrals(caller)).response()


@router.post("/balance/top-ups", status_code=201, response_model=InvoiceEnvelope,
             openapi_extra=IDEMPOTENCY_HEADER,
             responses={**ERRORS, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def create_top_up(body: TopUpCreate, request: Request, clients: Clients, limits: Limits,
                        caller: CurrentCaller):
    """An invoice of kind `TOP_UP`: paid like any invoice, its amount is credited once."""
    await limits.invoice(caller.id)
    key = idempotency_key(request)
    return (await clients.billing.top_up(caller, body, key)).response()


@router.get("/invoices", response_model=InvoiceList, responses=ERRORS)
async def list_invoices(clients: Clients, caller: CurrentCaller,
                        limit: int = PageLimit,
                        cursor: str | None = CursorQuery):
    return (await clients.billing.invoices(caller, limit, cursor)).response()


@router.get("/invoices/{invoice_id}", response_model=InvoiceEnvelope, responses=ERRORS)
async def get_invoice(invoice_id: Id, clients: Clients, caller: CurrentCaller):
    return (await clients.billing.invoice(caller, invoice_id)).response()


@router.post("/invoices/{invoice_id}/cancel", response_model=InvoiceEnvelope,
             responses={**ERRORS, 409: {"model": ErrorOut}})
async def cancel_invoice(invoice_id: Id, clients: Clients, caller: CurrentCaller):
    return (await clients.billing.cancel_invoice(caller, invoice_id)).response()


@router.post("/sandbox/transfers", status_code=201, response_model=TransferOut,
             responses=ERRORS)
async def sandbox_transfer(body: TransferBody, clients: Clients, caller: CurrentCaller):
    """A transfer on the simulated chain (only when PAYMENT_PROVIDER=sandbox; 404 otherwise)."""
    return (await clients.billing.sandbox_transfer(caller, body)).response()


@router.post("/sandbox/blocks", response_model=BlocksOut, responses=ERRORS)
async def sandbox_blocks(body: BlocksBody, clients: Clients, caller: CurrentCaller):
    """Mine blocks on the simulated chain (only when PAYMENT_PROVIDER=sandbox)."""
    return (await clients.billing.sandbox_blocks(caller, body)).response()


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
async def payment_webhook(request: Request, clients: Clients,
                          provider: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,32}$")]):
    """Provider webhooks: verified on the raw body by billing; bad signatures are 401."""
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in WEBHOOK_HEADERS_DROPPED}
    headers.setdefault("content-type", "application/json")
    return (await clients.billing.webhook(provider, await request.body(), headers)).response()


@admin.get("/plans", response_model=AdminPlanList, responses=ADMIN_ERRORS)
async def admin_list_plans(clients: Clients, caller: AdminCaller):
    return (await clients.billing.admin_plans(caller)).response()


@admin.post("/plans", status_code=201, response_model=AdminPlanEnvelope,
            responses=ADMIN_ERRORS)
async def admin_create_plan(body: PlanCreate, actions: Actions, caller: AdminCaller):
    return (await actions.create_plan(caller, body)).response()


@admin.patch("/plans/{plan_id}", response_model=AdminPlanEnvelope, responses=ADMIN_ERRORS)
async def admin_update_plan(plan_id: Id, body: PlanUpdate, actions: Actions,
                            caller: AdminCaller):
    return (await actions.update_plan(caller, plan_id, body)).response()


@admin.delete("/plans/{plan_id}", response_model=PlanDeleted, responses=ADMIN_ERRORS)
async def admin_delete_plan(plan_id: Id, actions: Actions, caller: AdminCaller):
    """Delete a plan; a plan used by any invoice is deactivated instead, never deleted."""
    return (await actions.delete_plan(caller, plan_id)).response()


@admin.get("/invoices", response_model=AdminInvoiceList, responses=ADMIN_ERRORS)
async def admin_list_invoices(clients: Clients, caller: AdminCaller,
                              status: InvoiceStatus | None = None,
                              user_id: str | None = Query(None,
                                                          pattern=r"^[A-Za-z0-9_-]{1,64}$"),
                              limit: int = PageLimit,
                              cursor: str | None = CursorQuery):
    return (await clients.billing.admin_invoices(caller, status=status, user_id=user_id,
                                                 limit=limit, cursor=cursor)).response()


@admin.get("/promo-codes", response_model=AdminPromoCodeList, responses=ADMIN_ERRORS)
async def admin_list_promo_codes(clients: Clients, caller: AdminCaller):
    """Every code with its uses reserved (open invoices) and counted (paid)."""
    return (await clients.billing.admin_promo_codes(caller)).response()


@admin.post("/promo-codes", status_code=201, response_model=AdminPromoCodeEnvelope,
            responses=ADMIN_ERRORS)
async def admin_create_promo_code(body: PromoCodeCreate, actions: Actions, caller: AdminCaller):
    return (await actions.create_promo_code(caller, body)).response()


@admin.patch("/promo-codes/{code_id}", response_model=AdminPromoCodeEnvelope,
             responses=ADMIN_ERRORS)
async def admin_update_promo_code(code_id: Id, body: PromoCodeUpdate, actions: Actions,
                                  caller: AdminCaller):
    """Deactivate (`is_active: false`), change `max_uses` or `ends_at`; never deleted."""
    return (await actions.update_promo_code(caller, code_id, body)).response()


@admin.get("/users/{user_id}/balance", response_model=BalanceOut, responses=ADMIN_ERRORS)
async def admin_get_balance(user_id: Id, clients: Clients, caller: AdminCaller,
                            limit: int = PageLimit,
                            cursor: str | None = CursorQuery):
    return (await clients.billing.admin_balance(caller, user_id, limit, cursor)).response()


@admin.post("/users/{user_id}/balance/adjustments", status_code=201,
            response_model=BalanceEntryEnvelope, openapi_extra=IDEMPOTENCY_HEADER,
            responses={**ADMIN_ERRORS, 200: {"model": BalanceEntryEnvelope,
                                             "description": "the same key again: the first "
                                                            "answer, replayed"}})
async def admin_adjust_balance(user_id: Id, body: AdjustmentBody, request: Request,
                               actions: Actions, caller: AdminCaller):
    """Add to (`"5.00"`) or take from (`"-2.50"`) a balance, never below zero; audited."""
    key = idempotency_key(request)
    return (await actions.adjust_balance(caller, user_id, body, key)).response()


@admin.post("/invoices/{invoice_id}/refund", response_model=AdminInvoiceEnvelope,
            responses=ADMIN_ERRORS)
async def admin_refund(invoice_id: Id, body: RefundBody, actions: Actions, caller: AdminCaller):
    """`PAID` → `REFUNDED`; emits billing.invoice.refunded.v1 (the provisioner takes time back)."""
    return (await actions.refund(caller, invoice_id, body)).response()
