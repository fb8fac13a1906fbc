"""Internal HTTP API of the billing service (called by the gateway with a signed identity)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from billing.exceptions import IdempotencyKeyRequired
from billing.providers.sandbox import SandboxProvider, sandbox_chain
from billing.repository import InvoiceRepository, PlanRepository
from billing.schemas import (
    CURSOR_PATTERN,
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
    PayableOut,
    PaymentOptions,
    PlanCreate,
    PlanDeleted,
    PlanList,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    PromoPreview,
    RefundBody,
    RenewalCoverOut,
    SandboxFaultBody,
    SandboxFaultOut,
    TopUpCreate,
    TransferBody,
    TransferOut,
    WebhookAck,
    entry_view,
    invoice_view,
    plan_view,
    promo_view,
)
from billing.service import (
    BillingService,
    IdempotentResult,
    ledger,
    new_id,
    plan_service,
    promos,
    referrals,
)
from billing.stats import StatsRepository
from contracts.public.billing import ReferralsOut
from contracts.public.insight import BillingStatsOut
from runtime.clock import now
from runtime.deps import Admin, Ident, Session
from runtime.errors import NotFound, ValidationFailed
from runtime.periods import PeriodQuery

router = APIRouter(prefix="/internal")
# Mounted only when PAYMENT_PROVIDER=sandbox, so these paths are 404 everywhere else.
sandbox_router = APIRouter(prefix="/internal/sandbox")


async def idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None or not key.strip() or len(key) > 255:
        raise IdempotencyKeyRequired()
    return key


def _idempotent_response(result: IdempotentResult) -> Response:
    """The stored answer of an idempotent request, marked `Idempotent-Replayed` on a replay."""
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(result.content, status_code=result.status, headers=headers,
                    media_type="application/json")


def option_label(billing: BillingService, provider: str, asset: str, network: str) -> str:
    """How the customer sees a payment option: the asset, its network, and the method."""
    title = getattr(billing.providers.get(provider), "title", provider)
    return f"{asset} · {network} · {title}"


async def billing_service(request: Request) -> BillingService:
    return request.app.state.billing


Billing = Annotated[BillingService, Depends(billing_service)]


async def sandbox_provider(billing: Billing) -> SandboxProvider:
    sandbox = billing.providers.get(SandboxProvider.name)
    if not isinstance(sandbox, SandboxProvider):  # the router is mounted only for it
        raise NotFound("The sandbox payment provider is not in use")
    return sandbox


Sandbox = Annotated[SandboxProvider, Depends(sandbox_provider)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN)]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


async def _views(s: AsyncSession, invoices: list, *, admin_view: bool = False) -> list[dict]:
    payments = await InvoiceRepository(s).payments_of([i.id for i in invoices])
    return [invoice_view(i, payments[i.id], admin=admin_view) for i in invoices]


@router.get("/plans", response_model=PlanList)
async def list_plans(s: Session, _: Ident):
    return {"plans": [plan_view(p) for p in await PlanRepository(s).list(active_only=True)]}


@router.get("/payment-options", response_model=PaymentOptions)
async def payment_options(billing: Billing, _: Ident):
    return {"options": [
        {"provider": p, "asset": a, "network": n, "label": option_label(billing, p, a, n)}
        for p, a, n in billing.options()]}


@router.post("/invoices", status_code=201, response_model=InvoiceEnvelope)
async def create_invoice(body: InvoiceCreate, request: Request, billing: Billing, ident: Ident,
                         key: Annotated[str, Depends(idempotency_key)]):
    result = await billing.create_invoice_idempotent(request.app.state.db, user_id=ident.user_id,
                                                     key=key, body=body)
    return _idempotent_response(result)


@router.get("/invoices", response_model=InvoiceList)
async def list_invoices(s: Session, ident: Ident, limit: Limit = 20, cursor: Cursor = None):
    rows, nxt = await InvoiceRepository(s).list(user_id=ident.user_id, status=None, limit=limit,
                                                cursor=cursor)
    return {"invoices": await _views(s, rows), "next_cursor": nxt}


@router.get("/invoices/{invoice_id}", response_model=InvoiceEnvelope)
async def get_invoice(invoice_id: str, s: Session, billing: Billing, ident: Ident):
    invoice = await billing.get_visible(s, ident.user_id, invoice_id)
    return {"invoice": (await _views(s, [invoice]))[0]}


@router.get("/invoices/{invoice_id}/payable", response_model=PayableOut)
async def invoice_payable(invoice_id: str, s: Session, _: Ident,
                          provider: Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
                          asset: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$")],
                          amount: Annotated[Decimal, Query(gt=0, le=Decimal("1e16"))]):
    """Whether the invoice takes this payment now: asked by the service that must answer a
    provider before the payment is taken (Telegram Stars' pre-checkout), not by customers."""
    invoice = await InvoiceRepository(s).get(invoice_id)
    reason = BillingService.payable_refusal(invoice, provider=provider, asset=asset,
                                            amount=amount, now=now())
    return {"payable": reason is None, "reason": reason}


@router.post("/invoices/{invoice_id}/cancel", response_model=InvoiceEnvelope)
async def cancel_invoice(invoice_id: str, s: Session, billing: Billing, ident: Ident):
    invoice = await billing.get_visible(s, ident.user_id, invoice_id, for_update=True)
    await billing.cancel(s, invoice)
    return {"invoice": (await _views(s, [invoice]))[0]}


async def _balance(s: AsyncSession, user_id: str, limit: int, cursor: str | None) -> dict:
    entries, nxt = await ledger.entries(s, user_id, limit=limit, cursor=cursor)
    return {"balance_usd": await ledger.balance(s, user_id),
            "entries": [entry_view(e) for e in entries], "next_cursor": nxt}


@router.post("/trial", status_code=201, response_model=InvoiceEnvelope)
async def grant_trial(request: Request, billing: Billing, ident: Ident):
    """The free trial's invoice, PAID at zero (409 TRIAL_UNAVAILABLE after the first)."""
    return {"invoice": await billing.grant_trial(request.app.state.db, user_id=ident.user_id)}


@router.post("/balance/top-ups", status_code=201, response_model=InvoiceEnvelope)
async def create_top_up(body: TopUpCreate, request: Request, billing: Billing, ident: Ident,
                        key: Annotated[str, Depends(idempotency_key)]):
    result = await billing.create_top_up_idempotent(request.app.state.db, user_id=ident.user_id,
                                                    key=key, body=body)
    return _idempotent_response(result)


@router.get("/promo-codes/{code}", response_model=PromoPreview)
async def preview_promo_code(s: Session, ident: Ident,
                             code: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{3,32}$")],
                             plan_id: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")]):
    """What the code gives this plan for this customer, and if not, why (unknown: 404)."""
    plan = await PlanRepository(s).get(plan_id)
    if plan is None or not plan.is_active:
        raise ValidationFailed("Unknown or inactive plan", {"plan_id": plan_id})
    offer = await promos.offer(s, code, plan, ident.user_id, now())
    if offer.promo is None:
        raise NotFound("There is no such promo code")
    reason = "already_used" if offer.reason == "first_purchase" else offer.reason
    return {"code": offer.promo.code, "kind": offer.promo.kind, "value": offer.promo.value,
            "plan_ids": offer.promo.plan_ids, "valid": reason is None, "reason": reason,
            "price_usd": plan.price_usd - offer.discount_usd,
            "discount_usd": offer.discount_usd, "bonus_days": offer.bonus_days}


@router.get("/balance", response_model=BalanceOut)
async def get_balance(s: Session, ident: Ident, limit: Limit = 20, cursor: Cursor = None):
    return await _balance(s, ident.user_id, limit, cursor)


@router.get("/referrals", response_model=ReferralsOut)
async def get_referrals(request: Request, s: Session, ident: Ident):
    """The caller's referral code (made on first ask), link, counts and rewards."""
    return await referrals.summary(s, ident.user_id, now(),
                                   base_url=request.app.state.settings.app_base_url)


@router.get("/renewal-cover", response_model=RenewalCoverOut)
async def renewal_cover(request: Request, s: Session, ident: Ident,
                        plan_id: str = Query(..., min_length=1, max_length=64)):
    """Whether the caller's balance pays a renewal of `plan_id` (the web panel's banner)."""
    cover = await request.app.state.renewals.cover(s, ident.user_id, plan_id)
    return {"plan_id": cover.plan_id, "price_usd": cover.price_usd,
            "balance_usd": cover.balance_usd, "covered": cover.covered}


@router.post("/webhooks/{provider}", response_model=WebhookAck)
async def provider_webhook(provider: str, request: Request, _: Ident):
    """A provider's webhook as relayed by the gateway: the raw body and the delivery's headers,
    which the provider named in the path verifies."""
    await request.app.state.webhooks.receive(provider, await request.body(), request.headers)
    return {"ok": True}


@router.get("/admin/plans", response_model=AdminPlanList)
async def admin_list_plans(s: Session, _: Admin):
    return {"plans": [plan_view(p, admin=True)
                      for p in await PlanRepository(s).list(active_only=False)]}


@router.post("/admin/plans", status_code=201, response_model=AdminPlanEnvelope)
async def admin_create_plan(body: PlanCreate, s: Session, _: Admin):
    return {"plan": plan_view(await plan_service.create(s, body), admin=True)}


@router.patch("/admin/plans/{plan_id}", response_model=AdminPlanEnvelope)
async def admin_update_plan(plan_id: str, body: PlanUpdate, s: Session, _: Admin):
    return {"plan": plan_view(await plan_service.update(s, plan_id, body), admin=True)}


@router.delete("/admin/plans/{plan_id}", response_model=PlanDeleted)
async def admin_delete_plan(plan_id: str, s: Session, _: Admin):
    plan, deleted = await plan_service.delete(s, plan_id)
    return {"plan": plan_view(plan, admin=True), "deleted": deleted}


@router.get("/admin/invoices", response_model=AdminInvoiceList)
async def admin_list_invoices(s: Session, _: Admin, status: InvoiceStatus | None = None,
                              user_id: Annotated[str | None,
                                                 Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
                              limit: Limit = 20, cursor: Cursor = None):
    rows, nxt = await InvoiceRepository(s).list(user_id=user_id, status=status, limit=limit,
                                                cursor=cursor)
    return {"invoices": await _views(s, rows, admin_view=True), "next_cursor": nxt}


@router.get("/admin/invoices/{invoice_id}", response_model=AdminInvoiceEnvelope)
async def admin_get_invoice(invoice_id: str, s: Session, billing: Billing, _: Admin):
    invoice = await billing.get_visible(s, None, invoice_id)
    return {"invoice": (await _views(s, [invoice], admin_view=True))[0]}


@router.post("/admin/invoices/{invoice_id}/refund", response_model=AdminInvoiceEnvelope)
async def admin_refund(invoice_id: str, body: RefundBody, s: Session, billing: Billing,
                       ident: Admin):
    invoice = await billing.get_visible(s, None, invoice_id, for_update=True)
    await billing.refund(s, invoice, reason=body.reason, actor_id=ident.user_id, to=body.to)
    return {"invoice": (await _views(s, [invoice], admin_view=True))[0]}


@router.get("/admin/promo-codes", response_model=AdminPromoCodeList)
async def admin_list_promo_codes(s: Session, _: Admin):
    return {"promo_codes": [promo_view(p) for p in await promos.list(s)]}


@router.post("/admin/promo-codes", status_code=201, response_model=AdminPromoCodeEnvelope)
async def admin_create_promo_code(body: PromoCodeCreate, s: Session, _: Admin):
    return {"promo_code": promo_view(await promos.create(s, body, new_id(), now()))}


@router.patch("/admin/promo-codes/{code_id}", response_model=AdminPromoCodeEnvelope)
async def admin_update_promo_code(code_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
                                  body: PromoCodeUpdate, s: Session, _: Admin):
    return {"promo_code": promo_view(await promos.update(s, code_id, body, now()))}


@router.get("/admin/users/{user_id}/balance", response_model=BalanceOut)
async def admin_get_balance(user_id: UserId, s: Session, _: Admin, limit: Limit = 20,
                            cursor: Cursor = None):
    return await _balance(s, user_id, limit, cursor)


@router.post("/admin/users/{user_id}/balance/adjustments", status_code=201,
             response_model=BalanceEntryEnvelope)
async def admin_adjust_balance(user_id: UserId, body: AdjustmentBody, s: Session, ident: Admin,
                               key: Annotated[str, Depends(idempotency_key)]):
    """Add to or take from a balance (never below zero), once per Idempotency-Key."""
    moved = await ledger.move(s, user_id=user_id, amount=Decimal(body.amount_usd),
                              kind="ADJUSTMENT", key=f"adjustment:{user_id}:{key}",
                              note=body.note, actor_id=ident.user_id)
    answer = {"entry": entry_view(moved.entry),
              "balance_usd": format(moved.balance_usd, "f")}
    if moved.applied:
        return answer
    return Response(orjson.dumps(answer), status_code=200, media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})


@router.get("/admin/stats", response_model=BillingStatsOut)
async def admin_stats(s: Session, _: Admin, periods: PeriodQuery):
    """Billing's KPI figures per period (docs/06-adr/0008)."""
    return await StatsRepository(s).stats(periods)


@sandbox_router.post("/transfers", status_code=201, response_model=TransferOut)
async def sandbox_transfer(body: TransferBody, s: Session, sandbox: Sandbox, _: Ident):
    if (body.asset, body.network) not in sandbox.options():
        raise ValidationFailed("This asset/network is not on the sandbox chain",
                               {"asset": body.asset, "network": body.network})
    transfer = await sandbox_chain.transfer(s, address=body.address, asset=body.asset,
                                            network=body.network,
                                            amount_asset=Decimal(body.amount_asset))
    return {"txid": transfer.txid}


@sandbox_router.post("/blocks", response_model=BlocksOut)
async def sandbox_blocks(body: BlocksBody, s: Session, _: Ident):
    return {"height": await sandbox_chain.mine(s, body.count)}


@sandbox_router.post("/faults", status_code=201, response_model=SandboxFaultOut)
async def sandbox_add_fault(body: SandboxFaultBody, sandbox: Sandbox, _: Admin):
    return {"id": await sandbox.faults.add(body.operation, message=body.message,
                                           delay_ms=body.delay_ms, for_seconds=body.for_seconds)}


@sandbox_router.delete("/faults", status_code=204)
async def sandbox_clear_faults(sandbox: Sandbox, _: Admin):
    await sandbox.faults.clear()
    return Response(status_code=204)
