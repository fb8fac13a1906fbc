"""balance ledger

Revision ID: 6a1c4e9b2d70
Revises: 3d5f0e8a9c21
Create Date: 2026-12-01 17:40:00

Customers' balances (`balances`, never negative) and their append-only ledger
(`balance_entries`: one row per movement, a unique idempotency key per cause, the balance after
it never negative). A trigger refuses UPDATE and DELETE on the ledger.
"""

import sqlalchemy as sa
from alembic import op

revision = "6a1c4e9b2d70"
down_revision = "3d5f0e8a9c21"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("balance_usd", sa.Numeric(12, 2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance_usd >= 0", name="ck_balances_never_negative"),
        sa.PrimaryKeyConstraint("user_id"),
        schema="billing",
    )
    op.create_table(
        "balance_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount_usd", sa.Numeric(12, 2), nullable=False),
        sa.Column("balance_after_usd", sa.Numeric(12, 2), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_usd <> 0", name="ck_balance_entries_nonzero"),
        sa.CheckConstraint("balance_after_usd >= 0", name="ck_balance_entries_never_negative"),
        sa.CheckConstraint(
            "kind IN ('TOP_UP', 'PURCHASE', 'REFUND', 'REFERRAL_REWARD', 'ADJUSTMENT')",
            name="ck_balance_entries_kind"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        schema="billing",
    )
    op.create_index("ix_balance_entries_user", "balance_entries", ["user_id", "id"],
                    schema="billing")
    op.execute("""
        CREATE FUNCTION billing.balance_entries_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'balance_entries is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
    """)
    op.execute("""
        CREATE TRIGGER balance_entries_append_only
        BEFORE UPDATE OR DELETE ON billing.balance_entries
        FOR EACH ROW EXECUTE FUNCTION billing.balance_entries_append_only()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER balance_entries_append_only ON billing.balance_entries")
    op.execute("DROP FUNCTION billing.balance_entries_append_only()")
    op.drop_index("ix_balance_entries_user", table_name="balance_entries", schema="billing")
    op.drop_table("balance_entries", schema="billing")
    op.drop_table("balances", schema="billing")
