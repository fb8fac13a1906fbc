"""broadcasts

Revision ID: e4b1c2d3f5a6
Revises: 1d1b09a34f1a
Create Date: 2026-12-02 06:30:00

Broadcasts, their planned recipients, and the customer facts their segments read.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "e4b1c2d3f5a6"
down_revision = "1d1b09a34f1a"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_facts",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("trial_at", TS, nullable=True),
        sa.Column("paid_at", TS, nullable=True),
        sa.Column("expired_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
        schema="telegram",
    )
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("segment", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("text_ru", sa.Text(), nullable=False),
        sa.Column("buttons", JSONB(), nullable=False, server_default="[]"),
        sa.Column("status", sa.Text(), nullable=False, server_default="DRAFT"),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("blocked_by_user", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("resent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("planned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("plan_cursor", sa.Text(), nullable=True),
        sa.Column("held_until", TS, nullable=True),
        sa.Column("runner", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
        schema="telegram",
    )
    op.create_index("ix_broadcasts_created", "broadcasts", ["created_at"], schema="telegram")
    op.create_index("ix_broadcasts_sending", "broadcasts", ["id"], schema="telegram",
                    postgresql_where=sa.text("status = 'SENDING'"))
    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="PENDING"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("broadcast_id", "user_id"),
        schema="telegram",
    )
    op.create_index("ix_broadcast_recipients_open", "broadcast_recipients",
                    ["broadcast_id", "user_id"], schema="telegram",
                    postgresql_where=sa.text("state IN ('PENDING', 'SENDING')"))


def downgrade() -> None:
    op.drop_index("ix_broadcast_recipients_open", table_name="broadcast_recipients",
                  schema="telegram")
    op.drop_table("broadcast_recipients", schema="telegram")
    op.drop_index("ix_broadcasts_sending", table_name="broadcasts", schema="telegram")
    op.drop_index("ix_broadcasts_created", table_name="broadcasts", schema="telegram")
    op.drop_table("broadcasts", schema="telegram")
    op.drop_table("customer_facts", schema="telegram")
