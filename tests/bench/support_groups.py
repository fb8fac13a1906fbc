"""The support groups' rows of `make bench`: how many new tickets a minute one support group and
three carry, with every message of each ticket in its group and in its order.

The telegram worker is restarted with the groups (`TELEGRAM_SUPPORT_CHAT_IDS`, forums in the
emulator) and Telegram's pace per group (`TELEGRAM_SUPPORT_SEND_INTERVAL`, 3 s: ~20 new messages
a minute); then a burst of tickets is opened at once through the API. A ticket is carried when
its topic, opening message, customer card and the card's pin are all in its group, in that
order, once each. The figure is tickets over the time from the burst to the last one carried:
it is bounded by the interval times the four messages of a ticket's opening (5 a minute a group),
not by the machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import httpx

GROUPS = (-1001000000001, -1001000000011, -1001000000012)
FORUMS = ",".join(map(str, GROUPS))


def restart_worker(stack, groups: int, interval: float) -> None:
    stack.env.update({"TELEGRAM_SUPPORT_CHAT_IDS": ",".join(map(str, GROUPS[:groups])),
                      "TELEGRAM_SUPPORT_SEND_INTERVAL": str(interval)})
    stack.kill("telegram-worker", 15)
    stack.start_service("telegram", "worker")
    stack.wait_port(stack.worker_metrics_port("telegram"))


def carried(calls: list[dict], ids: list[str]) -> dict[str, tuple[int, float, bool]]:
    """The burst's tickets whose opening is all there: (group, when the last part came, whether
    it came in order, once each: topic, opening message, card, the card's pin)."""
    out = {}
    for c in calls:
        if c["method"] != "createForumTopic":
            continue
        tid = next((t for t in ids if f"#{t[:6]} " in c["params"]["name"]), None)
        if tid is None:
            continue
        chat, thread = c["params"]["chat_id"], c["result"]["message_thread_id"]
        steps = [("topic", c["seq"], c["time"])]
        sent = [m for m in calls if m["method"] == "sendMessage" and m["params"]["chat_id"] == chat
                and m["params"].get("message_thread_id") == thread]
        steps += [("card" if m["params"]["text"].startswith("🪪") else "opening", m["seq"],
                   m["time"]) for m in sent]
        cards = {m["result"]["message_id"] for m in sent if m["params"]["text"].startswith("🪪")}
        steps += [("pin", m["seq"], m["time"]) for m in calls if m["method"] == "pinChatMessage"
                  and m["params"]["chat_id"] == chat and m["params"]["message_id"] in cards]
        kinds = [k for k, _, _ in sorted(steps, key=lambda x: x[1])]
        if {"topic", "opening", "card", "pin"} <= set(kinds):
            out[tid] = (chat, max(t for _, _, t in steps),
                        kinds == ["topic", "opening", "card", "pin"])
    return out


async def support_groups_path(stack, client_cookies, groups: int, tickets: int,
                              interval: float = 3.0, timeout: float = 900) -> dict:
    restart_worker(stack, groups, interval)
    gw, emu = stack.api_url("gateway"), stack.env["TELEGRAM_API_BASE"]
    load = os.getloadavg()[0]
    async with httpx.AsyncClient(base_url=gw + "/api/v1", cookies=client_cookies, timeout=30,
                                 headers={"Content-Type": "application/json"}) as c:
        started = time.time()

        async def one(i: int) -> str:
            r = await c.post("/tickets", json={"subject": f"groups {groups} #{i}",
                                               "body": f"[g{groups}-{i}]"})
            r.raise_for_status()
            return r.json()["ticket"]["id"]

        ids = list(await asyncio.gather(*(one(i) for i in range(tickets))))
    done: dict = {}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=60) as http:
        while time.monotonic() < deadline and len(done) < tickets:
            await asyncio.sleep(2)
            calls = []
            for chat in GROUPS[:groups]:
                r = await http.get(f"{emu}/_emulator/calls", params={"chat_id": chat})
                calls += r.json()["calls"]
            done = carried(calls, ids)
    last = max((t for _, t, _ in done.values()), default=time.time())
    minutes = (last - started) / 60
    return {"groups": groups, "tickets": tickets, "interval_s": interval,
            "carried": len(done), "in_order": sum(1 for *_, ok in done.values() if ok),
            "per_group": dict(Counter(str(chat) for chat, _, _ in done.values())),
            "minutes": minutes, "tickets_per_min": len(done) / minutes if minutes else 0.0,
            "load_avg_1m_before": load, "load_avg_1m_after": os.getloadavg()[0]}


def support_groups_rows(report: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for key in ("support_groups_1", "support_groups_3"):
        r = report.get(key)
        if r:
            rows.append((f"new tickets, {r['groups']} support group(s)",
                         f"{r['tickets_per_min']:.1f} tickets/min ({r['carried']}/{r['tickets']} "
                         f"carried, {r['in_order']} in order; {r['interval_s']:g} s a message "
                         f"per group)", f"{20 * r['groups'] / 4:.0f}/min (20 msg/min/group, "
                         "4 per ticket)", f"{r['tickets_per_min'] / (5 * r['groups']):.2f}"))
    return rows
