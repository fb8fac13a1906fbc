"""A service's own ops view against a real Redis and RabbitMQ: job counts and failed jobs, a retry
(the default one and a service's own), dead letters peeked without being consumed and replayed to
the queue they died in, the ADMIN-only endpoints, and Redis or RabbitMQ away as a 503."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import aio_pika
import httpx
import orjson
import pytest

from runtime import identity
from runtime.broker import Broker
from runtime.errors import Conflict, NotFound, ServiceUnavailable
from runtime.http import create_app
from runtime.jobs import JobQueue, JobWorker
from runtime.operations import Operations, operations_router
from runtime.settings import ServiceSettings
from runtime.testing import await_for

SLOT = int(os.environ.get("TEST_SLOT", "0"))
REDIS_URL = f"redis://127.0.0.1:6379/{1 + SLOT}"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
CLOSED_PORT = 1  # nothing listens there


class OpsSettings(ServiceSettings):
    service_name: ClassVar[str] = "opstest"


def settings(tag: str, **overrides) -> OpsSettings:
    return OpsSettings(**{"REDIS_URL": REDIS_URL, "RABBITMQ_URL": RABBITMQ_URL,
                          "JOBS_PREFIX": f"opstest{SLOT}-{tag}",
                          "BROKER_PREFIX": f"opstest{SLOT}-{tag}.", **overrides})


# ---- jobs ---------------------------------------------------------------------------------------
@pytest.fixture
async def queues() -> AsyncIterator[tuple[OpsSettings, JobQueue, JobQueue]]:
    """`work` (one job failed for good, its reason longer than an admin is shown) and `idle`
    (one job waiting, no worker)."""
    s = settings(uuid.uuid4().hex[:8])
    work = JobQueue("work", REDIS_URL, s.jobs_prefix)
    idle = JobQueue("idle", REDIS_URL, s.jobs_prefix)

    async def broken(job, token=""):
        raise RuntimeError("backend down " + "x" * 600)

    worker = JobWorker("work", REDIS_URL, {"do": broken}, prefix=s.jobs_prefix)
    worker.start()
    try:
        await work.enqueue("do", {}, job_id="job-1", attempts=2,
                           backoff={"type": "fixed", "delay": 10})
        await idle.enqueue("wait", {}, job_id="job-2")
        await await_for(lambda: _is(work, "job-1", "failed"), message="the job to fail")
    finally:
        await worker.close()
    yield s, work, idle
    for q in (work, idle):
        await q.queue.obliterate(force=True)
        await q.close()


async def _is(q: JobQueue, jid: str, state: str) -> bool:
    return await q.queue.getJobState(jid) == state


async def test_counts_and_failed_jobs_of_the_services_own_queues(queues):
    s, _, _ = queues
    ops = Operations(s, job_queues=["work", "idle"])
    view = await ops.overview()
    assert view["jobs"] == [
        {"queue": "work", "waiting": 0, "active": 0, "delayed": 0, "failed": 1, "completed": 0},
        {"queue": "idle", "waiting": 1, "active": 0, "delayed": 0, "failed": 0, "completed": 0}]
    [failed] = view["failed_jobs"]
    assert failed["queue"] == "work" and failed["id"] == "job-1" and failed["name"] == "do"
    assert failed["attempts"] == 2
    assert failed["reason"].startswith("backend down xxx") and len(failed["reason"]) == 500
    assert view["dead_letters"] == []


async def test_a_failed_job_is_retried_with_a_fresh_budget_and_only_a_failed_one(queues):
    s, work, _ = queues
    ops = Operations(s, job_queues=["work", "idle"])
    assert await ops.retry("work", "job-1") == {"queue": "work", "id": "job-1", "retried": True}
    assert await work.queue.getJobState("job-1") == "waiting"
    assert (await work.queue.getJob("job-1")).attemptsMade == 0

    with pytest.raises(Conflict) as refused:
        await ops.retry("work", "job-1")  # waiting now, not failed
    assert refused.value.details == {"state": "waiting"}
    with pytest.raises(NotFound):
        await ops.retry("work", "no-such-job")
    with pytest.raises(NotFound) as unknown:
        await ops.retry("someone-elses", "job-1")
    assert unknown.value.details["reason"] == "unknown_queue"


async def test_a_service_can_retry_a_queue_its_own_way(queues):
    s, work, _ = queues
    asked: list[str] = []

    async def own_retry(job_id: str) -> None:
        asked.append(job_id)

    ops = Operations(s, job_queues=["work", "idle"], retry={"work": own_retry})
    assert (await ops.retry("work", "job-1"))["retried"] is True
    assert asked == ["job-1"]
    assert await work.queue.getJobState("job-1") == "failed"  # left to the service's own retry


def test_a_retry_for_an_undeclared_queue_is_refused_at_startup():
    with pytest.raises(ValueError, match="not declared"):
        Operations(settings("x"), job_queues=["work"], retry={"other": lambda jid: None})


# ---- dead letters -------------------------------------------------------------------------------
@pytest.fixture
async def broker() -> AsyncIterator[tuple[OpsSettings, Broker]]:
    """The topology a worker declares for consumer queue `things`; `never-ran` has none."""
    s = settings(uuid.uuid4().hex[:8])
    b = Broker(RABBITMQ_URL, s.broker_prefix)
    await b.connect()
    await b.declare("things", ["thing.happened.v1"])
    ch = await b.connection.channel()
    yield s, b
    for name in ("things", "things.dlq"):
        await ch.queue_delete(b.queue_name(name))
    await ch.exchange_delete(b.exchange_name)
    await ch.exchange_delete(b.dlx_name)
    await b.close()


async def dead_letter(b: Broker, event_id: str) -> dict:
    """A message dead-lettered from `things`, as the broker does after its delivery limit."""
    body = {"event_id": event_id, "type": "thing.happened", "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {}}
    ch = await b.connection.channel(publisher_confirms=True)
    dlx = await ch.get_exchange(b.dlx_name)
    await dlx.publish(aio_pika.Message(orjson.dumps(body), message_id=event_id,
                                       type="thing.happened.v1"),
                      routing_key=b.queue_name("things"))
    await ch.close()
    return body


async def ready(b: Broker, name: str) -> int:
    return (await b.queue_depths([name]))[name]


async def test_dead_letters_are_listed_and_left_where_they_are(broker):
    s, b = broker
    await dead_letter(b, "evt-1")
    await dead_letter(b, "evt-2")
    await await_for(lambda: _count_is(b, "things.dlq", 2), message="two dead letters")
    ops = Operations(s, consumer_queues=["things", "never-ran"])
    for _ in range(2):  # reading them twice finds them twice
        letters = await ops.dead_letters()
        assert [(d["id"], d["queue"], d["event_type"], d["routing_key"]) for d in letters] == [
            ("evt-1", "things", "thing.happened", "thing.happened.v1"),
            ("evt-2", "things", "thing.happened", "thing.happened.v1")]
        assert letters[0]["occurred_at"] == "2026-01-01T00:00:00Z"
    await await_for(lambda: _count_is(b, "things.dlq", 2),
                    message="both still in the dead-letter queue")


async def _count_is(b: Broker, name: str, n: int) -> bool:
    return await ready(b, name) == n


async def test_a_replay_sends_one_dead_letter_back_to_the_queue_it_died_in(broker):
    s, b = broker
    first = await dead_letter(b, "evt-1")
    await dead_letter(b, "evt-2")
    await await_for(lambda: _count_is(b, "things.dlq", 2), message="two dead letters")
    ops = Operations(s, consumer_queues=["never-ran", "things"])

    assert await ops.replay("evt-1") == {"id": "evt-1", "queue": "things", "replayed": True}
    ch = await b.connection.channel()
    queue = await ch.declare_queue(b.queue_name("things"), passive=True)
    message = await await_for(lambda: queue.get(fail=False), message="the replayed message")
    await message.ack()
    assert orjson.loads(message.body) == first and message.message_id == "evt-1"
    assert [d["id"] for d in await ops.dead_letters()] == ["evt-2"]

    with pytest.raises(NotFound):
        await ops.replay("evt-1")  # replayed already


async def test_a_replay_into_a_queue_that_is_gone_is_refused_and_the_dead_letter_stays(broker):
    s, b = broker
    await dead_letter(b, "evt-1")
    await await_for(lambda: _count_is(b, "things.dlq", 1), message="a dead letter")
    ch = await b.connection.channel()
    await ch.queue_delete(b.queue_name("things"))  # its consumer queue deleted by hand
    ops = Operations(s, consumer_queues=["things"])
    with pytest.raises(Conflict, match="stays a dead letter"):
        await ops.replay("evt-1")
    assert [d["id"] for d in await ops.dead_letters()] == ["evt-1"]


# ---- infrastructure away ------------------------------------------------------------------------
async def test_redis_away_is_service_unavailable():
    s = settings("away", REDIS_URL=f"redis://127.0.0.1:{CLOSED_PORT}/0")
    with pytest.raises(ServiceUnavailable, match="Redis"):
        await Operations(s, job_queues=["work"]).overview()


async def test_rabbitmq_away_is_service_unavailable():
    s = settings("away", RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{CLOSED_PORT}/")
    with pytest.raises(ServiceUnavailable, match="RabbitMQ"):
        await Operations(s, consumer_queues=["things"]).replay("evt-1")


# ---- the endpoints ------------------------------------------------------------------------------
def client(s: OpsSettings, ops: Operations, role: str) -> httpx.AsyncClient:
    app = create_app("opstest", readiness={}, max_body=1024)
    app.state.settings = s
    app.include_router(operations_router(ops))
    header = identity.sign(s.internal_signing_key, "u-1", role, audience="opstest")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://opstest",
                             headers={identity.HEADER: header})


async def test_the_endpoints_are_for_admins_and_say_why_they_refuse(queues):
    s, _, _ = queues
    ops = Operations(s, job_queues=["work", "idle"])
    async with client(s, ops, "SUPPORT") as support:
        assert (await support.get("/internal/admin/ops")).status_code == 403
        assert (await support.post("/internal/admin/jobs/work/job-1/retry")).status_code == 403
    async with client(s, ops, "ADMIN") as admin:
        view = (await admin.get("/internal/admin/ops")).json()
        assert [j["queue"] for j in view["jobs"]] == ["work", "idle"]
        assert [j["id"] for j in view["failed_jobs"]] == ["job-1"]
        assert view["dead_letters"] == []

        r = await admin.post("/internal/admin/jobs/work/job-1/retry")
        assert r.status_code == 200 and r.json() == {"queue": "work", "id": "job-1",
                                                     "retried": True}
        again = await admin.post("/internal/admin/jobs/work/job-1/retry")
        assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
        unknown = await admin.post("/internal/admin/jobs/elsewhere/job-1/retry")
        assert unknown.status_code == 404
        assert unknown.json()["details"]["reason"] == "unknown_queue"
        missing = await admin.post("/internal/admin/dead-letters/evt-9/replay")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
