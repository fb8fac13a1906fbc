"""shop bot

Revision ID: 1d1b09a34f1a
Revises: f3a4b5c6d7e8
Create Date: 2026-12-02 02:00:00

The shop bot: each Telegram user's language and menu state (`bot_users`), the invoice messages
the bot shows (`shop_invoices`), and Bot API calls other than sendMessage as outgoing rows
(`outgoing.method`, `outgoing.params`).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "1d1b09a34f1a"
down_revision = "f3a4b5c6d7e8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outgoing", sa.Column("method", sa.Text(), nullable=True), schema="telegram")
    op.add_column("outgoing", sa.Column("params", postgresql.JSONB(), nullable=True),
                  schema="telegram")
    op.create_table(
        "bot_users",
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("language_code", sa.Text(), nullable=True),
        sa.Column("state", postgresql.JSONB(), nullable=True),
        sa.Column("bot_blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("telegram_user_id"),
        schema="telegram",
    )
    op.create_index("ix_bot_users_chat", "bot_users", ["chat_id"], schema="telegram")
    op.create_table(
        "shop_invoices",
        sa.Column("invoice_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("access_sent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("invoice_id"),
        schema="telegram",
    )
    op.create_index("ix_shop_invoices_user", "shop_invoices", ["user_id", "created_at"],
                    schema="telegram")


def downgrade() -> None:
    op.drop_index("ix_shop_invoices_user", table_name="shop_invoices", schema="telegram")
    op.drop_table("shop_invoices", schema="telegram")
    op.drop_index("ix_bot_users_chat", table_name="bot_users", schema="telegram")
    op.drop_table("bot_users", schema="telegram")
    op.drop_column("outgoing", "params", schema="telegram")
    op.drop_column("outgoing", "method", schema="telegram")
