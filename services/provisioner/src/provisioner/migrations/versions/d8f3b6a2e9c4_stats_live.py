"""stats live

Revision ID: d8f3b6a2e9c4
Revises: c7e1a4b9d2f6
Create Date: 2026-12-03 14:00:00

The snapshot of the KPIs' days not closed yet (`provisioning.stats_live`, `runtime.daystats`):
renewed by the worker every `STATS_LIVE_INTERVAL_MS`, read while fresh.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "d8f3b6a2e9c4"
down_revision = "c7e1a4b9d2f6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_live",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        schema="provisioning")


def downgrade() -> None:
    op.drop_table("stats_live", schema="provisioning")
