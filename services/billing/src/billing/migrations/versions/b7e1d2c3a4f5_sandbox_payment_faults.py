"""sandbox payment faults

Revision ID: b7e1d2c3a4f5
Revises: fc0b92c9c4b6
Create Date: 2026-11-28 21:00:00

Creates nothing: the sandbox provider's injected faults are kept in Redis (`runtime.faults`),
never in the billing schema. A database that has the table from an earlier build of this
revision loses it in 3d5f0e8a9c21.
"""

from alembic import op

revision = "b7e1d2c3a4f5"
down_revision = "fc0b92c9c4b6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    op.drop_table("sandbox_payment_faults", schema="billing", if_exists=True)
