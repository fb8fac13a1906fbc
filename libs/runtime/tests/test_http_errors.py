"""The app factory's error mapping: infrastructure briefly away is a 503, a bug is a 500."""

from __future__ import annotations

from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from runtime.deps import Session
from runtime.http import create_app


def _app():
    app = create_app("t", readiness={}, max_body=1024)

    @app.get("/db-gone")
    async def db_gone():
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    @app.get("/refused")
    async def refused():
        raise ConnectionRefusedError(111, "Connect call failed")

    @app.get("/bug")
    async def bug():
        raise KeyError("oops")

    return app


async def _get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.get(path)


@pytest.mark.parametrize("path", ["/db-gone", "/refused"])
async def test_database_away_is_503_with_retry_after(path):
    r = await _get(path)
    assert r.status_code == 503
    assert r.json() == {"code": "SERVICE_UNAVAILABLE", "message": "The database is unavailable"}
    assert r.headers["retry-after"] == "1"


async def test_a_bug_stays_a_500_without_details():
    r = await _get("/bug")
    assert r.status_code == 500
    assert r.json() == {"code": "INTERNAL_ERROR", "message": "Something went wrong"}
    assert "retry-after" not in r.headers


async def test_the_request_transaction_commits_before_the_response_is_sent():
    order: list[str] = []

    class FakeDb:
        @asynccontextmanager
        async def transaction(self):
            yield object()
            order.append("commit")

    app = create_app("t", readiness={}, max_body=1024)
    app.state.db = FakeDb()

    @app.post("/write")
    async def write(s: Session):
        return {"ok": True}

    async def recording(scope, receive, send):
        async def send_(message):
            if message["type"] == "http.response.start":
                order.append("response")
            await send(message)
        await app(scope, receive, send_)

    transport = httpx.ASGITransport(app=recording)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/write")).status_code == 200
    assert order == ["commit", "response"]
