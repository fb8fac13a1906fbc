"""invoices created index

Revision ID: 0b5e7d9c3a14
Revises: f2c7e9a4b1d6
Create Date: 2026-12-02 01:40:00

The admin invoice list without a status filter pages by (created_at, id) newest first: without
this index every page sorted the whole table (a full scan at any size). Built CONCURRENTLY so a
large table keeps taking writes while it builds.
"""

from alembic import op

revision = "0b5e7d9c3a14"
down_revision = "f2c7e9a4b1d6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_invoices_created", "invoices", ["created_at", "id"], schema="billing",
                        postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_invoices_created", table_name="invoices", schema="billing",
                      postgresql_concurrently=True, if_exists=True)
