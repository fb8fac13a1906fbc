"""Loaded before every test directory's conftest: under pytest-xdist each worker takes its own
TEST_SLOT (the run's slot plus the worker's number), so the workers share this machine's
Postgres, RabbitMQ and Redis without colliding (see deploy/local/run_tests.py)."""

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    os.environ["TEST_SLOT"] = str(int(os.environ.get("TEST_SLOT", "0"))
                                  + int(_worker.removeprefix("gw")))
