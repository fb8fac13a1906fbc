"""customer card

Revision ID: b7c8d9e0f1a2
Revises: e4b1c2d3f5a6
Create Date: 2026-12-02 06:30:00

The customer card pinned in each ticket's topic (`ticket_cards`: its message, text and when an
edit is due), the accounts identity announced (`customer_view`: email, since when, role), and
the ADMIN operators' /extend and /resend (`desk_actions`).
"""

import sqlalchemy as sa
from alembic import op

revision = "b7c8d9e0f1a2"
down_revision = "e4b1c2d3f5a6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_view",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("role_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
        schema="telegram",
    )
    op.create_table(
        "ticket_cards",
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("edits", sa.Integer(), server_default="0", nullable=False),
        sa.Column("touches", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("ticket_id"),
        schema="telegram",
    )
    op.create_table(
        "desk_actions",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ticket_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("argument", sa.Text(), nullable=True),
        sa.Column("operator_telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("operator_name", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("update_id"),
        schema="telegram",
    )
    op.create_index("ix_ticket_cards_user", "ticket_cards", ["user_id"], schema="telegram")
    op.create_index("ix_ticket_cards_due", "ticket_cards", ["due_at"], schema="telegram",
                    postgresql_where=sa.text("due_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_ticket_cards_due", table_name="ticket_cards", schema="telegram")
    op.drop_index("ix_ticket_cards_user", table_name="ticket_cards", schema="telegram")
    op.drop_table("desk_actions", schema="telegram")
    op.drop_table("ticket_cards", schema="telegram")
    op.drop_table("customer_view", schema="telegram")
