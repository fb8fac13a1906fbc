"""sandbox payment faults

Revision ID: b7e1d2c3a4f5
Revises: fc0b92c9c4b6
Create Date: 2026-11-28 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b7e1d2c3a4f5"
down_revision = "fc0b92c9c4b6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_payment_faults",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="billing",
    )


def downgrade() -> None:
    op.drop_table("sandbox_payment_faults", schema="billing")
