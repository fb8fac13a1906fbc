"""update pump: retry bookkeeping on received updates, pending index in update_id order

Revision ID: c4d5e6f7a8b9
Revises: a2ab0c92f51d
Create Date: 2026-11-28 21:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "c4d5e6f7a8b9"
down_revision = "a2ab0c92f51d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("received_updates",
                  sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
                  schema="telegram")
    op.add_column("received_updates",
                  sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
                  schema="telegram")
    op.add_column("received_updates", sa.Column("last_error", sa.Text(), nullable=True),
                  schema="telegram")
    op.drop_index("ix_updates_unprocessed", table_name="received_updates", schema="telegram",
                  postgresql_where=sa.text("processed_at IS NULL"))
    op.create_index("ix_updates_pending", "received_updates", ["update_id"], unique=False,
                    schema="telegram", postgresql_where=sa.text("processed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_updates_pending", table_name="received_updates", schema="telegram",
                  postgresql_where=sa.text("processed_at IS NULL"))
    op.create_index("ix_updates_unprocessed", "received_updates", ["received_at"], unique=False,
                    schema="telegram", postgresql_where=sa.text("processed_at IS NULL"))
    op.drop_column("received_updates", "last_error", schema="telegram")
    op.drop_column("received_updates", "retry_at", schema="telegram")
    op.drop_column("received_updates", "attempts", schema="telegram")
