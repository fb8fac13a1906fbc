"""stats days

Revision ID: b5d8f2a0e3c7
Revises: e8c3a5f1b2d7
Create Date: 2026-12-02 16:30:00

The KPIs' closed days (`provisioning.stats_days`, `runtime.daystats`), the triggers that
forget a cached day when a grant changes it (the rule in `provisioner.stats`), and the indexes
the per-day reads use (built CONCURRENTLY: the grants table is large).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from runtime.daystats import (
    drop_triggers_sql,
    forget_function_sql,
    inserted_function_sql,
    triggers_sql,
    utc_day,
)

revision = "b5d8f2a0e3c7"
down_revision = "e8c3a5f1b2d7"
branch_labels = None
depends_on = None

S = "provisioning"
COVERING = "status IN ('APPLIED', 'REFUND_PENDING')"


def _forget(row: str) -> str:
    return f"""
    PERFORM {S}.stats_days_forget({utc_day(f'{row}.created_at')}, {utc_day(f'{row}.created_at')});
    IF {row}.{COVERING} AND {row}.applied_at IS NOT NULL THEN
      PERFORM {S}.stats_days_forget({utc_day(f'{row}.applied_at')},
                                    {utc_day(f'{row}.new_expires_at')});
    END IF;"""


FORGET = [
    f"""
CREATE OR REPLACE FUNCTION {S}.grants_stats_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN{_forget('OLD')}
  END IF;
  IF TG_OP <> 'DELETE' THEN{_forget('NEW')}
  END IF;
  RETURN NULL;
END $$""",
]

FORGET += [inserted_function_sql(
    S, "grants_stats_days",
    f"({utc_day('r.created_at')}, {utc_day('r.created_at')}), "
    f"(CASE WHEN r.{COVERING} THEN {utc_day('r.applied_at')} END, {utc_day('r.new_expires_at')})")]

INDEXES = (
    ("ix_grants_cover",
     [sa.text("tstzrange(applied_at, greatest(applied_at, new_expires_at), '[)')")],
     "gist", f"{COVERING} AND applied_at IS NOT NULL"),
    ("ix_grants_covering_starts", ["applied_at"], None, f"{COVERING} AND applied_at IS NOT NULL"),
    ("ix_grants_covering_ends", ["new_expires_at"], None, COVERING),
    ("ix_grants_invoice_created", ["created_at"], None, "kind = 'INVOICE'"),
)


def upgrade() -> None:
    op.create_table(
        "stats_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        schema=S)
    for statement in (*forget_function_sql(S), *FORGET):
        op.execute(statement)
    for statement in triggers_sql(S, "grants", "grants_stats_days",
                                  ("status", "kind", "subscription_id", "created_at",
                                   "applied_at", "new_expires_at")):
        op.execute(statement)
    with op.get_context().autocommit_block():
        for name, columns, using, where in INDEXES:
            op.create_index(name, "grants", columns, schema=S, postgresql_concurrently=True,
                            if_not_exists=True, postgresql_using=using,
                            postgresql_where=sa.text(where))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, *_ in INDEXES:
            op.drop_index(name, table_name="grants", schema=S, postgresql_concurrently=True,
                          if_exists=True)
    for statement in drop_triggers_sql(S, "grants"):
        op.execute(statement)
    op.execute(f"DROP FUNCTION IF EXISTS {S}.grants_stats_days(), "
               f"{S}.grants_stats_days_inserted(), {S}.stats_days_forget_all(), "
               f"{S}.stats_days_forget(date, date)")
    op.drop_table("stats_days", schema=S)
