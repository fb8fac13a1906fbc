"""The scale dataset generator (`make seed-scale`) writes a history the services would accept:
every reference across services resolves, ledgers sum to balances, states are valid, the
sandbox VPN backend matches the subscriptions, the audit chain verifies. Small (2,000
customers) into its own database, migrated by the services' own Alembic."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from tests.bench.scale import seed as scale

SLOT = int(os.environ.get("TEST_SLOT", "0"))
DB = f"vpn_scale_test{SLOT or ''}"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
CUSTOMERS = 2000

# (what, query returning the offending rows' count): each must be 0
BROKEN = [
    ("a user id no user has", """
        SELECT count(*) FROM (
          SELECT user_id FROM billing.invoices UNION ALL SELECT user_id FROM billing.balances
          UNION ALL SELECT user_id FROM billing.balance_entries
          UNION ALL SELECT user_id FROM billing.telegram_links
          UNION ALL SELECT user_id FROM billing.promo_redemptions
          UNION ALL SELECT user_id FROM provisioning.subscriptions
          UNION ALL SELECT user_id FROM provisioning.grants
          UNION ALL SELECT user_id FROM provisioning.user_blocks
          UNION ALL SELECT user_id FROM tickets.tickets
          UNION ALL SELECT user_id FROM telegram.account_links
          UNION ALL SELECT user_id FROM telegram.subscription_view
          UNION ALL SELECT user_id FROM telegram.user_blocks) r
        WHERE NOT EXISTS (SELECT 1 FROM identity.users u WHERE u.id = r.user_id)"""),
    ("a grant whose invoice is not a paid plan or the trial of its user", """
        SELECT count(*) FROM provisioning.grants g LEFT JOIN billing.invoices i
          ON i.id = g.invoice_id AND i.user_id = g.user_id AND i.status IN ('PAID', 'REFUNDED')
          AND ((i.kind = 'PLAN' AND i.plan_id = g.plan_id)
               OR (i.kind = 'TRIAL' AND i.plan_id IS NULL AND g.plan_id = 'trial'))
        WHERE i.id IS NULL OR (g.status = 'REFUNDED') <> (i.status = 'REFUNDED')"""),
    ("a trial without its trial invoice and grant, or taken after a paid plan", """
        SELECT count(*) FROM billing.trials t LEFT JOIN billing.invoices i
          ON i.id = t.invoice_id AND i.user_id = t.user_id AND i.kind = 'TRIAL'
          AND i.status = 'PAID' AND i.amount_usd = 0
        LEFT JOIN provisioning.grants g ON g.invoice_id = t.invoice_id AND g.kind = 'INVOICE'
        WHERE i.id IS NULL OR g.invoice_id IS NULL OR EXISTS (
            SELECT 1 FROM billing.invoices p WHERE p.user_id = t.user_id AND p.kind = 'PLAN'
              AND p.status IN ('PAID', 'REFUNDED') AND p.paid_at < t.created_at)
          OR (SELECT count(*) FROM billing.invoices x WHERE x.user_id = t.user_id
              AND x.kind = 'TRIAL') <> 1"""),
    ("a subscription or backend account on no server of the pool", """
        SELECT count(*) FROM (SELECT server_id FROM provisioning.subscriptions
          UNION ALL SELECT server_id FROM provisioning.backend_accounts) r
        WHERE NOT EXISTS (SELECT 1 FROM provisioning.servers v WHERE v.id = r.server_id)"""),
    ("a paid plan invoice without its grant", """
        SELECT count(*) FROM billing.invoices i WHERE i.kind = 'PLAN'
          AND i.status IN ('PAID', 'REFUNDED')
          AND NOT EXISTS (SELECT 1 FROM provisioning.grants g WHERE g.invoice_id = i.id)"""),
    ("a grant of another subscription than its user's", """
        SELECT count(*) FROM provisioning.grants g LEFT JOIN provisioning.subscriptions s
          ON s.id = g.subscription_id AND s.user_id = g.user_id WHERE s.id IS NULL"""),
    ("a chain invoice paid without its settled payment, or a balance one with one", """
        SELECT count(*) FROM billing.invoices i WHERE i.status IN ('PAID', 'REFUNDED')
          AND (i.provider = 'sandbox') <> EXISTS (SELECT 1 FROM billing.payments p
                WHERE p.invoice_id = i.id AND p.status IN ('SETTLED', 'REFUNDED')
                AND p.amount_asset = i.amount_asset)"""),
    ("a payment on an unpaid invoice", """
        SELECT count(*) FROM billing.payments p JOIN billing.invoices i ON i.id = p.invoice_id
        WHERE i.status NOT IN ('PAID', 'REFUNDED')"""),
    ("a balance that is not the sum of its ledger", """
        SELECT count(*) FROM billing.balances b LEFT JOIN (
          SELECT user_id, sum(amount_usd) AS total FROM billing.balance_entries GROUP BY 1) e
          ON e.user_id = b.user_id WHERE coalesce(e.total, 0) <> b.balance_usd"""),
    ("a ledger without its balance row", """
        SELECT count(DISTINCT user_id) FROM billing.balance_entries e WHERE NOT EXISTS (
          SELECT 1 FROM billing.balances b WHERE b.user_id = e.user_id)"""),
    ("a ledger entry whose balance_after is not the running sum", """
        SELECT count(*) FROM (SELECT balance_after_usd, sum(amount_usd) OVER (
          PARTITION BY user_id ORDER BY id) AS running FROM billing.balance_entries) x
        WHERE running <> balance_after_usd"""),
    ("a ledger entry whose invoice is not its user's paid one", """
        SELECT count(*) FROM billing.balance_entries e LEFT JOIN billing.invoices i
          ON i.id = e.invoice_id AND i.user_id = e.user_id AND i.status IN ('PAID', 'REFUNDED')
        WHERE i.id IS NULL OR e.idempotency_key NOT LIKE 'invoice:' || i.id || ':%'"""),
    ("a promo code whose counters are not its redemptions", """
        SELECT count(*) FROM billing.promo_codes c WHERE uses_counted <> (
            SELECT count(*) FROM billing.promo_redemptions r WHERE r.code_id = c.id
            AND r.status = 'COUNTED')
          OR uses_reserved <> (SELECT count(*) FROM billing.promo_redemptions r
            WHERE r.code_id = c.id AND r.status = 'RESERVED')"""),
    ("a redemption whose invoice is not its user's or names another code", """
        SELECT count(*) FROM billing.promo_redemptions r JOIN billing.promo_codes c
          ON c.id = r.code_id LEFT JOIN billing.invoices i ON i.id = r.invoice_id
          AND i.user_id = r.user_id AND i.promo_code = c.code WHERE i.id IS NULL"""),
    ("a subscription without exactly one matching backend account and sandbox account", """
        SELECT count(*) FROM provisioning.subscriptions s WHERE
          (SELECT count(*) FROM provisioning.backend_accounts a WHERE a.ref = s.provision_ref
            AND a.subscription_id = s.id
            AND a.state = CASE WHEN s.status = 'ACTIVE' THEN 'ACTIVE' ELSE 'DISABLED' END) <> 1
          OR (SELECT count(*) FROM provisioning.sandbox_vpn_accounts v
            WHERE v.ref = s.provision_ref AND v.enabled = (s.status = 'ACTIVE')
            AND v.expires_at = s.expires_at) <> 1"""),
    ("a backend account no subscription has", """
        SELECT (SELECT count(*) FROM provisioning.sandbox_vpn_accounts v WHERE NOT EXISTS (
                  SELECT 1 FROM provisioning.subscriptions s WHERE s.provision_ref = v.ref))
             + (SELECT count(*) FROM provisioning.backend_accounts a WHERE NOT EXISTS (
                  SELECT 1 FROM provisioning.subscriptions s WHERE s.provision_ref = a.ref))"""),
    ("an ACTIVE or SUSPENDED subscription already expired, or an EXPIRED one still running", """
        SELECT count(*) FROM provisioning.subscriptions WHERE
          (status IN ('ACTIVE', 'SUSPENDED') AND expires_at <= now())
          OR (status = 'EXPIRED' AND expires_at > now())"""),
    ("a blocked user's running subscription not suspended for it", """
        SELECT count(*) FROM provisioning.subscriptions s JOIN identity.users u
          ON u.id = s.user_id WHERE u.is_blocked AND s.status = 'ACTIVE'"""),
    ("a subscription view that is not its subscription", """
        SELECT count(*) FROM telegram.subscription_view v FULL JOIN provisioning.subscriptions s
          ON s.user_id = v.user_id
        WHERE s.id IS NULL OR v.user_id IS NULL OR v.status <> s.status
          OR v.expires_at <> s.expires_at"""),
    ("a Telegram link the identity, telegram and billing services disagree on", """
        SELECT count(*) FROM identity.users u
          LEFT JOIN telegram.account_links l ON l.user_id = u.id
          LEFT JOIN billing.telegram_links b ON b.user_id = u.id
        WHERE u.telegram_linked <> (l.user_id IS NOT NULL)
          OR (l.user_id IS NOT NULL AND (b.telegram_user_id IS DISTINCT FROM l.telegram_user_id
              OR l.telegram_username IS DISTINCT FROM u.telegram_username))"""),
    ("a ticket whose seq is not its message count, or a message before its ticket", """
        SELECT count(*) FROM tickets.tickets t WHERE t.seq <> (
            SELECT count(*) FROM tickets.messages m WHERE m.ticket_id = t.id)
          OR EXISTS (SELECT 1 FROM tickets.messages m WHERE m.ticket_id = t.id
            AND (m.created_at < t.created_at OR m.created_at > t.last_message_at))
          OR (t.status = 'CLOSED') <> (t.closed_at IS NOT NULL)"""),
    ("an audit entry naming a target that does not exist", """
        SELECT count(*) FROM identity.audit_log a WHERE NOT EXISTS (
            SELECT 1 FROM identity.users u WHERE u.id = a.target_id)
          AND NOT EXISTS (SELECT 1 FROM provisioning.subscriptions s WHERE s.id = a.target_id)"""),
]

# every state each table can be in, present in the history
STATES = {
    "SELECT DISTINCT status FROM provisioning.subscriptions":
        {"ACTIVE", "SUSPENDED", "EXPIRED", "CANCELED"},
    "SELECT DISTINCT status FROM billing.invoices":
        {"CREATED", "PENDING", "PAID", "EXPIRED", "CANCELED", "REFUNDED"},
    "SELECT DISTINCT kind FROM billing.invoices": {"PLAN", "TOP_UP", "TRIAL"},
    "SELECT DISTINCT status FROM billing.promo_redemptions": {"RESERVED", "COUNTED", "RELEASED"},
    "SELECT DISTINCT kind FROM billing.balance_entries": {"TOP_UP", "PURCHASE", "REFUND"},
    "SELECT DISTINCT status FROM tickets.tickets": {"OPEN", "PENDING_USER", "CLOSED"},
    "SELECT DISTINCT source FROM tickets.tickets": {"WEB", "TELEGRAM"},
}


@pytest.fixture(scope="module")
def seeded():
    scale.prepare(scale.scale_env(DB, port_offset=6000 + 10 * SLOT))
    # chunks of 500 over two processes: the counts the chunks add up must still match
    out = asyncio.run(scale.seed(DSN, CUSTOMERS, chunk_size=500, progress=False, workers=2))
    yield out

    async def drop():
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def query(sql: str):
    async def run():
        conn = await asyncpg.connect(DSN)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_every_reference_resolves_and_every_ledger_sums(seeded):
    assert query("SELECT count(*) FROM identity.users")[0][0] == CUSTOMERS + 1
    invoices = query("SELECT count(*) FROM billing.invoices")[0][0]
    assert 4 * CUSTOMERS <= invoices <= 6 * CUSTOMERS  # ~5 a customer
    broken = {what: query(sql)[0][0] for what, sql in BROKEN}
    assert broken == {what: 0 for what, _ in BROKEN}


def test_every_state_appears_and_every_balance_is_non_negative(seeded):
    for sql, expected in STATES.items():
        assert {r[0] for r in query(sql)} >= expected, sql
    assert query("SELECT count(*) FROM billing.balances WHERE balance_usd < 0")[0][0] == 0
    linked, with_username, without = query(
        "SELECT count(*) FILTER (WHERE telegram_linked), count(telegram_username), "
        "count(*) FILTER (WHERE NOT telegram_linked) FROM identity.users")[0]
    assert linked > 0 and with_username > 0 and without > 0
    # trials taken, some followed by a paid plan (a conversion), some not
    converted, not_converted = query(
        "SELECT count(*) FILTER (WHERE p), count(*) FILTER (WHERE NOT p) FROM ("
        "SELECT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.user_id = t.user_id "
        "AND i.kind = 'PLAN' AND i.status = 'PAID') AS p FROM billing.trials t) x")[0]
    assert converted > 0 and not_converted > 0


def test_the_audit_chain_verifies(seeded):
    from types import SimpleNamespace

    from gateway.service import GENESIS, _hashed_fields, entry_hash

    rows = query("SELECT * FROM identity.audit_log ORDER BY id")
    assert rows
    prev = GENESIS
    for r in rows:
        assert r["prev_hash"] == prev
        assert entry_hash(prev, _hashed_fields(SimpleNamespace(**dict(r)))) == r["hash"]
        prev = r["hash"]
