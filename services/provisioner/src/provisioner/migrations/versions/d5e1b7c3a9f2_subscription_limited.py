"""subscription limited

Revision ID: d5e1b7c3a9f2
Revises: c7d2e9a4b1f6
Create Date: 2026-12-02 01:30:00

A subscription whose traffic allowance is used up (LIMITED to the customer): since when, when
its allowance renews, and when its usage was last read; the sandbox backend's used traffic.
"""

import sqlalchemy as sa
from alembic import op

revision = "d5e1b7c3a9f2"
down_revision = "c7d2e9a4b1f6"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    for column in ("limited_at", "limit_resets_at", "usage_checked_at"):
        op.add_column("subscriptions", sa.Column(column, TS, nullable=True),
                      schema="provisioning")
    op.add_column("sandbox_vpn_accounts", sa.Column("used_bytes", sa.BigInteger(),
                                                    nullable=False, server_default="0"),
                  schema="provisioning")


def downgrade() -> None:
    op.drop_column("sandbox_vpn_accounts", "used_bytes", schema="provisioning")
    for column in ("usage_checked_at", "limit_resets_at", "limited_at"):
        op.drop_column("subscriptions", column, schema="provisioning")
