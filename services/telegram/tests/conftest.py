"""Telegram service tests: a database of their own (per TEST_SLOT), migrated like production, the
Telegram emulator as a real HTTP server, and the notify queue in Redis."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from runtime.jobs import JobQueue
from runtime.testing import database_fixtures, test_slot, unit_database_url
from telegram.config import Settings
from telegram.jobs import NOTIFY, TelegramJobs

SLOT = test_slot()


def make_settings() -> Settings:
    # support groups unpaced unless a test paces them (test_support_groups)
    return Settings(DATABASE_URL=unit_database_url("telegram"),
                    REDIS_URL=f"redis://127.0.0.1:6379/{1 + SLOT}",
                    TELEGRAM_SUPPORT_SEND_INTERVAL=0)


migrated, db, pg = database_fixtures("telegram", make_settings)


# The support chats the emulator treats as forum supergroups: each test that needs a support
# chat of its own takes the next one (its topics and message ids are then its own).
FORUM_CHATS = [-1002000000000 - i for i in range(1, 201)]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory) -> str:
    """The Telegram Bot API emulator (libs/fakes) as a real HTTP server; its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fakes.telegram", "--host", "127.0.0.1", "--port", str(port),
             f"--forum-chat-ids={','.join(map(str, FORUM_CHATS))}", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # as long as the local stack gives its processes
    while True:
        try:
            httpx.get(f"{base}/_emulator/stats", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the Telegram emulator did not start:\n"
                                   + log.read_text(errors="replace")[-2000:]) from None
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
async def jobs() -> TelegramJobs:
    """The real notify queue in Redis, under a prefix of this test's own (removed after)."""
    queue = JobQueue(NOTIFY, make_settings().redis_url, prefix=f"tgunit{SLOT}-{uuid.uuid4().hex}")
    yield TelegramJobs(queue)
    await queue.queue.obliterate(force=True)
    await queue.close()
