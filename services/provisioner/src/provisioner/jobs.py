"""Job queues of the provisioner and their handlers.

* `provision`: backend work, one job per piece of committed work, with deterministic ids
  (`provision-<invoice>`, `refund-<invoice>`, `user-block-<user>-<ms>`) so the same work is never
  queued twice; retried with exponential backoff. When a grant's attempts run out the grant is
  marked FAILED, `provisioning.provision.failed.v1` is published, and the job stays in BullMQ's
  failed set, where an admin can list it and retry it (`retry_failed_job`).
* `provisioner_schedules`: the periodic sweeps registered through `ctx.schedules`
  (`provision_sweep` re-queues work whose enqueue was lost and places grants waiting for a
  server with room, `expiry_sweep`, `expiry_reminders`,
  `renewal_sweep` (asks billing to charge due auto-renewals), `server_health` (probes every
  server of the pool), `reconciliation`, `limit_check`
  (reads running subscriptions' usage: a used-up allowance makes one LIMITED, once)),
  `move_sweep` (resumes moves of an access left open and drains DRAINING servers,
  `provisioner.moves`).
* `provision` also runs `move_access` (one move, `move-<id>`) and `drain_server` (a drain pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bullmq import Job

from provisioner.backends import BackendError
from provisioner.config import Settings
from provisioner.metrics import ACTIVE_SUBSCRIPTIONS, PROVISION_LATENCY, PROVISIONS
from provisioner.moves import MoveService
from provisioner.repository import ProvisioningRepository
from provisioner.servers import ServerPool
from provisioner.service import (
    GrantResult,
    ProvisioningService,
    block_job_id,
    grant_job_id,
    refund_job_id,
)
from provisioner.stats import StatsRepository
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, NotFound
from runtime.jobs import JobQueue, database_away, job_id
from runtime.logging import get_logger

log = get_logger(__name__)

PROVISION = "provision"
SCHEDULES = "provisioner_schedules"
ACTIVE_GAUGE_SECONDS = 30.0  # how often `provisioner_active_subscriptions` is counted at most


def describe(exc: BaseException) -> str:
    """What an admin sees about a failure (backend errors are already free of secrets)."""
    if isinstance(exc, BackendError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def observe_grant(invoice_id: str, result: GrantResult) -> None:
    """Count and log an applied (or skipped) grant, inline or from a job."""
    PROVISIONS.labels(result.outcome).inc()
    if result.outcome in ("activated", "extended") and result.latency_seconds is not None:
        PROVISION_LATENCY.observe(result.latency_seconds)
    log.info("provision_done", invoice_id=invoice_id, outcome=result.outcome)


class ProvisionJobs:
    """Enqueues provision work; only ever called after the transaction that recorded it."""

    def __init__(self, queue: JobQueue, settings: Settings):
        self.queue = queue
        self.opts: dict[str, Any] = {
            "attempts": settings.provision_attempts,
            "backoff": {"type": "exponential", "delay": settings.provision_backoff_ms},
        }

    async def grant(self, invoice_id: str) -> None:
        await self.queue.enqueue("apply_grant", {"invoice_id": invoice_id},
                                 job_id=grant_job_id(invoice_id), **self.opts)

    async def refund(self, invoice_id: str) -> None:
        await self.queue.enqueue("apply_refund", {"invoice_id": invoice_id},
                                 job_id=refund_job_id(invoice_id), **self.opts)

    async def user_block(self, user_id: str, changed_at: datetime) -> None:
        await self.queue.enqueue("sync_user_block", {"user_id": user_id},
                                 job_id=block_job_id(user_id, changed_at), **self.opts)

    async def move(self, move_id: str) -> None:
        await self.queue.enqueue("move_access", {"move_id": move_id},
                                 job_id=job_id("move", move_id), **self.opts)

    async def drain(self, server_id: str) -> None:
        """A drain pass now (the move sweep goes on with it every run)."""
        await self.queue.enqueue("drain_server", {"server_id": server_id},
                                 job_id=job_id("drain", server_id, int(time.time() * 1000)),
                                 attempts=1)

    async def failed(self, limit: int) -> list[Job]:
        return await self.queue.queue.getFailed(0, limit - 1)

    async def get(self, jid: str) -> Job | None:
        return await self.queue.queue.getJob(jid)


def provision_handlers(db: Database, service: ProvisioningService):
    async def apply_grant(job: Job, token: str = ""):
        invoice_id = job.data["invoice_id"]
        try:
            async with db.transaction() as s:
                result = await service.apply_grant(s, invoice_id, now())
        except Exception as exc:
            if database_away(exc):  # the runner defers the job; no attempt spent, none recorded
                raise
            attempts = job.attemptsMade + 1
            final = attempts >= int(job.opts.get("attempts") or 1)
            PROVISIONS.labels("failed" if final else "retry").inc()
            try:
                async with db.transaction() as s:
                    await service.record_failure(s, invoice_id, describe(exc), attempts, final,
                                                 now())
            except Exception as record_exc:  # the job still fails and stays visible
                log.warning("provision_failure_not_recorded", invoice_id=invoice_id,
                            error=str(record_exc)[:300])
            log.warning("provision_attempt_failed", invoice_id=invoice_id, attempt=attempts,
                        final=final, error=describe(exc))
            raise
        observe_grant(invoice_id, result)
        return result.outcome

    async def apply_refund(job: Job, token: str = ""):
        async with db.transaction() as s:
            outcome = await service.apply_refund(s, job.data["invoice_id"], now())
        log.info("refund_applied", invoice_id=job.data["invoice_id"], outcome=outcome)
        return outcome

    async def sync_user_block(job: Job, token: str = ""):
        async with db.transaction() as s:
            outcome = await service.sync_user_block(s, job.data["user_id"], now())
        log.info("user_block_synced", user_id=job.data["user_id"], outcome=outcome)
        return outcome

    return {"apply_grant": apply_grant, "apply_refund": apply_refund,
            "sync_user_block": sync_user_block}


def schedule_handlers(db: Database, service: ProvisioningService, jobs: ProvisionJobs,
                      settings: Settings, sweeps: JobQueue | None = None):
    gauge_due = [0.0]  # when the expiry sweep next samples `provisioner_active_subscriptions`

    async def provision_sweep(job: Job, token: str = ""):
        """Re-queue committed work whose job was never queued (same ids: no duplicates), and
        place grants waiting for a server with room (capacity may have been added)."""
        placed = await service.place_waiting(db, now(), settings.sweep_batch)
        if placed:
            log.info("waiting_grants_placed", placed=placed)
        cutoff = now() - timedelta(seconds=settings.provision_sweep_grace_seconds)
        async with db.transaction() as s:
            work = await service.stale_work(s, cutoff, settings.sweep_batch)
        for name, invoice_id in work.grants:
            await (jobs.grant(invoice_id) if name == "apply_grant" else jobs.refund(invoice_id))
        for user_id, changed_at in work.blocks:
            await jobs.user_block(user_id, changed_at)
        if work.grants or work.blocks:
            log.info("provision_sweep_requeued", grants=len(work.grants), blocks=len(work.blocks))
        return {"grants": len(work.grants), "blocks": len(work.blocks)}

    async def drain(batch_run) -> int:
        """Run one bounded batch after another while each comes back full and the run's
        budget lasts: a run never stops after one batch while more are due, and never holds
        the queue longer than `SWEEP_BUDGET_SECONDS` (the next run goes on from there)."""
        done, deadline = 0, time.monotonic() + settings.sweep_budget_seconds
        while True:
            n = await batch_run()
            done += n
            if n < settings.sweep_batch or time.monotonic() >= deadline:
                return done

    async def expiry_sweep(job: Job, token: str = ""):
        """Batch after batch of `EXPIRY_BATCH` while each finds a full batch due and expires
        some of it, for at most `SWEEP_BUDGET_SECONDS`. A batch that expires none (every
        account's backend failing, every user busy) ends the run: the next one tries again.
        A run the budget ended while more were due queues the next run at once, rather than
        leaving the rest for the schedule's next tick (`EXPIRY_SWEEP_SECONDS` away)."""
        expired, deadline = 0, time.monotonic() + settings.sweep_budget_seconds
        while True:
            run = await service.expire_batch(db, now(), settings.expiry_batch,
                                             settings.expiry_concurrency)
            expired += run.expired
            if run.due < settings.expiry_batch or not run.expired:
                break
            if time.monotonic() >= deadline:
                if sweeps is not None:
                    await sweeps.enqueue("expiry_sweep", {}, attempts=1, job_id=job_id(
                        "expiry_sweep", "more", int(time.time() * 1000)))
                break
        if expired:
            log.info("expiry_sweep", expired=expired)
        # the gauge counts every running subscription, so at most every ACTIVE_GAUGE_SECONDS
        # however often the sweep runs (a short EXPIRY_SWEEP_SECONDS must not repeat it)
        if time.monotonic() >= gauge_due[0]:
            async with db.transaction() as s:
                ACTIVE_SUBSCRIPTIONS.set(await StatsRepository(s).running(now()))
            gauge_due[0] = time.monotonic() + ACTIVE_GAUGE_SECONDS
        return expired

    async def expiry_reminders(job: Job, token: str = ""):
        async def batch() -> int:
            async with db.transaction() as s:
                return await service.send_reminders(s, now(), settings.reminder_days,
                                                    settings.sweep_batch)

        return await drain(batch)

    async def renewal_sweep(job: Job, token: str = ""):
        async with db.transaction() as s:
            asked = await service.renewal_sweep(s, now(), settings.sweep_batch)
        if asked:
            log.info("renewal_sweep", asked=asked)
        return asked

    async def reconciliation(job: Job, token: str = ""):
        fixes = await service.reconcile(db, now())
        log.info("reconciliation_done", **fixes)
        return fixes

    async def limit_check(job: Job, token: str = ""):
        limited = await service.check_limits(db, now(), settings.limit_check_batch)
        if limited:
            log.info("limit_check", limited=limited)
        return limited

    return {"provision_sweep": provision_sweep, "expiry_sweep": expiry_sweep,
            "expiry_reminders": expiry_reminders, "renewal_sweep": renewal_sweep,
            "reconciliation": reconciliation, "limit_check": limit_check}


def schedules(queue: JobQueue, settings: Settings) -> list[tuple[JobQueue, str, int, str]]:
    return [
        (queue, "provision_sweep", settings.provision_sweep_seconds * 1000, "provision_sweep"),
        (queue, "expiry_sweep", settings.expiry_sweep_seconds * 1000, "expiry_sweep"),
        (queue, "expiry_reminders", settings.expiry_reminder_seconds * 1000, "expiry_reminders"),
        (queue, "renewal_sweep", settings.renewal_sweep_seconds * 1000, "renewal_sweep"),
        (queue, "reconciliation", settings.reconcile_seconds * 1000, "reconciliation"),
        (queue, "limit_check", settings.limit_check_seconds * 1000, "limit_check"),
    ]


@dataclass
class FailedJob:
    id: str
    name: str
    data: dict
    attempts_made: int
    failed_reason: str | None
    failed_at: int | None
    grant_status: str | None = None


def failed_job_out(job: Job, grant_status: str | None) -> FailedJob:
    return FailedJob(id=str(job.id), name=job.name, data=dict(job.data or {}),
                     attempts_made=int(job.attemptsMade or 0), failed_reason=job.failedReason,
                     failed_at=int(job.finishedOn) if job.finishedOn else None,
                     grant_status=grant_status)


async def retry_failed_job(db: Database, jobs: ProvisionJobs, service: ProvisioningService,
                           jid: str) -> str:
    """Retry a failed provision job with a fresh attempt budget; returns its new state."""
    job = await jobs.get(jid)
    if job is not None:
        state = await job.getState()
        if state != "failed":
            raise Conflict(f"Only failed jobs can be retried (this one is {state})",
                           {"state": state})
    async with db.transaction() as s:
        grant = await service.reopen_failed(s, jid)
    if job is None:
        # Failed jobs are pruned after a while; the grant still knows what to do.
        if grant is None or grant.invoice_id is None or grant.status != "PENDING":
            raise NotFound("No such provision job")
        await jobs.grant(grant.invoice_id)
        return "waiting"
    await job.retry("failed", {"resetAttemptsMade": True})
    return "waiting"


async def list_failed_jobs(db: Database, jobs: ProvisionJobs, limit: int) -> list[FailedJob]:
    """Failed provision jobs, newest first, with the state of the grant behind each."""
    failed = await jobs.failed(limit)
    out = []
    async with db.transaction() as s:
        repo = ProvisioningRepository(s)
        for job in failed:
            grant = await repo.grant_by_job(str(job.id))
            out.append(failed_job_out(job, grant.status if grant else None))
    return out


def move_handlers(db: Database, moves: MoveService, settings: Settings):
    """`move_access` runs one move to its end (retried with backoff; what is left open is
    resumed by `move_sweep`); `drain_server` runs a drain pass."""

    async def move_access(job: Job, token: str = ""):
        status = await moves.run(db, job.data["move_id"])
        log.info("move_ran", move_id=job.data["move_id"], status=status)
        return status

    async def drain_server(job: Job, token: str = ""):
        return await moves.drain_all(db, settings.sweep_batch,
                                     budget_seconds=settings.sweep_budget_seconds)

    return {"move_access": move_access, "drain_server": drain_server}


def move_schedule_handlers(db: Database, moves: MoveService, settings: Settings):
    async def move_sweep(job: Job, token: str = ""):
        """Resume open moves their job left (a crash, attempts run out, waiting for room),
        and go on draining every DRAINING server (DISABLED once drained)."""
        cutoff = now() - timedelta(seconds=settings.provision_sweep_grace_seconds)
        finished = await moves.resume(db, cutoff, settings.sweep_batch)
        started = await moves.drain_all(db, settings.sweep_batch,
                                        budget_seconds=settings.sweep_budget_seconds)
        if finished or started:
            log.info("move_sweep", finished=finished, started=started)
        return {"finished": finished, "started": started}

    return {"move_sweep": move_sweep}


def move_schedules(queue: JobQueue, settings: Settings) -> list[tuple[JobQueue, str, int, str]]:
    return [(queue, "move_sweep", settings.provision_sweep_seconds * 1000, "move_sweep")]


def server_schedule_handlers(pool: ServerPool):
    async def server_health(job: Job, token: str = ""):
        """Probe every server; an unhealthy one takes no new placements (`servers.py`)."""
        health = await pool.check_health(now())
        down = sorted(name for name, ok in health.items() if not ok)
        if down:
            log.warning("servers_down", servers=down)
        return {"checked": len(health), "down": len(down)}

    return {"server_health": server_health}


def server_schedules(queue: JobQueue, settings: Settings) -> list[tuple[JobQueue, str, int, str]]:
    return [(queue, "server_health", settings.server_health_seconds * 1000, "server_health")]
