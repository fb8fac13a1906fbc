"""Broadcasts against a real database, Redis (the pacer, the job queue) and the Telegram
emulator: the plan per segment, the state machine, exactly once across a crash, Telegram's 429
holding the whole broadcast, and 403 "blocked" counted and skipped by the next broadcast."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from contracts.billing import InvoicePaidV1
from contracts.provisioning import SubscriptionExpiredV1
from contracts.public.broadcasts import BroadcastCreate
from runtime.clock import now
from runtime.errors import AppError
from runtime.jobs import JobQueue
from telegram import broadcasts
from telegram.botapi import BotApi
from telegram.broadcasts import BroadcastService, Pacer, Sender
from telegram.models import AccountLink, BotUser, BroadcastRecipient, SubscriptionView, UserBlock

from .conftest import SLOT, make_settings
from .helpers import next_id

TABLES = ("account_links", "bot_users", "subscription_view", "customer_facts", "user_blocks",
          "broadcasts", "broadcast_recipients")


@pytest.fixture
async def clean(db):
    """Only this test's customers exist: segments read every linked account."""
    async with db.transaction() as s:
        await s.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    return db


@pytest.fixture
async def parts(clean, emulator):
    prefix = f"tgbc{SLOT}-{uuid.uuid4().hex}"
    settings = make_settings()
    queue = JobQueue(broadcasts.QUEUE, settings.redis_url, prefix=prefix)
    pacer = Pacer(Redis.from_url(settings.redis_url), rate=200, prefix=prefix)
    bot = BotApi(emulator, settings.bot_token)
    control = httpx.AsyncClient(base_url=emulator)
    yield clean, queue, pacer, bot, control
    await control.delete("/_emulator/faults")
    await control.aclose()
    await bot.close()
    await pacer.close()
    await queue.queue.obliterate(force=True)
    await queue.close()


async def customer(db, *, status: str | None = None, expires_in: timedelta | None = None,
                   language: str | None = None, language_code: str | None = None,
                   name: str = "") -> tuple[str, int]:
    """A linked customer (their private chat id is their Telegram id)."""
    user_id, tg = f"{name}-{uuid.uuid4().hex[:8]}", next_id()
    async with db.transaction() as s:
        s.add(AccountLink(user_id=user_id, telegram_user_id=tg, chat_id=tg))
        if language or language_code:
            s.add(BotUser(telegram_user_id=tg, chat_id=tg, language=language,
                          language_code=language_code))
        if status:
            s.add(SubscriptionView(user_id=user_id, status=status,
                                   expires_at=now() + expires_in if expires_in else None))
    return user_id, tg


async def paid(db, user_id: str, kind: str = "PLAN") -> None:
    event = InvoicePaidV1.model_validate({
        "invoice_id": uuid.uuid4().hex, "user_id": user_id, "amount_usd": "5.00", "asset": "USDT",
        "network": "TRON", "amount_asset": "5", "amount_paid_asset": "5", "paid_at": now(),
        "kind": kind, "plan": {"plan_id": "p", "name": "Month", "duration_days": 30,
                               "price_usd": "5.00", "max_devices": 1}})
    async with db.transaction() as s:
        await broadcasts.record_facts(s, event)


async def expired(db, user_id: str, ago: timedelta) -> None:
    event = SubscriptionExpiredV1(subscription_id=uuid.uuid4().hex, user_id=user_id,
                                  expired_at=now() - ago)
    async with db.transaction() as s:
        await broadcasts.record_facts(s, event)
        s.add(SubscriptionView(user_id=user_id, status="EXPIRED"))


def body(segment: str = "all_linked", **extra) -> BroadcastCreate:
    return BroadcastCreate.model_validate({"text_en": "Hello", "text_ru": "Привет",
                                           "segment": segment, **extra})


async def planned(db, bid: str) -> dict[str, str]:
    async with db.transaction() as s:
        rows = (await s.execute(sa.select(BroadcastRecipient.user_id, BroadcastRecipient.state)
                                .where(BroadcastRecipient.broadcast_id == bid))).all()
    return dict(rows)


async def texts(control: httpx.AsyncClient, chat_id: int) -> list[str]:
    r = await control.get("/_emulator/messages", params={"chat_id": chat_id})
    return [m.get("text") for m in r.json()["messages"]]


def sender(db, queue, pacer, bot, **kw) -> Sender:
    return Sender(db, bot, pacer, queue, **{"lanes": 2, "lease": 0.5, **kw})


async def test_each_segment_plans_its_customers_in_batches(parts):
    db, queue, pacer, bot, _ = parts
    active, _ = await customer(db, status="ACTIVE", expires_in=timedelta(days=20), name="a")
    expiring, _ = await customer(db, status="ACTIVE", expires_in=timedelta(days=3), name="e")
    lapsed, _ = await customer(db, name="x")
    await expired(db, lapsed, timedelta(days=5))
    long_gone, _ = await customer(db, name="g")
    await expired(db, long_gone, timedelta(days=45))
    trial, _ = await customer(db, status="ACTIVE", expires_in=timedelta(days=2), name="t")
    await paid(db, trial, "TRIAL")
    await paid(db, active)
    await paid(db, expiring)
    await paid(db, lapsed)
    nobody, tg_blocked = await customer(db, name="n")
    blocked_bot, tg_bb = await customer(db, name="b")
    async with db.transaction() as s:  # left out of every segment
        s.add(BotUser(telegram_user_id=tg_bb, chat_id=tg_bb, bot_blocked_at=now()))
        s.add(UserBlock(user_id=nobody, blocked=True, changed_at=now()))
    expect = {"all_linked": {active, expiring, lapsed, long_gone, trial},
              "active": {active, expiring, trial}, "expiring_7d": {expiring, trial},
              "expired_30d": {lapsed}, "trial_only": {trial},
              "never_paid": {trial, long_gone}}
    service = BroadcastService(db, queue)
    for segment, users in expect.items():
        b = await service.create(body(segment), "admin")
        await service.transition(b["id"], "send")
        run = sender(db, queue, pacer, bot, plan_batch=2, run_seconds=0)
        await run._take_over(b["id"], "t")
        while not await run._plan_step(b["id"], "t"):
            pass
        assert set(await planned(db, b["id"])) == users, segment
        assert (await service.get(b["id"]))["total"] == len(users)
        assert blocked_bot not in users


async def test_the_language_of_each_recipient(parts):
    db, queue, pacer, bot, control = parts
    _, ru = await customer(db, language_code="ru-RU")
    _, chosen_en = await customer(db, language="en", language_code="ru")
    _, unknown = await customer(db)
    service = BroadcastService(db, queue)
    b = await service.create(body(buttons=[{"text": "Open", "url": "https://vpn.example/a"}]),
                             "admin")
    await service.transition(b["id"], "send")
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "done"
    assert await texts(control, ru) == ["Привет"]
    assert await texts(control, chosen_en) == await texts(control, unknown) == ["Hello"]
    calls = (await control.get("/_emulator/calls", params={"method": "sendMessage",
                                                           "chat_id": ru})).json()["calls"]
    assert calls[-1]["params"]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Open", "url": "https://vpn.example/a"}]]}
    done = await service.get(b["id"])
    assert (done["status"], done["total"], done["sent"], done["failed"]) == ("DONE", 3, 3, 0)
    assert done["finished_at"] is not None


async def test_the_state_machine_refuses_what_the_status_does_not_allow(parts):
    db, queue, *_ = parts
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    for action in ("pause", "resume"):
        with pytest.raises(AppError) as exc:
            await service.transition(b["id"], action)
        assert exc.value.status == 409 and exc.value.details["status"] == "DRAFT"
    assert (await service.transition(b["id"], "send"))["status"] == "SENDING"
    with pytest.raises(AppError):
        await service.transition(b["id"], "send")
    assert (await service.transition(b["id"], "pause"))["status"] == "PAUSED"
    assert (await service.transition(b["id"], "resume"))["status"] == "SENDING"
    assert (await service.transition(b["id"], "cancel"))["status"] == "CANCELED"
    for action in ("send", "pause", "resume", "cancel"):
        with pytest.raises(AppError) as exc:
            await service.transition(b["id"], action)
        assert exc.value.status == 409
    with pytest.raises(AppError) as exc:
        await service.get(uuid.uuid4().hex)
    assert exc.value.status == 404


async def test_pause_stops_sending_and_resume_finishes_each_once(parts):
    db, queue, pacer, bot, control = parts
    chats = [(await customer(db))[1] for _ in range(6)]
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    await service.transition(b["id"], "send")
    await service.transition(b["id"], "pause")
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "not_sending"
    await service.transition(b["id"], "resume")
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "done"
    assert [await texts(control, c) for c in chats] == [["Hello"]] * len(chats)


class Crash(Exception):
    """The worker dies here (the rows it claimed stay SENDING, nothing more is written)."""


class DyingBot:
    """Sends through the emulator; the `die_at`-th send dies after Telegram took the message
    (`after=True`) or before it was sent."""

    def __init__(self, bot: BotApi, die_at: int, after: bool):
        self.bot, self.die_at, self.after, self.calls = bot, die_at, after, 0

    async def call(self, method: str, **params):
        self.calls += 1
        if self.calls == self.die_at and not self.after:
            raise Crash()
        result = await self.bot.call(method, **params)
        if self.calls == self.die_at:
            raise Crash()
        return result


@pytest.mark.parametrize("after_send", [False, True])
async def test_a_crash_between_claim_and_mark_skips_nobody(parts, after_send):
    db, queue, pacer, bot, control = parts
    chats = [(await customer(db))[1] for _ in range(8)]
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    await service.transition(b["id"], "send")
    with pytest.raises(Exception):  # noqa: B017 - the TaskGroup wraps it
        await Sender(db, DyingBot(bot, 4, after_send), pacer, queue, lanes=1,
                     lease=3).run(b["id"])
    states = await planned(db, b["id"])
    assert sorted(states.values()).count("SENDING") == 1  # the one in flight
    # another run takes it over once the dead one's lease is over
    assert await sender(db, queue, pacer, bot, lease=3).run(b["id"]) == "busy"
    await asyncio.sleep(3.1)
    assert await sender(db, queue, pacer, bot, lease=3).run(b["id"]) == "done"
    got = [len(await texts(control, c)) for c in chats]
    done = await service.get(b["id"])
    assert done["sent"] == 8 and done["resent"] == 1
    # the in-flight one: twice when Telegram had taken it, else once; everyone else once
    assert sorted(got) == ([1] * 7 + [2] if after_send else [1] * 8)


async def test_429_holds_the_whole_broadcast_and_it_resumes(parts):
    db, queue, pacer, bot, control = parts
    chats = [(await customer(db))[1] for _ in range(5)]
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    await service.transition(b["id"], "send")
    # a hold long enough that the second run below meets it on a busy machine too
    await control.post("/_emulator/faults", json={"status": 429, "count": 1, "retry_after": 3,
                                                  "methods": ["sendMessage"]})
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "held"
    held = await service.get(b["id"])
    assert held["status"] == "SENDING" and held["held_until"] is not None
    assert held["sent"] + held["failed"] < 5
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "held"  # still waiting
    jobs = await queue.queue.getJobs(["delayed"])
    assert any(j.data["broadcast_id"] == b["id"] for j in jobs)  # it comes back by itself
    # the hold counts from the 429's answer, however long the run took to get there
    while now() < held["held_until"] + timedelta(seconds=0.2):
        await asyncio.sleep(0.1)
    assert await sender(db, queue, pacer, bot).run(b["id"]) == "done"
    assert [await texts(control, c) for c in chats] == [["Hello"]] * len(chats)
    done = await service.get(b["id"])
    assert (done["sent"], done["failed"], done["held_until"]) == (5, 0, None)


async def test_telegram_away_holds_the_broadcast_and_the_row_is_tried_again(parts):
    db, queue, pacer, bot, control = parts
    chats = [(await customer(db))[1] for _ in range(3)]
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    await service.transition(b["id"], "send")
    await control.post("/_emulator/faults", json={"status": 502, "count": 1,
                                                  "methods": ["sendMessage"]})
    assert await sender(db, queue, pacer, bot, lanes=1).run(b["id"]) == "held"
    await asyncio.sleep(2.1)
    assert await sender(db, queue, pacer, bot, lanes=1).run(b["id"]) == "done"
    assert [await texts(control, c) for c in chats] == [["Hello"]] * 3
    assert (await service.get(b["id"]))["failed"] == 0


async def test_a_user_who_blocked_the_bot_is_counted_and_skipped_next_time(parts):
    db, queue, pacer, bot, control = parts
    _, ok = await customer(db)
    blocked_user, blocked = await customer(db)
    await control.post(f"/_emulator/users/{blocked}/block", json={"blocked": True})
    service = BroadcastService(db, queue)
    first = await service.create(body(), "admin")
    await service.transition(first["id"], "send")
    assert await sender(db, queue, pacer, bot).run(first["id"]) == "done"
    done = await service.get(first["id"])
    assert (done["total"], done["sent"], done["blocked_by_user"]) == (2, 1, 1)
    async with db.transaction() as s:
        user = await s.get(BotUser, blocked)
        assert user.bot_blocked_at is not None
    second = await service.create(body(), "admin")
    await service.transition(second["id"], "send")
    assert await sender(db, queue, pacer, bot).run(second["id"]) == "done"
    assert set(await planned(db, second["id"])) == set(await planned(db, first["id"])) - {
        blocked_user}
    assert await texts(control, ok) == ["Hello", "Hello"]


async def test_preview_sends_to_one_account_in_its_language(parts, emulator):
    db, queue, pacer, bot, control = parts
    tg = next_id()
    async with db.transaction() as s:
        s.add(BotUser(telegram_user_id=tg, chat_id=tg, language="ru"))
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    assert (await service.preview(bot, b["id"], tg))["language"] == "ru"
    assert await texts(control, tg) == ["Привет"]
    assert (await service.get(b["id"]))["sent"] == 0  # a preview is not counted
    await control.post(f"/_emulator/users/{tg}/block", json={"blocked": True})
    with pytest.raises(AppError) as exc:
        await service.preview(bot, b["id"], tg)
    assert exc.value.status == 400


async def test_a_complete_plan_leaves_statistics_the_claims_can_use(parts):
    """A large plan written into a table the planner still thinks empty would make every
    claim sort all pending rows; the plan's last batch analyzes the table, so the claim reads
    the open-rows index in order."""
    db, queue, pacer, bot, _ = parts
    async with db.transaction() as s:
        await s.execute(sa.text(
            "INSERT INTO account_links (user_id, telegram_user_id, chat_id) SELECT"
            " 'stat-' || lpad(i::text, 5, '0'), 9100000000 + i, 9100000000 + i"
            " FROM generate_series(1, 3000) i"))
    service = BroadcastService(db, queue)
    b = await service.create(body(), "admin")
    await service.transition(b["id"], "send")
    run = sender(db, queue, pacer, bot, run_seconds=0)
    await run._take_over(b["id"], "t")
    while not await run._plan_step(b["id"], "t"):
        pass
    async with db.transaction() as s:
        tuples = await s.scalar(sa.text(
            "SELECT reltuples FROM pg_class WHERE oid = 'broadcast_recipients'::regclass"))
        plan = "\n".join((await s.execute(sa.text(
            "EXPLAIN SELECT user_id FROM broadcast_recipients WHERE broadcast_id = :bid"
            " AND state = 'PENDING' ORDER BY user_id LIMIT 1 FOR UPDATE SKIP LOCKED"),
            {"bid": b["id"]})).scalars())
    assert tuples >= 3000
    assert "ix_broadcast_recipients_open" in plan and "Sort" not in plan, plan
