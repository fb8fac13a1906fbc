"""Faults in the support flow: a killed worker, a restarted broker, Telegram answering 429.

After each, every ticket and every message reaches the support chat exactly once, in order.
"""

from __future__ import annotations

import html
import re
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from tests.conftest import register, wait_for
from tests.e2e.test_support_flow import calls, get_ticket, operator_says, topic_of


def shown_text(params: dict) -> str:
    """The text a chat shows for a sendMessage call (HTML parse mode: tags off, entities read)."""
    text = params.get("text", "")
    if params.get("parse_mode") == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return text


def texts_with(emulator_url: str, marker: str) -> list[str]:
    shown = (shown_text(c["params"]) for c in calls(emulator_url, "sendMessage"))
    return [t for t in shown if marker in t]


def assert_each_once(emulator_url: str, markers: list[str], timeout: float = 60) -> None:
    def all_arrived():
        return all(len(texts_with(emulator_url, m)) >= 1 for m in markers)

    wait_for(all_arrived, timeout=timeout, interval=0.5, message="every message in the chat")
    counts = {m: len(texts_with(emulator_url, m)) for m in markers}
    duplicated = {m: c for m, c in counts.items() if c != 1}
    assert not duplicated, f"delivered more than once: {duplicated}"


def test_tickets_worker_killed_mid_flow_loses_nothing(stack, gateway_url, emulator_url):
    customer = register(gateway_url)
    run = uuid.uuid4().hex[:8]
    tickets = []
    for i in range(3):
        r = customer.post("/tickets", json={"subject": f"kill {run} {i}", "body": f"[k-{run}-{i}]"})
        assert r.status_code == 201
        tickets.append(r.json()["ticket"])
    threads = {t["id"]: topic_of(emulator_url, t["id"]) for t in tickets}
    # operator replies in flight while the tickets worker is killed
    replies = []
    for i, t in enumerate(tickets):
        text = f"[reply-{run}-{i}]"
        operator_says(emulator_url, threads[t["id"]], text)
        replies.append((t["id"], text))
        if i == 0:
            stack.kill("tickets-worker")
    markers = []
    for i, t in enumerate(tickets):
        m = f"[cust-{run}-{i}]"
        assert customer.post(f"/tickets/{t['id']}/messages", json={"body": m}).status_code == 201
        markers.append(m)
    stack.start_service("tickets", "worker")

    def replies_landed():
        return all(sum(1 for m in get_ticket(customer, tid)["messages"] if m["body"] == text) >= 1
                   for tid, text in replies)

    wait_for(replies_landed, timeout=60, interval=0.5, message="operator replies on tickets")
    for tid, text in replies:
        bodies = [m["body"] for m in get_ticket(customer, tid)["messages"]]
        assert bodies.count(text) == 1
    assert_each_once(emulator_url, [f"[k-{run}-{i}]" for i in range(3)] + markers)


def _rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", action], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.skipif(subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode,
                    reason="rabbitmqctl not available")
@pytest.mark.serial
def test_rabbitmq_restart_while_tickets_are_created(stack, gateway_url, emulator_url):
    customer = register(gateway_url)
    run = uuid.uuid4().hex[:8]
    created: list[str] = []
    errors: list[str] = []

    def create_many():
        for i in range(12):
            r = customer_thread.post("/tickets", json={"subject": f"rmq {run} {i}",
                                                       "body": f"[rmq-{run}-{i}]"})
            if r.status_code == 201:
                created.append(f"[rmq-{run}-{i}]")
            else:
                errors.append(r.text)
            time.sleep(0.3)

    customer_thread = httpx.Client(base_url=customer.base_url, cookies=customer.cookies,
                                   headers={"Content-Type": "application/json"}, timeout=15)
    writer = threading.Thread(target=create_many)
    writer.start()
    time.sleep(1)
    _rabbitmq("stop_app")
    time.sleep(2)
    _rabbitmq("start_app")
    writer.join(timeout=120)
    assert not errors, errors  # the API does not depend on the broker being up
    assert len(created) == 12
    assert_each_once(emulator_url, created, timeout=120)


def test_telegram_429_delays_but_delivers_everything_in_order(gateway_url, emulator_url):
    customer = register(gateway_url)
    run = uuid.uuid4().hex[:8]
    r = httpx.post(f"{emulator_url}/_emulator/faults",
                   json={"status": 429, "for_seconds": 4, "retry_after": 1,
                         "methods": ["sendMessage", "createForumTopic"]}, timeout=10)
    assert r.status_code == 200, r.text
    expected: dict[str, list[str]] = {}
    for i in range(2):
        t = customer.post("/tickets", json={"subject": f"429 {run} {i}",
                                            "body": f"[o-{run}-{i}]"}).json()["ticket"]
        expected[t["id"]] = [f"[o-{run}-{i}]"]
        for j in range(3):
            m = f"[m-{run}-{i}-{j}]"
            r = customer.post(f"/tickets/{t['id']}/messages", json={"body": m})
            assert r.status_code == 201
            expected[t["id"]].append(m)
    stats = httpx.get(f"{emulator_url}/_emulator/stats", timeout=10).json()
    assert stats["failed"] > 0  # the fault really answered 429s
    assert_each_once(emulator_url, [m for ms in expected.values() for m in ms], timeout=90)
    for ticket_id, markers in expected.items():
        thread = topic_of(emulator_url, ticket_id)
        in_topic = [c["params"]["text"] for c in calls(emulator_url, "sendMessage")
                    if c["params"].get("message_thread_id") == thread]
        order = [next(m for m in markers if m in text) for text in in_topic
                 if any(m in text for m in markers)]
        assert order == markers
