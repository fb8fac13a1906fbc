"""drop sandbox payment faults

Revision ID: 3d5f0e8a9c21
Revises: b7e1d2c3a4f5
Create Date: 2026-12-01 15:00:00

The sandbox provider's injected faults moved to Redis (`runtime.faults`), so the production
schema keeps no table for them. Dropped only where it exists: a database created since
b7e1d2c3a4f5 stopped creating it never had one. A downgrade recreates it as the code of
b7e1d2c3a4f5 expected it (empty: injected faults are not data).
"""

import sqlalchemy as sa
from alembic import op

revision = "3d5f0e8a9c21"
down_revision = "b7e1d2c3a4f5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("sandbox_payment_faults", schema="billing", if_exists=True)


def downgrade() -> None:
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
