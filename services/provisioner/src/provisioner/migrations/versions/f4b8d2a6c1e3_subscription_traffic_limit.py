"""subscription traffic limit

Revision ID: f4b8d2a6c1e3
Revises: e2a7c4b9d6f1
Create Date: 2026-12-01 20:50:00

The traffic a subscription's last grant allows (the trial's `TRIAL_TRAFFIC_GB`); null: the
backend's configured default (`VPN_DATA_LIMIT_BYTES`).
"""

import sqlalchemy as sa
from alembic import op

revision = "f4b8d2a6c1e3"
down_revision = "e2a7c4b9d6f1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("data_limit_bytes", sa.BigInteger(), nullable=True),
                  schema="provisioning")


def downgrade() -> None:
    op.drop_column("subscriptions", "data_limit_bytes", schema="provisioning")
