"""referrals

Revision ID: d7b3e9f5a2c4
Revises: c6a2d8f4e1b3
Create Date: 2026-12-01 21:10:00

Referrals: `referral_codes` (one code per customer, lower-case, unique), `referrals` (one row per
referred customer, with the reward of their first paid invoice and its state), and what a
balance owes (`balances.owed_usd`: a reversed reward the balance could not cover, paid from the
next credit).
"""

import sqlalchemy as sa
from alembic import op

revision = "d7b3e9f5a2c4"
down_revision = "c6a2d8f4e1b3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("balances", sa.Column("owed_usd", sa.Numeric(12, 2), nullable=False,
                                        server_default="0"), schema="billing")
    op.create_check_constraint("ck_balances_owed_positive", "balances", "owed_usd >= 0",
                               schema="billing")
    op.create_table(
        "referral_codes",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("code = lower(code)", name="ck_referral_codes_lower"),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("code"),
        schema="billing",
    )
    op.create_table(
        "referrals",
        sa.Column("referred_user_id", sa.Text(), nullable=False),
        sa.Column("referrer_user_id", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Text(), nullable=True),
        sa.Column("reward_usd", sa.Numeric(12, 2), nullable=False, server_default="0"),
        sa.Column("reward_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('PENDING', 'REWARDED', 'REVERSED', 'REFUSED')",
                           name="ck_referrals_status"),
        sa.CheckConstraint("referrer_user_id <> referred_user_id", name="ck_referrals_not_self"),
        sa.CheckConstraint("reward_usd >= 0 AND reward_days >= 0",
                           name="ck_referrals_reward_positive"),
        sa.PrimaryKeyConstraint("referred_user_id"),
        schema="billing",
    )
    op.create_index("ix_referrals_referrer", "referrals", ["referrer_user_id", "status"],
                    schema="billing")


def downgrade() -> None:
    owed = op.get_bind().scalar(sa.text("SELECT count(*) FROM billing.balances WHERE owed_usd > 0"))
    if owed:
        raise RuntimeError(f"{owed} balance(s) owe money: this downgrade would forget it")
    op.drop_index("ix_referrals_referrer", table_name="referrals", schema="billing")
    op.drop_table("referrals", schema="billing")
    op.drop_table("referral_codes", schema="billing")
    op.drop_constraint("ck_balances_owed_positive", "balances", schema="billing")
    op.drop_column("balances", "owed_usd", schema="billing")
