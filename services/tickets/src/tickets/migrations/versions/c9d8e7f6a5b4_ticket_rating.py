"""ticket rating (CSAT)

Revision ID: c9d8e7f6a5b4
Revises: b7c1d2e3f4a5
Create Date: 2026-12-02 02:15:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'c9d8e7f6a5b4'
down_revision = 'b7c1d2e3f4a5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('rating', sa.Integer(), nullable=True), schema='tickets')
    op.add_column('tickets', sa.Column('rating_comment', sa.Text(), nullable=True),
                  schema='tickets')
    op.add_column('tickets', sa.Column('rated_at', sa.DateTime(timezone=True), nullable=True),
                  schema='tickets')


def downgrade() -> None:
    for col in ('rated_at', 'rating_comment', 'rating'):
        op.drop_column('tickets', col, schema='tickets')
