"""stats live

Revision ID: a1f6d4c8b2e7
Revises: c6e9a3b1f4d8
Create Date: 2026-12-03 14:00:00

The snapshot of the KPIs' days not closed yet (`tickets.stats_live`, `runtime.daystats`):
renewed by the worker every `STATS_LIVE_INTERVAL_MS`, read while fresh.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "a1f6d4c8b2e7"
down_revision = "c6e9a3b1f4d8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_live",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        schema="tickets")


def downgrade() -> None:
    op.drop_table("stats_live", schema="tickets")
