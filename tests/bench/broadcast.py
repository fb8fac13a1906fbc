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


class _Admin(httpx.Auth):
    """The telegram service's ADMIN identity, signed afresh for each request (it expires)."""

    def __init__(self, stack):
        self.key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")

    def auth_flow(self, request):
        request.headers[identity.HEADER] = identity.sign(self.key, "bench", "ADMIN",
                                                         audience="telegram")
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


async def tickets_beside(stack, tickets: int) -> dict:
    """Tickets opened one by one (as the bench's support path does): how long each takes to
    reach the support chat while the broadcast runs."""
    gw, emu = stack.api_url("gateway") + "/api/v1", stack.env["TELEGRAM_API_BASE"]
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
        deadline = time.time() + 120
        while time.time() < deadline and len(arrived) < tickets:
            calls = (await c.get(f"{emu}/_emulator/calls",
                                 params={"method": "sendMessage"})).json()["calls"]
            for call in calls:
                for marker in created:
                    if marker in call["params"].get("text", "") and marker not in arrived:
                        arrived[marker] = float(call["time"])
            await asyncio.sleep(1)
    ms = sorted((arrived[m] - created[m]) * 1000 for m in arrived)
    def pick(p):
        return (ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))] if ms
                else float("nan"))
    return {"tickets": tickets, "delivered": len(arrived), "ticket_to_chat_p50_ms": pick(50),
            "ticket_to_chat_p99_ms": pick(99)}


async def broadcast_path(stack, dsn: str, recipients: int, tickets: int = 20) -> dict:
    """Send one broadcast to `recipients` and, once it is under way, `tickets` beside it (and
    the same tickets before it, alone, to compare with)."""
    run = uuid.uuid4().hex[:6]
    alone = await tickets_beside(stack, tickets)
    await _seed(dsn, run, recipients)
    base = stack.api_url("telegram") + "/internal/admin/broadcasts"
    async with httpx.AsyncClient(auth=_Admin(stack), timeout=30,
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
        b: dict = {}
        while b.get("status") != "DONE":
            if time.monotonic() - started > recipients / 2 + 300:
                break
            await asyncio.sleep(1)
            try:  # the service away for a moment (a restart) is waited out, not a crash
                b = (await c.get(f"{base}/{bid}")).json().get("broadcast") or b
            except (httpx.HTTPError, ValueError):
                continue
        notices = await beside
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
            "notices_beside": notices, "notices_alone": alone}


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
             alone, "-")]


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
