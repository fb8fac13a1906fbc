"""Process entry points shared by every service: `api`, `worker`, `migrate`, `bootstrap`.

A service describes itself with a `ServiceDefinition`; `run_cli` turns it into the
`python -m <service> <command>` interface, so every service is run and scaled the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.broker import Broker, Subscription
from runtime.daystats import Filler, fill_recent, refresh_recent
from runtime.db import Database
from runtime.http import Closer, ReadinessCheck, create_app, tcp_check
from runtime.jobs import JobQueue, JobWorker
from runtime.logging import configure_logging, get_logger
from runtime.metrics import BROKER_DEAD_LETTERS, BROKER_QUEUE_MESSAGES, JOB_QUEUE_JOBS
from runtime.migrations import bootstrap, upgrade
from runtime.outbox import Outbox, OutboxRelay
from runtime.retention import Rule, run_rules
from runtime.settings import ServiceSettings

log = get_logger(__name__)

# How long an API keeps an idle keep-alive connection open. It must outlive the idle time of
# every client that pools connections to it (the gateway's upstream pool: 30 s): otherwise the
# server may close a connection just as the client reuses it, and that request fails
# (seen as a gateway 503 `upstream_unavailable: ClientOSError` after an idle spell, with
# uvicorn's default of 5 s).
SERVER_KEEPALIVE_SECONDS = 65


@dataclass
class WorkerContext:
    """What a worker process runs: consumers, job workers, schedules, the outbox relay."""

    settings: ServiceSettings
    db: Database
    broker: Broker
    subscriptions: list[Subscription] = field(default_factory=list)
    job_workers: list[JobWorker] = field(default_factory=list)
    queues: list[JobQueue] = field(default_factory=list)
    schedules: list[tuple[JobQueue, str, int, str]] = field(default_factory=list)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    outbox: Outbox | None = None
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


@dataclass
class ServiceDefinition:
    name: str  # also the service's package
    settings_factory: Callable[[], ServiceSettings]
    create_api: Callable[[ServiceSettings], Any]
    build_worker: Callable[[WorkerContext], Awaitable[None]] | None = None
    commands: dict[str, Callable[[ServiceSettings, list[str]], Awaitable[int]]] = field(
        default_factory=dict
    )
    retention: Callable[[ServiceSettings], list[Rule]] | None = None
    # The KPIs' stats repository (`runtime.daystats`), whose cached days the worker fills.
    stats_days: Callable[[AsyncSession], Filler] | None = None
    # The Alembic tree; by default the `migrations` folder of the service's package.
    migrations: Path | None = None

    def __post_init__(self) -> None:
        if self.migrations is None:
            spec = importlib.util.find_spec(self.name)
            if spec is None or spec.origin is None:
                raise ValueError(f"{self.name}: no such package to find migrations in")
            self.migrations = Path(spec.origin).parent / "migrations"


def retention_queue_name(service: str) -> str:
    return f"retention_cleanup.{service}"


def _add_retention(defn: ServiceDefinition, ctx: WorkerContext) -> None:
    """One `retention_cleanup` schedule per service (not per replica), run by its worker."""
    if defn.retention is None:
        return
    rules = defn.retention(ctx.settings)
    name = retention_queue_name(defn.name)

    async def retention_cleanup(job):
        return await run_rules(ctx.db, defn.name, rules)

    _add_scheduled_job(ctx, name, "retention_cleanup", retention_cleanup,
                       ctx.settings.retention_interval_ms)


def _add_scheduled_job(ctx: WorkerContext, queue_name: str, job_name: str, handler,
                       every_ms: int) -> None:
    """A queue of one job, run one at a time by this worker, on one schedule per service."""
    queue = JobQueue(queue_name, ctx.settings.redis_url, ctx.settings.jobs_prefix)
    ctx.queues.append(queue)
    ctx.job_workers.append(JobWorker(queue_name, ctx.settings.redis_url, {job_name: handler},
                                     concurrency=1, prefix=ctx.settings.jobs_prefix))
    ctx.schedules.append((queue, job_name, every_ms, job_name))


def _add_stats_days(defn: ServiceDefinition, ctx: WorkerContext) -> None:
    """The `stats_days_fill` and `stats_live_refresh` schedules of a service with cached KPI
    days (one each per service, not per replica), run by its worker."""
    if defn.stats_days is None:
        return
    repository = defn.stats_days

    async def stats_days_fill(job):
        return await fill_recent(ctx.db, defn.name, repository,
                                 ctx.settings.stats_days_warm_days)

    async def stats_live_refresh(job):
        return await refresh_recent(ctx.db, defn.name, repository)

    _add_scheduled_job(ctx, f"stats_days.{defn.name}", "stats_days_fill", stats_days_fill,
                       ctx.settings.stats_days_interval_ms)
    _add_scheduled_job(ctx, f"stats_live.{defn.name}", "stats_live_refresh",
                       stats_live_refresh, ctx.settings.stats_live_interval_ms)


async def _retention_command(defn: ServiceDefinition, settings: ServiceSettings) -> int:
    db = Database(settings)
    try:
        await run_rules(db, defn.name, defn.retention(settings) if defn.retention else [])
    finally:
        await db.dispose()
    return 0


async def run_worker(defn: ServiceDefinition, settings: ServiceSettings) -> None:
    db = Database(settings)
    broker = worker_broker(defn, settings)
    await _retry_connect("rabbitmq", broker.connect)
    ctx = await build_worker_context(defn, settings, db, broker)
    _add_retention(defn, ctx)
    _add_stats_days(defn, ctx)
    relay = None
    tasks: list[asyncio.Task] = []
    if ctx.outbox is not None:
        relay = OutboxRelay(db, ctx.outbox, broker, poll_seconds=settings.outbox_poll_seconds)
        tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    await broker.start()
    await _register_schedules(ctx)
    tasks.append(asyncio.create_task(_keep_schedules(ctx), name="schedules"))
    for w in ctx.job_workers:
        w.start()
    tasks.append(asyncio.create_task(_sample_backlog(ctx), name="backlog-gauges"))
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.host)
    for bg in ctx.background:
        tasks.append(asyncio.create_task(bg(), name=getattr(bg, "__name__", "background")))
    log.info("worker_started", consumers=[s.queue for s in ctx.subscriptions],
             job_queues=[w.name for w in ctx.job_workers])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("worker_stopping")
    grace = settings.shutdown_grace_seconds
    await broker.drain()
    await asyncio.gather(*(w.close(timeout=grace / 2) for w in ctx.job_workers),
                         return_exceptions=True)
    if relay:
        relay.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for fn in ctx.on_close:
        await fn()
    for q in ctx.queues:
        await q.close()
    await broker.close()
    await db.dispose()
    log.info("worker_stopped")


def worker_broker(defn: ServiceDefinition, settings: ServiceSettings) -> Broker:
    return Broker(settings.rabbitmq_url, settings.broker_prefix, settings.delivery_limit,
                  service=defn.name, graceful_timeout=settings.shutdown_grace_seconds / 2)


async def build_worker_context(defn: ServiceDefinition, settings: ServiceSettings, db: Database,
                               broker: Broker) -> WorkerContext:
    """What the service's worker runs, its consumers registered with the broker (nothing is
    connected or started here: the AsyncAPI document is read from the same context)."""
    ctx = WorkerContext(settings=settings, db=db, broker=broker)
    if defn.build_worker:
        await defn.build_worker(ctx)
    for sub in ctx.subscriptions:
        broker.subscribe(sub)
    if ctx.outbox is not None:
        broker.publishes(ctx.outbox.publishes)
    return ctx


async def _register_schedules(ctx: WorkerContext) -> None:
    for queue, scheduler_id, every_ms, job_name in ctx.schedules:
        await queue.schedule(scheduler_id, every_ms, job_name)


async def _keep_schedules(ctx: WorkerContext, every: float = 30.0) -> None:
    """Re-assert the schedules (an idempotent upsert), so a Redis that lost them gets them back."""
    while True:
        await asyncio.sleep(every)
        try:
            await _register_schedules(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("schedule_register_failed", error=str(exc)[:200])


async def _sample_backlog(ctx: WorkerContext, every: float = 15.0) -> None:
    """Queue backlog and dead-letter gauges for what this worker consumes and runs."""
    while True:
        try:
            names = [s.queue for s in ctx.subscriptions]
            depths = await ctx.broker.queue_depths(names + [f"{n}.dlq" for n in names])
            for n in names:
                BROKER_QUEUE_MESSAGES.labels(n).set(depths.get(n, 0))
                BROKER_DEAD_LETTERS.labels(n).set(depths.get(f"{n}.dlq", 0))
            for q in ctx.queues:
                for state, count in (await q.counts()).items():
                    JOB_QUEUE_JOBS.labels(q.name, state).set(int(count or 0))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("backlog_sample_failed", error=str(exc)[:200])
        await asyncio.sleep(every)


async def _retry_connect(what: str, fn: Callable[[], Awaitable[None]], attempts: int = 30) -> None:
    for i in range(attempts):
        try:
            await fn()
            return
        except Exception as exc:
            log.warning("connect_retry", target=what, attempt=i + 1, error=str(exc)[:200])
            await asyncio.sleep(min(2 ** i * 0.2, 3))
    raise SystemExit(f"{what} unreachable")


def load_settings(defn: ServiceDefinition) -> ServiceSettings:
    """The service's settings; a refused configuration exits with its reasons, no traceback."""
    try:
        return defn.settings_factory()
    except ValidationError as exc:
        reasons = "; ".join(_reason(err) for err in exc.errors())
        raise SystemExit(f"{defn.name}: refusing to start: {reasons}") from None


def _reason(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()))
    message = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def internal_api_docs(settings: ServiceSettings) -> dict[str, str | None]:
    """`/docs`, `/redoc` and `/openapi.json` of an internal service: development only (they map
    every internal endpoint for whoever reaches the pod)."""
    if settings.app_env == "development":
        return {"openapi_url": "/openapi.json", "docs_url": "/docs", "redoc_url": "/redoc"}
    return {"openapi_url": None, "docs_url": None, "redoc_url": None}


def dependency_checks(settings: ServiceSettings, db: Database) -> dict[str, ReadinessCheck]:
    """What an internal API's `/readyz` checks by default: Postgres, RabbitMQ and Redis."""
    return {"postgres": db.ping, "rabbitmq": tcp_check(settings.rabbitmq_url, 5672),
            "redis": tcp_check(settings.redis_url, 6379)}


def internal_api(settings: ServiceSettings, db: Database, *, on_close: Sequence[Closer] = (),
                 readiness: dict[str, ReadinessCheck] | None = None, **kwargs: Any) -> FastAPI:
    """An internal service's app (`runtime.http.create_app`) with what every one of them has:
    `/readyz` over `dependency_checks` unless `readiness` says otherwise, the body limit,
    API docs in development only, `app.state.settings` and `app.state.db` (which the shared
    dependencies read), and at shutdown `on_close` in order, then the database."""
    app = create_app(settings.service_name,
                     readiness=dependency_checks(settings, db) if readiness is None else readiness,
                     max_body=settings.max_body_bytes, on_close=[*on_close, db.dispose],
                     **internal_api_docs(settings), **kwargs)
    app.state.settings = settings
    app.state.db = db
    return app


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """How `api` runs uvicorn. Forwarded headers are believed only from TRUSTED_PROXIES: with
    none, uvicorn's proxy-header middleware is off (its default would trust 127.0.0.1), so the
    client address is the peer's and a spoofed X-Forwarded-For changes nothing."""
    trusted = settings.trusted_proxies
    return {
        "host": settings.host, "port": settings.port, "log_level": "warning",
        "access_log": False, "loop": "uvloop", "http": "httptools",
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds),
        "timeout_keep_alive": SERVER_KEEPALIVE_SECONDS,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": ",".join(trusted) if trusted else "",
    }


def run_cli(defn: ServiceDefinition, argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m {defn.name}")
    builtin = ["api", "worker", "migrate", "bootstrap", "revision", "retention-cleanup",
               "asyncapi"]
    parser.add_argument("command", choices=[*builtin, *defn.commands])
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    settings = load_settings(defn)
    configure_logging(defn.name, settings.log_level)
    if ns.command in ("api", "worker"):
        for warning in settings.startup_warnings():
            log.warning("startup_warning", service=defn.name, role=ns.command, warning=warning)
    if ns.command == "api":
        import uvicorn

        uvicorn.run(defn.create_api(settings), **uvicorn_options(settings))
    elif ns.command == "worker":
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
        asyncio.run(run_worker(defn, settings))
    elif ns.command == "bootstrap":
        asyncio.run(bootstrap(settings))
        log.info("bootstrapped", schema=settings.schema, role=settings.db_role)
    elif ns.command == "migrate":
        asyncio.run(bootstrap(settings))
        upgrade(settings, defn.migrations)
        log.info("migrated", schema=settings.schema)
    elif ns.command == "asyncapi":
        import json

        from runtime.asyncapi import service_document

        doc = asyncio.run(service_document(defn, settings))
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif ns.command == "retention-cleanup":
        sys.exit(asyncio.run(_retention_command(defn, settings)))
    elif ns.command == "revision":
        from alembic import command as alembic_command

        from runtime.migrations import alembic_config

        asyncio.run(bootstrap(settings))
        upgrade(settings, defn.migrations)
        alembic_command.revision(alembic_config(settings, defn.migrations),
                                 message=" ".join(ns.args) or "change", autogenerate=True)
    else:
        sys.exit(asyncio.run(defn.commands[ns.command](settings, ns.args)))
