"""server pool

Revision ID: c7d2e9a4b1f6
Revises: a8d3f1c5e7b9
Create Date: 2026-12-02 01:20:00

The VPN servers accounts are placed on (`servers`, credentials kept as a Fernet token), and the
server each subscription and backend account lives on. Rows made before the pool get their
server when the provisioner seeds the server `VPN_BACKEND` describes.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c7d2e9a4b1f6"
down_revision = "a8d3f1c5e7b9"
branch_labels = None
depends_on = None

S = "provisioning"


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("settings", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("ix_servers_location_status", "servers", ["location", "status"], schema=S)
    op.add_column("subscriptions", sa.Column("server_id", sa.Text(), nullable=True), schema=S)
    op.create_index("ix_subscriptions_server", "subscriptions", ["server_id", "status"],
                    schema=S)
    op.add_column("backend_accounts", sa.Column("server_id", sa.Text(), nullable=True), schema=S)


def downgrade() -> None:
    op.drop_column("backend_accounts", "server_id", schema=S)
    op.drop_index("ix_subscriptions_server", table_name="subscriptions", schema=S)
    op.drop_column("subscriptions", "server_id", schema=S)
    op.drop_index("ix_servers_location_status", table_name="servers", schema=S)
    op.drop_table("servers", schema=S)
