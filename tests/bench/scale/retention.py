"""A year of the rows retention purges, derived from a seeded history, and each service's
retention rules timed against them.

`python tests/bench/scale/retention.py --db vpn_scale [--days 365] [--no-fill]`

The fill writes, for the last `--days` days of the seed's history, what the services would have
left behind (the seed itself writes none of it): an outbox row per event, published a second
after it happened (billing: each invoice created and paid; provisioning: each grant applied;
tickets: each message; identity: each customer registered; telegram: each Telegram message
received), the consumers' inbox rows for the same event ids, the Telegram updates received
(one per message written from Telegram) and the payment notifications sent to linked
customers, an idempotency key per invoice created, and a session per invoice created (a
sign-in, expiring after the gateway's 30 days). Rows go in in key order (the unique indexes grow
at their end, not at random places). The tables are then vacuumed and analyzed, as autovacuum
would leave them.

Then each service's own rules (`<service>.retention.rules` at its default settings, run by
`runtime.retention.run_rules`, the worker's daily job) run one service after another, timed
rule by rule; afterwards no row past a rule's cutoff may be left, and the rows within it stay.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

SERVICES = ("gateway", "billing", "provisioner", "tickets", "telegram")


def _event(producer: str, rk: str, at: str, payload: str) -> str:
    """The columns of an outbox row for an event at `at` (SQL) with `payload` (jsonb SQL)."""
    return (f"e.id, '{rk}.v1', jsonb_build_object('event_id', e.id, 'type', '{rk}', "
            f"'version', 1, 'occurred_at', {at}, 'producer', '{producer}', 'payload', "
            f"{payload}), {at}, {at} + interval '1 second'")


def _ids(rk: str, key: str) -> str:
    """The event id of `rk` for the source row `key`: the same on every fill."""
    return f"LATERAL (SELECT md5('{rk}' || {key})::uuid AS id) e"


OUTBOX = "(event_id, routing_key, envelope, created_at, published_at)"
WINDOW = "> now() - make_interval(days => $1)"

# In order: later statements read what earlier ones wrote (inboxes read the outboxes).
FILL = {
    "billing.outbox": [
        f"""INSERT INTO billing.outbox {OUTBOX}
        SELECT {_event("billing", "billing.invoice.created", "i.created_at",
                       "jsonb_build_object('invoice_id', i.id, 'user_id', i.user_id, "
                       "'amount_usd', i.amount_usd::text)")}
        FROM billing.invoices i, {_ids("billing.invoice.created", "i.id")}
        WHERE i.created_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING""",
        f"""INSERT INTO billing.outbox {OUTBOX}
        SELECT {_event("billing", "billing.invoice.paid", "i.paid_at",
                       "jsonb_build_object('invoice_id', i.id, 'user_id', i.user_id, "
                       "'kind', i.kind, 'plan_id', i.plan_id)")}
        FROM billing.invoices i, {_ids("billing.invoice.paid", "i.id")}
        WHERE i.paid_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING"""],
    "provisioning.outbox": [
        f"""INSERT INTO provisioning.outbox {OUTBOX}
        SELECT {_event("provisioner", "provisioning.subscription.activated", "g.applied_at",
                       "jsonb_build_object('subscription_id', g.subscription_id, "
                       "'user_id', g.user_id, 'expires_at', g.new_expires_at)")}
        FROM provisioning.grants g,
             {_ids("provisioning.subscription.activated", "g.invoice_id || g.kind")}
        WHERE g.applied_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING"""],
    "tickets.outbox": [
        f"""INSERT INTO tickets.outbox {OUTBOX}
        SELECT {_event("tickets", "tickets.message.added", "m.created_at",
                       "jsonb_build_object('ticket_id', m.ticket_id, 'message_id', m.id, "
                       "'author_role', m.author_role)")}
        FROM tickets.messages m, {_ids("tickets.message.added", "m.id")}
        WHERE m.created_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING"""],
    "identity.outbox": [
        f"""INSERT INTO identity.outbox {OUTBOX}
        SELECT {_event("gateway", "identity.user.registered", "u.created_at",
                       "jsonb_build_object('user_id', u.id)")}
        FROM identity.users u, {_ids("identity.user.registered", "u.id")}
        WHERE u.created_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING"""],
    "telegram.received_updates": [
        f"""INSERT INTO telegram.received_updates (update_id, payload, received_at, processed_at,
                                                   outcome, attempts)
        SELECT 900000000 + row_number() OVER (ORDER BY m.created_at, m.id),
               jsonb_build_object('message', jsonb_build_object('text', m.body,
                   'from', jsonb_build_object('id', l.telegram_user_id))),
               m.created_at, m.created_at + interval '1 second', 'ticket_message', 1
        FROM tickets.messages m JOIN tickets.tickets t ON t.id = m.ticket_id
        JOIN telegram.account_links l ON l.user_id = t.user_id
        WHERE m.origin = 'TELEGRAM' AND m.created_at {WINDOW}
        ON CONFLICT DO NOTHING"""],
    "telegram.outbox": [
        f"""INSERT INTO telegram.outbox {OUTBOX}
        SELECT {_event("telegram", "telegram.user_message.received", "u.received_at",
                       "jsonb_build_object('update_id', u.update_id)")}
        FROM telegram.received_updates u,
             {_ids("telegram.user_message.received", "u.update_id::text")}
        WHERE u.received_at {WINDOW} ORDER BY e.id
        ON CONFLICT DO NOTHING"""],
    "telegram.outgoing": [
        f"""INSERT INTO telegram.outgoing (event_id, chat_id, kind, seq, text, status, attempts,
                                           telegram_message_id, created_at, sent_at)
        SELECT o.event_id::text, l.chat_id, 'notification', 0, 'Payment received', 'SENT', 1,
               row_number() OVER (ORDER BY o.id), o.published_at, o.published_at
                                                                  + interval '1 second'
        FROM billing.outbox o
        JOIN telegram.account_links l ON l.user_id = o.envelope->'payload'->>'user_id'
        WHERE o.routing_key = 'billing.invoice.paid.v1' AND o.created_at {WINDOW}
        ORDER BY o.event_id ON CONFLICT DO NOTHING"""],
    "inboxes": [
        f"""INSERT INTO {inbox} (event_id, consumer, routing_key, processed_at)
        SELECT o.event_id, '{consumer}', o.routing_key, o.published_at + interval '1 second'
        FROM {outbox} o WHERE o.routing_key = ANY($2::text[]) AND o.created_at {WINDOW}
        ORDER BY o.event_id ON CONFLICT DO NOTHING"""
        for inbox, consumer, outbox in (
            ("provisioning.inbox", "provisioner.invoice_paid", "billing.outbox"),
            ("identity.inbox", "gateway.customer_facts", "billing.outbox"),
            ("telegram.inbox", "telegram.notify", "billing.outbox"),
            ("telegram.inbox", "telegram.notify", "provisioning.outbox"),
            ("billing.inbox", "billing.subscriptions", "provisioning.outbox"),
            ("telegram.inbox", "telegram.ticket_messages", "tickets.outbox"),
            ("tickets.inbox", "tickets.telegram_messages", "telegram.outbox"))],
    "billing.idempotency_keys": [
        f"""INSERT INTO billing.idempotency_keys (user_id, key, request_hash, status, lock_token,
                                                  response_status, created_at, locked_at,
                                                  completed_at)
        SELECT i.user_id, 'invoice-' || i.id, md5(i.id), 'done', md5(i.id || 'lock'), 201,
               i.created_at, i.created_at, i.created_at + interval '1 second'
        FROM billing.invoices i WHERE i.created_at {WINDOW} ORDER BY 1, 2
        ON CONFLICT DO NOTHING"""],
    "identity.sessions": [
        f"""INSERT INTO identity.sessions (token_hash, user_id, created_at, expires_at)
        SELECT encode(sha256(convert_to(i.id, 'UTF8')), 'hex'), i.user_id, i.created_at,
               i.created_at + interval '30 days'
        FROM billing.invoices i WHERE i.created_at {WINDOW} ORDER BY 1
        ON CONFLICT DO NOTHING"""],
}
# What each inbox consumes (the second parameter of its statement).
INBOX_KEYS = (["billing.invoice.paid.v1"], ["billing.invoice.paid.v1"],
              ["billing.invoice.paid.v1"], ["provisioning.subscription.activated.v1"],
              ["provisioning.subscription.activated.v1"], ["tickets.message.added.v1"],
              ["telegram.user_message.received.v1"])
TABLES = ("billing.outbox", "billing.inbox", "billing.idempotency_keys", "provisioning.outbox",
          "provisioning.inbox", "tickets.outbox", "tickets.inbox", "tickets.tickets",
          "identity.outbox", "identity.inbox", "identity.sessions", "telegram.outbox",
          "telegram.inbox", "telegram.received_updates", "telegram.outgoing")


async def fill(conn: asyncpg.Connection, days: int) -> dict[str, float]:
    """Write the rows (one transaction per table); the seconds each table took."""
    took = {}
    for table, statements in FILL.items():
        t0 = time.monotonic()
        async with conn.transaction():
            for k, statement in enumerate(statements):
                args = (days, INBOX_KEYS[k]) if table == "inboxes" else (days,)
                await conn.execute(statement, *args)
        took[table] = round(time.monotonic() - t0, 1)
    await conn.execute("VACUUM (ANALYZE) " + ", ".join(TABLES))
    return took


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


def service_rules(service: str):
    """The service's settings, as its worker reads them, and its retention rules."""
    settings = importlib.import_module(f"{service}.config").Settings()
    return settings, importlib.import_module(f"{service}.retention").rules(settings)


async def due_left(conn: asyncpg.Connection, rule, now: datetime) -> int:
    """Rows of the rule still past its cutoff (0 once it ran)."""
    query = sa.select(sa.func.count()).select_from(rule.table).where(*rule.due(now))
    compiled = query.compile(dialect=sa.dialects.postgresql.asyncpg.dialect(),
                             compile_kwargs={"literal_binds": True})
    return await conn.fetchval(str(compiled))


async def measure(ns: argparse.Namespace) -> dict:
    from seed import scale_env

    os.environ.update(scale_env(ns.db))
    from runtime.db import Database
    from runtime.retention import run_rules

    conn = await asyncpg.connect(os.environ["DATABASE_URL"].replace("+asyncpg", ""))
    report: dict = {"db": ns.db, "days": ns.days}
    try:
        if not ns.no_fill:
            report["fill_seconds"] = await fill(conn, ns.days)
        if ns.fill_only:
            report["rows"] = await counts(conn)
            return report
        report["rows_before"] = await counts(conn)
        report["load_before"] = os.getloadavg()
        now = datetime.now(UTC)
        report["services"] = {}
        for service in SERVICES:
            settings, rules = service_rules(service)
            db = Database(settings)
            out: dict = {}
            try:
                for rule in rules:
                    t0 = time.monotonic()
                    purged = await run_rules(db, service, [rule], now=now)
                    out[rule.name] = {"purged": purged.get(rule.name, 0),
                                      "seconds": round(time.monotonic() - t0, 2),
                                      "left_past_cutoff": await due_left(conn, rule, now)}
            finally:
                await db.dispose()
            report["services"][service] = out
        report["rows_after"] = await counts(conn)
        report["load_after"] = os.getloadavg()
        return report
    finally:
        await conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="vpn_scale")
    ap.add_argument("--days", type=int, default=365, help="days of history to fill")
    ap.add_argument("--no-fill", action="store_true", help="time the rules on the rows as they are")
    ap.add_argument("--fill-only", action="store_true", help="write the rows, run no rule")
    ns = ap.parse_args()
    print(json.dumps(asyncio.run(measure(ns)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
