"""Tables of the `provisioning` schema.

Domain: subscriptions (one per user), grants (one row per applied invoice or admin extension;
`invoice_id` is unique, so an invoice is applied at most once), backend accounts (what we believe
exists on the VPN backend), user blocks (the latest block state seen from identity events),
servers (the pool accounts are placed on), moves (an access moving to another server).
The sandbox VPN backend keeps its accounts in `sandbox_vpn_accounts`: it stands in for an
external system, so it is written in its own transactions, never in the domain's.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runtime.daystats import stats_days_table, stats_live_table
from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "provisioning"


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text, unique=True)
    plan_id: Mapped[str] = mapped_column(sa.Text)
    # The plan as bought (name, duration_days, max_devices, price_usd) from the last grant.
    plan: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    max_devices: Mapped[int] = mapped_column(sa.Integer)
    # Traffic the last grant's plan allows, and how it renews (NONE, MONTH); None: the
    # backend's default.
    data_limit_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    traffic_reset: Mapped[str] = mapped_column(sa.Text, default="NONE", server_default="NONE")
    # The traffic allowance is used up (the panel refuses connections): since when, and when it
    # renews (None: at the next renewal). Set once per limit period (one notice), cleared when
    # the panel lifts it or a re-grant resets the traffic. Public status: LIMITED.
    limited_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    limit_resets_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # When the limit check last read the account's usage from the panel.
    usage_checked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # Opaque id of the account on the VPN backend; access configs are never stored.
    provision_ref: Mapped[str] = mapped_column(sa.Text, unique=True)
    backend: Mapped[str] = mapped_column(sa.Text)
    # The server of the pool its access lives on (None: placed before the pool existed, until
    # the seeded server adopts it).
    server_id: Mapped[str | None] = mapped_column(sa.Text)
    suspend_reason: Mapped[str | None] = mapped_column(sa.Text)
    # The stable subscription link's token and its SHA-256 (both None: revoked); see
    # `provisioner.links`.
    link_token: Mapped[str | None] = mapped_column(sa.Text)
    link_hash: Mapped[str | None] = mapped_column(sa.Text)
    # Expiry reminders (days before expiry) already sent for the current `expires_at`.
    reminders_sent: Mapped[list[int]] = mapped_column(ARRAY(sa.Integer), default=list,
                                                      server_default="{}")
    # Auto-renewal (opt-in): the plan a renewal buys (None: `plan_id`), and the `expires_at`
    # whose renewal billing was last asked to charge (each period is asked once).
    auto_renew_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=False,
                                                     server_default=sa.false())
    auto_renew_plan_id: Mapped[str | None] = mapped_column(sa.Text)
    renewal_due_for: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_subscriptions_status_expires", "status", "expires_at"),
        sa.Index("ix_subscriptions_created", "created_at", "id"),
        sa.Index("ix_subscriptions_server", "server_id", "status"),
        sa.Index("uq_subscriptions_link_hash", "link_hash", unique=True),
        sa.Index("ix_subscriptions_auto_renew_due", "expires_at",
                 postgresql_where=sa.text("auto_renew_enabled AND status = 'ACTIVE'")),
    )


class Grant(Base):
    """Time bought (kind INVOICE), given by an admin (kind ADMIN) or earned by referring a
    customer (kind REFERRAL, its key `referral:<referred user>` in `invoice_id`), and its
    refund."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    invoice_id: Mapped[str | None] = mapped_column(sa.Text, unique=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    user_id: Mapped[str] = mapped_column(sa.Text)
    subscription_id: Mapped[str | None] = mapped_column(sa.Text)
    plan_id: Mapped[str] = mapped_column(sa.Text)
    plan: Mapped[dict] = mapped_column(JSONB)
    duration_days: Mapped[int] = mapped_column(sa.Integer)
    max_devices: Mapped[int] = mapped_column(sa.Integer)
    # PENDING → APPLIED → REFUND_PENDING → REFUNDED; PENDING → FAILED (attempts ran out)
    # → PENDING (admin retry); PENDING/FAILED → REFUNDED (refunded before it was applied).
    status: Mapped[str] = mapped_column(sa.Text)
    job_id: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    actor_id: Mapped[str | None] = mapped_column(sa.Text)
    previous_expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    new_expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    refund_reason: Mapped[str | None] = mapped_column(sa.Text)
    refunded_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # How much time the refund actually took back (less than bought if some was used up).
    refunded_seconds: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_grants_unfinished", "updated_at",
                 postgresql_where=sa.text("status IN ('PENDING', 'REFUND_PENDING')")),
        sa.Index("ix_grants_subscription", "subscription_id"),
        # the KPIs' per-day reads (provisioner.stats): the cover at an instant, the ends in a
        # range, the paid grants recorded in one
        sa.Index("ix_grants_cover",
                 sa.text("tstzrange(applied_at, greatest(applied_at, new_expires_at), '[)')"),
                 postgresql_using="gist", postgresql_where=sa.text(
                     "status IN ('APPLIED', 'REFUND_PENDING') AND applied_at IS NOT NULL")),
        sa.Index("ix_grants_covering_starts", "applied_at", postgresql_where=sa.text(
            "status IN ('APPLIED', 'REFUND_PENDING') AND applied_at IS NOT NULL")),
        sa.Index("ix_grants_covering_ends", "new_expires_at", postgresql_where=sa.text(
            "status IN ('APPLIED', 'REFUND_PENDING')")),
        sa.Index("ix_grants_invoice_created", "created_at",
                 postgresql_where=sa.text("kind = 'INVOICE'")),
    )


class BackendAccount(Base):
    """Our record of an account on a VPN backend (the backend itself is the truth)."""

    __tablename__ = "backend_accounts"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    backend: Mapped[str] = mapped_column(sa.Text)
    ref: Mapped[str] = mapped_column(sa.Text)
    subscription_id: Mapped[str | None] = mapped_column(sa.Text)
    server_id: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.Text)  # ACTIVE | DISABLED
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.UniqueConstraint("backend", "ref", name="uq_backend_accounts_ref"),
        # the accounts made before the pool, until the seeded server adopts them
        sa.Index("ix_backend_accounts_unplaced", "id",
                 postgresql_where=sa.text("server_id IS NULL")),
    )


class Server(Base):
    """A VPN server of the pool: where accounts are placed, by location and free capacity.

    `credentials` holds the panel's secrets as a Fernet token (`provisioner.servers`), never in
    the clear; `settings` holds the driver's other options."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    location: Mapped[str] = mapped_column(sa.Text)
    backend: Mapped[str] = mapped_column(sa.Text)
    base_url: Mapped[str | None] = mapped_column(sa.Text)
    settings: Mapped[dict] = mapped_column(JSONB, default=dict, server_default="{}")
    credentials: Mapped[str | None] = mapped_column(sa.Text)
    capacity: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.Text)  # ACTIVE | DRAINING | DISABLED
    healthy: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    checked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (sa.Index("ix_servers_location_status", "location", "status"),)


class Move(Base):
    """Moving one subscription's access to another server, exactly once (`provisioner.moves`):
    WAITING (no server with room yet) → PENDING (the target chosen, its room held) → SWITCHED
    (the account on the target exists and the subscription points to it) → DONE (the old
    account revoked); CANCELED when the subscription ended before a target was found, or was
    placed on another server meanwhile (bought again after it ended). At most one open move
    per subscription."""

    __tablename__ = "moves"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.Text)
    user_id: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)  # LOCATION (the customer) | DRAIN (an admin)
    # The location asked for (LOCATION); None: the drained server's, else anywhere with room.
    location: Mapped[str | None] = mapped_column(sa.Text)
    from_server_id: Mapped[str | None] = mapped_column(sa.Text)
    from_ref: Mapped[str] = mapped_column(sa.Text)
    to_server_id: Mapped[str | None] = mapped_column(sa.Text)
    to_ref: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    actor_id: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    switched_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("uq_moves_open_subscription", "subscription_id", unique=True,
                 postgresql_where=sa.text("status IN ('WAITING', 'PENDING', 'SWITCHED')")),
        sa.Index("ix_moves_open", "status", "updated_at",
                 postgresql_where=sa.text("status IN ('WAITING', 'PENDING', 'SWITCHED')")),
        sa.Index("ix_moves_to_server", "to_server_id",
                 postgresql_where=sa.text("status = 'PENDING'")),
        sa.Index("ix_moves_from_server", "from_server_id", "status"),
    )


class UserBlock(Base):
    """The newest block state of a user seen in identity events, and whether it was applied."""

    __tablename__ = "user_blocks"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    blocked: Mapped[bool] = mapped_column(sa.Boolean)
    changed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    synced: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class SandboxAccount(Base):
    """An account on the built-in sandbox VPN backend (its whole 'server' state)."""

    __tablename__ = "sandbox_vpn_accounts"

    ref: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    # Which sandbox "server" holds it: '' for the seeded one (`VPN_BACKEND=sandbox`), else the
    # pool server's id, so each sandbox server of the pool answers for its own accounts.
    server: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    secret: Mapped[str] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    max_devices: Mapped[int] = mapped_column(sa.Integer)
    data_limit_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Traffic "used" (set through the sandbox's control API): over the limit, it is limited.
    used_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
stats_days = stats_days_table(Base.metadata)  # the KPIs' closed days (provisioner.stats)
stats_live = stats_live_table(Base.metadata)  # the KPIs' days not closed yet
