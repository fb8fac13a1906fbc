"""A worker loop over rows in Postgres, woken by NOTIFY: the outbox relay and the telegram update
pump both run on it.

Each pass handles up to a batch. A full batch runs the next pass at once; otherwise the loop
waits for a NOTIFY on the channel, or `poll_seconds` as a fallback (polling still works if
LISTEN could not be set up). The wake-up is cleared *before* each pass, so a NOTIFY for a row
committed during a pass wakes the next one instead of waiting for the poll. A failed pass is
retried after 0.5 s, doubling up to 10 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from runtime.db import Database
from runtime.logging import get_logger

log = get_logger(__name__)


class NotifiedLoop:
    def __init__(self, db: Database, channel: str, poll_seconds: float, name: str):
        self.db = db
        self.channel = channel
        self.poll_seconds = poll_seconds
        self.name = name
        self._wake = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _listen(self) -> None:
        try:
            dsn = self.db.settings.service_dsn().replace("postgresql+asyncpg", "postgresql")
            self._listener = await asyncpg.connect(dsn, timeout=5)
            await self._listener.add_listener(self.channel, lambda *_: self._wake.set())
        except Exception as exc:  # polling still works without it
            log.warning(f"{self.name}_listen_failed", error=str(exc)[:200])
            self._listener = None

    async def run(self, one_pass: Callable[[], Awaitable[int]], batch: int,
                  on_failure: Callable[[Exception, float], None]) -> None:
        """Run `one_pass` (returns how many rows it handled) until `stop()` or cancellation."""
        pause = 0.5
        try:
            while not self._stopping:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                self._wake.clear()
                try:
                    done = await one_pass()
                    pause = 0.5
                except Exception as exc:
                    on_failure(exc, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10)
                    continue
                if done >= batch:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            if self._listener is not None and not self._listener.is_closed():
                await self._listener.close()
