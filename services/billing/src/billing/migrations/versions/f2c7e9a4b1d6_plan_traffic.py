"""plan traffic

Revision ID: f2c7e9a4b1d6
Revises: e4a9c1f7b3d2
Create Date: 2026-12-01 21:40:00

A plan's traffic allowance (`traffic_limit_gb`, null: unlimited) and how it renews
(`traffic_reset`: NONE or MONTH), and the same on each invoice's plan snapshot (plans change
later; the grant follows what was bought).
"""

import sqlalchemy as sa
from alembic import op

revision = "f2c7e9a4b1d6"
down_revision = "e4a9c1f7b3d2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("traffic_limit_gb", sa.Integer(), nullable=True),
                  schema="billing")
    op.add_column("plans", sa.Column("traffic_reset", sa.Text(), nullable=False,
                                     server_default="NONE"), schema="billing")
    op.create_check_constraint("ck_plans_traffic", "plans",
                               "(traffic_limit_gb IS NULL OR traffic_limit_gb > 0) AND "
                               "traffic_reset IN ('NONE', 'MONTH')", schema="billing")
    op.add_column("invoices", sa.Column("plan_traffic_limit_gb", sa.Integer(), nullable=True),
                  schema="billing")
    op.add_column("invoices", sa.Column("plan_traffic_reset", sa.Text(), nullable=True),
                  schema="billing")


def downgrade() -> None:
    op.drop_column("invoices", "plan_traffic_reset", schema="billing")
    op.drop_column("invoices", "plan_traffic_limit_gb", schema="billing")
    op.drop_constraint("ck_plans_traffic", "plans", schema="billing")
    op.drop_column("plans", "traffic_reset", schema="billing")
    op.drop_column("plans", "traffic_limit_gb", schema="billing")
