"""stats days

Revision ID: c6e9a3b1f4d8
Revises: f1a2b3c4d5e6
Create Date: 2026-12-02 16:30:00

The KPIs' closed days (`tickets.stats_days`, `runtime.daystats`), the triggers that forget a
cached day when a ticket or a staff message changes it (the rule in `tickets.stats`), and the
indexes the per-day reads use (built CONCURRENTLY).
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

revision = "c6e9a3b1f4d8"
down_revision = "f1a2b3c4d5e6"
branch_labels = None
depends_on = None

S = "tickets"
ANSWER = "author_role = 'SUPPORT' AND kind = 'MESSAGE'"


def _day(ts: str) -> str:
    return f"{utc_day(ts)}, {utc_day(ts)}"


def _ticket(row: str) -> str:
    return f"""
    PERFORM {S}.stats_days_forget({utc_day(f'{row}.created_at')}, {utc_day(f'{row}.closed_at')});
    PERFORM {S}.stats_days_forget({_day(f'{row}.rated_at')});
    PERFORM {S}.stats_days_forget({_day(f'{row}.first_response_at')});"""


FORGET = [
    f"""
CREATE OR REPLACE FUNCTION {S}.tickets_stats_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN{_ticket('OLD')}
  END IF;
  IF TG_OP <> 'DELETE' THEN{_ticket('NEW')}
  END IF;
  RETURN NULL;
END $$""",
    f"""
CREATE OR REPLACE FUNCTION {S}.messages_stats_days() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE next_answer timestamptz;
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.author_role = 'SUPPORT' AND OLD.kind = 'MESSAGE' THEN
    SELECT min(created_at) INTO next_answer FROM {S}.messages
      WHERE ticket_id = OLD.ticket_id AND {ANSWER} AND id <> OLD.id;
    PERFORM {S}.stats_days_forget({_day('OLD.created_at')});
    PERFORM {S}.stats_days_forget({_day('next_answer')});
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.author_role = 'SUPPORT' AND NEW.kind = 'MESSAGE' THEN
    PERFORM {S}.stats_days_forget({utc_day('NEW.created_at')}, NULL);
  END IF;
  RETURN NULL;
END $$""",
]

FORGET += [
    inserted_function_sql(S, "tickets_stats_days",
                          f"({utc_day('r.created_at')}, {utc_day('r.closed_at')}), "
                          f"({_day('r.rated_at')}), ({_day('r.first_response_at')})"),
    inserted_function_sql(S, "messages_stats_days", f"({utc_day('r.created_at')}, NULL::date)",
                          "r.author_role = 'SUPPORT' AND r.kind = 'MESSAGE'"),
]

OPEN = "tstzrange(created_at, greatest(created_at, coalesce(closed_at, 'infinity')), '(]')"
INDEXES = (
    ("ix_tickets_open", "tickets", [sa.text(OPEN)], "gist", None),
    ("ix_tickets_closed", "tickets", ["closed_at"], None, "closed_at IS NOT NULL"),
    ("ix_tickets_rated", "tickets", ["rated_at"], None, "rated_at IS NOT NULL"),
    ("ix_messages_answers", "messages", ["created_at"], None, ANSWER),
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
            *triggers_sql(S, "tickets", "tickets_stats_days",
                          ("created_at", "closed_at", "rated_at", "rating", "first_response_at",
                           "first_response_business_s")),
            *triggers_sql(S, "messages", "messages_stats_days",
                          ("ticket_id", "author_role", "kind", "created_at"))):
        op.execute(statement)
    with op.get_context().autocommit_block():
        for name, table, columns, using, where in INDEXES:
            op.create_index(name, table, columns, schema=S, postgresql_concurrently=True,
                            if_not_exists=True, postgresql_using=using,
                            postgresql_where=sa.text(where) if where else None)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, *_ in INDEXES:
            op.drop_index(name, table_name=table, schema=S, postgresql_concurrently=True,
                          if_exists=True)
    for statement in (*drop_triggers_sql(S, "tickets"), *drop_triggers_sql(S, "messages")):
        op.execute(statement)
    op.execute(f"DROP FUNCTION IF EXISTS {S}.tickets_stats_days(), {S}.messages_stats_days(), "
               f"{S}.tickets_stats_days_inserted(), {S}.messages_stats_days_inserted(), "
               f"{S}.stats_days_forget_all(), {S}.stats_days_forget(date, date)")
    op.drop_table("stats_days", schema=S)
