"""`make bench`: the system's hot paths under load, beside this machine's own limits, in one run.

Starts the whole system (its own ports, database and broker prefix), measures the baselines
(pgbench tpcb-like, raw aio-pika publish-with-confirm, a bare FastAPI + asyncpg endpoint) and
the system's paths (gateway reads, Telegram webhook, support path, purchase pipeline: plain,
with a promo code, paid from the balance; a broadcast), prints a table with each figure's
ratio to its baseline and writes a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))
sys.path.insert(0, str(ROOT))

from stack import Stack, check_infra, default_env  # noqa: E402

from tests.bench.broadcast import broadcast_path, broadcast_rows  # noqa: E402
from tests.bench.callbacks import callback_path, callback_rows  # noqa: E402
from tests.bench.purchase import (  # noqa: E402
    ADMIN_EMAIL,
    purchase_latency,
    purchase_throughput,
)
from tests.bench.support_groups import (  # noqa: E402
    FORUMS,
    support_groups_path,
    support_groups_rows,
)

BENCH_DB = "vpn_bench"
PREFIX = "bench."
OFFSET = 3000
HERE = Path(__file__).resolve().parent


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def bench_env() -> dict[str, str]:
    env = default_env(port_offset=OFFSET, db_name=BENCH_DB, redis_db=9, broker_prefix=PREFIX)
    # The sandbox chain mines a block every 200 ms in the bench; billing polls it every second.
    env.update({"RATE_LIMITS_ENABLED": "false", "LOG_LEVEL": "WARNING",
                "OUTBOX_POLL_SECONDS": "0.5", "PAYMENT_WATCH_INTERVAL_MS": "1000",
                "ADMIN_BOOTSTRAP_EMAIL": ADMIN_EMAIL,  # the promo path's code is an admin's
                "EMULATOR_FORUM_CHAT_IDS": FORUMS})  # the support groups' rows
    return env


# --------------------------------------------------------------------------- load generator
def wrk(url: str, duration: int, connections: int, headers: dict[str, str] | None = None,
        script: Path | None = None, env: dict[str, str] | None = None,
        warmup: int = 0) -> dict:
    """Run wrk (2 threads) and parse req/s, latency percentiles and non-2xx answers. With
    `warmup`, a first run of that many seconds (connections opened, pools filled) is discarded,
    the same for the baseline as for the system."""
    cmd = ["wrk", "-t2", f"-c{connections}", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", str(script)]
    run_env = {**os.environ, **(env or {})}
    if warmup:
        subprocess.run(cmd + [f"-d{warmup}s", url], capture_output=True, env=run_env,
                       timeout=warmup + 60)
    out = subprocess.run(cmd + [f"-d{duration}s", url], capture_output=True, text=True,
                         env=run_env, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p, v, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[p] = float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


# --------------------------------------------------------------------------- baselines
def baseline_pgbench(duration: int) -> dict:
    db = "vpn_pgbench"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {db}"], check=True, capture_output=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db}"],
                   check=True, capture_output=True)
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", "4", "-q", db],
                   check=True, capture_output=True)
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-c", "8", "-j", "2",
                          "-T", str(duration), "-b", "tpcb-like", db],
                         capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {db}"], capture_output=True)
    return {"tps": tps}


async def baseline_publish(url: str, count: int = 20000) -> dict:
    import aio_pika

    conn = await aio_pika.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue(f"{PREFIX}baseline-{uuid.uuid4().hex[:6]}", durable=True,
                                   arguments={"x-queue-type": "quorum"})
        body = b'{"payload": "' + b"x" * 400 + b'"}'
        started = time.perf_counter()
        for start in range(0, count, 500):
            await asyncio.gather(*(ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=q.name) for _ in range(min(500, count - start))))
        elapsed = time.perf_counter() - started
        await q.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()
    return {"msgs_per_s": count / elapsed}


# --------------------------------------------------------------------------- system paths
async def stored_updates(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM telegram.received_updates")
    finally:
        await conn.close()


async def updates_drained(dsn: str, started: float, before: int = 0,
                          timeout: float = 180) -> dict:
    """Wait until the worker processed every stored update; `before` = rows stored earlier."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            left, total = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE processed_at IS NULL), count(*) "
                "FROM telegram.received_updates")
            if left == 0 or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    seconds = time.monotonic() - started
    stored = total - before
    return {"updates_stored": stored, "unprocessed_left": left, "drained_after_s": seconds,
            "processed_per_s": (stored - left) / seconds}


@contextmanager
def side_stack(name: str, port_offset: int, redis_db: int,
               extra: dict[str, str] | None = None) -> Iterator[Stack | None]:
    """A whole stack of its own for one row run alone (its ports, database, Redis database and
    broker prefix, so it can run beside `make bench`), started and stopped around the block;
    None, with the reason on stderr, when Postgres, RabbitMQ or Redis is missing."""
    db, prefix = f"vpn_bench_{name}", f"bench{name}."
    env = {**bench_env(), **default_env(port_offset=port_offset, db_name=db, redis_db=redis_db,
                                        broker_prefix=prefix), **(extra or {})}
    problems = check_infra(env)
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        yield None
        return
    from tests.conftest import reset_infrastructure

    reset_infrastructure(env, db, prefix)
    stack = Stack(env, log_dir=ROOT / ".run" / f"bench-{name}-logs")
    stack.migrate()
    stack.seed_plans()
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def register(gw: str) -> httpx.Client:
    c = httpx.Client(base_url=gw + "/api/v1", timeout=30, headers={"Content-Type":
                                                                   "application/json"})
    r = c.post("/auth/register", json={"email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
                                       "password": "bench password 1"})
    r.raise_for_status()
    return c


def subscription_link(c: httpx.Client) -> str:
    """The bench customer's stable subscription link (`GET /sub/{token}`), from its trial."""
    c.post("/trial").raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        subs = [x for x in c.get("/subscriptions").json()["subscriptions"]
                if x["status"] == "ACTIVE"]
        if subs:
            r = c.get(f"/subscriptions/{subs[0]['id']}/access")
            if r.status_code == 200:
                return r.json()["subscription_url"]
        time.sleep(0.5)
    raise RuntimeError("the bench customer's trial never became ACTIVE")


async def support_path(stack: Stack, tickets: int) -> dict:
    gw, emu = stack.api_url("gateway"), stack.env["TELEGRAM_API_BASE"]
    client = register(gw)
    created: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=gw + "/api/v1", cookies=client.cookies, timeout=30,
                                 headers={"Content-Type": "application/json"}) as c:
        for i in range(tickets):
            t0 = time.time()
            # brackets: the support chat HTML-escapes customer text, and `<`/`>` would change
            r = await c.post("/tickets", json={"subject": f"bench {i}", "body": f"[b{i}]"})
            r.raise_for_status()
            created[f"[b{i}]"] = t0
            await asyncio.sleep(0.1)
        deadline = time.time() + 60
        arrived: dict[str, float] = {}
        while time.time() < deadline and len(arrived) < tickets:
            calls = httpx.get(f"{emu}/_emulator/calls", params={"method": "sendMessage"},
                              timeout=30).json()["calls"]
            for call in calls:
                for marker in created:
                    if marker in call["params"].get("text", "") and marker not in arrived:
                        arrived[marker] = float(call["time"])
            await asyncio.sleep(0.5)
        to_chat = [(arrived[m] - created[m]) * 1000 for m in arrived]
        # operator replies: webhook accepted -> message stored on the ticket
        topics = {c["result"]["message_thread_id"] for c in httpx.get(
            f"{emu}/_emulator/calls", params={"method": "createForumTopic"}, timeout=30
        ).json()["calls"]}
        update_ids = []
        for thread in list(topics)[:tickets]:
            r = httpx.post(f"{emu}/_emulator/updates", json={
                "chat_id": int(stack.env["TELEGRAM_SUPPORT_CHAT_ID"]), "from_id": 1001,
                "text": "bench reply", "message_thread_id": thread}, timeout=30)
            update_ids.append(r.json()["update_id"])
            await asyncio.sleep(0.1)
    await asyncio.sleep(3)
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}")
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM m.created_at - u.received_at) * 1000 AS ms "
            "FROM telegram.received_updates u JOIN tickets.messages m "
            "ON m.external_ref = 'tg:' || (u.payload->'message'->'chat'->>'id') || ':' || "
            "(u.payload->'message'->>'message_id') WHERE u.update_id = ANY($1::bigint[])",
            update_ids)
    finally:
        await conn.close()
    reply = [float(r["ms"]) for r in rows]
    return {"tickets": tickets, "delivered": len(arrived),
            "ticket_to_chat_p50_ms": pct(to_chat, 50), "ticket_to_chat_p99_ms": pct(to_chat, 99),
            "replies": len(update_ids), "reply_visible": len(reply),
            "reply_to_ticket_p50_ms": pct(reply, 50), "reply_to_ticket_p99_ms": pct(reply, 99)}


# The purchase paths after the plain one: (report key, label, flag of the sustained run's seconds,
# flag of the latency run's seconds). Unset flags take the plain path's; 0 skips the run.
PURCHASE_PATHS = (("promo", "with a promo code", "promo_seconds", "promo_latency_seconds"),
                  ("balance", "paid from the balance", "balance_seconds",
                   "balance_latency_seconds"))


def purchase_rows(label: str, p: dict | None, q: dict | None, pub: float
                  ) -> list[tuple[str, str, str, str]]:
    """The table's rows of one purchase path: its sustained run `p`, its latency run `q`."""
    rows = []

    def once(r: dict) -> str:
        text = f"exactly-once {r['provisioned_once']}/{r['n']}"
        for field, what in (("promo_counted_once", "code counted once"),
                            ("debited_once", "debited once")):
            if field in r:
                text += f", {what} {r[field]}/{r['n']}"
        return text

    if p:
        rows.append((f"{label}, sustained", f"{p['applied_per_s']:.1f}/s for "
                     f"{p['seconds']:.0f} s {once(p)}; CPU "
                     f"{p['cpu_ms_per_purchase']['machine busy']:.0f} ms each (ceiling "
                     f"{p['ceiling_per_s']}/s)", "publish+confirm",
                     f"{p['applied_per_s'] / pub:.4f}"))
    if q:
        rows.append((f"{label}: settle -> active at {q['rate']:.0f}/s",
                     f"p50 {q['settle_to_active_p50_ms']:.0f} ms p99 "
                     f"{q['settle_to_active_p99_ms']:.0f} ms {once(q)}; CPU "
                     f"{q['cpu_ms_per_purchase']['machine busy']:.0f} ms each", "-", "-"))
    return rows


def table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds per load step")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of discarded load before each HTTP step")
    ap.add_argument("--support-tickets", type=int, default=30)
    ap.add_argument("--purchase-seconds", type=float, default=30,
                    help="how long customers keep buying in the sustained-throughput run")
    ap.add_argument("--purchase-in-flight", type=int, default=300,
                    help="most purchases unfinished at once in the sustained run")
    ap.add_argument("--purchase-rate", type=float, default=50,
                    help="purchases started per s in the latency run")
    ap.add_argument("--latency-seconds", type=float, default=10,
                    help="how long purchases start at --purchase-rate")
    for _, what, sustained, latency in PURCHASE_PATHS:
        ap.add_argument(f"--{sustained.replace('_', '-')}", type=float, default=None,
                        help=f"how long customers keep buying {what} in its sustained run "
                             "(default: --purchase-seconds; 0 skips it)")
        ap.add_argument(f"--{latency.replace('_', '-')}", type=float, default=None,
                        help=f"how long purchases {what} start at --purchase-rate "
                             "(default: --latency-seconds; 0 skips it)")
    ap.add_argument("--callback-seconds", type=float, default=None,
                    help="how long customers press the bot's buttons (default: --duration;"
                         " 0 skips it)")
    ap.add_argument("--broadcast-recipients", type=int, default=2000,
                    help="recipients of the broadcast row, 100 s at the default rate "
                         "(0 skips it)")
    ap.add_argument("--support-group-tickets", type=int, default=10,
                    help="tickets per support group in the support groups' rows (0 skips them; "
                         "at Telegram's pace each row takes about 2.5 min for 10)")
    ap.add_argument("--only", choices=("all", "sub-link", "support-groups"), default="all",
                    help="sub-link: only the bare baseline and GET /sub/{token}; "
                         "support-groups: only the support groups' rows")
    ap.add_argument("--report", default=str(ROOT / ".run" / "bench" / "report.json"))
    ns = ap.parse_args()
    if not shutil.which("wrk"):
        sys.stderr.write("wrk is missing: apt-get install -y wrk\n")
        return 2
    env = bench_env()
    problems = check_infra(env)
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        return 2
    report: dict = {"started_at": datetime.now(UTC).isoformat(), "machine": {
        "cores": os.cpu_count()}, "params": vars(ns)}
    everything = ns.only == "all"
    print("baselines...", flush=True)
    if everything:
        report["pgbench"] = baseline_pgbench(ns.duration)
        report["publish_confirm"] = asyncio.run(baseline_publish(env["RABBITMQ_URL"]))
    from tests.conftest import reset_infrastructure

    reset_infrastructure(env, BENCH_DB, PREFIX)
    stack = Stack(env, log_dir=ROOT / ".run" / "bench-logs")
    stack.migrate()
    stack.seed_plans()
    stack.start()
    try:
        gw = stack.api_url("gateway")
        client = register(gw)
        if ns.only == "support-groups":
            return _support_groups(ns, stack, client, report)
        sid = client.cookies.get("sid")
        bare_port = OFFSET + 7000
        bare = subprocess.Popen([sys.executable, str(HERE / "bare_app.py"), "--port",
                                 str(bare_port), "--dsn",
                                 f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"])
        try:
            stack.wait_http(f"http://127.0.0.1:{bare_port}/bare")
            print("bare endpoint...", flush=True)
            report["bare"] = wrk(f"http://127.0.0.1:{bare_port}/bare", ns.duration,
                                 ns.connections, warmup=ns.warmup)
        finally:
            bare.terminate()
            bare.wait()
        # The stable link (a customer of its own, so the reads below see what they always
        # did): the provisioner finds the token, the content comes from the cache
        # (SUB_LINK_CACHE_SECONDS) after the first fetch from the sandbox server.
        print("subscription link...", flush=True)
        report["sub_link"] = wrk(subscription_link(register(gw)), ns.duration, ns.connections,
                                 warmup=ns.warmup)
        if not everything:
            return _print(ns, report)
        print("gateway reads...", flush=True)
        cookie = {"Cookie": f"sid={sid}"}
        report["auth_me"] = wrk(f"{gw}/api/v1/auth/me", ns.duration, ns.connections, cookie,
                                warmup=ns.warmup)
        report["subscriptions"] = wrk(f"{gw}/api/v1/subscriptions", ns.duration,
                                      ns.connections, cookie, warmup=ns.warmup)
        # Accepting is not processing: after each webhook step, wait for the worker to finish
        # the stored updates (so the next step measures its own path) and report that rate.
        # Telegram itself opens at most `max_connections` (set-webhook: 40) to a webhook, so the
        # step runs at --connections and at Telegram's 40.
        for key, conns in (("webhook", ns.connections), ("webhook_telegram", 40)):
            print(f"telegram webhook, {conns} connections...", flush=True)
            if ns.warmup:  # its updates are processed before the step starts
                wrk(f"{gw}/api/v1/telegram/webhook", ns.warmup, conns, script=HERE / "webhook.lua")
                asyncio.run(updates_drained(env["DATABASE_URL"], time.monotonic()))
            before = asyncio.run(stored_updates(env["DATABASE_URL"]))
            hook_started = time.monotonic()
            report[key] = wrk(f"{gw}/api/v1/telegram/webhook", ns.duration, conns,
                              script=HERE / "webhook.lua")
            report[key].update(asyncio.run(updates_drained(env["DATABASE_URL"], hook_started,
                                                           before)))
        seconds = ns.duration if ns.callback_seconds is None else ns.callback_seconds
        if seconds:
            print("callback queries...", flush=True)
            report["callbacks"] = asyncio.run(callback_path(stack, env["DATABASE_URL"],
                                                            seconds))
        print("support path...", flush=True)
        report["support"] = asyncio.run(support_path(stack, ns.support_tickets))
        print("purchases, sustained...", flush=True)
        report["purchase"] = asyncio.run(purchase_throughput(stack, ns.purchase_seconds,
                                                             ns.purchase_in_flight))
        print("purchases, latency at a fixed rate...", flush=True)
        report["purchase_latency"] = asyncio.run(purchase_latency(stack, ns.purchase_rate,
                                                                  ns.latency_seconds))
        for key, what, sustained, latency in PURCHASE_PATHS:
            seconds = getattr(ns, sustained)
            seconds = ns.purchase_seconds if seconds is None else seconds
            if seconds:
                print(f"purchases {what}, sustained...", flush=True)
                report[f"{key}_purchase"] = asyncio.run(purchase_throughput(
                    stack, seconds, ns.purchase_in_flight, path=key))
            seconds = getattr(ns, latency)
            seconds = ns.latency_seconds if seconds is None else seconds
            if seconds:
                print(f"purchases {what}, latency at a fixed rate...", flush=True)
                report[f"{key}_purchase_latency"] = asyncio.run(purchase_latency(
                    stack, ns.purchase_rate, seconds, path=key))
        if ns.broadcast_recipients:
            print("broadcast...", flush=True)
            report["broadcast"] = asyncio.run(broadcast_path(
                stack, env["DATABASE_URL"], ns.broadcast_recipients))
        if ns.support_group_tickets:
            _support_groups(ns, stack, client, report, write=False)
    finally:
        stack.stop()
    return _print(ns, report)


def _support_groups(ns: argparse.Namespace, stack: Stack, client: httpx.Client, report: dict,
                    write: bool = True) -> int:
    """One support group, then three (the telegram worker restarted for each)."""
    for groups in (1, 3):
        print(f"support groups: {groups}...", flush=True)
        report[f"support_groups_{groups}"] = asyncio.run(support_groups_path(
            stack, client.cookies, groups, ns.support_group_tickets * groups))
    if not write:
        return 0
    print(table([("figure", "value", "bound", "ratio"), *support_groups_rows(report)]))
    return _write(ns, report)


def _print(ns: argparse.Namespace, report: dict) -> int:
    """The table (of what was measured) and the JSON report."""
    bare_rps = report["bare"]["rps"]
    rows = [("figure", "value", "baseline", "ratio")]
    r = report["sub_link"]
    sub_row = ("GET /sub/{token}", f"{r['rps']:.0f} req/s p99 {r['p99_ms']:.1f} ms "
               f"non2xx {r['non_2xx']}", "bare", f"{r['rps'] / bare_rps:.2f}")
    if "pgbench" not in report:
        rows += [("bare FastAPI+asyncpg", f"{bare_rps:.0f} req/s "
                  f"p99 {report['bare']['p99_ms']:.1f} ms", "-", "1.00"), sub_row]
        print(table(rows))
        return _write(ns, report)
    rows.append(("pgbench tpcb-like", f"{report['pgbench']['tps']:.0f} tps", "-", "-"))
    rows.append(("aio-pika publish+confirm", f"{report['publish_confirm']['msgs_per_s']:.0f} msg/s",
                 "-", "-"))
    rows.append(("bare FastAPI+asyncpg", f"{bare_rps:.0f} req/s "
                 f"p99 {report['bare']['p99_ms']:.1f} ms", "-", "1.00"))
    for key, label in (("auth_me", "GET /auth/me"), ("subscriptions", "GET /subscriptions")):
        r = report[key]
        rows.append((label, f"{r['rps']:.0f} req/s p99 {r['p99_ms']:.1f} ms non2xx {r['non_2xx']}",
                     "bare", f"{r['rps'] / bare_rps:.2f}"))
    rows.append(sub_row)
    for key, conns in (("webhook", ns.connections), ("webhook_telegram", 40)):
        w = report[key]
        rows.append((f"POST /telegram/webhook -c{conns}",
                     f"{w['rps']:.0f} upd/s p50 {w['p50_ms']:.1f} ms p99 {w['p99_ms']:.1f} ms "
                     f"non2xx {w['non_2xx']}", "bare", f"{w['rps'] / bare_rps:.2f}"))
        rows.append(("  updates processed", f"{w['processed_per_s']:.0f} upd/s "
                     f"({w['updates_stored']} stored, {w['unprocessed_left']} left after "
                     f"{w['drained_after_s']:.0f} s)", "-", "-"))
    rows += callback_rows(report)
    s = report["support"]
    rows.append(("ticket -> support chat", f"p50 {s['ticket_to_chat_p50_ms']:.0f} ms p99 "
                 f"{s['ticket_to_chat_p99_ms']:.0f} ms ({s['delivered']}/{s['tickets']})",
                 "-", "-"))
    rows.append(("operator reply -> ticket", f"p50 {s['reply_to_ticket_p50_ms']:.0f} ms p99 "
                 f"{s['reply_to_ticket_p99_ms']:.0f} ms ({s['reply_visible']}/{s['replies']})",
                 "-", "-"))
    pub = report["publish_confirm"]["msgs_per_s"]
    rows += purchase_rows("purchases", report["purchase"], report["purchase_latency"], pub)
    for key, what, _, _ in PURCHASE_PATHS:
        rows += purchase_rows(f"purchases {what}", report.get(f"{key}_purchase"),
                              report.get(f"{key}_purchase_latency"), pub)
    rows += broadcast_rows(report)
    rows += support_groups_rows(report)
    print(table(rows))
    return _write(ns, report)


def _write(ns: argparse.Namespace, report: dict) -> int:
    Path(ns.report).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.report).write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {ns.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
