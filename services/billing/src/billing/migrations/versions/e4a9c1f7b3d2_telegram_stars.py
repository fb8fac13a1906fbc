"""telegram stars

Revision ID: e4a9c1f7b3d2
Revises: d7b3e9f5a2c4
Create Date: 2026-12-02 10:00:00

Telegram Stars: a plan's price in Stars (`plans.price_stars`, null: from USD), and the Stars
payments the bot received (`stars_payments`, one row per charge id, naming the invoice they pay).
"""

import sqlalchemy as sa
from alembic import op

revision = "e4a9c1f7b3d2"
down_revision = "d7b3e9f5a2c4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("price_stars", sa.Integer(), nullable=True),
                  schema="billing")
    op.create_check_constraint("ck_plans_price_stars_positive", "plans",
                               "price_stars IS NULL OR price_stars > 0", schema="billing")
    op.create_table(
        "stars_payments",
        sa.Column("telegram_payment_charge_id", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Text(), nullable=False),
        sa.Column("amount_stars", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("telegram_payment_charge_id"),
        schema="billing",
    )
    op.create_index("ix_stars_payments_invoice", "stars_payments", ["invoice_id"],
                    schema="billing")


def downgrade() -> None:
    op.drop_index("ix_stars_payments_invoice", table_name="stars_payments", schema="billing")
    op.drop_table("stars_payments", schema="billing")
    op.drop_constraint("ck_plans_price_stars_positive", "plans", schema="billing")
    op.drop_column("plans", "price_stars", schema="billing")
