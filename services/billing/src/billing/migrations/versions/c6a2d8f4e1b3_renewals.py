"""renewals

Revision ID: c6a2d8f4e1b3
Revises: b3c8e5a7d219
Create Date: 2026-12-01 20:20:00

Auto-renewal: an invoice of kind RENEWAL names the subscription it renews and carries the key of
the period it pays for (`renewal_key`: subscription id + the `expires_at` it renews), unique, so
a period is charged once whatever runs twice.
"""

import sqlalchemy as sa
from alembic import op

revision = "c6a2d8f4e1b3"
down_revision = "b3c8e5a7d219"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("subscription_id", sa.Text(), nullable=True),
                  schema="billing")
    op.add_column("invoices", sa.Column("renewal_key", sa.Text(), nullable=True),
                  schema="billing")
    op.create_index("uq_invoices_renewal_key", "invoices", ["renewal_key"], unique=True,
                    schema="billing", postgresql_where=sa.text("renewal_key IS NOT NULL"))
    op.create_check_constraint("ck_invoices_renewal_keyed", "invoices",
                               "(kind = 'RENEWAL') = (renewal_key IS NOT NULL)",
                               schema="billing")


def downgrade() -> None:
    renewals = op.get_bind().scalar(sa.text(
        "SELECT count(*) FROM billing.invoices WHERE kind = 'RENEWAL'"))
    if renewals:
        raise RuntimeError(f"{renewals} renewal invoice(s) exist: this downgrade would lose them")
    op.drop_constraint("ck_invoices_renewal_keyed", "invoices", schema="billing")
    op.drop_index("uq_invoices_renewal_key", table_name="invoices", schema="billing")
    op.drop_column("invoices", "renewal_key", schema="billing")
    op.drop_column("invoices", "subscription_id", schema="billing")
