"""The update pump against a real Postgres: stored updates are processed in order, in batches,
each exactly once; a failing one is set aside with backoff without holding up the rest; the
webhook's insert wakes the pump."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from telegram.pump import UpdatePump, backoff
from telegram.repository import TelegramRepository, UpdateInbox
from telegram.service import UpdateService

from .conftest import make_settings

_ids = itertools.count(int(time.time()) * 1000)


def ignored_update(update_id: int) -> str:
    """An update from a group the bot does not serve: handled as `ignored:other_chat`."""
    return json.dumps({"update_id": update_id, "message": {
        "message_id": 1, "date": 0, "chat": {"id": -42, "type": "group"},
        "from": {"id": 7, "is_bot": False, "first_name": "b"}, "text": "hi"}})


class NoJobs:
    def __init__(self) -> None:
        self.queued: list = []

    async def enqueue_outgoing(self, rows, suffix: str = "") -> None:
        self.queued += rows


class FailingFor(UpdateService):
    """The real handler, except that it raises for the chosen update ids."""

    def __init__(self, bad: set[int]):
        super().__init__(make_settings())
        self.bad = bad
        self.seen: list[int] = []

    async def handle(self, s, update_id, update):
        self.seen.append(update_id)
        if update_id in self.bad:
            raise ValueError("cannot handle this one")
        return await super().handle(s, update_id, update)


@pytest.fixture(autouse=True)
async def clean(pg):
    await pg.execute("DELETE FROM telegram.received_updates")


async def test_webhook_insert_stores_once(db, pg):
    uid = next(_ids)
    inbox = UpdateInbox(db)
    assert await inbox.insert(uid, ignored_update(uid)) is True
    assert await inbox.insert(uid, ignored_update(uid)) is False
    assert await pg.fetchval("SELECT count(*) FROM telegram.received_updates") == 1


async def test_updates_are_processed_in_order_and_a_failing_one_waits_alone(db, pg):
    ids = [next(_ids) for _ in range(5)]
    inbox = UpdateInbox(db)
    for uid in reversed(ids):  # stored out of order
        await inbox.insert(uid, ignored_update(uid))
    handler = FailingFor({ids[2]})
    pump = UpdatePump(db, handler, NoJobs(), batch=100)
    assert await pump.pump_once() == 5
    # update_id order, whatever the arrival order: the batch stopped at the failing update,
    # then was redone with each update in its own savepoint
    assert handler.seen == ids[:3] + ids
    rows = {r["update_id"]: r for r in await pg.fetch(
        "SELECT update_id, processed_at, outcome, attempts, retry_at, last_error"
        " FROM telegram.received_updates")}
    for uid in ids[:2] + ids[3:]:
        assert rows[uid]["outcome"] == "ignored:other_chat" and rows[uid]["attempts"] == 0
    bad = rows[ids[2]]
    assert bad["processed_at"] is None and bad["attempts"] == 1
    assert "ValueError" in bad["last_error"] and bad["retry_at"] is not None
    assert await pump.pump_once() == 0  # not due yet; the processed ones are never taken again
    async with db.transaction() as s:  # what the sweep reports as telegram_updates_unprocessed
        assert await TelegramRepository(s).unprocessed_counts() == (0, 1)

    await pg.execute("UPDATE telegram.received_updates SET retry_at = now() - interval '1 s'")
    fixed = UpdatePump(db, UpdateService(make_settings()), NoJobs())
    assert await fixed.pump_once() == 1
    outcome = await pg.fetchval("SELECT outcome FROM telegram.received_updates"
                                " WHERE update_id = $1", ids[2])
    assert outcome == "ignored:other_chat"


async def test_batches_are_bounded_and_concurrent_pumps_share_without_overlap(db, pg):
    ids = [next(_ids) for _ in range(30)]
    inbox = UpdateInbox(db)
    for uid in ids:
        await inbox.insert(uid, ignored_update(uid))
    a, b = FailingFor(set()), FailingFor(set())
    done = await asyncio.gather(UpdatePump(db, a, NoJobs(), batch=10).pump_once(),
                                UpdatePump(db, b, NoJobs(), batch=10).pump_once())
    assert done == [10, 10] and not set(a.seen) & set(b.seen)
    left = await pg.fetchval("SELECT count(*) FROM telegram.received_updates"
                             " WHERE processed_at IS NULL")
    assert left == 10


async def test_the_webhook_insert_wakes_a_waiting_pump(db, pg):
    pump = UpdatePump(db, UpdateService(make_settings()), NoJobs(), poll_seconds=30)
    running = asyncio.create_task(pump.run())
    try:
        await asyncio.sleep(0.5)  # listening, and idle until woken
        uid = next(_ids)
        stored = time.monotonic()
        await UpdateInbox(db).insert(uid, ignored_update(uid))
        while time.monotonic() - stored < 10:
            if await pg.fetchval("SELECT processed_at FROM telegram.received_updates"
                                 " WHERE update_id = $1", uid):
                break
            await asyncio.sleep(0.05)
        assert time.monotonic() - stored < 5  # woken by the NOTIFY, not the 30 s poll
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


def test_backoff_doubles_up_to_five_minutes():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 10, 50)] == [1, 2, 4, 300, 300]
