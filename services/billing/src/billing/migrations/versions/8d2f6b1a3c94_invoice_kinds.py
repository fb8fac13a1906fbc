"""invoice kinds

Revision ID: 8d2f6b1a3c94
Revises: 6a1c4e9b2d70
Create Date: 2026-12-01 17:50:00

An invoice has a kind: `PLAN` (every invoice so far), or `TOP_UP`, which adds to the balance
and has no plan (so the plan and its snapshot become nullable, and a check ties them to the
kind). `TRIAL` and `RENEWAL` are allowed for what comes next.
"""

import sqlalchemy as sa
from alembic import op

revision = "8d2f6b1a3c94"
down_revision = "6a1c4e9b2d70"
branch_labels = None
depends_on = None

PLAN_COLUMNS = {"plan_id": sa.Text(), "plan_name": sa.Text(), "plan_duration_days": sa.Integer(),
                "plan_max_devices": sa.Integer(), "plan_price_usd": sa.Numeric(12, 2)}


def upgrade() -> None:
    op.add_column("invoices", sa.Column("kind", sa.Text(), nullable=False,
                                        server_default="PLAN"), schema="billing")
    for name, type_ in PLAN_COLUMNS.items():
        op.alter_column("invoices", name, existing_type=type_, nullable=True, schema="billing")
    op.create_check_constraint("ck_invoices_kind", "invoices",
                               "kind IN ('PLAN', 'TOP_UP', 'TRIAL', 'RENEWAL')", schema="billing")
    op.create_check_constraint("ck_invoices_plan_unless_top_up", "invoices",
                               "(kind = 'TOP_UP') = (plan_id IS NULL)", schema="billing")


def downgrade() -> None:
    # A top-up has no plan, so it cannot go back to a schema that requires one; money records
    # are never deleted to make a downgrade possible.
    top_ups = op.get_bind().scalar(sa.text(
        "SELECT count(*) FROM billing.invoices WHERE kind = 'TOP_UP'"))
    if top_ups:
        raise RuntimeError(f"{top_ups} top-up invoice(s) exist: this downgrade would lose them")
    op.drop_constraint("ck_invoices_plan_unless_top_up", "invoices", schema="billing")
    op.drop_constraint("ck_invoices_kind", "invoices", schema="billing")
    for name, type_ in PLAN_COLUMNS.items():
        op.alter_column("invoices", name, existing_type=type_, nullable=False, schema="billing")
    op.drop_column("invoices", "kind", schema="billing")
