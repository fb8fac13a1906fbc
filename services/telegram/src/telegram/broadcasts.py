"""Broadcasts: an admin's message (English and Russian, optional URL buttons) to a segment of
the linked customers, sent at a share of Telegram's limits, exactly once per recipient as far
as Telegram allows.

**Segments** are read from this service's own tables, never another service's: the linked
accounts (`account_links`), the subscription state (`subscription_view`, from provisioning
events) and `customer_facts` (the first trial and first paid invoice from
`billing.invoice.paid`, the last expiry from `provisioning.subscription.expired`), both kept by
the notifications consumer. Anyone who blocked the bot (`bot_users.bot_blocked_at`) or whose
account is blocked (`user_blocks`) is left out.

**Plan**: on `send`, the job writes the recipients into `broadcast_recipients` in keyset
batches (`plan_batch` linked accounts read a transaction, the cursor on the broadcast), once;
the language of each is fixed then.

**Sending**: one job run at a time owns a broadcast (`runner`, renewed as `heartbeat_at` by
every step; a run whose heartbeat is older than `lease` seconds is dead and taken over). A run
has `lanes` concurrent loops, each: claim the next PENDING row (state SENDING, committed) →
wait for the pacer → `sendMessage` → in one transaction mark the row SENT / FAILED / BLOCKED,
move the counters, and claim the next row. The pacer is one key in Redis shared by every
broadcast and every worker replica: it spaces sends `1 / rate` seconds apart (`rate`, default
20/s, is the broadcasts' fixed share of Telegram's 30/s; the rest is left to the product's own
notices, which do not go through it).

**Exactly once**: Telegram's `sendMessage` has no idempotency key, so one window is left: a
worker that dies after Telegram took a message and before the mark commits. Rows still SENDING
when a run is taken over are sent again (counted in `resent`); those recipients may get the
message twice. The window is at most `lanes` messages per crash (default 3), each for one
round trip to Postgres after Telegram answers; a row claimed but still waiting for the pacer
is never sent, so sending it again is not a duplicate. Nothing is skipped.

**429**: `retry_after` holds the whole broadcast (`held_until`, and the pacer's hold key, so
every broadcast waits): the row goes back to PENDING, the run ends and the job comes back when
the hold ends. A transient failure (5xx, a transport error or timeout) holds it the same way
for 2, then 4 s and the row is tried again (a timed-out send may have arrived: the same window
as a crash); its third failure makes it FAILED. **403 "bot was blocked by the user"**: the row
is BLOCKED, counted in `blocked_by_user`, and the user is marked blocked
(`bot_users.bot_blocked_at`, as for notices), so the next broadcast's plan leaves them out
until they write again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.billing import InvoicePaidV1
from contracts.provisioning import SubscriptionExpiredV1
from contracts.public.broadcasts import BroadcastCreate
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from runtime.jobs import JobQueue, job_id
from runtime.logging import get_logger
from runtime.repository import select_one
from telegram import pacing, shop
from telegram.botapi import BotApi, TelegramError
from telegram.metrics import BROADCAST_HOLDS, BROADCAST_MESSAGES, BROADCAST_RESENT
from telegram.models import BotUser, Broadcast, BroadcastRecipient, CustomerFacts
from telegram.repository import ShopRepository
from telegram.texts import RUSSIAN_CODES, language_of

log = get_logger(__name__)

QUEUE = "broadcasts"
MAX_ATTEMPTS = 3  # a send that fails for a transient reason (5xx, timeout) is tried this often

# action -> (states it may start from, state it leads to)
TRANSITIONS = {"send": ({"DRAFT"}, "SENDING"), "pause": ({"SENDING"}, "PAUSED"),
               "resume": ({"PAUSED"}, "SENDING"), "cancel": ({"DRAFT", "SENDING", "PAUSED"},
                                                         "CANCELED")}


# ---- the facts segments read (kept by the notifications consumer) --------------------------

async def record_facts(s: AsyncSession, event) -> None:
    """Keep what a segment needs from a billing or provisioning event (first trial, first paid
    invoice, last expiry); other events change nothing."""
    if isinstance(event, InvoicePaidV1):
        column = "trial_at" if event.kind == "TRIAL" else "paid_at"
        values = {"user_id": event.user_id, column: event.paid_at}
        stmt = insert(CustomerFacts).values(**values)
        await s.execute(stmt.on_conflict_do_update(
            index_elements=[CustomerFacts.user_id],
            set_={column: sa.func.coalesce(getattr(CustomerFacts, column),
                                           getattr(stmt.excluded, column))}))
    elif isinstance(event, SubscriptionExpiredV1):
        stmt = insert(CustomerFacts).values(user_id=event.user_id, expired_at=event.expired_at)
        await s.execute(stmt.on_conflict_do_update(
            index_elements=[CustomerFacts.user_id],
            set_={"expired_at": sa.func.greatest(CustomerFacts.expired_at,
                                                 stmt.excluded.expired_at)}))


# ---- segments and the plan -----------------------------------------------------------------

# Each segment as a condition on the linked account `l`, its subscription `v` and its facts `f`.
SEGMENT_SQL = {
    "all_linked": "TRUE",
    "active": "v.status = 'ACTIVE'",
    "expiring_7d": "v.status = 'ACTIVE' AND v.expires_at > CAST(:now AS timestamptz)"
                   " AND v.expires_at <= CAST(:now AS timestamptz) + interval '7 days'",
    "expired_30d": "v.status = 'EXPIRED'"
                   " AND f.expired_at >= CAST(:now AS timestamptz) - interval '30 days'",
    "trial_only": "f.trial_at IS NOT NULL AND f.paid_at IS NULL",
    "never_paid": "f.paid_at IS NULL",
}

# One batch: the next `batch` linked accounts after the cursor in key order (read through the
# primary key, however many accounts there are), each one's bot user, block, subscription and
# facts looked up by key (LATERAL: one index probe per account, never a scan of a whole table),
# the segment's recipients among them stored. The cursor moves to the last account read.
PLAN_SQL = """
WITH scanned AS MATERIALIZED (
  SELECT user_id, chat_id, telegram_user_id FROM account_links
  WHERE user_id > :cursor ORDER BY user_id LIMIT :batch
), picked AS (
  SELECT l.user_id, l.chat_id,
         CASE WHEN u.language IN ('en', 'ru') THEN u.language
              WHEN split_part(lower(coalesce(u.language_code, '')), '-', 1) = ANY(:russian)
              THEN 'ru' ELSE 'en' END AS language
  FROM scanned l
  LEFT JOIN LATERAL (SELECT * FROM bot_users x
                     WHERE x.telegram_user_id = l.telegram_user_id) u ON TRUE
  LEFT JOIN LATERAL (SELECT * FROM user_blocks x WHERE x.user_id = l.user_id) b ON TRUE
  LEFT JOIN LATERAL (SELECT * FROM subscription_view x WHERE x.user_id = l.user_id) v ON TRUE
  LEFT JOIN LATERAL (SELECT * FROM customer_facts x WHERE x.user_id = l.user_id) f ON TRUE
  WHERE u.bot_blocked_at IS NULL AND b.blocked IS NOT TRUE AND ({segment})
), stored AS (
  INSERT INTO broadcast_recipients (broadcast_id, user_id, chat_id, language, state, attempts)
  SELECT :bid, user_id, chat_id, language, 'PENDING', 0 FROM picked
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM stored) AS stored, (SELECT count(*) FROM scanned) AS scanned,
       (SELECT max(user_id) FROM scanned) AS last
"""


def out(b: Broadcast) -> dict:
    return {"id": b.id, "status": b.status, "segment": b.segment, "text_en": b.text_en,
            "text_ru": b.text_ru, "buttons": b.buttons or [], "total": b.total, "sent": b.sent,
            "failed": b.failed, "blocked_by_user": b.blocked_by_user, "resent": b.resent,
            "planned": b.planned, "held_until": b.held_until, "created_by": b.created_by,
            "created_at": b.created_at, "started_at": b.started_at,
            "finished_at": b.finished_at}


def message(b: Broadcast, language: str) -> dict:
    """`sendMessage`'s parameters but the chat: plain text, one URL button a row."""
    params: dict = {"text": b.text_ru if language == "ru" else b.text_en,
                    "link_preview_options": {"is_disabled": True}}
    if b.buttons:
        params["reply_markup"] = {"inline_keyboard": [[{"text": x["text"], "url": x["url"]}]
                                                      for x in b.buttons]}
    return params


class BroadcastRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, bid: str, *, for_update: bool = False) -> Broadcast | None:
        stmt = sa.select(Broadcast).where(Broadcast.id == bid)
        return await select_one(self.session, stmt, for_update)

    async def latest(self, limit: int) -> list[Broadcast]:
        stmt = sa.select(Broadcast).order_by(Broadcast.created_at.desc(),
                                             Broadcast.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def plan_batch(self, b: Broadcast, batch: int) -> int:
        """Plan the recipients among the next `batch` linked accounts after the cursor; how
        many accounts it read (fewer than `batch`: the plan is complete)."""
        sql = PLAN_SQL.format(segment=SEGMENT_SQL[b.segment])
        row = (await self.session.execute(sa.text(sql), {
            "bid": b.id, "cursor": b.plan_cursor or "", "batch": batch, "now": now(),
            "russian": list(RUSSIAN_CODES)})).one()
        b.total += int(row.stored)
        if row.last is not None:
            b.plan_cursor = row.last
        return int(row.scanned)

    async def claim(self, bid: str) -> BroadcastRecipient | None:
        """The next PENDING recipient, now SENDING (`SKIP LOCKED`: lanes claim different ones)."""
        r = BroadcastRecipient
        pick = (sa.select(r.user_id).where(r.broadcast_id == bid, r.state == "PENDING")
                .order_by(r.user_id).limit(1).with_for_update(skip_locked=True)
                .scalar_subquery())
        stmt = (sa.update(r).where(r.broadcast_id == bid, r.user_id == pick)
                .values(state="SENDING", attempts=r.attempts + 1).returning(r))
        return (await self.session.execute(
            stmt, execution_options={"synchronize_session": False})).scalar_one_or_none()

    async def set_state(self, bid: str, user_id: str, **values) -> None:
        r = BroadcastRecipient
        await self.session.execute(sa.update(r).where(r.broadcast_id == bid, r.user_id == user_id)
                                   .values(**values))

    async def reclaim(self, bid: str) -> int:
        """Rows a dead run left SENDING back to PENDING; how many."""
        r = BroadcastRecipient
        res = await self.session.execute(sa.update(r).where(r.broadcast_id == bid,
                                                            r.state == "SENDING")
                                         .values(state="PENDING"))
        return res.rowcount or 0

    async def open_rows(self, bid: str) -> bool:
        r = BroadcastRecipient
        return bool((await self.session.execute(sa.select(sa.exists().where(
            r.broadcast_id == bid, r.state.in_(("PENDING", "SENDING")))))).scalar())

    async def sending_ids(self) -> list[Broadcast]:
        stmt = sa.select(Broadcast).where(Broadcast.status == "SENDING")
        return list((await self.session.execute(stmt)).scalars())


# ---- the admin's side (the internal API) ---------------------------------------------------

class BroadcastService:
    def __init__(self, db: Database, jobs: JobQueue | None):
        self.db = db
        self.jobs = jobs

    async def create(self, body: BroadcastCreate, created_by: str) -> dict:
        async with self.db.transaction() as s:
            b = Broadcast(id=uuid.uuid4().hex, segment=body.segment, text_en=body.text_en,
                          text_ru=body.text_ru, buttons=[x.model_dump() for x in body.buttons],
                          status="DRAFT", created_by=created_by, created_at=now(), total=0,
                          sent=0, failed=0, blocked_by_user=0, resent=0, planned=False,
                          generation=0)
            s.add(b)
            await s.flush()
            return out(b)

    async def get(self, bid: str) -> dict:
        async with self.db.transaction() as s:
            b = await BroadcastRepository(s).get(bid)
            if b is None:
                raise NotFound("No such broadcast")
            return out(b)

    async def latest(self, limit: int) -> list[dict]:
        async with self.db.transaction() as s:
            return [out(b) for b in await BroadcastRepository(s).latest(limit)]

    async def transition(self, bid: str, action: str) -> dict:
        """send, pause, resume or cancel; an action the status does not allow is 409."""
        allowed, to = TRANSITIONS[action]
        async with self.db.transaction() as s:
            b = await BroadcastRepository(s).get(bid, for_update=True)
            if b is None:
                raise NotFound("No such broadcast")
            if b.status not in allowed:
                raise Conflict(f"A {b.status} broadcast cannot {action}",
                               {"status": b.status, "action": action,
                                "allowed_from": sorted(allowed)})
            b.status = to
            if action == "send":
                b.started_at = now()
            if to == "CANCELED":
                b.finished_at = now()
            if to == "SENDING":
                b.generation += 1
            result, generation = out(b), b.generation
        if to == "SENDING" and self.jobs is not None:
            try:  # the worker's sweep starts it anyway when this is lost
                await self.jobs.enqueue("send", {"broadcast_id": bid},
                                        job_id=job_id("broadcast", bid, generation))
            except Exception as exc:
                log.warning("broadcast_enqueue_failed", broadcast_id=bid, error=str(exc)[:200])
        log.info("broadcast_" + action, broadcast_id=bid)
        return result

    async def preview(self, bot: BotApi, bid: str, telegram_user_id: int) -> dict:
        """Send the broadcast to one Telegram account now, in its language (never counted)."""
        async with self.db.transaction() as s:
            b = await BroadcastRepository(s).get(bid)
            if b is None:
                raise NotFound("No such broadcast")
            user = (await s.execute(sa.select(BotUser).where(
                BotUser.telegram_user_id == telegram_user_id))).scalar_one_or_none()
        lang = language_of(user.language, user.language_code) if user else "en"
        try:
            await bot.call("sendMessage", chat_id=telegram_user_id, **message(b, lang))
        except TelegramError as exc:
            if exc.is_permanent:
                raise ValidationFailed("Telegram refused the message: " + exc.description[:200],
                                       {"field": "telegram_user_id"}) from exc
            raise ServiceUnavailable("Telegram did not take the message, try again") from exc
        return {"sent": True, "telegram_user_id": telegram_user_id, "language": lang}


# ---- the pacer -----------------------------------------------------------------------------

# A broadcast's lane waits for its slot however far it is (the rate bounds how far).
NO_WAIT_LIMIT_US = 10**15


class Held(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"held for {seconds:.1f} s")
        self.seconds = seconds


class Pacer:
    """Sends spaced `1 / rate` s apart across every broadcast and worker (one Redis key), and
    a hold every broadcast obeys after a 429: telegram.pacing's reservation script, with the
    broadcasts' own key as both its slot and its rate (they are not the product's share)."""

    def __init__(self, redis: Redis, rate: float, prefix: str = "bull"):
        self.redis = redis
        self.interval_us = int(1_000_000 / rate)
        pace = f"{prefix}:broadcasts:pace"
        self.keys = [pace, f"{prefix}:broadcasts:hold", pace]
        self._script = redis.register_script(pacing.RESERVE)

    async def acquire(self) -> None:
        reserved, wait = await self._script(
            keys=self.keys, args=[self.interval_us, self.interval_us, NO_WAIT_LIMIT_US])
        if not reserved:  # on hold: nothing reserved
            raise Held(int(wait) / 1_000_000)
        if wait:
            await asyncio.sleep(int(wait) / 1_000_000)

    async def hold(self, seconds: float) -> None:
        until = int((time.time() + seconds) * 1_000_000)
        await self.redis.set(self.keys[1], until, px=int(seconds * 1000) + 1000)

    async def close(self) -> None:
        await self.redis.aclose()


# ---- the worker's side ---------------------------------------------------------------------

class Sender:
    """One job run of a broadcast (see the module's docstring)."""

    def __init__(self, db: Database, bot: BotApi, pacer: Pacer, jobs: JobQueue, *,
                 lanes: int = 3, lease: float = 30.0, run_seconds: float = 60.0,
                 plan_batch: int = 5000):
        self.db = db
        self.bot = bot
        self.pacer = pacer
        self.jobs = jobs
        self.lanes = lanes
        self.lease = timedelta(seconds=lease)
        self.run_seconds = run_seconds
        self.plan_batch = plan_batch

    async def run(self, bid: str) -> str:
        """Take the broadcast over and send until it is done, paused, held or the run's time
        is up; what ended the run."""
        token = uuid.uuid4().hex
        started = await self._take_over(bid, token)
        if started != "running":
            return started
        deadline = time.monotonic() + self.run_seconds
        try:
            while not await self._plan_step(bid, token):
                if time.monotonic() > deadline:
                    return await self._release(bid, token, "time")
            async with asyncio.TaskGroup() as lanes:  # one failing stops the others
                tasks = [lanes.create_task(self._lane(bid, token, deadline))
                         for _ in range(self.lanes)]
            results = [t.result() for t in tasks]
        except Exception:
            log.exception("broadcast_run_failed", broadcast_id=bid)
            raise  # the runner stays set: the next run takes over after the lease
        reason = next((r for r in results if r != "empty"), "empty")
        return await self._release(bid, token, reason)

    async def _take_over(self, bid: str, token: str) -> str:
        async with self.db.transaction() as s:
            repo = BroadcastRepository(s)
            b = await repo.get(bid, for_update=True)
            if b is None or b.status != "SENDING":
                return "not_sending"
            t = now()
            if b.held_until is not None and b.held_until > t:
                held_until = b.held_until
            elif b.runner is not None and b.heartbeat_at and b.heartbeat_at > t - self.lease:
                return "busy"  # another run is alive
            else:
                if b.runner is not None:  # a dead run's in-flight rows: sent again
                    again = await repo.reclaim(bid)
                    if again:
                        b.resent += again
                        BROADCAST_RESENT.inc(again)
                        log.warning("broadcast_resending_in_flight", broadcast_id=bid,
                                    recipients=again)
                b.runner, b.heartbeat_at, b.held_until = token, t, None
                return "running"
        await self._later(bid, held_until)
        return "held"

    async def _later(self, bid: str, at: datetime) -> None:
        delay = max(0, int((at - now()).total_seconds() * 1000))
        await self.jobs.enqueue("send", {"broadcast_id": bid}, delay=delay,
                                job_id=job_id("broadcast", bid, "at", int(at.timestamp())))

    async def _plan_step(self, bid: str, token: str) -> bool:
        """One batch of the plan; True once the plan is complete."""
        async with self.db.transaction() as s:
            repo = BroadcastRepository(s)
            b = await repo.get(bid, for_update=True)
            if b is None or b.runner != token or b.status != "SENDING":
                return True  # the lanes find out and stop
            if b.planned:
                return True
            read = await repo.plan_batch(b, self.plan_batch)
            b.heartbeat_at = now()
            if read < self.plan_batch:
                b.planned = True
                # The lanes claim the next PENDING row by the open-rows index; statistics
                # still counting the table as empty make the planner sort every pending row
                # for each claim instead.
                await s.execute(sa.text("ANALYZE broadcast_recipients"))
                log.info("broadcast_planned", broadcast_id=bid, total=b.total)
            return b.planned

    async def _step(self, bid: str, token: str, done: tuple | None, claim: bool
                    ) -> tuple[str | None, BroadcastRecipient | None, Broadcast | None]:
        """Mark the row just sent (`done`: its user id and outcome) and claim the next one in one
        transaction; (why the lane stops or None, the row claimed, the broadcast)."""
        async with self.db.transaction() as s:
            repo = BroadcastRepository(s)
            b = await repo.get(bid, for_update=True)
            if done is not None and b is not None:
                await self._mark(s, repo, b, *done)
            if b is None or b.runner != token:
                return "lost", None, b
            b.heartbeat_at = now()
            if b.status != "SENDING":
                return "status", None, b
            if b.held_until is not None and b.held_until > now():
                return "held", None, b
            if not claim:
                return "time", None, b
            row = await repo.claim(bid)
            return (None if row else "empty"), row, b

    async def _mark(self, s: AsyncSession, repo: BroadcastRepository, b: Broadcast,
                    user_id: str, outcome: str, detail) -> None:
        if outcome == "sent":
            await repo.set_state(b.id, user_id, state="SENT", telegram_message_id=detail,
                                 sent_at=now())
            b.sent += 1
        elif outcome == "blocked":
            chat_id, error = detail
            await repo.set_state(b.id, user_id, state="BLOCKED", error=error)
            await ShopRepository(s).mark_blocked(chat_id, now())
            b.blocked_by_user += 1
        elif outcome == "failed":
            await repo.set_state(b.id, user_id, state="FAILED", error=detail)
            b.failed += 1
        elif outcome == "retry":  # Telegram away (5xx, timeout): everything waits a moment
            error, wait = detail
            await repo.set_state(b.id, user_id, state="PENDING", error=error)
            b.held_until = max(b.held_until or now(), now() + timedelta(seconds=wait))
        else:  # "held": Telegram sent nothing; the attempt is not counted
            await repo.set_state(b.id, user_id, state="PENDING",
                                 attempts=BroadcastRecipient.attempts - 1)
            if detail is not None:
                b.held_until = max(b.held_until or now(), now() + timedelta(seconds=detail))
        BROADCAST_MESSAGES.labels(outcome).inc()

    async def _lane(self, bid: str, token: str, deadline: float) -> str:
        stop, row, b = await self._step(bid, token, None, True)
        while row is not None:
            try:
                await self.pacer.acquire()
            except Held as held:  # another broadcast's 429: this one waits as long
                stop, row, b = await self._step(bid, token,
                                                (row.user_id, "held", held.seconds), False)
                return "held"
            done = await self._send(b, row)
            stop, row, b = await self._step(bid, token, done, time.monotonic() < deadline)
        return stop or "empty"

    async def _send(self, b: Broadcast, row: BroadcastRecipient) -> tuple:
        try:
            msg = await self.bot.call("sendMessage", chat_id=row.chat_id,
                                      **message(b, row.language))
        except TelegramError as exc:
            if exc.is_retry_after:
                wait = float(exc.retry_after or 1)
                BROADCAST_HOLDS.inc()
                log.warning("broadcast_retry_after", broadcast_id=b.id, retry_after=wait)
                try:
                    await self.pacer.hold(wait)
                except Exception as redis_exc:  # the broadcast's own hold still applies
                    log.warning("broadcast_hold_failed", error=str(redis_exc)[:200])
                return row.user_id, "held", wait
            if exc.status == 403 and shop.BLOCKED in exc.description:
                return row.user_id, "blocked", (row.chat_id, exc.description[:500])
            if exc.is_permanent or row.attempts >= MAX_ATTEMPTS:
                return row.user_id, "failed", exc.description[:500]
            log.warning("broadcast_send_retry", broadcast_id=b.id, error=exc.description[:200])
            return row.user_id, "retry", (exc.description[:500], 2 ** row.attempts)
        return row.user_id, "sent", (msg or {}).get("message_id")

    async def _release(self, bid: str, token: str, reason: str) -> str:
        """End the run: DONE when nothing is left, else hand the broadcast on (a later job
        when held, a next run when the time was up)."""
        async with self.db.transaction() as s:
            repo = BroadcastRepository(s)
            b = await repo.get(bid, for_update=True)
            if b is None or b.runner != token:
                return "lost"
            b.runner = None
            if b.status == "SENDING" and b.planned and not await repo.open_rows(bid):
                b.status, b.finished_at = "DONE", now()
                log.info("broadcast_done", broadcast_id=bid, sent=b.sent, failed=b.failed,
                         blocked_by_user=b.blocked_by_user)
                return "done"
            status, held_until = b.status, b.held_until
        if status != "SENDING":
            return reason
        if held_until is not None and held_until > now():
            await self._later(bid, held_until)
            return "held"
        await self.jobs.enqueue("send", {"broadcast_id": bid},
                                job_id=job_id("broadcast", bid, "after", token))
        return reason


def handlers(sender: Sender):
    async def send(job):
        return await sender.run(job.data["broadcast_id"])

    return {"send": send}


async def sweep(db: Database, jobs: JobQueue, lease: float, every: float = 5.0) -> None:
    """Start every SENDING broadcast whose run is gone (a lost job, a dead worker, a resume
    whose job was lost): no live runner and no hold."""
    while True:
        await asyncio.sleep(every)
        try:
            t = now()
            async with db.transaction() as s:
                due = [b.id for b in await BroadcastRepository(s).sending_ids()
                       if (b.held_until is None or b.held_until <= t)
                       and (b.runner is None or b.heartbeat_at is None
                            or b.heartbeat_at <= t - timedelta(seconds=lease))]
            bucket = int(time.time() // max(every, 1))
            for bid in due:
                await jobs.enqueue("send", {"broadcast_id": bid},
                                   job_id=job_id("broadcast", bid, "s", bucket))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("broadcast_sweep_failed", error=str(exc)[:300])
