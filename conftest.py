"""Loaded before every test directory's conftest.

- Under pytest-xdist each worker takes its own TEST_SLOT (the run's slot plus the worker's
  number), so the workers share this machine's Postgres, RabbitMQ and Redis without colliding.
- The browser tests (`tests/e2e/test_web_*.py`, Playwright's sync API) are marked `browser`:
  Playwright leaves an event loop running in its process, so no asyncio test may follow them
  there, and `make test` runs them in a phase of their own (deploy/local/run_tests.py).
"""

import os

import pytest

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    os.environ["TEST_SLOT"] = str(int(os.environ.get("TEST_SLOT", "0"))
                                  + int(_worker.removeprefix("gw")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name.startswith("test_web_") and item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.browser)
