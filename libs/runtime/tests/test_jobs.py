"""The job runner against a real Redis: the database being away spends no attempt; the work
failing (even when its cause is a refused socket) does."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import asyncpg
import pytest

from runtime.jobs import JobQueue, JobWorker, database_away

REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"


class BackendDown(Exception):
    """A domain error, as an adapter raises it when its HTTP call was refused."""


def backend_down() -> BackendDown:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError as refused:
        try:
            raise BackendDown("vpn backend unreachable") from refused
        except BackendDown as exc:
            return exc


def test_database_away_is_told_apart_from_work_failing():
    assert database_away(asyncpg.exceptions.ConnectionDoesNotExistError("closed"))
    assert database_away(ConnectionRefusedError(111, "refused"))
    assert not database_away(backend_down())
    assert not database_away(KeyError("bug"))


async def _run(handler, attempts: int, until: str, timeout: float = 20) -> tuple[str, object]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    queue = JobQueue("jobs-test", REDIS_URL, prefix=prefix)
    worker = JobWorker("jobs-test", REDIS_URL, {"work": handler}, concurrency=2, prefix=prefix,
                       transient_delay_ms=50)
    worker.start()
    try:
        await queue.enqueue("work", {}, job_id="job-1", attempts=attempts,
                            backoff={"type": "fixed", "delay": 10})
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = await queue.queue.getJobState("job-1")
            if state == until:
                break
            await asyncio.sleep(0.05)
        return state, await queue.queue.getJob("job-1")
    finally:
        await worker.close()
        await queue.queue.obliterate(force=True)
        await queue.close()


async def test_database_outage_longer_than_the_attempts_does_not_fail_the_job():
    calls = 0

    async def handler(job, token=""):
        nonlocal calls
        calls += 1
        if calls <= 5:  # more outages than the job has attempts
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return "done"

    state, job = await _run(handler, attempts=2, until="completed")
    assert state == "completed" and calls == 6
    assert job.returnvalue == "done" and job.attemptsMade == 1


@pytest.mark.parametrize("error", [backend_down, lambda: KeyError("bug")])
async def test_work_failing_spends_its_attempts(error):
    calls = 0

    async def handler(job, token=""):
        nonlocal calls
        calls += 1
        raise error()

    state, job = await _run(handler, attempts=3, until="failed")
    assert state == "failed" and calls == 3 and job.attemptsMade == 3
