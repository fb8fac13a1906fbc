"""`make seed-scale SCALE=10k|100k|1m`: a consistent customer history at scale, for `bench-scale`.

Writes straight into each service's own schema with bulk `COPY` (asyncpg
`copy_records_to_table`), never through the API, into a dedicated database (`vpn_scale`,
never the dev or test ones) that the services' own Alembic migrations create first. What it
writes holds together the way the services would have left it: every user id, invoice id,
subscription id and backend ref one service names exists in the service that owns it; each
balance is the sum of its ledger (never negative, one idempotency key per cause); promo codes
count their redemptions; the sandbox VPN backend holds one account per subscription, enabled
exactly when the subscription is ACTIVE.

The history is drawn from a seeded random generator (`--seed`, one stream per chunk), customers
in chunks so memory stays bounded whatever the scale, `--workers` chunks at once. The first user
is the admin `scale-admin@example.com`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import asyncpg

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

SCALES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}
SCALE_DB = "vpn_scale"
ADMIN_EMAIL = "scale-admin@example.com"
# One hash for every seeded customer (argon2 is far too slow to hash a million passwords):
# the password is `scale password 1`.
PASSWORD = "scale password 1"
TG_BASE = 700_000_000  # telegram user id (and private chat id) of customer i: TG_BASE + i
NAMES = ("anna", "boris", "chen", "dmitri", "elena", "farid", "greta", "hiro", "ivan", "julia",
         "kemal", "lena", "maria", "nikolai", "olga", "pavel", "quinn", "rustam", "sofia",
         "timur", "ulla", "viktor", "wang", "xenia", "yuri", "zara")
DOMAINS = ("example.com", "mail.example.org", "inbox.example.net", "post.example.io")
SUBJECTS = ("Cannot connect", "Slow speed", "Refund please", "How do I renew?",
            "Payment not visible", "Change device", "Key does not import")
GB = 1024 ** 3
# The trial as billing grants it (`TRIAL_DAYS` and `TRIAL_MAX_DEVICES` at their defaults).
TRIAL_PLAN = {"id": "trial", "name": "Trial", "duration_days": 3, "max_devices": 1,
              "price_usd": Decimal("0.00"), "traffic_limit_gb": None, "traffic_reset": "NONE"}
TRIAL_SHARE = 0.3


def rid(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


@dataclass
class Chunk:
    """The rows of one chunk of customers, per table (the column names in `COLUMNS`)."""

    rows: dict[str, list[tuple]] = field(default_factory=dict)

    def add(self, table: str, row: tuple) -> None:
        self.rows.setdefault(table, []).append(row)


COLUMNS = {
    "identity.users": ("id", "email", "password_hash", "role", "is_blocked", "created_at",
                       "telegram_linked", "telegram_username"),
    "identity.sessions": ("token_hash", "user_id", "created_at", "expires_at"),
    "billing.invoices": ("id", "user_id", "kind", "plan_id", "plan_name", "plan_duration_days",
                         "plan_max_devices", "plan_price_usd", "plan_traffic_limit_gb",
                         "plan_traffic_reset", "status", "amount_usd", "asset", "network",
                         "rate_usd", "amount_asset", "address", "provider", "rate_locked_until",
                         "created_at", "updated_at", "paid_at", "expired_at", "canceled_at",
                         "refunded_at", "refund_reason", "amount_received_asset",
                         "overpaid_asset", "underpaid_asset", "late_amount_asset",
                         "needs_review", "promo_code", "discount_usd", "bonus_days"),
    "billing.trials": ("user_id", "invoice_id", "telegram_user_id", "created_at"),
    "billing.payments": ("id", "invoice_id", "status", "txid", "asset", "network",
                         "amount_asset", "confirmations", "late", "created_at", "updated_at",
                         "detected_at", "confirmed_at", "settled_at"),
    "billing.balances": ("user_id", "balance_usd", "updated_at", "owed_usd"),
    "billing.balance_entries": ("user_id", "kind", "amount_usd", "balance_after_usd",
                                "idempotency_key", "invoice_id", "created_at"),
    "billing.promo_codes": ("id", "code", "kind", "value", "plan_ids", "max_uses",
                            "max_uses_per_user", "starts_at", "ends_at", "first_purchase_only",
                            "is_active", "uses_reserved", "uses_counted", "created_at",
                            "updated_at"),
    "billing.promo_redemptions": ("invoice_id", "code_id", "user_id", "status", "created_at",
                                  "updated_at"),
    "billing.telegram_links": ("user_id", "telegram_user_id", "linked_at"),
    "provisioning.subscriptions": ("id", "user_id", "plan_id", "plan", "status", "started_at",
                                   "expires_at", "max_devices", "data_limit_bytes",
                                   "traffic_reset", "provision_ref", "backend", "server_id",
                                   "suspend_reason", "reminders_sent", "auto_renew_enabled",
                                   "created_at", "updated_at"),
    "provisioning.grants": ("invoice_id", "kind", "user_id", "subscription_id", "plan_id",
                            "plan", "duration_days", "max_devices", "status", "attempts",
                            "previous_expires_at", "new_expires_at", "created_at",
                            "updated_at", "applied_at", "refunded_at", "refund_reason"),
    "provisioning.backend_accounts": ("backend", "ref", "subscription_id", "server_id", "state",
                                      "created_at", "updated_at"),
    "provisioning.sandbox_vpn_accounts": ("ref", "secret", "enabled", "expires_at",
                                          "max_devices", "data_limit_bytes", "created_at",
                                          "updated_at"),
    "provisioning.user_blocks": ("user_id", "blocked", "changed_at", "synced", "updated_at"),
    "tickets.tickets": ("id", "user_id", "subject", "status", "source", "seq", "created_at",
                        "last_message_at", "closed_at"),
    "tickets.messages": ("id", "ticket_id", "author_role", "origin", "body", "created_at"),
    "telegram.account_links": ("user_id", "telegram_user_id", "telegram_username", "chat_id",
                               "linked_at"),
    "telegram.subscription_view": ("user_id", "status", "expires_at", "updated_at"),
    "telegram.user_blocks": ("user_id", "blocked", "changed_at"),
}

# Invoice outcomes and their weights; CREATED/PENDING only for the newest invoice of a customer.
CLOSED_STATUSES = (("PAID", 62), ("EXPIRED", 25), ("CANCELED", 9), ("REFUNDED", 4))


@dataclass
class World:
    """What every chunk shares: the plans, the promo codes, the admin, the clock."""

    now: datetime
    plans: list[dict]
    promo_codes: list[tuple[str, str]]  # (id, code)
    admin_id: str
    password_hash: str
    email_nullable: bool
    promo_counts: dict[str, list[int]] = field(default_factory=dict)  # id -> [reserved, counted]
    audit_targets: list[tuple[str, str]] = field(default_factory=list)
    server_id: str = ""  # the seeded server of the pool, where every account lives


def provision_ref(subscription_id: str) -> str:
    from provisioner.service import provision_ref as ref

    return ref(subscription_id)


def plan_snapshot(plan: dict) -> str:
    return json.dumps({"name": plan["name"], "duration_days": plan["duration_days"],
                       "max_devices": plan["max_devices"], "price_usd": str(plan["price_usd"]),
                       "traffic_limit_gb": plan["traffic_limit_gb"],
                       "traffic_reset": plan["traffic_reset"]})


def customer(w: World, rng: random.Random, i: int, c: Chunk) -> None:
    """One customer's whole history across the services."""
    now = w.now
    uid = rid(rng)
    created = now - timedelta(seconds=rng.uniform(3600, 730 * 86400))
    name = rng.choice(NAMES)
    email = None if w.email_nullable and rng.random() < 0.12 else \
        f"{name}.{i}@{rng.choice(DOMAINS)}"
    linked = email is None or rng.random() < 0.55
    username = f"{name}_{i}" if linked and rng.random() < 0.8 else None
    blocked = rng.random() < 0.01
    c.add("identity.users", (uid, email, w.password_hash, "USER", blocked, created, linked,
                             username))
    tg_id = TG_BASE + i
    if linked:
        linked_at = created + timedelta(minutes=rng.uniform(1, 600))
        c.add("telegram.account_links", (uid, tg_id, username, tg_id, linked_at))
        c.add("billing.telegram_links", (uid, tg_id, linked_at))
    if blocked:
        changed = created + (now - created) * rng.random()
        c.add("provisioning.user_blocks", (uid, True, changed, True, changed))
        c.add("telegram.user_blocks", (uid, True, changed))
        w.audit_targets.append(("user.block", uid))

    # invoices, oldest first: ~5 a customer, payments for the paid ones, the ledger beside
    balance = Decimal("0.00")
    ledger_at = created
    paid_plans: list[tuple[str, dict, datetime]] = []
    n_invoices = rng.randint(1, 9)
    span = (now - created).total_seconds()
    times = sorted(created + timedelta(seconds=rng.uniform(60, span)) for _ in range(n_invoices))
    if rng.random() < 0.03:  # a purchase under way: its invoice still open
        times[-1] = max(times[-1], now - timedelta(minutes=rng.uniform(0.5, 25)))
    # a trial, as billing grants it: once per person, before any paid plan
    trial_at = created + timedelta(minutes=rng.uniform(1, 2880))
    if rng.random() < TRIAL_SHARE and trial_at < min(times[0], now):
        tiid = rid(rng)
        c.add("billing.invoices", (
            tiid, uid, "TRIAL", None, "Trial", TRIAL_PLAN["duration_days"],
            TRIAL_PLAN["max_devices"], TRIAL_PLAN["price_usd"], None, "NONE", "PAID",
            Decimal("0.00"), "USD", "TRIAL", Decimal(1), Decimal("0.00"), None, "trial",
            trial_at, trial_at, trial_at, trial_at, None, None, None, None, Decimal(0),
            Decimal(0), Decimal(0), Decimal(0), False, None, Decimal("0.00"), 0))
        c.add("billing.trials", (uid, tiid, tg_id if linked else None, trial_at))
        paid_plans.append((tiid, TRIAL_PLAN, trial_at, "PAID"))
    for k, at in enumerate(times):
        iid = rid(rng)
        newest = k == n_invoices - 1
        top_up = rng.random() < 0.15
        plan = None if top_up else rng.choice(w.plans)
        if newest and now - at < timedelta(minutes=30):
            status = rng.choice(("CREATED", "PENDING"))
        else:
            status = rng.choices([s for s, _ in CLOSED_STATUSES],
                                 [wt for _, wt in CLOSED_STATUSES])[0]
        price = Decimal(rng.choice(("5.00", "10.00", "25.00"))) if top_up else plan["price_usd"]
        promo = None
        discount = Decimal("0.00")
        if plan is not None and rng.random() < 0.1:
            promo = rng.choice(w.promo_codes)
            discount = (price * Decimal("0.20")).quantize(Decimal("0.01"))
        amount = price - discount
        # a plan bought from the balance when it covers it, else on the sandbox chain
        from_balance = (plan is not None and status in ("PAID", "REFUNDED")
                        and balance >= amount and rng.random() < 0.5)
        if from_balance:
            asset, network, provider, address, amount_asset = "USD", "BALANCE", "balance", None, \
                amount
        else:
            asset, network, provider = "USDT", "TRON", "sandbox"
            address = "T" + hashlib.sha256(f"sandbox:TRON:{iid}".encode()).hexdigest()[:40]
            amount_asset = amount
        paid = status in ("PAID", "REFUNDED")
        paid_at = at + timedelta(minutes=rng.uniform(1, 20)) if paid else None
        refunded_at = paid_at + timedelta(days=rng.uniform(0.1, 5)) if status == "REFUNDED" \
            else None
        if refunded_at and refunded_at > now:
            refunded_at = now
        expired_at = at + timedelta(minutes=30) if status == "EXPIRED" else None
        canceled_at = at + timedelta(minutes=rng.uniform(1, 25)) if status == "CANCELED" else None
        updated = refunded_at or paid_at or expired_at or canceled_at or at
        received = amount_asset if paid and not from_balance else Decimal(0)
        c.add("billing.invoices", (
            iid, uid, "TOP_UP" if top_up else "PLAN", plan and plan["id"], plan and plan["name"],
            plan and plan["duration_days"], plan and plan["max_devices"],
            plan and plan["price_usd"], plan and plan["traffic_limit_gb"],
            plan and plan["traffic_reset"], status, amount, asset, network, Decimal(1),
            amount_asset, address, provider, at + timedelta(minutes=30), at, updated, paid_at,
            expired_at, canceled_at, refunded_at,
            "seeded refund" if refunded_at else None, received, Decimal(0), Decimal(0),
            Decimal(0), False, promo and promo[1], discount, 0))
        if paid and not from_balance:
            pid = rid(rng)
            c.add("billing.payments", (
                pid, iid, "REFUNDED" if status == "REFUNDED" else "SETTLED", f"{rid(rng)}{pid}",
                asset, network, amount_asset, 20, False, paid_at, refunded_at or paid_at,
                paid_at, paid_at, paid_at))
        if promo is not None:
            state = {"PAID": "COUNTED", "REFUNDED": "COUNTED", "EXPIRED": "RELEASED",
                     "CANCELED": "RELEASED"}.get(status, "RESERVED")
            c.add("billing.promo_redemptions", (iid, promo[0], uid, state, at, updated))
            counts = w.promo_counts.setdefault(promo[0], [0, 0])
            counts[0 if state == "RESERVED" else 1] += state != "RELEASED"

        def move(kind: str, delta: Decimal, key: str, when: datetime, iid: str = iid) -> None:
            nonlocal balance, ledger_at
            balance += delta
            ledger_at = max(ledger_at, when)
            c.add("billing.balance_entries", (uid, kind, delta, balance, key, iid, when))

        if top_up and paid:
            move("TOP_UP", amount, f"invoice:{iid}:top-up", paid_at)
            if status == "REFUNDED" and balance >= amount:
                move("REFUND", -amount, f"invoice:{iid}:refund", refunded_at)
        if from_balance:
            move("PURCHASE", -amount, f"invoice:{iid}:purchase", paid_at)
            if status == "REFUNDED":
                move("REFUND", amount, f"invoice:{iid}:refund", refunded_at)
        if plan is not None and paid:
            paid_plans.append((iid, plan, paid_at, status))
    if ledger_at > created or rng.random() < 0.3:  # every ledger has its balance row
        c.add("billing.balances", (uid, balance, ledger_at, Decimal("0.00")))

    # the subscription: from the paid plans, its state by where its expiry falls
    if paid_plans:
        sub_id = uuid.uuid5(uuid.NAMESPACE_URL, f"scale:{uid}").hex
        ref = provision_ref(sub_id)
        first_at = paid_plans[0][2]
        applied = [(iid, plan, at) for iid, plan, at, st in paid_plans if st == "PAID"]
        plan = (applied or [(None, paid_plans[-1][1], None)])[-1][1]
        roll = rng.random()
        if not applied or roll < 0.04:
            status = "CANCELED" if not applied else rng.choice(("CANCELED", "EXPIRED"))
            expires = now - timedelta(days=rng.uniform(1, 600))
        elif roll < 0.50:
            status, expires = "EXPIRED", now - timedelta(days=rng.uniform(0.1, 600))
        else:
            status = "SUSPENDED" if blocked or roll > 0.98 else "ACTIVE"
            # a realistic spread: some within the reminder window, most later
            expires = now + timedelta(hours=rng.uniform(2, 24 * plan["duration_days"]))
        if status in ("EXPIRED", "CANCELED"):  # ended after it started, before now
            expires = min(now - timedelta(minutes=1), max(expires, first_at + timedelta(hours=1)))
            if expires <= first_at:  # bought a minute ago: still running
                status, expires = "ACTIVE", now + timedelta(days=plan["duration_days"])
        if plan is TRIAL_PLAN and status not in ("EXPIRED", "CANCELED") \
                and applied[-1][2] + timedelta(days=TRIAL_PLAN["duration_days"]) < now:
            status = "EXPIRED"  # a trial alone runs its days and ends
            expires = applied[-1][2] + timedelta(days=TRIAL_PLAN["duration_days"])
        if blocked and status == "ACTIVE":
            status = "SUSPENDED"
        updated = min(now, max(first_at, expires if expires < now else first_at))
        snap = plan_snapshot(plan)
        limit = plan["traffic_limit_gb"] * GB if plan["traffic_limit_gb"] else None
        reason = "USER_BLOCKED" if status == "SUSPENDED" and blocked else \
            "ADMIN" if status == "SUSPENDED" else None
        c.add("provisioning.subscriptions", (
            sub_id, uid, plan["id"], snap, status, first_at, expires, plan["max_devices"],
            limit, plan["traffic_reset"], ref, "sandbox", w.server_id, reason, [], False,
            first_at, updated))
        # each grant adds its plan's days to the expiry so far (or to its own time, once the
        # subscription has lapsed); the last applied one ends at the subscription's expiry
        last = applied[-1][0] if applied else None
        ends = None
        for iid, p, at, st in paid_plans:
            refunded = st == "REFUNDED"
            previous = max(ends or at, at)
            new = expires if iid == last else previous + timedelta(days=p["duration_days"])
            new = max(new, at + timedelta(minutes=1))
            if not refunded:
                ends = new
            c.add("provisioning.grants", (
                iid, "INVOICE", uid, sub_id, p["id"], plan_snapshot(p), p["duration_days"],
                p["max_devices"], "REFUNDED" if refunded else "APPLIED", 1, previous, new, at,
                at, at, at if refunded else None, "seeded refund" if refunded else None))
        active = status == "ACTIVE"
        c.add("provisioning.backend_accounts", ("sandbox", ref, sub_id, w.server_id,
                                                "ACTIVE" if active else "DISABLED", first_at,
                                                updated))
        c.add("provisioning.sandbox_vpn_accounts", (ref, f"{rng.getrandbits(96):024x}", active,
                                                    expires, plan["max_devices"], limit,
                                                    first_at, updated))
        c.add("telegram.subscription_view", (uid, status, expires, updated))
        if status == "SUSPENDED" and not blocked:
            w.audit_targets.append(("subscription.suspend", sub_id))

    # support: a fifth of the customers wrote, a few tickets each with a short thread
    if rng.random() < 0.2:
        for _ in range(rng.randint(1, 3)):
            tid = rid(rng)
            opened = created + timedelta(seconds=rng.uniform(60, span))
            source = "TELEGRAM" if linked and rng.random() < 0.5 else "WEB"
            n = rng.randint(1, 6)
            at = opened
            for m in range(n):
                staff = m % 2 == 1
                c.add("tickets.messages", (
                    rid(rng), tid, "SUPPORT" if staff else "USER",
                    "ADMIN" if staff else source, "Seeded message " + rid(rng)[:12], at))
                last = at
                at = min(now, at + timedelta(minutes=rng.uniform(5, 600)))
            closed = rng.random() < 0.7
            status = "CLOSED" if closed else ("PENDING_USER" if n % 2 == 0 else "OPEN")
            c.add("tickets.tickets", (tid, uid, rng.choice(SUBJECTS), status, source, n, opened,
                                      last, last if closed else None))


async def copy_chunk(conn: asyncpg.Connection, chunk: Chunk) -> int:
    total = 0
    for table in COLUMNS:  # in this order: a referenced row is written before its references
        rows = chunk.rows.get(table)
        if not rows:
            continue
        schema, name = table.split(".")
        await conn.copy_records_to_table(name, schema_name=schema, records=rows,
                                         columns=list(COLUMNS[table]))
        total += len(rows)
    return total


async def drop_secondary_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the indexes of the seeded tables that back no constraint (a bulk load is several
    times faster without them); returns their definitions, to build them again after."""
    tables = [*COLUMNS, "identity.audit_log"]
    rows = await conn.fetch(
        "SELECT n.nspname, ic.relname, pg_get_indexdef(i.indexrelid) AS ddl FROM pg_index i "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname || '.' || t.relname = ANY($1::text[]) AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        tables)
    for r in rows:
        await conn.execute(f'DROP INDEX "{r["nspname"]}"."{r["relname"]}"')
    return [r["ddl"] for r in rows]


async def write_audit(conn: asyncpg.Connection, w: World, rng: random.Random) -> int:
    """The admin's audit log for what the history shows an admin did, hash-chained as the
    gateway chains it (so `verify` holds)."""
    from gateway.service import GENESIS, _hashed_fields, entry_hash

    prev = GENESIS
    rows = []
    start = w.now - timedelta(days=365)
    targets = sorted(w.audit_targets, key=lambda t: t[1])
    step = timedelta(days=365) / max(1, len(targets))
    for k, (action, target) in enumerate(targets):
        at = start + step * k
        e = SimpleNamespace(at=at, actor_id=w.admin_id, actor_role="ADMIN", action=action,
                            target_type="user" if action.startswith("user") else "subscription",
                            target_id=target, request_id=rid(rng), outcome="success",
                            details=None)
        h = entry_hash(prev, _hashed_fields(e))
        rows.append((e.at, e.actor_id, e.actor_role, e.action, e.target_type, e.target_id,
                     e.request_id, e.outcome, None, prev, h))
        prev = h
    await conn.copy_records_to_table(
        "audit_log", schema_name="identity", records=rows,
        columns=["at", "actor_id", "actor_role", "action", "target_type", "target_id",
                 "request_id", "outcome", "details", "prev_hash", "hash"])
    return len(rows)


def write_chunk(dsn: str, w: World, seed_value: int, k: int, first: int, end: int
                ) -> tuple[int, dict[str, list[int]], list[tuple[str, str]], int]:
    """Customers `first` to `end` (chunk `k`, its own random stream) written in one
    transaction, in a process of its own; the rows written, the chunk's promo redemption
    counts and audit targets (for the caller to add up), and the customers written."""
    w = replace(w, promo_counts={}, audit_targets=[])
    rng = random.Random(seed_value * 1_000_003 + k)
    chunk = Chunk()
    for i in range(first, end):
        customer(w, rng, i, chunk)

    async def copy() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            await _binary_jsonb(conn)
            async with conn.transaction():
                return await copy_chunk(conn, chunk)
        finally:
            await conn.close()

    return asyncio.run(copy()), w.promo_counts, w.audit_targets, end - first


async def _binary_jsonb(conn: asyncpg.Connection) -> None:
    # COPY is binary: jsonb's binary form is a version byte, then the JSON text
    await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + v.encode(),
                              decoder=lambda b: json.loads(b[1:]), schema="pg_catalog",
                              format="binary")


async def seed_server(conn: asyncpg.Connection, rng: random.Random, now: datetime,
                      customers: int) -> str:
    """The pool's seeded server as the provisioner inserts it on first use (`VPN_BACKEND`'s),
    with room for every customer, as a seller of that many would have set it."""
    from provisioner.config import Settings
    from provisioner.servers import env_server_values

    values = env_server_values(Settings())
    values.update(id=rid(rng), capacity=max(values["capacity"], customers),
                  settings=json.dumps(values["settings"]), created_at=now, updated_at=now)
    await conn.execute(
        f"INSERT INTO provisioning.servers ({', '.join(values)}) VALUES "
        f"({', '.join(f'${i}' for i in range(1, len(values) + 1))})", *values.values())
    return values["id"]


async def seed(dsn: str, customers: int, seed_value: int = 24, chunk_size: int = 20_000,
               progress: bool = True, workers: int = 2) -> dict:
    """Write `customers` customers' histories into the migrated database at `dsn`, chunks
    generated and copied by `workers` processes at once (the Python that draws the history
    is most of the cost, and one process uses one core)."""
    from gateway.security import hash_password

    rng = random.Random(seed_value)
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        await _binary_jsonb(conn)
        plans = [dict(r) for r in await conn.fetch(
            "SELECT id, name, price_usd, duration_days, max_devices, traffic_limit_gb, "
            "traffic_reset FROM billing.plans WHERE is_active ORDER BY price_usd")]
        if not plans:
            raise SystemExit("no plans: run `python -m billing seed-plans` first")
        nullable = await conn.fetchval(
            "SELECT is_nullable = 'YES' FROM information_schema.columns WHERE "
            "table_schema = 'identity' AND table_name = 'users' AND column_name = 'email'")
        now = datetime.now(UTC)
        w = World(now=now, plans=plans, promo_codes=[], admin_id=rid(rng),
                  password_hash=hash_password(PASSWORD), email_nullable=nullable)
        w.server_id = await seed_server(conn, rng, now, customers)
        await conn.copy_records_to_table("users", schema_name="identity", records=[(
            w.admin_id, ADMIN_EMAIL, w.password_hash, "ADMIN", False, now - timedelta(days=800),
            False, None)], columns=list(COLUMNS["identity.users"]))
        codes = []
        for k in range(50):
            pid = rid(rng)
            w.promo_codes.append((pid, f"scale{k:02d}"))
            codes.append((pid, f"scale{k:02d}", "PERCENT", Decimal(20), None, None, 1000000, None,
                          None, False, True, 0, 0, now - timedelta(days=800), now))
        await conn.copy_records_to_table("promo_codes", schema_name="billing", records=codes,
                                         columns=list(COLUMNS["billing.promo_codes"]))
        written = 1 + len(codes)
        indexes = await drop_secondary_indexes(conn)
        ranges = [(start, min(customers, start + chunk_size))
                  for start in range(0, customers, chunk_size)]

        def chunks() -> int:
            # forked from a thread of its own: no event loop is running in the children
            done, rows_written = 0, 0
            with ProcessPoolExecutor(max_workers=max(1, min(workers, len(ranges))),
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                jobs = [pool.submit(write_chunk, dsn, w, seed_value, k, a, b)
                        for k, (a, b) in enumerate(ranges)]
                for job in as_completed(jobs):
                    rows, promo_counts, audit_targets, n = job.result()
                    rows_written, done = rows_written + rows, done + n
                    for pid, (reserved, counted) in promo_counts.items():
                        counts = w.promo_counts.setdefault(pid, [0, 0])
                        counts[0] += reserved
                        counts[1] += counted
                    w.audit_targets.extend(audit_targets)
                    if progress:
                        print(f"  {done}/{customers} customers, {written + rows_written} rows,"
                              f" {time.monotonic() - started:.0f} s", flush=True)
            return rows_written

        written += await asyncio.to_thread(chunks)
        async with conn.transaction():
            await conn.execute(
                "UPDATE billing.promo_codes p SET uses_reserved = c.reserved, "
                "uses_counted = c.counted FROM unnest($1::text[], $2::int[], $3::int[]) "
                "AS c(id, reserved, counted) WHERE p.id = c.id",
                list(w.promo_counts), [v[0] for v in w.promo_counts.values()],
                [v[1] for v in w.promo_counts.values()])
        written += await write_audit(conn, w, rng)
        if progress:
            print(f"  building {len(indexes)} indexes...", flush=True)
        # a unique one also proves the history has no duplicate
        await on_each_core(dsn, indexes, workers)
        # as autovacuum leaves tables loaded long ago: statistics, and the visibility map that
        # index-only scans (the counts) rely on
        tables = [f'VACUUM (ANALYZE) {t}' for t in await conn.fetchval(
            "SELECT array_agg(format('%I.%I', schemaname, relname) ORDER BY n_live_tup DESC) "
            "FROM pg_stat_user_tables WHERE schemaname = ANY($1::text[])",
            sorted({t.split(".")[0] for t in [*COLUMNS, "identity.audit_log"]}))]
        await on_each_core(dsn, tables, workers)
    finally:
        await conn.close()
    return {"customers": customers, "rows": written, "seconds": time.monotonic() - started}


async def on_each_core(dsn: str, statements: list[str], workers: int) -> None:
    """Run `statements` on `workers` connections at once, each taking the next one left, with
    room to sort in memory (an index build or a vacuum reads a whole table: one statement at a
    time on one connection leaves the other core idle)."""
    todo = list(reversed(statements))

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '1GB'")
            while todo:
                await conn.execute(todo.pop())
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))


def scale_env(db_name: str = SCALE_DB, port_offset: int = 6000) -> dict[str, str]:
    """The scale stack's environment: ports, Redis database and broker prefix of its own."""
    from stack import default_env

    return default_env(port_offset=port_offset, db_name=db_name, redis_db=12,
                       broker_prefix="scale.")


def prepare(env: dict[str, str]) -> None:
    """A fresh database migrated by the services' own Alembic, with the demo plans."""
    from stack import Stack

    db_name = env["DATABASE_URL"].rsplit("/", 1)[1]
    if db_name in ("vpn", "vpn_bench") or db_name.startswith("vpn_test"):
        raise SystemExit(f"refusing to seed {db_name}: the dev, bench and test databases are "
                         "never seeded")

    async def drop():
        conn = await asyncpg.connect(env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres")
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = $1", db_name)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        finally:
            await conn.close()

    asyncio.run(drop())
    stack = Stack(env)
    stack.migrate()
    stack.seed_plans()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="10k", help=f"one of {', '.join(SCALES)} or a number")
    ap.add_argument("--db", default=SCALE_DB)
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="processes drawing and copying chunks at once (default: the cores)")
    ns = ap.parse_args()
    customers = SCALES.get(ns.scale.lower()) or int(ns.scale)
    env = scale_env(ns.db)
    print(f"migrating {ns.db}...", flush=True)
    prepare(env)
    print(f"seeding {customers} customers...", flush=True)
    out = asyncio.run(seed(env["DATABASE_URL"], customers, ns.seed, workers=ns.workers))
    print(f"{out['customers']} customers, {out['rows']} rows in {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
