"""unplaced accounts index

Revision ID: c7e1a4b9d2f6
Revises: b5d8f2a0e3c7
Create Date: 2026-12-03 08:00:00

The backend accounts made before the server pool, found without reading the whole table by
the pool's adoption batches (`ServerPool.adopt`); the subscriptions' are found through
`ix_subscriptions_server`. Built CONCURRENTLY: the table is large.
"""

import sqlalchemy as sa
from alembic import op

revision = "c7e1a4b9d2f6"
down_revision = "b5d8f2a0e3c7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_backend_accounts_unplaced", "backend_accounts", ["id"],
                        schema="provisioning", postgresql_concurrently=True, if_not_exists=True,
                        postgresql_where=sa.text("server_id IS NULL"))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_backend_accounts_unplaced", table_name="backend_accounts",
                      schema="provisioning", postgresql_concurrently=True, if_exists=True)
