"""A busy support desk (issue 22 point 6): a burst of 100 tickets, each with a follow-up from
the customer, while Telegram answers 429s. The tickets spread over the three support groups
(tests/conftest.py: TELEGRAM_SUPPORT_CHAT_IDS, a short group interval and spread backlog), and
every ticket's messages arrive once, all in its group, in its order: the opening message, the
customer card, the follow-up."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.conftest import SUPPORT_GROUPS, await_for, register

GROUPS = [int(c) for c in SUPPORT_GROUPS.split(",")]
TICKETS = 100


def group_calls(emulator_url: str) -> list[dict]:
    calls = httpx.get(f"{emulator_url}/_emulator/calls", timeout=30).json()["calls"]
    return [c for c in calls if c["params"].get("chat_id") in GROUPS]


async def test_a_burst_of_tickets_spreads_over_the_groups_each_in_order(gateway_url,
                                                                        emulator_url):
    customer = register(gateway_url)
    r = httpx.post(f"{emulator_url}/_emulator/faults", json={
        "status": 429, "retry_after": 1, "count": 12,
        "methods": ["sendMessage", "createForumTopic", "pinChatMessage"]}, timeout=10)
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient(base_url=gateway_url + "/api/v1", cookies=customer.cookies,
                                 timeout=30, headers={"Content-Type": "application/json"}) as c:
        async def ticket(i: int) -> str:
            # brackets: the groups HTML-escape customer text, `<` and `>` would change
            r = await c.post("/tickets", json={"subject": f"burst {i}", "body": f"[burst {i}]"})
            assert r.status_code == 201, r.text
            return r.json()["ticket"]["id"]

        ids: list[str] = []
        for start in range(0, TICKETS, 20):
            ids += await asyncio.gather(*(ticket(i) for i in range(start, start + 20)))
        for start in range(0, TICKETS, 20):
            replies = await asyncio.gather(*(
                c.post(f"/tickets/{ids[i]}/messages", json={"body": f"[again {i}]"})
                for i in range(start, start + 20)))
            assert {r.status_code for r in replies} == {201}

    def per_ticket(calls: list[dict]) -> dict[str, tuple[int, list[dict]]]:
        """Each ticket's group and its calls into its topic, in Telegram's order."""
        topics = {(c["params"]["chat_id"], c["result"]["message_thread_id"]): c["params"]["name"]
                  for c in calls if c["method"] == "createForumTopic"}
        out: dict[str, tuple[int, list[dict]]] = {}
        for (chat, thread), name in topics.items():
            tid = next((t for t in ids if f"#{t[:6]} " in name), None)
            if tid is None:  # another test's ticket
                continue
            out[tid] = (chat, [c for c in calls if c["params"]["chat_id"] == chat
                               and c["params"].get("message_thread_id") == thread
                               and c["method"] == "sendMessage"])
        return out

    async def delivered():
        calls = group_calls(emulator_url)
        tickets = per_ticket(calls)
        done = len(tickets) == TICKETS and all(len(m) >= 3 for _, m in tickets.values())
        return (calls, tickets) if done else None

    calls, tickets = await await_for(delivered, timeout=150, interval=1,
                                     message="every ticket's three messages in its group")
    assert Counter(c["params"]["name"] for c in calls
                   if c["method"] == "createForumTopic").most_common(1)[0][1] == 1
    for i, tid in enumerate(ids):
        chat, messages = tickets[tid]
        texts = [m["params"]["text"] for m in messages]
        assert len(texts) == 3, (tid, texts)  # once each
        assert f"[burst {i}]" in texts[0] and texts[1].startswith("🪪") and \
            f"[again {i}]" in texts[2], texts
        elsewhere = [c for c in calls if c["params"]["chat_id"] != chat
                     and f"[burst {i}]" in c["params"].get("text", "")]
        assert not elsewhere
    spread = Counter(chat for chat, _ in tickets.values())
    assert set(spread) == set(GROUPS), spread  # past the first group's backlog: the others
    faults = httpx.get(f"{emulator_url}/_emulator/faults", timeout=10).json()["faults"]
    assert not [f for f in faults if f["status"] == 429]  # every 429 was met on the way
