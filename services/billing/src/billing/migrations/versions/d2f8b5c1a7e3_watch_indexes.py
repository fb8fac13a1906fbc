"""payment watch indexes

Revision ID: d2f8b5c1a7e3
Revises: a4c7e1f9d2b6
Create Date: 2026-12-03 08:30:00

The payment watch's recently expired and canceled invoices (`ids_to_watch`), found through
indexes of their own instead of a scan of every invoice each tick. Built CONCURRENTLY: the
invoices table is large.
"""

import sqlalchemy as sa
from alembic import op

revision = "d2f8b5c1a7e3"
down_revision = "a4c7e1f9d2b6"
branch_labels = None
depends_on = None

INDEXES = (("ix_invoices_expired_at", "expired_at", "status = 'EXPIRED'"),
           ("ix_invoices_canceled_at", "canceled_at", "status = 'CANCELED'"))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, column, where in INDEXES:
            op.create_index(name, "invoices", [column], schema="billing",
                            postgresql_concurrently=True, if_not_exists=True,
                            postgresql_where=sa.text(where))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, *_ in INDEXES:
            op.drop_index(name, table_name="invoices", schema="billing",
                          postgresql_concurrently=True, if_exists=True)
