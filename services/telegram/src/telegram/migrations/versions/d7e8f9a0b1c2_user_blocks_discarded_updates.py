"""user blocks projection, discarded updates, outgoing parse mode

Revision ID: d7e8f9a0b1c2
Revises: c4d5e6f7a8b9
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "d7e8f9a0b1c2"
down_revision = "c4d5e6f7a8b9"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outgoing", sa.Column("parse_mode", sa.Text(), nullable=True), schema="telegram")
    op.create_table(
        "user_blocks",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        schema="telegram",
    )
    op.create_table(
        "discarded_updates",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("update_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="telegram",
    )


def downgrade() -> None:
    op.drop_table("discarded_updates", schema="telegram")
    op.drop_table("user_blocks", schema="telegram")
    op.drop_column("outgoing", "parse_mode", schema="telegram")
