"""The bench's callback row: customers pressing the shop bot's buttons as fast as the emulator
lets them, next to the webhook figure. Each press is the emulator's `POST /_emulator/press`: a
`callback_query` update to the webhook, which the telegram service answers
(`answerCallbackQuery`) and whose screen it edits. Reported: presses accepted per second (the
webhook's 200), and the time from the press to Telegram receiving the answer (p50/p99, measured
by the emulator), which must stay under Telegram's ~10-15 s or the customer sees an error."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg
import httpx


async def _menus(emu: str, dsn: str, users: int) -> dict[int, int]:
    """Linked customers (seeded into the telegram schema), each with the shop's menu shown:
    chat id -> the menu message's id."""
    base = 8_500_000_000 + random.randrange(10**8)
    run = uuid.uuid4().hex[:6]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO telegram.account_links (user_id, telegram_user_id, chat_id)"
            " SELECT 'bench-cb-' || $1 || '-' || i, $2::bigint + i, $2::bigint + i"
            " FROM generate_series(1, $3) i", run, base, users)
    finally:
        await conn.close()
    chats = [base + i for i in range(1, users + 1)]
    async with httpx.AsyncClient(base_url=emu, timeout=30) as c:
        for chat in chats:
            r = await c.post("/_emulator/updates", json={
                "chat_id": chat, "from_id": chat, "text": "/menu", "chat_type": "private"})
            r.raise_for_status()
        menus: dict[int, int] = {}
        deadline = time.monotonic() + 120
        while len(menus) < users and time.monotonic() < deadline:
            for chat in chats:
                if chat in menus:
                    continue
                shown = (await c.get("/_emulator/messages", params={"chat_id": chat})).json()
                for m in shown["messages"]:
                    rows = (m.get("reply_markup") or {}).get("inline_keyboard") or []
                    if any(b.get("callback_data") == "b" for row in rows for b in row):
                        menus[chat] = m["message_id"]
            await asyncio.sleep(0.5)
    return menus


async def callback_path(stack, dsn: str, seconds: float, users: int = 40,
                        concurrency: int = 40) -> dict:
    """Each of `concurrency` customers goes back and forth between the menu and the plans
    (`b`, then the plans' `m`) for `seconds`: every press is answered and its screen read and
    edited in place. A press that finds the screen not yet edited is tried again (a customer
    presses what they see); those are counted as `early`, not as presses."""
    emu = stack.env["TELEGRAM_API_BASE"]
    menus = await _menus(emu, dsn, max(users, concurrency))
    if not menus:
        return {"error": "no menu was shown"}
    accepted = refused = early = 0
    ids: list[str] = []
    stop = time.monotonic() + seconds

    async def customer(c: httpx.AsyncClient, chat: int) -> None:
        nonlocal accepted, refused, early
        data = "b"
        while time.monotonic() < stop:
            r = await c.post("/_emulator/press", json={
                "chat_id": chat, "message_id": menus[chat], "from_id": chat, "data": data})
            if r.status_code == 404:  # the screen still shows the one before
                early += 1
                await asyncio.sleep(0.02)
                continue
            body = r.json() if r.status_code == 200 else {}
            if body.get("status_code") == 200:
                accepted += 1
                ids.append(body["callback_query_id"])
                data = "m" if data == "b" else "b"
            else:
                refused += 1
                if refused == 1:
                    print(f"a press refused: {r.status_code} {r.text[:300]}", flush=True)

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=emu, timeout=30) as c:
        await asyncio.gather(*(customer(c, chat) for chat in list(menus)[:concurrency]))
        elapsed = time.monotonic() - started
        wanted = set(ids)
        deadline = time.monotonic() + 60
        while True:  # the answers still on their way
            queries = [q for q in (await c.get("/_emulator/callback-queries")).json()[
                "callback_queries"] if q["id"] in wanted]
            if all(q["answered"] for q in queries) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    after = sorted(q["answered_after"] * 1000 for q in queries if q["answered"])

    def pick(p: float) -> float | None:
        return after[min(len(after) - 1, round(p / 100 * (len(after) - 1)))] if after else None

    return {"seconds": round(elapsed, 1), "users": len(menus), "concurrency": concurrency,
            "pressed": accepted, "refused": refused, "early": early,
            "accepted_per_s": round(accepted / elapsed, 1) if elapsed else 0,
            "answered": len(after), "unanswered": len(ids) - len(after),
            "answer_p50_ms": pick(50), "answer_p99_ms": pick(99)}


def callback_rows(report: dict) -> list[tuple[str, str, str, str]]:
    r = report.get("callbacks")
    if not r:
        return []
    if "error" in r:
        return [("callback queries", r["error"], "-", "-")]
    p50, p99 = r["answer_p50_ms"] or 0, r["answer_p99_ms"] or 0
    return [(f"callback queries -c{r['concurrency']}",
             f"{r['accepted_per_s']:.0f} presses/s, answered p50 {p50:.0f} ms p99 {p99:.0f} ms "
             f"({r['answered']}/{r['pressed']} answered, {r['refused']} refused)", "-", "-")]


def main() -> int:
    """Only the callback row, on a stack of its own (the bench's ports and database):
    `python -m tests.bench.callbacks [--seconds S] [--concurrency C]`."""
    import argparse
    import json
    from pathlib import Path

    from tests.bench import run

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=40)
    ap.add_argument("--report", default=str(run.ROOT / ".run" / "bench" / "callbacks.json"))
    ns = ap.parse_args()
    with run.side_stack("callbacks", port_offset=3700, redis_db=7) as stack:
        if stack is None:
            return 2
        report = {"callbacks": asyncio.run(callback_path(stack, stack.env["DATABASE_URL"],
                                                         ns.seconds,
                                                         concurrency=ns.concurrency))}
    print(run.table([("figure", "value", "baseline", "ratio"), *callback_rows(report)]))
    Path(ns.report).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.report).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
