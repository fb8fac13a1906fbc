"""support desk: notes, assignee, first response, language, canned replies

Revision ID: b7c1d2e3f4a5
Revises: aff71db7b5ed
Create Date: 2026-12-02 01:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'b7c1d2e3f4a5'
down_revision = 'aff71db7b5ed'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickets', sa.Column('assignee_id', sa.Text(), nullable=True), schema='tickets')
    op.add_column('tickets', sa.Column('assignee_name', sa.Text(), nullable=True),
                  schema='tickets')
    op.add_column('tickets', sa.Column('first_response_at', sa.DateTime(timezone=True),
                                       nullable=True), schema='tickets')
    op.add_column('tickets', sa.Column('language', sa.Text(), nullable=True), schema='tickets')
    op.add_column('messages', sa.Column('kind', sa.Text(), server_default='MESSAGE',
                                        nullable=False), schema='tickets')
    op.add_column('messages', sa.Column('author_name', sa.Text(), nullable=True),
                  schema='tickets')
    op.create_table('canned_replies',
                    sa.Column('id', sa.Text(), nullable=False),
                    sa.Column('name', sa.Text(), nullable=False),
                    sa.Column('body_en', sa.Text(), nullable=False),
                    sa.Column('body_ru', sa.Text(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('name'),
                    schema='tickets')


def downgrade() -> None:
    op.drop_table('canned_replies', schema='tickets')
    op.drop_column('messages', 'author_name', schema='tickets')
    op.drop_column('messages', 'kind', schema='tickets')
    for col in ('language', 'first_response_at', 'assignee_name', 'assignee_id'):
        op.drop_column('tickets', col, schema='tickets')
