"""Scaling and shutdown: competing worker replicas, and SIGTERM without 5xx or lost messages."""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import UTC, datetime

import httpx

from contracts import make_envelope
from contracts.telegram import SupportReplyReceivedV1
from tests.conftest import metric_total, publish_envelopes, register, wait_for
from tests.e2e.test_support_flow import SUPPORT_CHAT, get_ticket


def handled_ok(port: int, queue: str) -> float:
    return metric_total(port, "messages_handled_total", queue=queue, outcome="ok")


async def test_two_tickets_worker_replicas_share_the_work_exactly_once(stack, gateway_url):
    stack.start_service("tickets", "worker", replica=2)
    customer = register(gateway_url)
    tickets = [customer.post("/tickets", json={"subject": f"scale {i}", "body": "x"}).json()
               ["ticket"]["id"] for i in range(10)]
    ports = [stack.worker_metrics_port("tickets", 1), stack.worker_metrics_port("tickets", 2)]
    wait_for(lambda: all(_metrics_up(p) for p in ports), message="both replicas serving metrics")
    before = [handled_ok(p, "tickets.telegram-events") for p in ports]
    run = uuid.uuid4().hex[:6]
    msg_id = 950000 + uuid.uuid4().int % 10000 * 1000
    envs = [make_envelope(SupportReplyReceivedV1(
        ticket_id=tickets[i % 10], body=f"[{run}-{i}]", operator_telegram_id=1001,
        chat_id=SUPPORT_CHAT, telegram_message_id=msg_id + i, update_id=msg_id + i,
        received_at=datetime.now(UTC)), producer="telegram") for i in range(200)]
    await publish_envelopes([(e.model_dump(mode="json"), e.routing_key) for e in envs])

    def all_landed():
        total = 0
        for tid in tickets:
            total += sum(1 for m in get_ticket(customer, tid)["messages"]
                         if m["body"].startswith(f"[{run}-"))
        return total >= 200

    wait_for(all_landed, timeout=120, interval=0.5, message="200 replies on the tickets")
    for n, tid in enumerate(tickets):
        bodies = [m["body"] for m in get_ticket(customer, tid)["messages"]
                  if m["body"].startswith(f"[{run}-")]
        assert sorted(bodies) == sorted(f"[{run}-{i}]" for i in range(n, 200, 10))
    after = [handled_ok(p, "tickets.telegram-events") for p in ports]
    did = [a - b for a, b in zip(after, before, strict=True)]
    assert all(d > 0 for d in did), f"each replica should have handled some: {did}"
    assert sum(did) == 200
    stack.kill("tickets-worker-2", signal.SIGTERM)


def _metrics_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_on_gateway_under_load_never_answers_5xx(stack, gateway_url):
    customer = register(gateway_url)
    cookie = customer.cookies.get("sid")
    statuses: list[int] = []
    refused = 0
    stop = threading.Event()

    def hammer():
        nonlocal refused
        with httpx.Client(base_url=gateway_url + "/api/v1", cookies={"sid": cookie},
                          timeout=10) as c:
            while not stop.is_set():
                try:
                    statuses.append(c.get("/auth/me").status_code)
                except httpx.TransportError:
                    refused += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(statuses) > 50, message="load running")
    stack.kill("gateway-api", signal.SIGTERM)  # waits for the process to exit
    stop.set()
    for t in threads:
        t.join(timeout=30)
    stack.start_service("gateway", "api")
    stack.wait_http(stack.api_url("gateway") + "/readyz")
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert statuses.count(200) > 50
    assert customer.get("/auth/me").status_code == 200


def test_sigterm_on_tickets_worker_loses_no_message(stack, gateway_url):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "graceful", "body": "x"}).json()["ticket"]
    run = uuid.uuid4().hex[:6]
    for i in range(10):
        assert customer.post(f"/tickets/{ticket['id']}/messages",
                             json={"body": f"<{run}-{i}>"}).status_code == 201
        if i == 4:
            stack.kill("tickets-worker", signal.SIGTERM)
    stack.start_service("tickets", "worker")
    from tests.e2e.test_support_faults import assert_each_once

    assert_each_once(stack.env["TELEGRAM_API_BASE"], [f"<{run}-{i}>" for i in range(10)])
