"""`make test`: the whole suite in two phases, so it fits its time budget on a 2-core machine.

1. Every test but the `serial` and `browser` ones, on `TEST_WORKERS` pytest-xdist workers
   (whole files per worker). Each worker takes its own TEST_SLOT (the run's slot plus the
   worker's number, see the root `conftest.py`), so each has its own databases, Redis database,
   broker queues and, for e2e files, its own stack.
2. The `serial` tests alone: they restart the Postgres, RabbitMQ or Redis every worker shares.
3. The `browser` tests, on one worker: Playwright leaves an event loop running in its
   process, so nothing asynchronous may run after them there.

Every phase runs; the exit status is the first failure's. Arguments are passed to each phase (a
path, `-k`, ...); a phase that selects no test is not a failure. Two workers run two
stacks at once, which needs more Postgres connections than its default 100: with fewer than
`MIN_CONNECTIONS_PER_WORKER` per worker, phase 1 runs on one worker and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

NO_TESTS = 5  # pytest's exit status when nothing was selected
MIN_CONNECTIONS_PER_WORKER = 120
SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _max_connections() -> int:
    conn = await asyncpg.connect(SERVER)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


def workers() -> int:
    wanted = int(os.environ.get("TEST_WORKERS", "2"))
    if wanted <= 1:
        return 1
    import asyncio

    limit = asyncio.run(_max_connections())
    fit = max(1, limit // MIN_CONNECTIONS_PER_WORKER)
    if fit < wanted:
        sys.stderr.write(
            f"Postgres allows {limit} connections: running on {fit} worker(s) instead of "
            f"{wanted}. For {wanted}, raise it (as a superuser: ALTER SYSTEM SET "
            f"max_connections = {wanted * MIN_CONNECTIONS_PER_WORKER + 60}; then restart "
            "Postgres).\n")
    return min(wanted, fit)


def pytest(*args: str) -> int:
    code = subprocess.call([sys.executable, "-m", "pytest", *args])
    return 0 if code == NO_TESTS else code


def main(argv: list[str]) -> int:
    n = workers()
    parallel = ["-n", str(n), "--dist", "loadfile"] if n > 1 else []
    first = pytest(*parallel, "-m", "not serial and not browser", *argv)
    second = pytest("-m", "serial", *argv)
    third = pytest("-m", "browser", *argv)  # one stack: two migrating at once can collide
    return first or second or third


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
