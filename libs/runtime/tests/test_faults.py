"""Injected sandbox faults against a real Redis: which call a fault hits, how long and how many
times, shared by every process on the same key (the API adds, the worker suffers), and Redis
away read as "no fault" while adding one is a 503."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from runtime.errors import ServiceUnavailable
from runtime.faults import Fault, FaultSwitch, sandbox_faults
from runtime.settings import ServiceSettings

REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"
CLOSED_PORT = 1  # nothing listens there


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}:sandbox-faults"


@pytest.fixture
async def api(key) -> AsyncIterator[FaultSwitch]:
    switch = FaultSwitch(REDIS_URL, key)
    yield switch
    await switch.clear()
    assert await switch.redis.exists(key, f"{key}:ids") == 0  # nothing left behind
    await switch.close()


@pytest.fixture
async def worker(key) -> AsyncIterator[FaultSwitch]:
    """Another process's switch on the same key."""
    switch = FaultSwitch(REDIS_URL, key)
    yield switch
    await switch.close()


async def test_no_fault_means_no_failure(worker):
    assert await worker.take("observe") is None


async def test_a_fault_added_by_one_process_hits_the_calls_of_another(api, worker):
    first = await api.add("observe", message="timed out", delay_ms=250)
    assert await worker.take("create_checkout") is None  # another operation
    assert await worker.take("observe") == Fault(message="timed out", delay_ms=250)
    assert await worker.take("observe") is not None  # no count: until cleared
    assert await api.add("*", message="anything") > first
    assert await worker.take("create_checkout") == Fault(message="anything", delay_ms=0)
    await api.clear()
    assert await worker.take("observe") is None
    assert await worker.take("create_checkout") is None


async def test_the_oldest_matching_fault_is_taken(api, worker):
    await api.add("observe", message="first", count=1)
    await api.add("*", message="second")
    assert (await worker.take("observe")).message == "first"
    assert (await worker.take("observe")).message == "second"


async def test_a_counted_fault_is_shared_by_every_process(api, worker):
    await api.add("ensure_active", message="down", count=3)
    hits = await asyncio.gather(*(switch.take("ensure_active")
                                  for switch in (api, worker, api, worker, api)))
    assert sum(hit is not None for hit in hits) == 3
    assert await worker.take("ensure_active") is None
    assert await api.redis.hlen(api.key) == 0  # a spent fault is dropped when next met


async def test_a_fault_for_some_seconds_ends_by_itself(api, worker):
    await api.add("*", message="brief", for_seconds=0.3)
    assert await worker.take("observe") is not None
    deadline = time.monotonic() + 10
    while await worker.take("observe") is not None:
        assert time.monotonic() < deadline, "the fault did not end"
        await asyncio.sleep(0.05)
    assert await api.redis.hlen(api.key) == 0


async def test_redis_away_reads_as_no_fault_and_adding_one_is_refused(key):
    away = FaultSwitch(f"redis://127.0.0.1:{CLOSED_PORT}/0", key)
    try:
        assert await away.take("observe") is None
        with pytest.raises(ServiceUnavailable):
            await away.add("observe", message="x")
        with pytest.raises(ServiceUnavailable):
            await away.clear()
    finally:
        await away.close()


def test_a_service_keeps_its_faults_under_its_jobs_prefix():
    class Billing(ServiceSettings):
        service_name = "billing"

    switch = sandbox_faults(Billing(JOBS_PREFIX="bulltest2", REDIS_URL=REDIS_URL))
    assert switch.key == "bulltest2:billing:sandbox-faults"


async def test_a_bulk_call_takes_as_many_calls_as_it_makes_oldest_fault_first(api, worker):
    await api.add("disable", message="first", count=2)
    await api.add("*", message="second", count=3)
    await api.add("disable", message="third", count=10)
    hits = await worker.take_many("disable", 4)  # 4 calls: 2 of the first, 2 of the second
    assert [h.message for h in hits] == ["first", "first", "second", "second"]
    assert await worker.take("observe") == Fault(message="second", delay_ms=0)  # its last
    assert [h.message for h in await worker.take_many("disable", 12)] == ["third"] * 10
    assert await worker.take_many("disable", 5) == []  # every fault spent
    assert await api.redis.hlen(api.key) == 0
    await api.add("disable", message="down")  # no count: every call of the bulk one
    assert len(await worker.take_many("disable", 1000)) == 1000
    assert await worker.take_many("disable", 0) == []
