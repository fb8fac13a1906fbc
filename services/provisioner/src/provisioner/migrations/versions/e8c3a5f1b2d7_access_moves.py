"""access moves

Revision ID: e8c3a5f1b2d7
Revises: b9e4c2f7a1d3
Create Date: 2026-12-02 06:40:00

Moves of a subscription's access to another server (`provisioner.moves`), and the sandbox
server each sandbox account lives on (so every sandbox server of the pool answers for its own
accounts; accounts of pool servers made before are given theirs from `backend_accounts`).
"""

import sqlalchemy as sa
from alembic import op

revision = "e8c3a5f1b2d7"
down_revision = "b9e4c2f7a1d3"
branch_labels = None
depends_on = None

S = "provisioning"
OPEN = "status IN ('WAITING', 'PENDING', 'SWITCHED')"


def upgrade() -> None:
    op.create_table(
        "moves",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("from_server_id", sa.Text(), nullable=True),
        sa.Column("from_ref", sa.Text(), nullable=False),
        sa.Column("to_server_id", sa.Text(), nullable=True),
        sa.Column("to_ref", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    op.create_index("uq_moves_open_subscription", "moves", ["subscription_id"], unique=True,
                    schema=S, postgresql_where=sa.text(OPEN))
    op.create_index("ix_moves_open", "moves", ["status", "updated_at"], schema=S,
                    postgresql_where=sa.text(OPEN))
    op.create_index("ix_moves_to_server", "moves", ["to_server_id"], schema=S,
                    postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index("ix_moves_from_server", "moves", ["from_server_id", "status"], schema=S)
    op.add_column("sandbox_vpn_accounts",
                  sa.Column("server", sa.Text(), nullable=False, server_default=""), schema=S)
    op.execute(f"""
        UPDATE {S}.sandbox_vpn_accounts a SET server = b.server_id
        FROM {S}.backend_accounts b JOIN {S}.servers v ON v.id = b.server_id
        WHERE b.ref = a.ref AND b.backend = 'sandbox'
          AND NOT coalesce((v.settings ->> 'from_env')::boolean, false)""")


def downgrade() -> None:
    op.drop_column("sandbox_vpn_accounts", "server", schema=S)
    op.drop_index("ix_moves_from_server", table_name="moves", schema=S)
    op.drop_index("ix_moves_to_server", table_name="moves", schema=S)
    op.drop_index("ix_moves_open", table_name="moves", schema=S)
    op.drop_index("uq_moves_open_subscription", table_name="moves", schema=S)
    op.drop_table("moves", schema=S)
