"""subscription link

Revision ID: b9e4c2f7a1d3
Revises: d5e1b7c3a9f2
Create Date: 2026-12-02 06:30:00

The stable subscription link: a long random token per subscription (null: revoked) and its
SHA-256, by which `GET /sub/{token}` finds it (`provisioner.links`). Existing subscriptions get
one each here.
"""

import hashlib
import secrets

import sqlalchemy as sa
from alembic import op

revision = "b9e4c2f7a1d3"
down_revision = "d5e1b7c3a9f2"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("link_token", sa.Text(), nullable=True),
                  schema="provisioning")
    op.add_column("subscriptions", sa.Column("link_hash", sa.Text(), nullable=True),
                  schema="provisioning")
    bind = op.get_bind()
    ids = [r[0] for r in bind.execute(sa.text(
        "SELECT id FROM provisioning.subscriptions WHERE link_token IS NULL"))]
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        tokens = [secrets.token_urlsafe(32) for _ in chunk]
        hashes = [hashlib.sha256(t.encode()).hexdigest() for t in tokens]
        bind.execute(sa.text(
            "UPDATE provisioning.subscriptions s SET link_token = v.token, link_hash = v.hash "
            "FROM unnest(CAST(:ids AS text[]), CAST(:tokens AS text[]), "
            "CAST(:hashes AS text[])) AS v(id, token, hash) WHERE s.id = v.id"),
            {"ids": chunk, "tokens": tokens, "hashes": hashes})
    op.create_index("uq_subscriptions_link_hash", "subscriptions", ["link_hash"], unique=True,
                    schema="provisioning")


def downgrade() -> None:
    op.drop_index("uq_subscriptions_link_hash", table_name="subscriptions",
                  schema="provisioning")
    op.drop_column("subscriptions", "link_hash", schema="provisioning")
    op.drop_column("subscriptions", "link_token", schema="provisioning")
