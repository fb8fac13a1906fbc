"""The bench's broadcast row: a broadcast to many emulated recipients (linked customers seeded
straight into the telegram schema), its sustained messages/s against
`TELEGRAM_BROADCAST_RATE`, and the product's other notices (a ticket reaching the support chat)
while it runs."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx

from runtime import identity


class AdminAuth(httpx.Auth):
    """An ADMIN identity for one service (telegram unless named), signed afresh for each
    request (it expires)."""

    def __init__(self, stack, audience: str = "telegram"):
        self.key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")
        self.audience = audience

    def auth_flow(self, request):
        request.headers[identity.HEADER] = identity.sign(self.key, "bench", "ADMIN",
                                                         audience=self.audience)
        yield request


async def _seed(dsn: str, run: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO telegram.account_links (user_id, telegram_user_id, chat_id)"
            " SELECT 'bench-bc-' || $1 || '-' || i, 8000000000 + i + $3 * 1000000,"
            " 8000000000 + i + $3 * 1000000 FROM generate_series(1, $2) i", run, n,
            int(run, 16) % 1000)
        await conn.execute(
            "INSERT INTO telegram.subscription_view (user_id, status)"
            " SELECT 'bench-bc-' || $1 || '-' || i, 'EXPIRED' FROM generate_series(1, $2) i",
            run, n)
        await conn.execute(
            "INSERT INTO telegram.customer_facts (user_id, expired_at)"
            " SELECT 'bench-bc-' || $1 || '-' || i, now() - interval '1 day'"
            " FROM generate_series(1, $2) i", run, n)
    finally:
        await conn.close()


def _percentiles(created: dict[str, float], arrived: dict[str, float]) -> tuple[float, float]:
    ms = sorted((arrived[k] - created[k]) * 1000 for k in arrived)

    def pick(p):
        return (ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))] if ms
                else float("nan"))
    return pick(50), pick(99)


async def tickets_beside(stack, tickets: int) -> dict:
    """Tickets opened one by one (as the bench's support path does): how long each takes to
    reach the support chat while the broadcast runs. The group's own pacing (about 20 messages
    a minute, four calls per new ticket) is in the figure, alone as beside."""
    gw, emu = stack.api_url("gateway") + "/api/v1", stack.env["TELEGRAM_API_BASE"]
    group = int(stack.env["TELEGRAM_SUPPORT_CHAT_ID"])
    async with httpx.AsyncClient(base_url=gw, timeout=30,
                                 headers={"Content-Type": "application/json"}) as c:
        r = await c.post("/auth/register", json={"email": f"bc-{uuid.uuid4().hex[:8]}@example.com",
                                                 "password": "correct horse 1"})
        r.raise_for_status()
        created: dict[str, float] = {}
        for i in range(tickets):
            marker = f"[bc{uuid.uuid4().hex[:6]}]"
            created[marker] = time.time()
            (await c.post("/tickets", json={"subject": f"beside {i}", "body": marker})
             ).raise_for_status()
            await asyncio.sleep(0.5)
        arrived: dict[str, float] = {}
        deadline = time.time() + 120 + tickets * 15
        while time.time() < deadline and len(arrived) < tickets:
            calls = (await c.get(f"{emu}/_emulator/calls", params={
                "method": "sendMessage", "chat_id": group})).json()["calls"]
            for call in calls:
                for marker in created:
                    if marker in call["params"].get("text", "") and marker not in arrived:
                        arrived[marker] = float(call["time"])
            await asyncio.sleep(2)
    p50, p99 = _percentiles(created, arrived)
    return {"tickets": tickets, "delivered": len(arrived), "ticket_to_chat_p50_ms": p50,
            "ticket_to_chat_p99_ms": p99}


async def replies_beside(stack, users: int, gap: float = 1.0) -> dict:
    """Customers writing `/help` to the bot one after another, each from a chat of their own:
    how long each waits for the bot's answer (a message of the product's share of the 30 a
    second, the share a broadcast must leave free)."""
    emu = stack.env["TELEGRAM_API_BASE"]
    base = 7_000_000_000 + uuid.uuid4().int % 1_000_000 * 1000
    created: dict[int, float] = {}
    arrived: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=emu, timeout=30) as c:
        for i in range(users):
            uid = base + i
            created[uid] = time.time()
            (await c.post("/_emulator/updates", json={
                "chat_id": uid, "from_id": uid, "text": "/help", "chat_type": "private",
                "from_first_name": "Bench"})).raise_for_status()
            await asyncio.sleep(gap)
        deadline = time.time() + 120
        while time.time() < deadline and len(arrived) < users:
            for uid in created:
                if uid in arrived:
                    continue
                calls = (await c.get("/_emulator/calls", params={
                    "method": "sendMessage", "chat_id": uid})).json()["calls"]
                if calls:
                    arrived[uid] = min(float(x["time"]) for x in calls)
            await asyncio.sleep(1)
    p50, p99 = _percentiles(created, arrived)
    return {"users": users, "answered": len(arrived), "reply_p50_ms": p50, "reply_p99_ms": p99}


async def broadcast_path(stack, dsn: str, recipients: int, tickets: int = 20,
                         replies: int = 60) -> dict:
    """Send one broadcast to `recipients` and, once it is under way, `tickets` and `replies`
    beside it (and the same before it, alone, to compare with)."""
    run = uuid.uuid4().hex[:6]
    alone = await tickets_beside(stack, tickets)
    replies_alone = await replies_beside(stack, replies)
    await _seed(dsn, run, recipients)
    base = stack.api_url("telegram") + "/internal/admin/broadcasts"
    async with httpx.AsyncClient(auth=AdminAuth(stack), timeout=30,
                                 headers={"Content-Type": "application/json"}) as c:
        r = await c.post(base, json={"text_en": f"bench {run}", "text_ru": f"bench {run}",
                                     "segment": "expired_30d"})
        r.raise_for_status()
        bid = r.json()["broadcast"]["id"]
        started = time.monotonic()
        (await c.post(f"{base}/{bid}/send")).raise_for_status()
        while (await c.get(f"{base}/{bid}")).json()["broadcast"]["sent"] < 20:
            await asyncio.sleep(0.5)
        beside = asyncio.create_task(tickets_beside(stack, tickets))
        replies_during = asyncio.create_task(replies_beside(stack, replies))
        b: dict = {}
        while b.get("status") != "DONE":
            if time.monotonic() - started > recipients / 2 + 300:
                break
            await asyncio.sleep(1)
            try:  # the service away for a moment (a restart) is waited out, not a crash
                b = (await c.get(f"{base}/{bid}")).json().get("broadcast") or b
            except (httpx.HTTPError, ValueError):
                continue
        notices, answered = await beside, await replies_during
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM max(sent_at) - min(sent_at)) AS s"
            " FROM telegram.broadcast_recipients WHERE broadcast_id = $1 AND state = 'SENT'",
            bid)
    finally:
        await conn.close()
    seconds = float(row["s"] or 0)
    return {"recipients": recipients, "status": b.get("status"), "sent": b.get("sent"),
            "failed": b.get("failed"), "resent": b.get("resent"), "seconds": seconds,
            "msgs_per_s": (row["n"] - 1) / seconds if seconds else 0.0,
            "configured_rate": float(stack.env.get("TELEGRAM_BROADCAST_RATE", 20)),
            "notices_beside": notices, "notices_alone": alone,
            "replies_beside": answered, "replies_alone": replies_alone}


def broadcast_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """The bench table's rows of the broadcast (none when it did not run)."""
    b = report.get("broadcast")
    if not b:
        return []
    s, a = b["notices_beside"], b.get("notices_alone")
    rate = b["configured_rate"]
    alone = (f"alone: p50 {a['ticket_to_chat_p50_ms']:.0f} ms p99 "
             f"{a['ticket_to_chat_p99_ms']:.0f} ms" if a else "-")
    return [(f"broadcast to {b['recipients']}", f"{b['msgs_per_s']:.1f} msg/s sustained "
             f"({b['sent']} sent in {b['seconds']:.0f} s, {b['status']})",
             f"rate {rate:.0f}/s", f"{b['msgs_per_s'] / rate:.2f}"),
            ("  ticket -> support chat beside it", f"p50 {s['ticket_to_chat_p50_ms']:.0f} ms "
             f"p99 {s['ticket_to_chat_p99_ms']:.0f} ms ({s['delivered']}/{s['tickets']})",
             alone, "-"),
            *(_reply_row(b["replies_beside"], b["replies_alone"]) if "replies_beside" in b
              else [])]


def _reply_row(s: dict, a: dict) -> list[tuple[str, str, str, str]]:
    return [("  customer /help -> bot's answer beside it",
             f"p50 {s['reply_p50_ms']:.0f} ms p99 {s['reply_p99_ms']:.0f} ms "
             f"({s['answered']}/{s['users']})",
             f"alone: p50 {a['reply_p50_ms']:.0f} ms p99 {a['reply_p99_ms']:.0f} ms", "-")]


def main() -> int:
    """Only the broadcast row, on a stack of its own (the bench's ports and database):
    `python -m tests.bench.broadcast [--recipients N]`."""
    import argparse
    import json
    from pathlib import Path

    from tests.bench import run

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--recipients", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=None,
                    help="TELEGRAM_BROADCAST_RATE for the run (default: the setting's, 20)")
    ap.add_argument("--report", default=str(run.ROOT / ".run" / "bench" / "broadcast.json"))
    ns = ap.parse_args()
    extra = {} if ns.rate is None else {"TELEGRAM_BROADCAST_RATE": str(ns.rate)}
    with run.side_stack("broadcast", port_offset=3500, redis_db=8, extra=extra) as stack:
        if stack is None:
            return 2
        report = {"broadcast": asyncio.run(broadcast_path(stack, stack.env["DATABASE_URL"],
                                                          ns.recipients))}
    print(run.table([("figure", "value", "baseline", "ratio"), *broadcast_rows(report)]))
    Path(ns.report).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.report).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
