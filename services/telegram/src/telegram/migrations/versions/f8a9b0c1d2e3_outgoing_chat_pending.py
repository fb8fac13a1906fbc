"""a chat's pending outgoing rows outside tickets, oldest first (per-chat order and pacing)

Revision ID: f8a9b0c1d2e3
Revises: b7c8d9e0f1a2
Create Date: 2026-12-02 07:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = "f8a9b0c1d2e3"
down_revision = "b7c8d9e0f1a2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outgoing_chat_pending", "outgoing", ["chat_id", "id"], schema="telegram",
                    postgresql_where=sa.text("status = 'PENDING' AND ticket_id IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_outgoing_chat_pending", table_name="outgoing", schema="telegram")
