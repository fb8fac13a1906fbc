"""ticket attachments and their bytes

Revision ID: f1a2b3c4d5e6
Revises: e6f7a8b9c0d1
Create Date: 2026-12-02 07:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'f1a2b3c4d5e6'
down_revision = 'e6f7a8b9c0d1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', sa.Text(), primary_key=True),
        sa.Column('ticket_id', sa.Text(),
                  sa.ForeignKey('tickets.tickets.id', ondelete='CASCADE'), nullable=False),
        sa.Column('message_id', sa.Text(),
                  sa.ForeignKey('tickets.messages.id', ondelete='CASCADE'), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('content_type', sa.Text(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        schema='tickets')
    op.create_index('ix_attachments_message', 'attachments', ['message_id', 'position'],
                    schema='tickets')
    op.create_index('ix_attachments_ticket', 'attachments', ['ticket_id'], schema='tickets')
    op.create_table(
        'attachment_blobs',
        sa.Column('attachment_id', sa.Text(),
                  sa.ForeignKey('tickets.attachments.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        schema='tickets')
    # the bytes are already compressed (png, jpeg, pdf): stored out of line, not compressed again
    op.execute("ALTER TABLE tickets.attachment_blobs ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table('attachment_blobs', schema='tickets')
    op.drop_table('attachments', schema='tickets')
