"""first response in support hours (SUPPORT_HOURS)

Revision ID: e6f7a8b9c0d1
Revises: d3e4f5a6b7c8
Create Date: 2026-12-02 06:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'e6f7a8b9c0d1'
down_revision = 'd3e4f5a6b7c8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('first_response_business_s', sa.Integer(), nullable=True),
                  schema='tickets')


def downgrade() -> None:
    op.drop_column('tickets', 'first_response_business_s', schema='tickets')
