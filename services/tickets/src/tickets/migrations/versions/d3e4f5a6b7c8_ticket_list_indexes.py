"""ticket list indexes: the admin list's keyset order (created_at, id), with and without status

Revision ID: d3e4f5a6b7c8
Revises: c9d8e7f6a5b4
Create Date: 2026-12-02 06:20:00
"""
from alembic import op

revision = 'd3e4f5a6b7c8'
down_revision = 'c9d8e7f6a5b4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tickets_created', 'tickets', ['created_at', 'id'], schema='tickets')
    op.create_index('ix_tickets_status_created', 'tickets', ['status', 'created_at', 'id'],
                    schema='tickets')


def downgrade() -> None:
    op.drop_index('ix_tickets_status_created', table_name='tickets', schema='tickets')
    op.drop_index('ix_tickets_created', table_name='tickets', schema='tickets')
