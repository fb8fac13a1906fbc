"""subscription traffic reset

Revision ID: a8d3f1c5e7b9
Revises: f4b8d2a6c1e3
Create Date: 2026-12-01 21:45:00

How a subscription's traffic allowance renews (the last grant's plan): NONE or MONTH.
"""

import sqlalchemy as sa
from alembic import op

revision = "a8d3f1c5e7b9"
down_revision = "f4b8d2a6c1e3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("traffic_reset", sa.Text(), nullable=False,
                                             server_default="NONE"), schema="provisioning")


def downgrade() -> None:
    op.drop_column("subscriptions", "traffic_reset", schema="provisioning")
