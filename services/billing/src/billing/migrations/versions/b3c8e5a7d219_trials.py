"""trials

Revision ID: b3c8e5a7d219
Revises: 9e4b7c2d1f08
Create Date: 2026-12-01 18:25:00

The free trial: `trials` (one per account, and one per Telegram account), `telegram_links` (the
Telegram account each customer linked, projected from the telegram service's events), and a
trial invoice has no plan (its plan snapshot is the trial's terms).
"""

import sqlalchemy as sa
from alembic import op

revision = "b3c8e5a7d219"
down_revision = "9e4b7c2d1f08"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("ck_invoices_plan_unless_top_up", "invoices", schema="billing")
    op.create_check_constraint("ck_invoices_plan_unless_top_up", "invoices",
                               "(kind IN ('TOP_UP', 'TRIAL')) = (plan_id IS NULL)",
                               schema="billing")
    op.create_table(
        "trials",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["billing.invoices.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("user_id"),
        schema="billing",
    )
    op.create_index("uq_trials_telegram_user", "trials", ["telegram_user_id"], unique=True,
                    schema="billing", postgresql_where=sa.text("telegram_user_id IS NOT NULL"))
    op.create_table(
        "telegram_links",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        schema="billing",
    )
    op.create_index("ix_billing_telegram_links_telegram_user_id", "telegram_links",
                    ["telegram_user_id"], schema="billing")


def downgrade() -> None:
    trials = op.get_bind().scalar(sa.text(
        "SELECT count(*) FROM billing.invoices WHERE kind = 'TRIAL'"))
    if trials:
        raise RuntimeError(f"{trials} trial invoice(s) exist: this downgrade would lose them")
    op.drop_index("ix_billing_telegram_links_telegram_user_id", table_name="telegram_links",
                  schema="billing")
    op.drop_table("telegram_links", schema="billing")
    op.drop_index("uq_trials_telegram_user", table_name="trials", schema="billing")
    op.drop_table("trials", schema="billing")
    op.drop_constraint("ck_invoices_plan_unless_top_up", "invoices", schema="billing")
    op.create_check_constraint("ck_invoices_plan_unless_top_up", "invoices",
                               "(kind = 'TOP_UP') = (plan_id IS NULL)", schema="billing")
