"""The app factory's error mapping: infrastructure briefly away is a 503, a bug is a 500, a body
over the limit is a 413 however it is sent."""

from __future__ import annotations

from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from fastapi import Request
from pydantic import BaseModel

from runtime.deps import Session
from runtime.http import create_app
from runtime.testing import serving


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


class Body(BaseModel):
    text: str


def _limited_app():
    app = create_app("t", readiness={}, max_body=1024)

    @app.post("/json")
    async def json_body(body: Body):
        return {"n": len(body.text)}

    @app.post("/raw")
    async def raw(request: Request):
        return {"n": len(await request.body())}

    return app


async def _chunks(total: int):
    yield b'{"text": "'
    for _ in range(total // 256):
        yield b"x" * 256
    yield b'"}'


@pytest.mark.parametrize("path", ["/json", "/raw"])
async def test_a_chunked_body_over_the_limit_is_a_413_over_a_real_server(path):
    """No Content-Length, so only counting what arrives can refuse it; the client gets a 413."""
    async with (serving(_limited_app()) as url,
                httpx.AsyncClient(base_url=url, timeout=10) as c):
        r = await c.post(path, content=_chunks(8 * 1024),
                         headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json() == {"code": "PAYLOAD_TOO_LARGE", "message": "Request body too large",
                            "details": {"max_bytes": 1024}}
        small = await c.post(path, content=_chunks(512),
                             headers={"content-type": "application/json"})
        assert small.status_code == 200, small.text


async def test_a_chunked_body_over_the_limit_is_a_413_in_process():
    transport = httpx.ASGITransport(app=_limited_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/json", content=_chunks(4096),
                         headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_405_names_every_method_served_at_the_path():
    import httpx
    from fastapi import APIRouter

    from runtime.http import create_app

    app = create_app("t", readiness={}, max_body=1024)
    reads, writes = APIRouter(prefix="/things"), APIRouter(prefix="/things")

    @reads.get("")
    async def list_things():
        return []

    @writes.post("")
    async def add_thing():
        return {}

    @writes.delete("/{tid}")
    async def drop_thing(tid: str):
        return {}

    api = APIRouter()  # nested routers, as the gateway's /api/v1 is built
    api.include_router(reads)
    api.include_router(writes)
    app.include_router(api)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        r = await c.put("/things")
        assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
        assert r.headers["Allow"] == "GET, HEAD, POST"
        r = await c.get("/things/1")
        assert r.status_code == 405 and r.headers["Allow"] == "DELETE"
