"""auto-renew

Revision ID: e2a7c4b9d6f1
Revises: 5c8e2b1f7d40
Create Date: 2026-12-01 20:30:00

Auto-renewal, opt-in per subscription: whether it is on, the plan a renewal buys (None: the
current plan), and the `expires_at` whose renewal was last asked of billing (so each period is
asked once).
"""

import sqlalchemy as sa
from alembic import op

revision = "e2a7c4b9d6f1"
down_revision = "5c8e2b1f7d40"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("auto_renew_enabled", sa.Boolean(),
                                             nullable=False, server_default=sa.false()),
                  schema="provisioning")
    op.add_column("subscriptions", sa.Column("auto_renew_plan_id", sa.Text(), nullable=True),
                  schema="provisioning")
    op.add_column("subscriptions", sa.Column("renewal_due_for", sa.DateTime(timezone=True),
                                             nullable=True),
                  schema="provisioning")
    op.create_index("ix_subscriptions_auto_renew_due", "subscriptions", ["expires_at"],
                    schema="provisioning",
                    postgresql_where=sa.text("auto_renew_enabled AND status = 'ACTIVE'"))


def downgrade() -> None:
    op.drop_index("ix_subscriptions_auto_renew_due", table_name="subscriptions",
                  schema="provisioning")
    for column in ("renewal_due_for", "auto_renew_plan_id", "auto_renew_enabled"):
        op.drop_column("subscriptions", column, schema="provisioning")
