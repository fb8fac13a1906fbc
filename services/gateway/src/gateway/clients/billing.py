"""The billing service's client: plans, invoices, the sandbox chain, webhooks, admin billing."""

from __future__ import annotations

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
    PaymentOptions,
    PlanCreate,
    PlanDeleted,
    PlanList,
    PromoCodeCreate,
    PromoPreview,
    ReferralsOut,
    RefundBody,
    RenewalCoverOut,
    TopUpCreate,
    TransferBody,
    TransferOut,
)
from contracts.public.common import WebhookAck
from contracts.public.insight import BillingStatsOut
from gateway.clients.base import ANONYMOUS, Anonymous, Reply, ServiceClient, Who
from gateway.upstream import segment
from runtime.periods import Periods


class BillingClient(ServiceClient):
    async def plans(self, who: Who = ANONYMOUS) -> Reply[PlanList]:
        return await self.call(PlanList, "GET", "/internal/plans", who)

    async def payment_options(self, who: Who) -> Reply[PaymentOptions]:
        return await self.call(PaymentOptions, "GET", "/internal/payment-options", who)

    async def create_invoice(self, who: Who, body: InvoiceCreate,
                             idempotency_key: str | None) -> Reply[InvoiceEnvelope]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return await self.call(InvoiceEnvelope, "POST", "/internal/invoices", who,
                               json=body.model_dump(), headers=headers)

    async def trial(self, who: Who) -> Reply[InvoiceEnvelope]:
        return await self.call(InvoiceEnvelope, "POST", "/internal/trial", who)

    async def balance(self, who: Who, limit: int = 20,
                      cursor: str | None = None) -> Reply[BalanceOut]:
        return await self.call(BalanceOut, "GET", "/internal/balance", who,
                               params={"limit": limit, "cursor": cursor or None})

    async def referrals(self, who: Who) -> Reply[ReferralsOut]:
        return await self.call(ReferralsOut, "GET", "/internal/referrals", who)

    async def top_up(self, who: Who, body: TopUpCreate,
                     idempotency_key: str | None) -> Reply[InvoiceEnvelope]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return await self.call(InvoiceEnvelope, "POST", "/internal/balance/top-ups", who,
                               json=body.model_dump(), headers=headers)

    async def promo_preview(self, who: Who, code: str, plan_id: str) -> Reply[PromoPreview]:
        return await self.call(PromoPreview, "GET", f"/internal/promo-codes/{segment(code)}",
                               who, params={"plan_id": plan_id})

    async def renewal_cover(self, who: Who, plan_id: str) -> Reply[RenewalCoverOut]:
        return await self.call(RenewalCoverOut, "GET", "/internal/renewal-cover", who,
                               params={"plan_id": plan_id})

    async def invoices(self, who: Who, limit: int = 20,
                       cursor: str | None = None) -> Reply[InvoiceList]:
        return await self.call(InvoiceList, "GET", "/internal/invoices", who,
                               params={"limit": limit, "cursor": cursor or None})

    async def invoice(self, who: Who, invoice_id: str) -> Reply[InvoiceEnvelope]:
        path = f"/internal/invoices/{segment(invoice_id)}"
        return await self.call(InvoiceEnvelope, "GET", path, who)

    async def cancel_invoice(self, who: Who, invoice_id: str) -> Reply[InvoiceEnvelope]:
        path = f"/internal/invoices/{segment(invoice_id)}/cancel"
        return await self.call(InvoiceEnvelope, "POST", path, who)

    async def sandbox_transfer(self, who: Who, body: TransferBody) -> Reply[TransferOut]:
        return await self.call(TransferOut, "POST", "/internal/sandbox/transfers", who,
                               json=body.model_dump())

    async def sandbox_blocks(self, who: Who, body: BlocksBody) -> Reply[BlocksOut]:
        return await self.call(BlocksOut, "POST", "/internal/sandbox/blocks", who,
                               json=body.model_dump())

    async def webhook(self, provider: str, raw: bytes,
                      headers: dict[str, str]) -> Reply[WebhookAck]:
        """A provider's delivery, as the exact bytes and headers it came with."""
        path = f"/internal/webhooks/{segment(provider)}"
        return await self.call(WebhookAck, "POST", path, Anonymous(id=provider), content=raw,
                               headers=headers)

    # ---- admin ------------------------------------------------------------------------------
    async def admin_plans(self, who: Who) -> Reply[AdminPlanList]:
        return await self.call(AdminPlanList, "GET", "/internal/admin/plans", who)

    async def create_plan(self, who: Who, body: PlanCreate) -> Reply[AdminPlanEnvelope]:
        return await self.call(AdminPlanEnvelope, "POST", "/internal/admin/plans", who,
                               json=body.model_dump())

    async def update_plan(self, who: Who, plan_id: str,
                          changes: dict) -> Reply[AdminPlanEnvelope]:
        path = f"/internal/admin/plans/{segment(plan_id)}"
        return await self.call(AdminPlanEnvelope, "PATCH", path, who, json=changes)

    async def delete_plan(self, who: Who, plan_id: str) -> Reply[PlanDeleted]:
        path = f"/internal/admin/plans/{segment(plan_id)}"
        return await self.call(PlanDeleted, "DELETE", path, who)

    async def admin_invoices(self, who: Who, *, status: str | None = None,
                             user_id: str | None = None, limit: int = 20,
                             cursor: str | None = None) -> Reply[AdminInvoiceList]:
        return await self.call(AdminInvoiceList, "GET", "/internal/admin/invoices", who,
                               params={"status": status, "user_id": user_id, "limit": limit,
                                       "cursor": cursor or None})

    async def admin_invoice(self, who: Who, invoice_id: str) -> Reply[AdminInvoiceEnvelope]:
        path = f"/internal/admin/invoices/{segment(invoice_id)}"
        return await self.call(AdminInvoiceEnvelope, "GET", path, who)

    async def refund(self, who: Who, invoice_id: str,
                     body: RefundBody) -> Reply[AdminInvoiceEnvelope]:
        path = f"/internal/admin/invoices/{segment(invoice_id)}/refund"
        return await self.call(AdminInvoiceEnvelope, "POST", path, who, json=body.model_dump())

    async def admin_balance(self, who: Who, user_id: str, limit: int = 20,
                            cursor: str | None = None) -> Reply[BalanceOut]:
        path = f"/internal/admin/users/{segment(user_id)}/balance"
        return await self.call(BalanceOut, "GET", path, who,
                               params={"limit": limit, "cursor": cursor or None})

    async def adjust_balance(self, who: Who, user_id: str, body: AdjustmentBody,
                             idempotency_key: str | None) -> Reply[BalanceEntryEnvelope]:
        path = f"/internal/admin/users/{segment(user_id)}/balance/adjustments"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return await self.call(BalanceEntryEnvelope, "POST", path, who, json=body.model_dump(),
                               headers=headers)

    async def admin_promo_codes(self, who: Who) -> Reply[AdminPromoCodeList]:
        return await self.call(AdminPromoCodeList, "GET", "/internal/admin/promo-codes", who)

    async def create_promo_code(self, who: Who,
                                body: PromoCodeCreate) -> Reply[AdminPromoCodeEnvelope]:
        return await self.call(AdminPromoCodeEnvelope, "POST", "/internal/admin/promo-codes",
                               who, json=body.model_dump(mode="json"))

    async def update_promo_code(self, who: Who, code_id: str,
                                changes: dict) -> Reply[AdminPromoCodeEnvelope]:
        path = f"/internal/admin/promo-codes/{segment(code_id)}"
        return await self.call(AdminPromoCodeEnvelope, "PATCH", path, who, json=changes)

    async def stats(self, who: Who, periods: Periods) -> Reply[BillingStatsOut]:
        """Billing's KPI figures per period (docs/06-adr/0008)."""
        return await self.call(BillingStatsOut, "GET", "/internal/admin/stats", who,
                               params=periods.params())
