"""`make bench-scale`: the request paths and the sweeps on a seeded database (`make seed-scale`).

Boots the whole system on the `vpn_scale` database the way `make bench` boots it (its own ports,
broker prefix and Redis database), signs in the seeded admin and one seeded customer (session
rows written as the gateway writes them), waits until every worker has filled its KPI cache (as
on a stack that has run for a while), and measures, as p50/p99 of sequential requests: admin
user search (email prefix, id, Telegram username), every admin list's first and a deep keyset
page, the customer's dashboard, invoice list (first and next page), subscriptions and tickets,
`GET /admin/kpis` for 30 days and a year (then each service's own stats endpoint, over HTTP,
for the same ranges). A new customer's purchase on the sandbox chain (seconds to PAID and to
ACTIVE). Then, through the running provisioner worker: the reminder sweep (every due reminder
sent); reconciliation of the whole sandbox backend with some drift made first (the
provisioner's own `reconcile`, in this process, against the same database; before the expiry,
which leaves no running subscription to drift); the expiry sweep with many subscriptions due at
once (time until every one is revoked on the sandbox backend, and each expired exactly once);
planning a broadcast to every linked customer (the telegram worker's own plan); and each
service's retention cleanup of a year of old rows (`retention.py` writes them first, derived
from the seeded history). Prints a table and writes a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "deploy" / "local"))
sys.path.insert(0, str(ROOT))

from stack import SERVICES, Stack, check_infra  # noqa: E402

from tests.bench.scale.seed import ADMIN_EMAIL, SCALE_DB, scale_env  # noqa: E402

SEP = "-" * 100


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def bench_env(db: str) -> dict[str, str]:
    env = scale_env(db)
    env.update({"RATE_LIMITS_ENABLED": "false", "LOG_LEVEL": "WARNING",
                "OUTBOX_POLL_SECONDS": "0.5", "EXPIRY_SWEEP_SECONDS": "1",
                "EXPIRY_REMINDER_SECONDS": "2", "RECONCILE_SECONDS": "86400"})
    return env


async def sign_in(conn: asyncpg.Connection, user_id: str) -> str:
    """A session for `user_id` as the gateway stores it (the SHA-256 of the token)."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await conn.execute("INSERT INTO identity.sessions (token_hash, user_id, created_at, "
                       "expires_at) VALUES ($1, $2, $3, $4)",
                       hashlib.sha256(token.encode()).hexdigest(), user_id, now,
                       now + timedelta(days=1))
    return token


def cursor_at(ts: datetime, ident: str) -> str:
    from runtime.pagination import encode_cursor

    return encode_cursor(ts, ident)


async def targets(dsn: str) -> dict:
    """The seeded rows the requests name: the admin, a customer with the most invoices and a
    running subscription, search terms, and cursors 90% of the way down each list."""
    conn = await asyncpg.connect(dsn)
    try:
        t: dict = {}
        t["admin"] = await conn.fetchval("SELECT id FROM identity.users WHERE email = $1",
                                         ADMIN_EMAIL)
        row = await conn.fetchrow(
            "SELECT u.id, u.email, u.telegram_username FROM identity.users u "
            "JOIN provisioning.subscriptions s ON s.user_id = u.id AND s.status = 'ACTIVE' "
            "WHERE u.telegram_username IS NOT NULL AND u.email IS NOT NULL "
            "AND (SELECT count(*) FROM billing.invoices i WHERE i.user_id = u.id) >= 8 "
            "AND EXISTS (SELECT 1 FROM tickets.tickets k WHERE k.user_id = u.id) LIMIT 1")
        t["customer"], t["email"], t["username"] = row["id"], row["email"], row["telegram_username"]
        users = await conn.fetchval("SELECT count(*) FROM identity.users")
        t["users_cursor"] = await conn.fetchval(
            "SELECT id FROM identity.users ORDER BY id OFFSET $1 LIMIT 1", int(users * 0.9))
        for name, table in (("invoices", "billing.invoices"),
                            ("subscriptions", "provisioning.subscriptions"),
                            ("tickets", "tickets.tickets")):
            n = await conn.fetchval(f"SELECT count(*) FROM {table}")
            r = await conn.fetchrow(f"SELECT created_at, id FROM {table} ORDER BY created_at "
                                    "DESC, id DESC OFFSET $1 LIMIT 1", int(n * 0.9))
            t[f"{name}_cursor"] = cursor_at(r["created_at"], r["id"])
        n = await conn.fetchval("SELECT count(*) FROM identity.audit_log")
        t["audit_cursor"] = str(await conn.fetchval(
            "SELECT id FROM identity.audit_log ORDER BY id DESC OFFSET $1 LIMIT 1", int(n * 0.9)))
        r = await conn.fetchrow("SELECT created_at, id FROM billing.invoices WHERE user_id = $1 "
                                "ORDER BY created_at DESC, id DESC OFFSET 3 LIMIT 1",
                                t["customer"])
        t["own_invoices_cursor"] = cursor_at(r["created_at"], r["id"])
        t["admin_token"] = await sign_in(conn, t["admin"])
        t["customer_token"] = await sign_in(conn, t["customer"])
        t["counts"] = {k: await conn.fetchval(f"SELECT count(*) FROM {k}") for k in (
            "identity.users", "billing.invoices", "billing.payments", "billing.balance_entries",
            "provisioning.subscriptions", "provisioning.sandbox_vpn_accounts", "tickets.tickets",
            "tickets.messages", "identity.audit_log")}
        return t
    finally:
        await conn.close()


def timed(client: httpx.Client, path: str, n: int, budget: float) -> dict:
    """p50/p99 of `n` sequential GETs of `path` (after 2 discarded), or of as many as `budget`
    seconds allow (at least 5: a slow path is measured, not waited for); non-200s counted."""
    for _ in range(2):
        client.get(path)
    ms, bad = [], 0
    deadline = time.monotonic() + budget
    for i in range(n):
        if i >= 5 and time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        r = client.get(path)
        ms.append((time.perf_counter() - t0) * 1000)
        bad += r.status_code != 200
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "n": len(ms), "non_200": bad}


def request_paths(t: dict) -> list[tuple[str, str, str]]:
    """(figure, who, path) of every measured request."""
    today = date.today()
    a = "/api/v1/admin"
    prefix = t["email"].split("@")[0][:-1]  # e.g. "anna.12" of anna.123@...
    return [
        ("admin search: email prefix", "admin", f"{a}/users?q={prefix}"),
        ("admin search: id", "admin", f"{a}/users?q={t['customer']}"),
        ("admin search: Telegram username", "admin", f"{a}/users?q={t['username']}"),
        ("admin users, first page", "admin", f"{a}/users"),
        ("admin users, deep page", "admin", f"{a}/users?cursor={t['users_cursor']}"),
        ("admin invoices, first page", "admin", f"{a}/invoices"),
        ("admin invoices, deep page", "admin", f"{a}/invoices?cursor={t['invoices_cursor']}"),
        ("admin invoices PAID, first page", "admin", f"{a}/invoices?status=PAID"),
        ("admin subscriptions, first page", "admin", f"{a}/subscriptions"),
        ("admin subscriptions, deep page", "admin",
         f"{a}/subscriptions?cursor={t['subscriptions_cursor']}"),
        ("admin tickets, first page", "admin", f"{a}/tickets"),
        ("admin tickets, deep page", "admin", f"{a}/tickets?cursor={t['tickets_cursor']}"),
        ("admin tickets OPEN, first page", "admin", f"{a}/tickets?status=OPEN"),
        ("admin audit log, first page", "admin", f"{a}/audit-log"),
        ("admin audit log, deep page", "admin", f"{a}/audit-log?cursor={t['audit_cursor']}"),
        ("customer dashboard (/app)", "customer", "/app"),
        ("customer invoices, first page", "customer", "/api/v1/invoices"),
        ("customer invoices, next page", "customer",
         f"/api/v1/invoices?limit=3&cursor={t['own_invoices_cursor']}"),
        ("customer subscriptions", "customer", "/api/v1/subscriptions"),
        ("customer tickets", "customer", "/api/v1/tickets"),
        ("admin KPIs, 30 days", "admin",
         f"{a}/kpis?from={today - timedelta(days=30)}&to={today}"),
        ("admin KPIs, 1 year by day", "admin",
         f"{a}/kpis?from={today - timedelta(days=365)}&to={today}"),
        ("admin KPIs, 1 year by week", "admin",
         f"{a}/kpis?from={today - timedelta(days=365)}&to={today}&granularity=week"),
    ]


KPI_SCHEMAS = {"billing": "billing", "provisioner": "provisioning", "tickets": "tickets"}


async def wait_kpis_warm(dsn: str, days: int, timeout: float) -> dict:
    """Until each service's worker has filled its closed days (`days` of them, as
    `stats_days_fill` keeps them) and renewed its snapshot of the days not closed within the
    last minute: the KPIs as an admin reads them once the stack has run for a while."""
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while True:
            state = {}
            for service, schema in KPI_SCHEMAS.items():
                state[service] = {
                    "days": await conn.fetchval(
                        f"SELECT count(*) FROM {schema}.stats_days "
                        "WHERE day >= current_date - $1::int", days),
                    "live_fresh": await conn.fetchval(
                        f"SELECT coalesce(max(computed_at) > now() - interval '1 minute', false)"
                        f" FROM {schema}.stats_live")}
            warm = all(v["days"] >= days - 2 and v["live_fresh"] for v in state.values())
            if warm or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(2)
    finally:
        await conn.close()
    return {"warm": warm, "seconds": time.monotonic() - started, "state": state}


def service_kpis(stack: Stack, n: int, budget: float) -> dict:
    """Each service's own `GET /internal/admin/stats` over HTTP (what the gateway asks the
    three for at once), for the same ranges as the gateway's KPI figures."""
    from tests.bench.broadcast import AdminAuth

    today = date.today()
    ranges = {"30 days": {"from": str(today - timedelta(days=30)), "to": str(today)},
              "1 year by day": {"from": str(today - timedelta(days=365)), "to": str(today)},
              "1 year by week": {"from": str(today - timedelta(days=365)), "to": str(today),
                                 "granularity": "week"}}
    out: dict = {}
    for service in KPI_SCHEMAS:
        with httpx.Client(base_url=stack.api_url(service), timeout=300,
                          auth=AdminAuth(stack, service)) as c:
            for label, params in ranges.items():
                q = "&".join(f"{k}={v}" for k, v in params.items())
                out[f"{service} stats, {label}"] = timed(c, f"/internal/admin/stats?{q}", n,
                                                         budget)
    return out


async def purchase(gw: str, timeout: float) -> dict:
    """A new customer buys the first plan on the sandbox chain at this scale, as in the e2e
    purchases: seconds from the transfer (and 3 blocks) until the invoice is PAID, and until
    the subscription is ACTIVE (the grant applied on the backend)."""
    from tests.e2e.purchases import catalogue, mine, new_customer, pay_invoice

    c = await new_customer(gw)
    try:
        plan, option = await catalogue(c)
        started = time.monotonic()
        invoice = await pay_invoice(c, plan, option)
        await mine(c, 3)
        paid_s = active_s = None
        while time.monotonic() - started < timeout and active_s is None:
            if paid_s is None:
                r = await c.get(f"/invoices/{invoice['id']}")
                if r.json()["invoice"]["status"] == "PAID":
                    paid_s = time.monotonic() - started
            else:
                subs = (await c.get("/subscriptions")).json()["subscriptions"]
                if any(s["status"] == "ACTIVE" for s in subs):
                    active_s = time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await c.aclose()
    return {"paid_s": paid_s, "active_s": active_s}


async def wait_reminders(dsn: str, days: int, timeout: float) -> dict:
    """Until no running subscription within `days` of expiry lacks its reminder."""
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while True:
            left = await conn.fetchval(
                "SELECT count(*) FROM provisioning.subscriptions WHERE status = 'ACTIVE' "
                "AND expires_at <= now() + make_interval(days => $1) "
                "AND cardinality(reminders_sent) = 0", days)
            if left == 0 or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.5)
        sent = await conn.fetchval(
            "SELECT count(*) FROM provisioning.outbox WHERE routing_key LIKE "
            "'provisioning.subscription.expiring%'")
    finally:
        await conn.close()
    return {"reminders_sent": sent, "left": left, "seconds": time.monotonic() - started}


async def expiry(dsn: str, due: int, timeout: float) -> dict:
    """Make `due` running subscriptions due at once; wait until the worker's sweep revoked
    every one; check each expired exactly once (one event each, its backend account off)."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM provisioning.subscriptions WHERE status = 'ACTIVE' LIMIT $1", due)]
        async with conn.transaction():
            await conn.execute("UPDATE provisioning.subscriptions SET expires_at = now() - "
                               "interval '1 minute' WHERE id = ANY($1::text[])", ids)
        started = time.monotonic()
        while True:
            left = await conn.fetchval("SELECT count(*) FROM provisioning.subscriptions WHERE "
                                       "id = ANY($1::text[]) AND status <> 'EXPIRED'", ids)
            if left == 0 or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
        events = await conn.fetch(
            "SELECT envelope->'payload'->>'subscription_id' AS id, count(*) AS n "
            "FROM provisioning.outbox WHERE routing_key LIKE 'provisioning.subscription.expired%'"
            " AND envelope->'payload'->>'subscription_id' = ANY($1::text[]) GROUP BY 1", ids)
        still_on = await conn.fetchval(
            "SELECT count(*) FROM provisioning.sandbox_vpn_accounts v JOIN "
            "provisioning.subscriptions s ON s.provision_ref = v.ref WHERE s.id = ANY($1::text[])"
            " AND v.enabled", ids)
    finally:
        await conn.close()
    return {"due": len(ids), "left": left, "seconds": seconds,
            "per_s": (len(ids) - left) / seconds if seconds else None,
            "expired_once": sum(1 for e in events if e["n"] == 1),
            "expired_twice": sum(1 for e in events if e["n"] > 1),
            "backend_still_enabled": still_on}


async def reconcile(env: dict[str, str], drift: int) -> dict:
    """The provisioner's reconciliation over the whole sandbox backend, `drift` accounts of
    running subscriptions switched off behind its back first (each must be switched on)."""
    os.environ.update(env)
    from provisioner.backends import build_backend
    from provisioner.config import Settings
    from provisioner.service import ProvisioningService
    from runtime.db import Database

    settings = Settings()
    db = Database(settings)
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        refs = [r["ref"] for r in await conn.fetch(
            "SELECT v.ref FROM provisioning.sandbox_vpn_accounts v JOIN "
            "provisioning.subscriptions s ON s.provision_ref = v.ref WHERE s.status = 'ACTIVE' "
            "AND s.expires_at > now() + interval '1 hour' LIMIT $1", drift)]
        await conn.execute("UPDATE provisioning.sandbox_vpn_accounts SET enabled = false "
                           "WHERE ref = ANY($1::text[])", refs)
        accounts = await conn.fetchval("SELECT count(*) FROM provisioning.sandbox_vpn_accounts")
        backend = build_backend(settings, db)
        service = ProvisioningService(backend, settings.auto_renew_hours_before)
        started = time.monotonic()
        fixes = await service.reconcile(db, datetime.now(UTC))
        seconds = time.monotonic() - started
        repaired = await conn.fetchval("SELECT count(*) FROM provisioning.sandbox_vpn_accounts "
                                       "WHERE ref = ANY($1::text[]) AND enabled", refs)
    finally:
        await conn.close()
        await db.dispose()
    return {"accounts": accounts, "drift": len(refs), "repaired": repaired, "fixes": fixes,
            "seconds": seconds}


async def broadcast_plan(stack: Stack, timeout: float) -> dict:
    """A broadcast to every linked customer, through the running telegram worker: the time
    from `send` until its plan is complete (every recipient written), then cancelled."""
    from tests.bench.broadcast import AdminAuth

    base = stack.api_url("telegram") + "/internal/admin/broadcasts"
    async with httpx.AsyncClient(auth=AdminAuth(stack), timeout=60,
                                 headers={"Content-Type": "application/json"}) as c:
        r = await c.post(base, json={"text_en": "scale", "text_ru": "scale",
                                     "segment": "all_linked"})
        r.raise_for_status()
        bid = r.json()["broadcast"]["id"]
        started = time.monotonic()
        (await c.post(f"{base}/{bid}/send")).raise_for_status()
        b: dict = {}
        while not b.get("planned") and time.monotonic() - started < timeout:
            await asyncio.sleep(0.2)
            b = (await c.get(f"{base}/{bid}")).json()["broadcast"]
        seconds = time.monotonic() - started
        await c.post(f"{base}/{bid}/cancel")
    return {"planned": bool(b.get("planned")), "recipients": b.get("total"),
            "sent_meanwhile": b.get("sent"), "seconds": seconds}


def retention(stack: Stack, url: str, days: int) -> dict:
    """A year of the rows retention purges (`retention.py`'s fill), then each service's
    `retention-cleanup` command (process start included) and the rows left."""
    from tests.bench.scale.retention import counts, fill

    async def rows(fill_days: int | None) -> dict:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            took = await fill(conn, fill_days) if fill_days else None
            return {"fill_seconds": took, "rows": await counts(conn)}
        finally:
            await conn.close()

    out: dict = {"before": asyncio.run(rows(days))}
    for name in SERVICES:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", name, "retention-cleanup"],
                           env=stack.full_env(), cwd=ROOT, capture_output=True, timeout=3600)
        out[name] = {"seconds": time.monotonic() - t0, "rc": r.returncode}
    out["rows_after"] = asyncio.run(rows(None))["rows"]
    return out


def save(path: str, report: dict) -> None:
    """The report so far (each step's figures kept even if a later step is interrupted)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=SCALE_DB, help="the seeded database (make seed-scale)")
    ap.add_argument("--requests", type=int, default=100, help="requests per figure")
    ap.add_argument("--budget", type=float, default=20,
                    help="seconds per figure at most (once 5 requests are done)")
    ap.add_argument("--due", type=int, default=100_000,
                    help="running subscriptions made due at once (at most all ACTIVE ones)")
    ap.add_argument("--drift", type=int, default=1000, help="accounts switched off by hand")
    ap.add_argument("--sweep-timeout", type=float, default=900)
    ap.add_argument("--retention-days", type=int, default=365,
                    help="days of old rows written before the retention cleanup")
    ap.add_argument("--skip", default="", help="comma-separated: requests,reminders,purchase,"
                                               "expiry,reconcile,broadcast,retention")
    ap.add_argument("--only", default="",
                    help="measure only the request figures whose name has this text")
    ap.add_argument("--no-kpi-wait", action="store_true",
                    help="measure the requests at once, not after the workers warmed their KPI "
                         "cache (the boot's fill running beside them)")
    ap.add_argument("--report", default=str(ROOT / ".run" / "bench" / "scale-report.json"))
    ns = ap.parse_args()
    skip = {s.strip() for s in ns.skip.split(",") if s.strip()}
    env = bench_env(ns.db)
    problems = check_infra(env)
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        return 2
    t = asyncio.run(targets(env["DATABASE_URL"]))
    report: dict = {"started_at": datetime.now(UTC).isoformat(), "db": ns.db,
                    "counts": t["counts"], "machine": {"cores": os.cpu_count(),
                                                       "load": os.getloadavg()}}
    print(json.dumps(t["counts"]), flush=True)
    stack = Stack(env, log_dir=ROOT / ".run" / "bench-scale-logs")
    stack.migrate()
    boot = time.monotonic()
    stack.start()
    try:
        if "reminders" not in skip:
            print("reminder sweep...", flush=True)
            r = asyncio.run(wait_reminders(env["DATABASE_URL"], 7, ns.sweep_timeout))
            r["since_boot_s"] = time.monotonic() - boot
            report["reminders"] = r
            save(ns.report, report)
        if "requests" not in skip:
            gw = stack.api_url("gateway")
            clients = {who: httpx.Client(base_url=gw, timeout=300,
                                         cookies={"sid": t[f"{who}_token"]})
                       for who in ("admin", "customer")}
            report["requests"] = {}
            if not ns.no_kpi_wait:  # the requests of a stack that has run for a while
                print("KPI cache warming...", flush=True)
                report["kpi_warm"] = asyncio.run(wait_kpis_warm(
                    env["DATABASE_URL"], int(env.get("STATS_DAYS_WARM_DAYS", "400")),
                    ns.sweep_timeout))
                report["kpi_warm"]["since_boot_s"] = time.monotonic() - boot
                save(ns.report, report)
            for figure, who, path in request_paths(t):
                if ns.only not in figure:
                    continue
                print(f"{figure}...", flush=True)
                report["requests"][figure] = timed(clients[who], path, ns.requests, ns.budget)
                save(ns.report, report)
            if ns.only in "admin KPIs":
                print("each service's KPI figures...", flush=True)
                report["requests"].update(service_kpis(stack, ns.requests, ns.budget))
                save(ns.report, report)
        if "purchase" not in skip:
            print("a purchase...", flush=True)
            report["purchase"] = asyncio.run(purchase(stack.api_url("gateway"),
                                                      ns.sweep_timeout))
            save(ns.report, report)
        if "reconcile" not in skip:
            print("reconciliation...", flush=True)
            report["reconcile"] = asyncio.run(reconcile(env, ns.drift))
            save(ns.report, report)
        if "expiry" not in skip:
            print("expiry sweep...", flush=True)
            report["expiry"] = asyncio.run(expiry(env["DATABASE_URL"], ns.due, ns.sweep_timeout))
            save(ns.report, report)
        if "broadcast" not in skip:
            print("broadcast planning...", flush=True)
            report["broadcast"] = asyncio.run(broadcast_plan(stack, ns.sweep_timeout))
            save(ns.report, report)
        if "retention" not in skip:
            print("retention cleanup...", flush=True)
            report["retention"] = retention(stack, env["DATABASE_URL"], ns.retention_days)
    finally:
        stack.stop()
    print(SEP)
    for figure, r in report.get("requests", {}).items():
        print(f"{figure:<40} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"non-200 {r['non_200']}")
    for key in ("kpi_warm", "reminders", "purchase", "expiry", "reconcile", "broadcast",
                "retention"):
        if key in report:
            print(f"{key:<40} {json.dumps(report[key], default=str)}")
    save(ns.report, report)
    print(f"report: {ns.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
