"""drop sandbox vpn faults

Revision ID: 5c8e2b1f7d40
Revises: a30cdea52747
Create Date: 2026-12-01 15:00:00

The sandbox backend's injected faults moved to Redis (`runtime.faults`), so the production
schema keeps no table for them. Dropped only where it exists: a database created since
a30cdea52747 stopped creating it never had one. A downgrade recreates it as the code of
a30cdea52747 expected it (empty: injected faults are not data).
"""

import sqlalchemy as sa
from alembic import op

revision = "5c8e2b1f7d40"
down_revision = "a30cdea52747"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("sandbox_vpn_faults", schema="provisioning", if_exists=True)


def downgrade() -> None:
    op.create_table(
        "sandbox_vpn_faults",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="provisioning",
    )
