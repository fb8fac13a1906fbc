"""Tables of the `billing` schema: plans, invoices, payments, idempotency keys, provider events,
customers' balances and their ledger, promo codes, trials, referrals, Telegram Stars payments,
the sandbox chain, and the service's outbox and inbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.daystats import stats_days_table, stats_live_table
from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "billing"

USD = sa.Numeric(12, 2)
ASSET = sa.Numeric(24, 8)
TS = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    price_usd: Mapped[Decimal] = mapped_column(USD)
    duration_days: Mapped[int] = mapped_column(sa.Integer)
    max_devices: Mapped[int] = mapped_column(sa.Integer)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    # The price in Telegram Stars; None: USD × STARS_PER_USD, rounded up.
    price_stars: Mapped[int | None] = mapped_column(sa.Integer)
    # The traffic allowance in GB (None: unlimited) and how it renews (NONE, MONTH).
    traffic_limit_gb: Mapped[int | None] = mapped_column(sa.Integer)
    traffic_reset: Mapped[str] = mapped_column(sa.Text, default="NONE", server_default="NONE")

    __table_args__ = (
        sa.CheckConstraint("price_usd > 0", name="ck_plans_price_positive"),
        sa.CheckConstraint("(traffic_limit_gb IS NULL OR traffic_limit_gb > 0) AND "
                           "traffic_reset IN ('NONE', 'MONTH')", name="ck_plans_traffic"),
        sa.CheckConstraint("price_stars IS NULL OR price_stars > 0",
                           name="ck_plans_price_stars_positive"),
        sa.Index("ix_plans_active", "is_active"),
    )


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    # PLAN buys a plan; TOP_UP adds to the balance and has no plan; TRIAL is the free trial
    # (no plan); RENEWAL renews a subscription with auto-renewal on.
    kind: Mapped[str] = mapped_column(sa.Text, default="PLAN", server_default="PLAN")
    plan_id: Mapped[str | None] = mapped_column(sa.ForeignKey("plans.id", ondelete="RESTRICT"))
    # The plan as it was when the invoice was created (prices and plans change later).
    plan_name: Mapped[str | None] = mapped_column(sa.Text)
    plan_duration_days: Mapped[int | None] = mapped_column(sa.Integer)
    plan_max_devices: Mapped[int | None] = mapped_column(sa.Integer)
    plan_price_usd: Mapped[Decimal | None] = mapped_column(USD)
    plan_traffic_limit_gb: Mapped[int | None] = mapped_column(sa.Integer)
    plan_traffic_reset: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    amount_usd: Mapped[Decimal] = mapped_column(USD)
    asset: Mapped[str] = mapped_column(sa.Text)
    network: Mapped[str] = mapped_column(sa.Text)
    rate_usd: Mapped[Decimal] = mapped_column(ASSET)
    amount_asset: Mapped[Decimal] = mapped_column(ASSET)
    address: Mapped[str | None] = mapped_column(sa.Text)
    payment_url: Mapped[str | None] = mapped_column(sa.Text)
    provider: Mapped[str] = mapped_column(sa.Text)
    provider_ref: Mapped[str | None] = mapped_column(sa.Text)
    rate_locked_until: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    paid_at: Mapped[datetime | None] = mapped_column(TS)
    expired_at: Mapped[datetime | None] = mapped_column(TS)
    canceled_at: Mapped[datetime | None] = mapped_column(TS)
    refunded_at: Mapped[datetime | None] = mapped_column(TS)
    refund_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Settled payments credited while the invoice was open (CREATED/PENDING/PAID).
    amount_received_asset: Mapped[Decimal] = mapped_column(ASSET, default=Decimal(0))
    overpaid_asset: Mapped[Decimal] = mapped_column(ASSET, default=Decimal(0))
    underpaid_asset: Mapped[Decimal] = mapped_column(ASSET, default=Decimal(0))
    # Payments that arrived after the invoice was closed (expired, canceled, refunded).
    late_amount_asset: Mapped[Decimal] = mapped_column(ASSET, default=Decimal(0))
    needs_review: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # A promo code applied at creation: `amount_usd` is the plan price less `discount_usd`;
    # `bonus_days` are added to the grant.
    promo_code: Mapped[str | None] = mapped_column(sa.Text)
    discount_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal("0.00"), server_default="0")
    bonus_days: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # RENEWAL: the subscription it renews and the period's key (subscription id + the
    # `expires_at` it renews), unique: a period is charged once.
    subscription_id: Mapped[str | None] = mapped_column(sa.Text)
    renewal_key: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.Index("ix_invoices_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_invoices_created", "created_at", "id"),
        sa.Index("ix_invoices_status_created", "status", "created_at", "id"),
        sa.Index("ix_invoices_open_lock", "rate_locked_until",
                 postgresql_where=sa.text("status IN ('CREATED', 'PENDING')")),
        sa.Index("ix_invoices_plan", "plan_id"),
        # the payment watch's recently closed invoices (a late payment may still arrive)
        sa.Index("ix_invoices_expired_at", "expired_at",
                 postgresql_where=sa.text("status = 'EXPIRED'")),
        sa.Index("ix_invoices_canceled_at", "canceled_at",
                 postgresql_where=sa.text("status = 'CANCELED'")),
        # the KPIs' per-day reads (billing.stats): paid plans by day, a customer's earlier ones
        sa.Index("ix_invoices_plan_paid", "paid_at", postgresql_where=sa.text(
            "kind IN ('PLAN', 'RENEWAL') AND paid_at IS NOT NULL")),
        sa.Index("ix_invoices_plan_user_paid", "user_id", "paid_at", "id",
                 postgresql_where=sa.text("kind IN ('PLAN', 'RENEWAL') AND paid_at IS NOT NULL")),
        sa.Index("ix_invoices_plan_refunded", "refunded_at", postgresql_where=sa.text(
            "kind IN ('PLAN', 'RENEWAL') AND refunded_at IS NOT NULL")),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_invoices_provider_ref"),
        sa.Index("uq_invoices_network_address", "network", "address", unique=True,
                 postgresql_where=sa.text("address IS NOT NULL")),
        sa.CheckConstraint("kind IN ('PLAN', 'TOP_UP', 'TRIAL', 'RENEWAL')",
                           name="ck_invoices_kind"),
        sa.CheckConstraint("(kind IN ('TOP_UP', 'TRIAL')) = (plan_id IS NULL)",
                           name="ck_invoices_plan_unless_top_up"),
        sa.Index("uq_invoices_renewal_key", "renewal_key", unique=True,
                 postgresql_where=sa.text("renewal_key IS NOT NULL")),
        sa.CheckConstraint("(kind = 'RENEWAL') = (renewal_key IS NOT NULL)",
                           name="ck_invoices_renewal_keyed"),
    )


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(sa.Text)
    txid: Mapped[str] = mapped_column(sa.Text)
    asset: Mapped[str] = mapped_column(sa.Text)
    network: Mapped[str] = mapped_column(sa.Text)
    amount_asset: Mapped[Decimal] = mapped_column(ASSET)
    confirmations: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Arrived or settled after its invoice was closed: recorded and flagged, never applied.
    late: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    detected_at: Mapped[datetime | None] = mapped_column(TS)
    confirmed_at: Mapped[datetime | None] = mapped_column(TS)
    settled_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (
        sa.UniqueConstraint("network", "txid", name="uq_payments_network_txid"),
        sa.Index("ix_payments_invoice", "invoice_id", "created_at"),
        sa.Index("ix_payments_unsettled", "invoice_id",
                 postgresql_where=sa.text("status IN ('DETECTED', 'CONFIRMED')")),
    )


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)  # in_progress | done
    # Changes each time a request takes the key: only the current holder may complete it.
    lock_token: Mapped[str] = mapped_column(sa.Text)
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    # The exact JSON text answered first, so a replay is byte-for-byte the same answer.
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    locked_at: Mapped[datetime] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (sa.Index("ix_idempotency_keys_created", "created_at"),)


class ProviderEvent(Base):
    __tablename__ = "provider_events"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.Text)
    delivery_id: Mapped[str] = mapped_column(sa.Text)
    event_type: Mapped[str | None] = mapped_column(sa.Text)
    provider_ref: Mapped[str | None] = mapped_column(sa.Text)
    raw_body: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(TS)
    processed_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("provider", "delivery_id", name="uq_provider_events_delivery"),
    )


class PromoCode(Base):
    """A promo code and its limits; `uses_reserved` + `uses_counted` never exceed `max_uses`
    (its row lock orders the reservations)."""

    __tablename__ = "promo_codes"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    code: Mapped[str] = mapped_column(sa.Text, unique=True)  # stored lower-case
    kind: Mapped[str] = mapped_column(sa.Text)
    value: Mapped[Decimal] = mapped_column(USD)
    plan_ids: Mapped[list[str] | None] = mapped_column(sa.ARRAY(sa.Text))
    max_uses: Mapped[int | None] = mapped_column(sa.Integer)
    max_uses_per_user: Mapped[int] = mapped_column(sa.Integer, default=1)
    starts_at: Mapped[datetime | None] = mapped_column(TS)
    ends_at: Mapped[datetime | None] = mapped_column(TS)
    first_purchase_only: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    uses_reserved: Mapped[int] = mapped_column(sa.Integer, default=0)
    uses_counted: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        sa.CheckConstraint("kind IN ('PERCENT', 'AMOUNT', 'DAYS')", name="ck_promo_codes_kind"),
        sa.CheckConstraint("value > 0 AND (kind <> 'PERCENT' OR value <= 100)",
                           name="ck_promo_codes_value"),
        sa.CheckConstraint("uses_reserved >= 0 AND uses_counted >= 0",
                           name="ck_promo_codes_uses_positive"),
        sa.CheckConstraint("max_uses IS NULL OR uses_reserved + uses_counted <= max_uses",
                           name="ck_promo_codes_within_max_uses"),
        sa.CheckConstraint("code = lower(code)", name="ck_promo_codes_lower"),
    )


class PromoRedemption(Base):
    """One use of a code by one invoice: RESERVED at creation, COUNTED when it is PAID,
    RELEASED when it expires or is canceled."""

    __tablename__ = "promo_redemptions"

    invoice_id: Mapped[str] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"),
                                            primary_key=True)
    code_id: Mapped[str] = mapped_column(sa.ForeignKey("promo_codes.id", ondelete="RESTRICT"))
    user_id: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        sa.CheckConstraint("status IN ('RESERVED', 'COUNTED', 'RELEASED')",
                           name="ck_promo_redemptions_status"),
        sa.Index("ix_promo_redemptions_code_user", "code_id", "user_id"),
    )


class Trial(Base):
    """The one trial of a person: by account (the key) and by the Telegram account linked to it
    when it was taken (unique too), so neither can have a second."""

    __tablename__ = "trials"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"))
    telegram_user_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        sa.Index("uq_trials_telegram_user", "telegram_user_id", unique=True,
                 postgresql_where=sa.text("telegram_user_id IS NOT NULL")),
        sa.Index("ix_trials_created", "created_at"),
    )


class TelegramLink(Base):
    """Which Telegram account each customer linked (from `telegram.account.linked.v1`)."""

    __tablename__ = "telegram_links"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    linked_at: Mapped[datetime] = mapped_column(TS)


class Balance(Base):
    """A customer's balance: the sum of their ledger entries, kept with them in one transaction
    (its row lock orders a customer's entries); never negative."""

    __tablename__ = "balances"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    balance_usd: Mapped[Decimal] = mapped_column(USD)
    updated_at: Mapped[datetime] = mapped_column(TS)
    # Taken back but not covered by the balance (a reversed referral reward): every credit
    # pays it first. While it is above zero the balance is zero.
    owed_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal("0.00"), server_default="0")

    __table_args__ = (
        sa.CheckConstraint("balance_usd >= 0", name="ck_balances_never_negative"),
        sa.CheckConstraint("owed_usd >= 0", name="ck_balances_owed_positive"),
    )


class BalanceEntry(Base):
    """One movement of a balance; append-only (a trigger refuses UPDATE and DELETE). The
    idempotency key names what caused it, so the same cause moves money once."""

    __tablename__ = "balance_entries"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    amount_usd: Mapped[Decimal] = mapped_column(USD)
    balance_after_usd: Mapped[Decimal] = mapped_column(USD)
    idempotency_key: Mapped[str] = mapped_column(sa.Text, unique=True)
    invoice_id: Mapped[str | None] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    actor_id: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        sa.CheckConstraint("amount_usd <> 0", name="ck_balance_entries_nonzero"),
        sa.CheckConstraint("balance_after_usd >= 0", name="ck_balance_entries_never_negative"),
        sa.CheckConstraint(
            "kind IN ('TOP_UP', 'PURCHASE', 'REFUND', 'REFERRAL_REWARD', 'ADJUSTMENT')",
            name="ck_balance_entries_kind"),
        sa.Index("ix_balance_entries_user", "user_id", "id"),
    )


class ReferralCode(Base):
    """A customer's referral code: one each, made when first asked for; stored lower-case
    (codes are case-insensitive)."""

    __tablename__ = "referral_codes"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    code: Mapped[str] = mapped_column(sa.Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (
        sa.CheckConstraint("code = lower(code)", name="ck_referral_codes_lower"),
    )


class Referral(Base):
    """One referred customer (the key: referred once) and the reward for their first paid
    invoice: PENDING until it is paid, then REWARDED (`reward_usd` credited or `reward_days`
    granted), REVERSED when that invoice is refunded, or REFUSED (the referrer is the same
    person: their linked Telegram accounts are the same)."""

    __tablename__ = "referrals"

    referred_user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    referrer_user_id: Mapped[str] = mapped_column(sa.Text)
    code: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    invoice_id: Mapped[str | None] = mapped_column(sa.Text)
    reward_usd: Mapped[Decimal] = mapped_column(USD, default=Decimal("0.00"), server_default="0")
    reward_days: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(TS)
    rewarded_at: Mapped[datetime | None] = mapped_column(TS)
    reversed_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (
        sa.CheckConstraint("status IN ('PENDING', 'REWARDED', 'REVERSED', 'REFUSED')",
                           name="ck_referrals_status"),
        sa.CheckConstraint("referrer_user_id <> referred_user_id", name="ck_referrals_not_self"),
        sa.CheckConstraint("reward_usd >= 0 AND reward_days >= 0",
                           name="ck_referrals_reward_positive"),
        sa.Index("ix_referrals_referrer", "referrer_user_id", "status"),
    )


class StarsPayment(Base):
    """A Telegram Stars payment as the bot received it (`telegram.stars_payment.received.v1`),
    once per charge: what the stars provider reports for the invoice it names. Not a foreign
    key: a payment naming no invoice of ours is kept, never lost."""

    __tablename__ = "stars_payments"

    telegram_payment_charge_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(sa.Text)
    amount_stars: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.Text)
    telegram_user_id: Mapped[int] = mapped_column(sa.BigInteger)
    paid_at: Mapped[datetime] = mapped_column(TS)
    received_at: Mapped[datetime] = mapped_column(TS)

    __table_args__ = (sa.Index("ix_stars_payments_invoice", "invoice_id"),)


class SandboxChain(Base):
    """The simulated chain's block height (one row)."""

    __tablename__ = "sandbox_chain"

    id: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    height: Mapped[int] = mapped_column(sa.BigInteger)


class SandboxTransfer(Base):
    """A transfer on the simulated chain; mined when `block_height` is set."""

    __tablename__ = "sandbox_transfers"

    txid: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    address: Mapped[str] = mapped_column(sa.Text)
    asset: Mapped[str] = mapped_column(sa.Text)
    network: Mapped[str] = mapped_column(sa.Text)
    amount_asset: Mapped[Decimal] = mapped_column(ASSET)
    created_at: Mapped[datetime] = mapped_column(TS)
    block_height: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_sandbox_transfers_address", "network", "address"),
        sa.Index("ix_sandbox_transfers_unmined", "txid",
                 postgresql_where=sa.text("block_height IS NULL")),
    )


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
stats_days = stats_days_table(Base.metadata)  # the KPIs' closed days (billing.stats)
stats_live = stats_live_table(Base.metadata)  # the KPIs' days not closed yet
