"""stats live

Revision ID: e4a9c2d7f1b3
Revises: d2f8b5c1a7e3
Create Date: 2026-12-03 14:00:00

The snapshot of the KPIs' days not closed yet (`billing.stats_live`, `runtime.daystats`):
renewed by the worker every `STATS_LIVE_INTERVAL_MS`, read while fresh.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "e4a9c2d7f1b3"
down_revision = "d2f8b5c1a7e3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_live",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        schema="billing")


def downgrade() -> None:
    op.drop_table("stats_live", schema="billing")
