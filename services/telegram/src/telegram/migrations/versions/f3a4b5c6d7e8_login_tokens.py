"""login tokens

Revision ID: f3a4b5c6d7e8
Revises: e1f2a3b4c5d6
Create Date: 2026-12-02 01:30:00

The bot's one-time web sign-in links (`/login`), kept as SHA-256 hashes.
"""

import sqlalchemy as sa
from alembic import op

revision = "f3a4b5c6d7e8"
down_revision = "e1f2a3b4c5d6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
        schema="telegram",
    )
    op.create_index("ix_login_tokens_telegram", "login_tokens",
                    ["telegram_user_id", "created_at"], schema="telegram")


def downgrade() -> None:
    op.drop_index("ix_login_tokens_telegram", table_name="login_tokens", schema="telegram")
    op.drop_table("login_tokens", schema="telegram")
