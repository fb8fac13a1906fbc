"""Billing logic: plans, the invoice and payment state machines, idempotent invoice creation,
the one settle step that webhooks and `payment_watch` share, refunds, and the events they emit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.config import Settings
from billing.exceptions import IdempotencyInProgress, IdempotencyKeyReused, TrialUnavailable
from billing.ledger import Ledger
from billing.metrics import (
    INVOICE_TRANSITIONS,
    PAYMENT_SETTLE_SECONDS,
    PROVIDER_ERRORS,
    REVENUE_USD,
)
from billing.models import Invoice, Payment, Plan, TelegramLink, Trial, outbox
from billing.promo import Offer, PromoService
from billing.providers.base import (
    Checkout,
    CheckoutRequest,
    ObservedPayment,
    PaymentProvider,
    ProviderError,
    Providers,
)
from billing.rates import RateSource, asset_amount
from billing.referrals import ReferralService
from billing.repository import IdempotencyRepository, InvoiceRepository, PlanRepository
from billing.schemas import (
    InvoiceCreate,
    InvoiceStatus,
    PlanCreate,
    PlanUpdate,
    TopUpCreate,
    invoice_view,
)
from contracts import events_of
from contracts.billing import (
    InvoiceCreatedV1,
    InvoiceExpiredV1,
    InvoicePaidV1,
    InvoiceRefundedV1,
    PaymentDetectedV1,
    PlanSnapshot,
)
from runtime.clock import now as utcnow  # billing names a moment `now`
from runtime.db import Database
from runtime.errors import (
    AppError,
    Conflict,
    IllegalTransition,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from runtime.logging import get_logger
from runtime.outbox import Outbox

log = get_logger(__name__)

events = Outbox(outbox, producer="billing", publishes=events_of("billing"))
ledger = Ledger(events)
promos = PromoService(events)
referrals = ReferralService(events, ledger)

PLAN_KIND, TOP_UP_KIND, TRIAL_KIND, RENEWAL_KIND = "PLAN", "TOP_UP", "TRIAL", "RENEWAL"
ZERO_USD = Decimal("0.00")
TRIAL_PROVIDER, TRIAL_PLAN_ID = "trial", "trial"
# An invoice paid from the customer's balance: in USD, settled in its creating transaction.
BALANCE_PROVIDER, BALANCE_ASSET, BALANCE_NETWORK = "balance", "USD", "BALANCE"
# An invoice a promo code makes free: PAID in its creating transaction, nothing to pay.
PROMO_PROVIDER, PROMO_NETWORK = "promo", "PROMO"

# The invoice statuses, by name, in the order the public schema lists them.
CREATED, PENDING, PAID, EXPIRED, CANCELED, REFUNDED = get_args(InvoiceStatus)
DETECTED, CONFIRMED, SETTLED, FAILED = "DETECTED", "CONFIRMED", "SETTLED", "FAILED"

INVOICE_TRANSITIONS_ALLOWED: dict[str, frozenset[str]] = {
    CREATED: frozenset({PENDING, PAID, EXPIRED, CANCELED}),  # PAID: from the balance
    PENDING: frozenset({PAID, EXPIRED}),
    PAID: frozenset({REFUNDED}),
    EXPIRED: frozenset(),
    CANCELED: frozenset(),
    REFUNDED: frozenset(),
}
PAYMENT_TRANSITIONS_ALLOWED: dict[str, frozenset[str]] = {
    "CREATED": frozenset({"PENDING", DETECTED, FAILED, "EXPIRED"}),
    "PENDING": frozenset({DETECTED, FAILED, "EXPIRED"}),
    DETECTED: frozenset({CONFIRMED, FAILED}),
    CONFIRMED: frozenset({SETTLED, FAILED}),
    SETTLED: frozenset({REFUNDED}),
    FAILED: frozenset(),
    "EXPIRED": frozenset(),
    REFUNDED: frozenset(),
}
OPEN = frozenset({CREATED, PENDING})
# Payments to an invoice in these states are credited to it; otherwise they are late.
CREDITING = frozenset({CREATED, PENDING, PAID})
_PAYMENT_TIMESTAMP = {DETECTED: "detected_at", CONFIRMED: "confirmed_at", SETTLED: "settled_at"}


def new_id() -> str:
    return uuid.uuid4().hex


def transition_invoice(invoice: Invoice, to: str, now: datetime) -> None:
    """Move an invoice to `to`, or refuse with IllegalTransition (409) and change nothing."""
    if to not in INVOICE_TRANSITIONS_ALLOWED.get(invoice.status, frozenset()):
        raise IllegalTransition("invoice", invoice.status, to)
    invoice.status = to
    invoice.updated_at = now
    INVOICE_TRANSITIONS.labels(to).inc()


def transition_payment(payment: Payment, to: str, now: datetime) -> None:
    if to not in PAYMENT_TRANSITIONS_ALLOWED.get(payment.status, frozenset()):
        raise IllegalTransition("payment", payment.status, to)
    payment.status = to
    payment.updated_at = now
    if to in _PAYMENT_TIMESTAMP:
        setattr(payment, _PAYMENT_TIMESTAMP[to], now)


def _plan_fields(plan: Plan | None) -> dict:
    """The plan an invoice buys, as it is at creation (prices and plans change later)."""
    if plan is None:
        return {}
    return {"plan_id": plan.id, "plan_name": plan.name, "plan_duration_days": plan.duration_days,
            "plan_max_devices": plan.max_devices, "plan_price_usd": plan.price_usd,
            "plan_traffic_limit_gb": plan.traffic_limit_gb,
            "plan_traffic_reset": plan.traffic_reset}


def _promo_fields(offer: Offer | None) -> dict:
    if offer is None or offer.promo is None:
        return {}
    return {"promo_code": offer.promo.code, "discount_usd": offer.discount_usd,
            "bonus_days": offer.bonus_days}


def plan_snapshot(invoice: Invoice) -> PlanSnapshot:
    """The plan the invoice granted; a trial's is its terms, under the plan id `trial`."""
    return PlanSnapshot(plan_id=invoice.plan_id or TRIAL_PLAN_ID, name=invoice.plan_name,
                        duration_days=invoice.plan_duration_days,
                        max_devices=invoice.plan_max_devices, price_usd=invoice.plan_price_usd,
                        traffic_limit_gb=invoice.plan_traffic_limit_gb,
                        traffic_reset=invoice.plan_traffic_reset or "NONE")


def request_fingerprint(operation: str, body: dict) -> str:
    return hashlib.sha256(orjson.dumps({"op": operation, "body": body},
                                       option=orjson.OPT_SORT_KEYS)).hexdigest()


def invoice_fingerprint(body: InvoiceCreate) -> str:
    """What an Idempotency-Key of `POST /invoices` is bound to. Fields left at their defaults
    are left out, so a request fingerprints as it did before those fields existed."""
    return request_fingerprint("POST /invoices", body.model_dump(exclude_defaults=True))


@dataclass(frozen=True)
class IdempotentResult:
    status: int
    content: str  # the JSON text of the answer, identical for the first answer and replays
    replayed: bool

    def json(self) -> dict:
        return orjson.loads(self.content)


def _json_text(body: dict) -> str:
    return orjson.dumps(body).decode()


class PlanService:
    async def create(self, session: AsyncSession, body: PlanCreate) -> Plan:
        repo = PlanRepository(session)
        if await repo.by_name(body.name):
            raise Conflict("A plan with this name exists", {"name": body.name})
        now = utcnow()
        plan = Plan(id=new_id(), name=body.name, description=body.description,
                    price_usd=Decimal(body.price_usd), duration_days=body.duration_days,
                    max_devices=body.max_devices, is_active=body.is_active, created_at=now,
                    updated_at=now, price_stars=body.price_stars,
                    traffic_limit_gb=body.traffic_limit_gb, traffic_reset=body.traffic_reset)
        session.add(plan)
        await self._flush_unique_name(session, body.name)
        return plan

    async def update(self, session: AsyncSession, plan_id: str, body: PlanUpdate) -> Plan:
        repo = PlanRepository(session)
        plan = await repo.get(plan_id, for_update=True)
        if plan is None:
            raise NotFound("Plan not found")
        changes = body.model_dump(exclude_unset=True)
        if "name" in changes and changes["name"] != plan.name and await repo.by_name(body.name):
            raise Conflict("A plan with this name exists", {"name": body.name})
        if "price_usd" in changes:
            changes["price_usd"] = Decimal(changes["price_usd"])
        for name, value in changes.items():
            setattr(plan, name, value)
        plan.updated_at = utcnow()
        await self._flush_unique_name(session, plan.name)
        return plan

    async def delete(self, session: AsyncSession, plan_id: str) -> tuple[Plan, bool]:
        """Delete an unused plan; a plan any invoice refers to is only deactivated."""
        repo = PlanRepository(session)
        plan = await repo.get(plan_id, for_update=True)
        if plan is None:
            raise NotFound("Plan not found")
        if await repo.in_use(plan_id):
            plan.is_active = False
            plan.updated_at = utcnow()
            await session.flush()
            return plan, False
        await repo.delete(plan)
        return plan, True

    async def seed(self, session: AsyncSession, plans: list[dict]) -> int:
        now = utcnow()
        repo = PlanRepository(session)
        created = 0
        for p in plans:
            created += await repo.insert_if_absent({**p, "id": new_id(), "is_active": True,
                                                    "created_at": now, "updated_at": now})
        return created

    @staticmethod
    async def _flush_unique_name(session: AsyncSession, name: str) -> None:
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict("A plan with this name exists", {"name": name}) from exc


class BillingService:
    """Invoices and payments; the enabled providers and the rate source are the configured
    adapters. No provider is named here: an invoice's `provider` picks its adapter."""

    def __init__(self, settings: Settings, providers: Providers, rates: RateSource):
        self.settings = settings
        self.providers = providers
        self.rates = rates

    def options(self) -> list[tuple[str, str, str]]:
        """(provider, asset, network) of every enabled provider."""
        return self.providers.options()

    # ---------------------------------------------------------------- invoice creation

    def orderable_payment(self, asset: str, network: str,
                          provider: str | None = None) -> PaymentProvider:
        """The provider that takes this payment (400 when none does)."""
        return self.providers.choose(asset, network, provider)

    async def orderable_plan(self, session: AsyncSession, body: InvoiceCreate) -> Plan:
        """Checks that make a request invalid (400, nothing stored under the idempotency key)."""
        self.orderable_payment(body.asset, body.network, body.provider)
        plan = await PlanRepository(session).get(body.plan_id)
        if plan is None or not plan.is_active:
            raise ValidationFailed("Unknown or inactive plan", {"plan_id": body.plan_id})
        return plan

    async def create_invoice_idempotent(self, db: Database, *, user_id: str, key: str,
                                        body: InvoiceCreate) -> IdempotentResult:
        """POST /invoices under Stripe/IETF Idempotency-Key semantics (`_idempotent`)."""

        async def validate(s: AsyncSession) -> Plan:
            plan = await self.orderable_plan(s, body)
            if body.promo_code:  # refused: 422 and nothing kept under the key
                (await promos.offer(s, body.promo_code, plan, user_id, utcnow())).refuse()
            return plan

        async def create(token: str, plan: Plan) -> str:
            return await self._create_invoice(db, user_id=user_id, key=key, token=token,
                                              body=body, plan=plan)

        return await self._idempotent(db, user_id=user_id, key=key,
                                      fingerprint=invoice_fingerprint(body), validate=validate,
                                      create=create)

    async def create_top_up_idempotent(self, db: Database, *, user_id: str, key: str,
                                       body: TopUpCreate) -> IdempotentResult:
        """POST /balance/top-ups: an invoice of kind TOP_UP whose payment adds to the balance."""
        amount = Decimal(body.amount_usd)

        async def validate(s: AsyncSession) -> None:
            self.orderable_payment(body.asset, body.network, body.provider)
            low, high = self.settings.top_up_min_usd, self.settings.top_up_max_usd
            if not low <= amount <= high:
                raise ValidationFailed("A top-up is between the minimum and the maximum", {
                    "amount_usd": body.amount_usd, "min_usd": format(low, "f"),
                    "max_usd": format(high, "f")})

        async def create(token: str, _: None) -> str:
            return await self._open_invoice(db, user_id=user_id, key=key, token=token,
                                            asset=body.asset, network=body.network,
                                            provider=body.provider, amount_usd=amount,
                                            plan=None)

        return await self._idempotent(
            db, user_id=user_id, key=key, validate=validate, create=create,
            fingerprint=request_fingerprint("POST /balance/top-ups",
                                            body.model_dump(exclude_none=True)))

    async def _idempotent(self, db: Database, *, user_id: str, key: str, fingerprint: str,
                          validate: Callable[[AsyncSession], Awaitable[Any]],
                          create: Callable[[str, Any], Awaitable[str]]) -> IdempotentResult:
        """Run `create` once per (user, key) under Stripe/IETF Idempotency-Key semantics.

        The key row is inserted (ON CONFLICT) and committed before any work, so of concurrent
        identical requests exactly one does the work; the others replay its stored answer or
        get 409 while it runs. `create` commits its rows and the stored answer in one
        transaction.
        """
        token = new_id()
        now = utcnow()
        async with db.transaction() as s:
            repo = IdempotencyRepository(s)
            claimed = await repo.claim(
                user_id=user_id, key=key, request_hash=fingerprint, token=token, now=now,
                expired_before=now - timedelta(hours=self.settings.idempotency_ttl_hours),
                stale_before=now - timedelta(seconds=self.settings.idempotency_stale_seconds))
            # A request that is invalid raises here, which rolls the claim back: nothing is
            # stored under its key. A replay is answered without validating again.
            checked = await validate(s) if claimed else None
            existing = None if claimed else await repo.get(user_id, key)
        if not claimed:
            if existing is not None and existing.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            if existing is None or existing.status != "done":
                raise IdempotencyInProgress()
            return IdempotentResult(existing.response_status or 200,
                                    existing.response_body or "{}", replayed=True)
        try:
            answer = await create(token, checked)
        except AppError as exc:
            if exc.status >= 500 or isinstance(exc, ValidationFailed):
                await self._release(db, user_id, key, token)
                raise
            async with db.transaction() as s:
                stored = await IdempotencyRepository(s).complete(
                    user_id=user_id, key=key, token=token, status=exc.status,
                    body=_json_text(exc.body()), now=utcnow())
            if not stored:
                raise IdempotencyInProgress() from exc
            raise
        except BaseException:
            await self._release(db, user_id, key, token)
            raise
        return IdempotentResult(201, answer, replayed=False)

    async def _release(self, db: Database, user_id: str, key: str, token: str) -> None:
        try:
            async with db.transaction() as s:
                await IdempotencyRepository(s).release(user_id=user_id, key=key, token=token)
        except Exception as exc:  # the key then becomes reclaimable once stale
            log.warning("idempotency_release_failed", error=str(exc)[:200])

    async def _create_invoice(self, db: Database, *, user_id: str, key: str, token: str,
                              body: InvoiceCreate, plan: Plan) -> str:
        amount = plan.price_usd
        if body.promo_code:  # an estimate for the checkout; checked again under the code's lock
            async with db.transaction() as s:
                offer = await promos.offer(s, body.promo_code, plan, user_id, utcnow())
            offer.refuse()
            amount = plan.price_usd - offer.discount_usd
        if body.pay_with == "balance" or amount == 0:
            return await self._paid_at_once(db, user_id=user_id, key=key, token=token,
                                            body=body, amount=amount)
        return await self._open_invoice(db, user_id=user_id, key=key, token=token,
                                        asset=body.asset, network=body.network,
                                        provider=body.provider, amount_usd=amount, plan=plan,
                                        promo_code=body.promo_code)

    async def checkout(self, provider: PaymentProvider, *, invoice_id: str, amount_usd: Decimal,
                       asset: str, network: str, expires_at: datetime, plan: Plan | None = None
                       ) -> tuple[Checkout, Decimal, Decimal]:
        """Open the provider's checkout for a new invoice: (checkout, USD per unit, amount of
        the asset). The amount is ours at the rate source's rate unless the provider prices
        the invoice itself. A provider that fails is 503 and nothing is stored."""
        # A provider that always prices the invoice itself (`prices_invoices`) is asked in USD
        # only: its assets need no rate of ours.
        own_price = getattr(provider, "prices_invoices", False)
        rate = Decimal(0) if own_price else await self.rates.usd_per_unit(asset)
        amount = Decimal(0) if own_price else asset_amount(amount_usd, rate)
        try:
            checkout = await provider.create_checkout(CheckoutRequest(
                invoice_id=invoice_id, amount_usd=amount_usd, asset=asset, network=network,
                amount_asset=amount, expires_at=expires_at, plan=plan))
        except ProviderError as exc:
            PROVIDER_ERRORS.labels(exc.provider, exc.operation).inc()
            log.warning("provider_create_failed", provider=exc.provider, error=str(exc)[:300])
            raise ServiceUnavailable("The payment provider is unavailable") from exc
        if checkout.amount_asset is not None and checkout.amount_asset > 0:
            amount = checkout.amount_asset
            rate = (amount_usd / amount).quantize(Decimal("0.00000001"))
        elif own_price:
            log.warning("provider_create_unpriced", provider=provider.name)
            raise ServiceUnavailable("The payment provider is unavailable")
        return checkout, rate, amount

    async def _open_invoice(self, db: Database, *, user_id: str, key: str, token: str,
                            asset: str, network: str, provider: str | None,
                            amount_usd: Decimal, plan: Plan | None,
                            promo_code: str | None = None) -> str:
        """An invoice paid through a provider: of the plan, or (no plan) a TOP_UP."""
        adapter = self.providers.choose(asset, network, provider)
        invoice_id = new_id()
        now = utcnow()
        locked_until = now + timedelta(minutes=self.settings.rate_lock_minutes)
        checkout, rate, amount = await self.checkout(
            adapter, invoice_id=invoice_id, amount_usd=amount_usd, asset=asset,
            network=network, expires_at=locked_until, plan=plan)
        async with db.transaction() as s:
            if plan is not None:
                plan_id = plan.id
                plan = await PlanRepository(s).get(plan_id)
                if plan is None or not plan.is_active:
                    raise Conflict("The plan is no longer available", {"plan_id": plan_id})
            offer = await self._locked_offer(s, promo_code, plan, user_id, now)
            invoice = Invoice(
                id=invoice_id, user_id=user_id, kind=PLAN_KIND if plan else TOP_UP_KIND,
                **_promo_fields(offer),
                status=CREATED, amount_usd=amount_usd, asset=asset, network=network,
                rate_usd=rate, amount_asset=amount, address=checkout.address,
                payment_url=checkout.payment_url, provider=adapter.name,
                provider_ref=checkout.provider_ref, rate_locked_until=locked_until,
                created_at=now, updated_at=now, amount_received_asset=Decimal(0),
                overpaid_asset=Decimal(0), underpaid_asset=Decimal(0),
                late_amount_asset=Decimal(0), needs_review=False, **_plan_fields(plan))
            s.add(invoice)
            await s.flush()
            if offer is not None:
                await promos.reserve(s, offer, invoice, now)
            INVOICE_TRANSITIONS.labels(CREATED).inc()
            if plan is not None:  # the contract names a plan; a top-up's money is its credit
                await events.add(s, InvoiceCreatedV1(
                    invoice_id=invoice.id, user_id=user_id, plan_id=plan.id,
                    amount_usd=invoice.amount_usd, asset=invoice.asset,
                    network=invoice.network, amount_asset=invoice.amount_asset,
                    rate_locked_until=locked_until, provider=invoice.provider))
            answer = _json_text({"invoice": invoice_view(invoice, [])})
            if not await IdempotencyRepository(s).complete(user_id=user_id, key=key, token=token,
                                                           status=201, body=answer, now=now):
                raise IdempotencyInProgress()  # another request took the key over: roll back
        return answer

    async def _paid_at_once(self, db: Database, *, user_id: str, key: str, token: str,
                            body: InvoiceCreate, amount: Decimal) -> str:
        """An invoice PAID in the transaction that creates it, through the same paid path
        (`billing.invoice.paid.v1`): paid from the balance (a PURCHASE entry, or 409
        `INSUFFICIENT_BALANCE` and no invoice), or made free by a promo code."""
        invoice_id = new_id()
        now = utcnow()
        from_balance = body.pay_with == "balance" and amount > 0
        async with db.transaction() as s:
            plan = await PlanRepository(s).get(body.plan_id)
            if plan is None or not plan.is_active:
                raise Conflict("The plan is no longer available", {"plan_id": body.plan_id})
            offer = await self._locked_offer(s, body.promo_code, plan, user_id, now)
            invoice = Invoice(
                id=invoice_id, user_id=user_id, kind=PLAN_KIND, **_plan_fields(plan),
                **_promo_fields(offer), status=CREATED, amount_usd=amount,
                asset=BALANCE_ASSET, network=BALANCE_NETWORK if from_balance else PROMO_NETWORK,
                rate_usd=Decimal(1), amount_asset=amount, address=None, payment_url=None,
                provider=BALANCE_PROVIDER if from_balance else PROMO_PROVIDER,
                provider_ref=None, rate_locked_until=now, created_at=now, updated_at=now,
                amount_received_asset=amount, overpaid_asset=Decimal(0),
                underpaid_asset=Decimal(0), late_amount_asset=Decimal(0), needs_review=False)
            s.add(invoice)
            await s.flush()
            if offer is not None:
                await promos.reserve(s, offer, invoice, now)
            INVOICE_TRANSITIONS.labels(CREATED).inc()
            await events.add(s, InvoiceCreatedV1(
                invoice_id=invoice.id, user_id=user_id, plan_id=plan.id,
                amount_usd=invoice.amount_usd, asset=invoice.asset, network=invoice.network,
                amount_asset=invoice.amount_asset, rate_locked_until=now,
                provider=invoice.provider))
            if from_balance:
                await self.pay_from_balance(s, invoice, now)
            else:
                await self._mark_paid(s, invoice, now)
            await s.flush()
            answer = _json_text({"invoice": invoice_view(invoice, [])})
            if not await IdempotencyRepository(s).complete(user_id=user_id, key=key, token=token,
                                                           status=201, body=answer, now=now):
                raise IdempotencyInProgress()
        return answer

    async def pay_from_balance(self, s: AsyncSession, invoice: Invoice, now: datetime) -> None:
        """Pay a new invoice from its owner's balance (a PURCHASE entry, once per invoice) and
        mark it PAID; a balance that is short is `InsufficientBalance` and changes nothing."""
        await ledger.move(s, user_id=invoice.user_id, amount=-invoice.amount_usd,
                          kind="PURCHASE", key=f"invoice:{invoice.id}:purchase",
                          invoice_id=invoice.id)
        await self._mark_paid(s, invoice, now)

    @staticmethod
    async def _locked_offer(s: AsyncSession, code: str | None, plan: Plan | None,
                            user_id: str, now: datetime) -> Offer | None:
        """The promo code's offer under its row lock, or PROMO_CODE_INVALID (nothing kept)."""
        if not code or plan is None:
            return None
        offer = await promos.offer(s, code, plan, user_id, now, lock=True)
        offer.refuse()
        return offer

    async def grant_trial(self, db: Database, *, user_id: str) -> dict:
        """The free trial: an invoice of kind TRIAL, PAID at zero in the transaction that
        creates it, so it is granted through the same exactly-once path as a paid one. Once
        per person: not for an account, or a Telegram account linked to it, that ever had a
        trial or a paid plan (409 `TRIAL_UNAVAILABLE`)."""
        st = self.settings
        if not st.trial_enabled:
            raise TrialUnavailable("There is no free trial on offer")
        now = utcnow()
        try:
            async with db.transaction() as s:
                telegram_id = await s.scalar(sa.select(TelegramLink.telegram_user_id)
                                             .where(TelegramLink.user_id == user_id))
                people = [user_id]
                if telegram_id is not None:
                    people += list((await s.scalars(sa.select(TelegramLink.user_id).where(
                        TelegramLink.telegram_user_id == telegram_id))).all())
                had_trial = sa.exists().where(sa.or_(
                    Trial.user_id.in_(people),
                    Trial.telegram_user_id == telegram_id if telegram_id is not None
                    else sa.false()))
                had_plan = sa.exists().where(Invoice.user_id.in_(people),
                                             Invoice.kind == PLAN_KIND,
                                             Invoice.status.in_((PAID, REFUNDED)))
                if await s.scalar(sa.select(sa.or_(had_trial, had_plan))):
                    raise TrialUnavailable()
                invoice = Invoice(
                    id=new_id(), user_id=user_id, kind=TRIAL_KIND, plan_id=None,
                    plan_name="Trial", plan_duration_days=st.trial_days,
                    plan_max_devices=st.trial_max_devices, plan_price_usd=ZERO_USD,
                    plan_traffic_limit_gb=st.trial_traffic_gb or None,
                    plan_traffic_reset="NONE",
                    status=CREATED, amount_usd=ZERO_USD, asset=BALANCE_ASSET,
                    network="TRIAL", rate_usd=Decimal(1), amount_asset=ZERO_USD,
                    address=None, payment_url=None, provider=TRIAL_PROVIDER, provider_ref=None,
                    rate_locked_until=now, created_at=now, updated_at=now,
                    amount_received_asset=ZERO_USD, overpaid_asset=ZERO_USD,
                    underpaid_asset=ZERO_USD, late_amount_asset=ZERO_USD,
                    needs_review=False)
                s.add(invoice)
                await s.flush()
                # The keys of `trials` settle a race: a second trial of the same person fails
                # here and rolls back with its invoice.
                s.add(Trial(user_id=user_id, invoice_id=invoice.id,
                            telegram_user_id=telegram_id, created_at=now))
                await s.flush()
                INVOICE_TRANSITIONS.labels(CREATED).inc()
                await self._mark_paid(s, invoice, now)
                await s.flush()
                return invoice_view(invoice, [])
        except IntegrityError as exc:
            raise TrialUnavailable() from exc

    # ---------------------------------------------------------------- customer and admin actions

    async def get_visible(self, session: AsyncSession, user_id: str | None, invoice_id: str, *,
                          for_update: bool = False) -> Invoice:
        """The invoice if `user_id` owns it (None = staff view); another user's is not found."""
        invoice = await InvoiceRepository(session).get(invoice_id, for_update=for_update)
        if invoice is None or (user_id is not None and invoice.user_id != user_id):
            raise NotFound("Invoice not found")
        return invoice

    async def cancel(self, session: AsyncSession, invoice: Invoice) -> Invoice:
        now = utcnow()
        transition_invoice(invoice, CANCELED, now)
        invoice.canceled_at = now
        if invoice.promo_code:
            await promos.release(session, invoice, now)
        await session.flush()
        return invoice

    async def refund(self, session: AsyncSession, invoice: Invoice, *, reason: str,
                     actor_id: str, to: str = "original") -> Invoice:
        """PAID → REFUNDED. What was paid from the balance goes back to it; with
        `to="balance"` what was paid on chain is credited to the balance instead of being sent
        back (a top-up cannot be refunded that way: its money is the balance). A provider that
        sends refunds back itself (`refund`) is asked last, once everything else is done: if it
        cannot, the refund is refused (503) and the caller's transaction changes nothing."""
        if to == "balance" and invoice.kind == TOP_UP_KIND:
            raise Conflict("A top-up is refunded to where it came from, not to the balance")
        now = utcnow()
        transition_invoice(invoice, REFUNDED, now)
        invoice.refunded_at = now
        invoice.refund_reason = reason
        await referrals.on_refunded(session, invoice, now)
        sent_back: list[Payment] = []
        for p in await InvoiceRepository(session).payments(invoice.id):
            if p.status == SETTLED and not p.late:
                transition_payment(p, REFUNDED, now)
                sent_back.append(p)
        to_balance = invoice.provider == BALANCE_PROVIDER or to == "balance"
        if to_balance and invoice.amount_usd > 0:  # paid from the balance, or refunded to it
            await ledger.move(session, user_id=invoice.user_id, amount=invoice.amount_usd,
                              kind="REFUND", key=f"invoice:{invoice.id}:refund",
                              invoice_id=invoice.id, actor_id=actor_id, note=reason)
        if invoice.kind == TOP_UP_KIND:  # what it added goes, if it has not been spent
            await ledger.move(session, user_id=invoice.user_id, amount=-invoice.amount_usd,
                              kind="ADJUSTMENT", key=f"invoice:{invoice.id}:refund",
                              invoice_id=invoice.id, actor_id=actor_id, note=reason)
            await session.flush()
            await self._send_back(invoice, sent_back, to)
            return invoice
        await session.flush()
        await events.add(session, InvoiceRefundedV1(
            invoice_id=invoice.id, user_id=invoice.user_id, plan=plan_snapshot(invoice),
            reason=reason, refunded_at=now, actor_id=actor_id))
        await self._send_back(invoice, sent_back, to)
        return invoice

    async def _send_back(self, invoice: Invoice, payments: list[Payment], to: str) -> None:
        """The provider's own refund of `payments` (when it has one and they go back to where
        they came from); a failure is 503 and the refund is not made."""
        hook = getattr(self.providers.get(invoice.provider), "refund", None)
        if to != "original" or not payments or hook is None:
            return
        try:
            await hook(invoice, payments)
        except ProviderError as exc:
            PROVIDER_ERRORS.labels(exc.provider, exc.operation).inc()
            log.warning("provider_refund_failed", invoice_id=invoice.id, error=str(exc)[:300])
            raise ServiceUnavailable("The payment provider could not refund this payment; "
                                     "nothing was changed") from exc

    @staticmethod
    def payable_refusal(invoice: Invoice | None, *, provider: str, asset: str,
                        amount: Decimal, now: datetime) -> str | None:
        """Why `invoice` cannot take a payment of `amount` `asset` through `provider` now
        (None: it can). A provider that asks before taking a payment (Telegram's pre-checkout)
        gets this answer."""
        if invoice is None:
            return "unknown_invoice"
        if invoice.provider != provider:
            return "other_provider"
        if invoice.status == PAID:
            return "already_paid"
        if invoice.status not in OPEN:
            return "closed"
        if now >= invoice.rate_locked_until:
            return "expired"
        if asset != invoice.asset:
            return "wrong_currency"
        if amount != invoice.amount_asset:
            return "wrong_amount"
        return None

    # ---------------------------------------------------------------- the settle step

    async def reconcile(self, session: AsyncSession, invoice: Invoice,
                        observed: list[ObservedPayment], now: datetime) -> None:
        """Apply what the provider reports to a row-locked invoice. Idempotent: the same
        observations twice change nothing, so webhooks, polls and redeliveries all converge."""
        payments = {p.txid: p for p in await InvoiceRepository(session).payments(invoice.id)}
        for ob in observed:
            payment = payments.get(ob.txid)
            if payment is None:
                payment = await self._record_payment(session, invoice, ob, now)
                payments[ob.txid] = payment
            if payment.status not in (DETECTED, CONFIRMED):
                continue
            if ob.confirmations > payment.confirmations:
                payment.confirmations = ob.confirmations
                payment.updated_at = now
            if ob.failed:
                transition_payment(payment, FAILED, now)
                continue
            if ob.confirmed and payment.status == DETECTED:
                transition_payment(payment, CONFIRMED, now)
            if payment.status == CONFIRMED:
                self._settle_payment(invoice, payment, now)
        if invoice.status == PENDING and invoice.amount_received_asset >= invoice.amount_asset:
            await self._mark_paid(session, invoice, now)
        if invoice.status == PAID:
            invoice.overpaid_asset = max(Decimal(0),
                                         invoice.amount_received_asset - invoice.amount_asset)
        if invoice.status in OPEN and now >= invoice.rate_locked_until:
            await self._expire(session, invoice, now)
        await session.flush()

    async def _record_payment(self, session: AsyncSession, invoice: Invoice,
                              ob: ObservedPayment, now: datetime) -> Payment:
        late = invoice.status not in CREDITING
        payment = Payment(id=new_id(), invoice_id=invoice.id, status="CREATED", txid=ob.txid,
                          asset=invoice.asset, network=invoice.network,
                          amount_asset=ob.amount_asset, confirmations=ob.confirmations,
                          late=late, created_at=now, updated_at=now)
        transition_payment(payment, DETECTED, now)
        session.add(payment)
        if late:
            invoice.needs_review = True
            invoice.updated_at = now
            log.warning("late_payment_detected", invoice_id=invoice.id, status=invoice.status)
        if invoice.status == CREATED:
            transition_invoice(invoice, PENDING, now)
        await session.flush()
        await events.add(session, PaymentDetectedV1(
            invoice_id=invoice.id, payment_id=payment.id, user_id=invoice.user_id, txid=ob.txid,
            amount_asset=ob.amount_asset, asset=invoice.asset, network=invoice.network,
            detected_at=now))
        return payment

    def _settle_payment(self, invoice: Invoice, payment: Payment, now: datetime) -> None:
        transition_payment(payment, SETTLED, now)
        if payment.detected_at is not None:
            PAYMENT_SETTLE_SECONDS.observe(max(0.0, (now - payment.detected_at).total_seconds()))
        invoice.updated_at = now
        if invoice.status in CREDITING and not payment.late:
            invoice.amount_received_asset += payment.amount_asset
        else:
            payment.late = True
            invoice.late_amount_asset += payment.amount_asset
            invoice.needs_review = True
            log.warning("late_payment_settled", invoice_id=invoice.id, status=invoice.status)

    async def _mark_paid(self, session: AsyncSession, invoice: Invoice, now: datetime) -> None:
        transition_invoice(invoice, PAID, now)
        invoice.paid_at = now
        if invoice.promo_code:
            await promos.count(session, invoice, now)
        await referrals.on_paid(session, invoice, now, self.settings)
        if invoice.kind == TOP_UP_KIND:  # its money goes to the balance, once
            await ledger.move(session, user_id=invoice.user_id, amount=invoice.amount_usd,
                              kind="TOP_UP", key=f"invoice:{invoice.id}:top-up",
                              invoice_id=invoice.id)
            return
        if invoice.kind in (PLAN_KIND, RENEWAL_KIND):
            REVENUE_USD.labels(invoice.kind).inc(float(invoice.amount_usd))
        await events.add(session, InvoicePaidV1(
            invoice_id=invoice.id, user_id=invoice.user_id, plan=plan_snapshot(invoice),
            amount_usd=invoice.amount_usd, asset=invoice.asset, network=invoice.network,
            amount_asset=invoice.amount_asset, amount_paid_asset=invoice.amount_received_asset,
            paid_at=now, bonus_days=invoice.bonus_days or 0, kind=invoice.kind,
            subscription_id=invoice.subscription_id))

    async def _expire(self, session: AsyncSession, invoice: Invoice, now: datetime) -> None:
        transition_invoice(invoice, EXPIRED, now)
        invoice.expired_at = now
        if invoice.promo_code:
            await promos.release(session, invoice, now)
        if invoice.amount_received_asset > 0:
            invoice.underpaid_asset = invoice.amount_asset - invoice.amount_received_asset
        await events.add(session, InvoiceExpiredV1(
            invoice_id=invoice.id, user_id=invoice.user_id,
            amount_received_asset=invoice.amount_received_asset, expired_at=now))


plan_service = PlanService()
