"""Test support shared by every service's tests: a database of its own, migrated like production,
the fixtures over it, and apps served over real HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
import uvicorn

from runtime.db import Database
from runtime.settings import ServiceSettings

SERVER = "postgresql://postgres@127.0.0.1:5432"
ROOT = Path(__file__).resolve().parents[4]

T = TypeVar("T")


def test_slot() -> int:
    """TEST_SLOT lets several test runs share this machine's infrastructure without colliding."""
    return int(os.environ.get("TEST_SLOT", "0"))


def database_url(db_name: str) -> str:
    return f"{SERVER}/{db_name}"


def recreate_and_migrate(service: str, db_name: str) -> str:
    """Drop and create `db_name`, run `python -m <service> migrate` into it; its URL."""

    async def recreate() -> None:
        conn = await asyncpg.connect(f"{SERVER}/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db_name)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
            await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    url = database_url(db_name)
    subprocess.run([sys.executable, "-m", service, "migrate"], check=True, cwd=ROOT,
                   env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL)
    return url


def production_settings(service: str) -> dict[str, str]:
    """What `service`'s settings need to pass for production but its adapters: APP_ENV and
    secrets other than the development defaults."""
    return {"APP_ENV": "production", "INTERNAL_SIGNING_KEY": "k" * 32,
            f"{service.upper()}_DB_PASSWORD": "a-real-password"}


def unit_database_url(service: str) -> str:
    """The database of `service`'s own tests on this TEST_SLOT."""
    return database_url(f"{service}_unit{test_slot()}")


def database_fixtures(service: str, settings: Callable[[], ServiceSettings], *,
                      emptied: Sequence[str] = ()) -> tuple[Any, Any, Any]:
    """The database fixtures of a service's tests, for its conftest to name:
    `migrated, db, pg = database_fixtures("tickets", make_settings)`.

    `migrated` (per session): the slot's database (`unit_database_url`) recreated and migrated
    like production; its URL. `db`: a `Database` on `settings()`, per session, or with `emptied`
    per test, those tables emptied first. `pg`: an asyncpg connection as the database's owner.
    """
    url = unit_database_url(service)

    @pytest.fixture(scope="session")
    def migrated() -> str:
        return recreate_and_migrate(service, url.rsplit("/", 1)[1])

    async def database(migrated: str) -> AsyncIterator[Database]:
        db = Database(settings())
        if emptied:
            async with db.transaction() as s:
                await s.execute(sa.text(f"TRUNCATE {', '.join(emptied)}"))
        yield db
        await db.dispose()

    @pytest.fixture
    async def pg(migrated: str) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(url)
        yield conn
        await conn.close()

    db = pytest.fixture(scope="function" if emptied else "session")(database)
    return migrated, db, pg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server(app: Any, port: int | None, config: dict[str, Any]
            ) -> tuple[uvicorn.Server, str, list[socket.socket] | None]:
    """The server, its URL, and (without a `port`) the socket it is to serve on, bound here:
    a free port looked up and bound later could be taken in between by another process."""
    options = {"host": "127.0.0.1", "log_level": "warning", **config}
    sockets = None
    if port:
        options["port"] = port
    else:
        sock = socket.socket()
        sock.bind((options["host"], 0))
        options["port"] = sock.getsockname()[1]
        sockets = [sock]
    scheme = "https" if options.get("ssl_certfile") else "http"
    return (uvicorn.Server(uvicorn.Config(app, **options)),
            f"{scheme}://{options['host']}:{options['port']}", sockets)


def _close(sockets: list[socket.socket] | None) -> None:
    for sock in sockets or ():
        sock.close()


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, **config: Any) -> Iterator[str]:
    """`app` served by uvicorn (on `port`, or a free one) in a thread of its own, for as long as
    the block runs; its base URL. `config` goes to `uvicorn.Config`."""
    server, url, sockets = _server(app, port, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive(), "the test server stopped at startup"
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        _close(sockets)


@asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free port in this event loop, for as long as the block runs;
    its base URL. `config` goes to `uvicorn.Config` (a `port` in it is replaced)."""
    config.pop("port", None)
    server, url, sockets = _server(app, None, config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        await task
        _close(sockets)


async def await_for(predicate: Callable[[], Awaitable[T]], timeout: float = 20,
                    interval: float = 0.1, message: str = "condition") -> T:
    """The first truthy value of `predicate`, polled until `timeout` (then an AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}; last value: {last!r}")


class InMemoryBus:
    """Consumers on FastStream's in-memory test broker: the same subscribers, filters and
    `Delivery` middleware as a worker's, without RabbitMQ. `publish` hands a message to every
    consumer bound to its routing key and returns once they handled it; a handler's failure is
    raised from it (a real broker would nack the message)."""

    def __init__(self, broker: Any, subscribers: list[tuple[Any, Any]]):
        self.broker = broker
        self.subscribers = subscribers  # (Subscription, FastStream subscriber)

    async def publish(self, envelope: Any) -> None:
        await self.publish_raw(envelope.routing_key, envelope.model_dump(mode="json"))

    async def publish_raw(self, routing_key: str, body: Any) -> None:
        # The test broker routes by a queue's one FastStream routing key; a worker's queue is
        # bound to every key of its subscription, so the message goes to each such queue here.
        from faststream.rabbit.testing import build_message

        targets = [fs for sub, fs in self.subscribers if routing_key in sub.handlers]
        if not targets:
            raise LookupError(f"no subscription is bound to {routing_key}")
        for subscriber in targets:
            message = await build_message(body, exchange=self.broker.exchange,
                                          routing_key=routing_key, message_type=routing_key,
                                          content_type="application/json", persist=True)
            await subscriber.process_message(message)


@asynccontextmanager
async def in_memory_bus(*subscriptions: Any) -> AsyncIterator[InMemoryBus]:
    """The subscriptions consuming from FastStream's `TestRabbitBroker`."""
    from faststream.rabbit import TestRabbitBroker

    from runtime.broker import Broker

    broker = Broker("amqp://in-memory/", service="test")
    subscribers = [(sub, broker.subscribe(sub)) for sub in subscriptions]
    async with TestRabbitBroker(broker.rabbit):
        yield InMemoryBus(broker, subscribers)
