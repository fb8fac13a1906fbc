"""promo codes

Revision ID: 9e4b7c2d1f08
Revises: 8d2f6b1a3c94
Create Date: 2026-12-01 18:05:00

Promo codes with their limits and counters (`promo_codes`), one redemption per invoice that
used one (`promo_redemptions`: reserved, counted or released), and on the invoice the code,
its discount and its bonus days.
"""

import sqlalchemy as sa
from alembic import op

revision = "9e4b7c2d1f08"
down_revision = "8d2f6b1a3c94"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promo_codes",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Numeric(12, 2), nullable=False),
        sa.Column("plan_ids", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("max_uses_per_user", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_purchase_only", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("uses_reserved", sa.Integer(), nullable=False),
        sa.Column("uses_counted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('PERCENT', 'AMOUNT', 'DAYS')", name="ck_promo_codes_kind"),
        sa.CheckConstraint("value > 0 AND (kind <> 'PERCENT' OR value <= 100)",
                           name="ck_promo_codes_value"),
        sa.CheckConstraint("uses_reserved >= 0 AND uses_counted >= 0",
                           name="ck_promo_codes_uses_positive"),
        sa.CheckConstraint("max_uses IS NULL OR uses_reserved + uses_counted <= max_uses",
                           name="ck_promo_codes_within_max_uses"),
        sa.CheckConstraint("code = lower(code)", name="ck_promo_codes_lower"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        schema="billing",
    )
    op.create_table(
        "promo_redemptions",
        sa.Column("invoice_id", sa.Text(), nullable=False),
        sa.Column("code_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('RESERVED', 'COUNTED', 'RELEASED')",
                           name="ck_promo_redemptions_status"),
        sa.ForeignKeyConstraint(["code_id"], ["billing.promo_codes.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["invoice_id"], ["billing.invoices.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("invoice_id"),
        schema="billing",
    )
    op.create_index("ix_promo_redemptions_code_user", "promo_redemptions",
                    ["code_id", "user_id"], schema="billing")
    op.add_column("invoices", sa.Column("promo_code", sa.Text(), nullable=True),
                  schema="billing")
    op.add_column("invoices", sa.Column("discount_usd", sa.Numeric(12, 2), nullable=False,
                                        server_default="0"), schema="billing")
    op.add_column("invoices", sa.Column("bonus_days", sa.Integer(), nullable=False,
                                        server_default="0"), schema="billing")


def downgrade() -> None:
    op.drop_column("invoices", "bonus_days", schema="billing")
    op.drop_column("invoices", "discount_usd", schema="billing")
    op.drop_column("invoices", "promo_code", schema="billing")
    op.drop_index("ix_promo_redemptions_code_user", table_name="promo_redemptions",
                  schema="billing")
    op.drop_table("promo_redemptions", schema="billing")
    op.drop_table("promo_codes", schema="billing")
