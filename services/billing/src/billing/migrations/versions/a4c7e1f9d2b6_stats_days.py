"""stats days

Revision ID: a4c7e1f9d2b6
Revises: 0b5e7d9c3a14
Create Date: 2026-12-02 16:30:00

The KPIs' closed days (`billing.stats_days`, `runtime.daystats`), the triggers that forget a
cached day when a plan invoice or a trial changes it (the rule in `billing.stats`), and the
indexes the per-day reads use (built CONCURRENTLY: the invoices table is large).
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

revision = "a4c7e1f9d2b6"
down_revision = "0b5e7d9c3a14"
branch_labels = None
depends_on = None

S = "billing"
PLAN = "kind IN ('PLAN', 'RENEWAL')"

FORGET = [
    f"""
CREATE OR REPLACE FUNCTION {S}.invoices_stats_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.{PLAN} THEN
    PERFORM {S}.stats_days_forget({utc_day('OLD.paid_at')}, NULL);
    PERFORM {S}.stats_days_forget({utc_day('OLD.refunded_at')}, {utc_day('OLD.refunded_at')});
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.{PLAN} THEN
    PERFORM {S}.stats_days_forget({utc_day('NEW.paid_at')}, NULL);
    PERFORM {S}.stats_days_forget({utc_day('NEW.refunded_at')}, {utc_day('NEW.refunded_at')});
  END IF;
  RETURN NULL;
END $$""",
    f"""
CREATE OR REPLACE FUNCTION {S}.trials_stats_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM {S}.stats_days_forget({utc_day('OLD.created_at')}, NULL);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM {S}.stats_days_forget({utc_day('NEW.created_at')}, NULL);
  END IF;
  RETURN NULL;
END $$""",
]

FORGET += [
    inserted_function_sql(S, "invoices_stats_days",
                          f"({utc_day('r.paid_at')}, NULL::date), "
                          f"({utc_day('r.refunded_at')}, {utc_day('r.refunded_at')})",
                          f"r.{PLAN}"),
    inserted_function_sql(S, "trials_stats_days", f"({utc_day('r.created_at')}, NULL::date)"),
]

INDEXES = (
    ("ix_invoices_plan_paid", "invoices", ["paid_at"], f"{PLAN} AND paid_at IS NOT NULL"),
    ("ix_invoices_plan_user_paid", "invoices", ["user_id", "paid_at", "id"],
     f"{PLAN} AND paid_at IS NOT NULL"),
    ("ix_invoices_plan_refunded", "invoices", ["refunded_at"],
     f"{PLAN} AND refunded_at IS NOT NULL"),
    ("ix_trials_created", "trials", ["created_at"], None),
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
    for statement in (
            *triggers_sql(S, "invoices", "invoices_stats_days",
                          ("kind", "user_id", "paid_at", "refunded_at", "amount_usd")),
            *triggers_sql(S, "trials", "trials_stats_days", ("user_id", "created_at"))):
        op.execute(statement)
    with op.get_context().autocommit_block():
        for name, table, columns, where in INDEXES:
            op.create_index(name, table, columns, schema=S, postgresql_concurrently=True,
                            if_not_exists=True,
                            postgresql_where=sa.text(where) if where else None)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in INDEXES:
            op.drop_index(name, table_name=table, schema=S, postgresql_concurrently=True,
                          if_exists=True)
    for statement in (*drop_triggers_sql(S, "invoices"), *drop_triggers_sql(S, "trials")):
        op.execute(statement)
    op.execute(f"DROP FUNCTION IF EXISTS {S}.invoices_stats_days(), {S}.trials_stats_days(), "
               f"{S}.invoices_stats_days_inserted(), {S}.trials_stats_days_inserted(), "
               f"{S}.stats_days_forget_all(), {S}.stats_days_forget(date, date)")
    op.drop_table("stats_days", schema=S)
