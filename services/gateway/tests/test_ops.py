"""The gateway's operations view over real HTTP: each service stands in with its real ops
endpoints (`runtime.operations`) on a real Redis and RabbitMQ; the gateway puts their answers
together, shows what it can when one service is down and sends each retry and replay to the
service that owns it, audited."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import orjson
import pytest

from gateway.clients import Clients
from gateway.config import Settings
from gateway.ops import Ops
from runtime.broker import Broker
from runtime.errors import AppError, NotFound, ServiceUnavailable
from runtime.http import create_app
from runtime.jobs import JobQueue, JobWorker
from runtime.operations import Operations, operations_router
from runtime.settings import service_settings
from runtime.testing import await_for, free_port, serving

SLOT = int(os.environ.get("TEST_SLOT", "0"))
REDIS_URL = f"redis://127.0.0.1:6379/{10 + SLOT}"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
KEY = "gateway-ops-tests-signing-key-0123456789"


# What each stand-in administers: (job queues, consumer queues).
SERVICES = {
    "billing": (["payment_watch"], []),
    "provisioner": (["provision"], ["provisioner.billing-events"]),
    "telegram": (["notify"], ["telegram.ticket-events"]),
    "tickets": ([], ["tickets.telegram-events"]),
}


@dataclass(frozen=True)
class Admin:
    id: str = "admin-1"
    role: str = "ADMIN"


ADMIN = Admin()


def standin(name: str, tag: str):
    job_queues, consumer_queues = SERVICES[name]
    settings = service_settings(name, port=0)(**{
        "REDIS_URL": REDIS_URL, "RABBITMQ_URL": RABBITMQ_URL, "JOBS_PREFIX": tag,
        "BROKER_PREFIX": f"{tag}.", "INTERNAL_SIGNING_KEY": KEY})
    app = create_app(name, readiness={}, max_body=1024)
    app.state.settings = settings
    app.include_router(operations_router(Operations(settings, job_queues=job_queues,
                                                    consumer_queues=consumer_queues)))
    return app


@dataclass
class Stack:
    tag: str
    urls: dict[str, str]
    broker: Broker
    clients: list[Clients] = field(default_factory=list)

    def ops(self, settings, db, down: str | None = None) -> Ops:
        """The gateway's ops over the stand-ins, `down` answering nothing at all."""
        urls = {**self.urls}
        if down:
            urls[down] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        clients = Clients.connect(urls, KEY, timeout=10)
        self.clients.append(clients)
        return Ops(settings, db, clients)

    async def dead_letter(self, queue: str, event_id: str) -> None:
        """A message dead-lettered from a consumer queue, as the broker does it."""
        body = {"event_id": event_id, "type": "thing.happened",
                "occurred_at": "2026-01-01T00:00:00Z", "payload": {}}
        ch = await self.broker.connection.channel(publisher_confirms=True)
        dlx = await ch.get_exchange(self.broker.dlx_name)
        await dlx.publish(aio_pika.Message(orjson.dumps(body), message_id=event_id),
                          routing_key=self.broker.queue_name(queue))
        await ch.close()
        await await_for(lambda: self.ready(f"{queue}.dlq"), message=f"a dead letter in {queue}")

    async def ready(self, queue: str) -> int:
        return (await self.broker.queue_depths([queue]))[queue]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """Four stand-in services with one failed `provision` job, one waiting `payment_watch` job,
    and every consumer queue (the gateway's own too) declared as its worker would."""
    tag = f"gwops{SLOT}-{uuid.uuid4().hex[:8]}"
    broker = Broker(RABBITMQ_URL, f"{tag}.")
    await broker.connect()
    consumer_queues = ["gateway.identity-projections",
                       *(q for _, queues in SERVICES.values() for q in queues)]
    for queue in consumer_queues:
        await broker.declare(queue, [])

    provision = JobQueue("provision", REDIS_URL, tag)
    watch = JobQueue("payment_watch", REDIS_URL, tag)

    async def broken(job, token=""):
        raise RuntimeError("vpn backend down")

    worker = JobWorker("provision", REDIS_URL, {"apply_grant": broken}, prefix=tag)
    worker.start()
    try:
        await provision.enqueue("apply_grant", {}, job_id="grant-1", attempts=1)
        await watch.enqueue("payment_watch", {}, job_id="tick-1")

        async def failed():
            return await provision.queue.getJobState("grant-1") == "failed"

        await await_for(failed, message="the provision job to fail")
    finally:
        await worker.close()

    async with (serving(standin("billing", tag)) as billing,
                serving(standin("provisioner", tag)) as provisioner,
                serving(standin("telegram", tag)) as telegram,
                serving(standin("tickets", tag)) as tickets):
        running = Stack(tag, {"billing": billing, "provisioner": provisioner,
                              "telegram": telegram, "tickets": tickets}, broker)
        yield running
        for clients in running.clients:
            await clients.close()

    for q in (provision, watch):
        await q.queue.obliterate(force=True)
        await q.close()
    ch = await broker.connection.channel()
    for queue in consumer_queues:
        await ch.queue_delete(broker.queue_name(queue))
        await ch.queue_delete(broker.queue_name(f"{queue}.dlq"))
    await ch.exchange_delete(broker.exchange_name)
    await ch.exchange_delete(broker.dlx_name)
    await broker.close()


@pytest.fixture
def gateway_settings(stack):
    return Settings(**{"REDIS_URL": REDIS_URL, "RABBITMQ_URL": RABBITMQ_URL,
                       "BROKER_PREFIX": f"{stack.tag}.", "INTERNAL_SIGNING_KEY": KEY})


async def audit(pg, target_id: str) -> list[tuple[str, str, str]]:
    rows = await pg.fetch("SELECT action, outcome, details FROM identity.audit_log "
                          "WHERE target_id = $1 ORDER BY id", target_id)
    return [(r["action"], r["outcome"], r["details"] and orjson.loads(r["details"]))
            for r in rows]


async def test_the_overview_puts_every_service_together_and_names_the_one_down(
        stack, gateway_settings, db):
    await stack.dead_letter("provisioner.billing-events", "evt-prov")
    await stack.dead_letter("gateway.identity-projections", "evt-own")

    everyone = await stack.ops(gateway_settings, db).overview(ADMIN)
    assert everyone["unavailable"] == []
    assert {j["queue"]: (j["waiting"], j["failed"]) for j in everyone["jobs"]} == {
        "payment_watch": (1, 0), "provision": (0, 1), "notify": (0, 0)}
    assert [(j["queue"], j["id"], j["reason"]) for j in everyone["failed_jobs"]] == [
        ("provision", "grant-1", "vpn backend down")]
    assert {(d["queue"], d["id"]) for d in everyone["dead_letters"]} == {
        ("gateway.identity-projections", "evt-own"), ("provisioner.billing-events", "evt-prov")}

    without_telegram = await stack.ops(gateway_settings, db, down="telegram").overview(ADMIN)
    assert without_telegram["unavailable"] == ["telegram"]
    assert {j["queue"] for j in without_telegram["jobs"]} == {"payment_watch", "provision"}
    assert without_telegram["failed_jobs"] == everyone["failed_jobs"]
    assert {(d["queue"], d["id"]) for d in without_telegram["dead_letters"]} == {
        ("gateway.identity-projections", "evt-own"), ("provisioner.billing-events", "evt-prov")}


async def test_a_retry_goes_to_the_service_running_the_queue(stack, gateway_settings, db, pg):
    ops = stack.ops(gateway_settings, db, down="telegram")
    assert await ops.retry_job(ADMIN, "provision", "grant-1") == {
        "queue": "provision", "id": "grant-1", "retried": True}
    assert (await ops.overview(ADMIN))["failed_jobs"] == []

    with pytest.raises(AppError) as twice:
        await ops.retry_job(ADMIN, "provision", "grant-1")  # waiting now: the owner says 409
    assert twice.value.status == 409
    with pytest.raises(ServiceUnavailable) as unknown:
        await ops.retry_job(ADMIN, "notify", "n-1")  # only telegram could say
    assert unknown.value.details == {"unavailable": ["telegram"]}
    with pytest.raises(NotFound):
        await stack.ops(gateway_settings, db).retry_job(ADMIN, "nobodys", "x")

    assert await audit(pg, "provision/grant-1") == [("job.retry", "success", None),
                                                    ("job.retry", "refused:409", None)]


async def test_a_replay_goes_to_the_service_holding_the_dead_letter(stack, gateway_settings,
                                                                     db, pg):
    await stack.dead_letter("tickets.telegram-events", "evt-tickets")
    ops = stack.ops(gateway_settings, db, down="telegram")
    assert await ops.replay(ADMIN, "evt-tickets") == {
        "id": "evt-tickets", "queue": "tickets.telegram-events", "replayed": True}
    # back in the queue it died in
    assert await await_for(lambda: stack.ready("tickets.telegram-events"),
                           message="the replayed message") == 1
    assert all(d["id"] != "evt-tickets" for d in (await ops.overview(ADMIN))["dead_letters"])

    with pytest.raises(ServiceUnavailable):
        await ops.replay(ADMIN, "evt-tickets")  # gone, but telegram could not be asked
    with pytest.raises(NotFound):
        await stack.ops(gateway_settings, db).replay(ADMIN, "evt-tickets")

    assert await audit(pg, "evt-tickets") == [
        ("dead_letter.replay", "success", {"queue": "tickets.telegram-events"}),
        ("dead_letter.replay", "refused:503", None),
        ("dead_letter.replay", "refused:404", None)]
