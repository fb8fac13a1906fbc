"""telegram accounts

Revision ID: d1e2f3a4b5c6
Revises: c0eda6f687c3
Create Date: 2026-12-02 01:30:00

Accounts made from Telegram have no email and no password; a user keeps the id of the linked
Telegram user; "forgot password" links, stored as SHA-256 hashes.
"""

import sqlalchemy as sa
from alembic import op

revision = "d1e2f3a4b5c6"
down_revision = "c0eda6f687c3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("users", "email", nullable=True, schema="identity")
    op.alter_column("users", "password_hash", nullable=True, schema="identity")
    op.add_column("users", sa.Column("telegram_id", sa.BigInteger(), nullable=True),
                  schema="identity")
    op.create_table(
        "password_resets",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["identity.users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
        schema="identity",
    )
    op.create_index("ix_password_resets_user", "password_resets", ["user_id"], schema="identity")


def downgrade() -> None:
    op.drop_index("ix_password_resets_user", table_name="password_resets", schema="identity")
    op.drop_table("password_resets", schema="identity")
    op.drop_column("users", "telegram_id", schema="identity")
    op.execute("DELETE FROM identity.users WHERE email IS NULL")
    op.alter_column("users", "password_hash", nullable=False, schema="identity")
    op.alter_column("users", "email", nullable=False, schema="identity")
