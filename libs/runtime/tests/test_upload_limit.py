"""Upload routes in `runtime.http`: their own body limit, and a multipart body there is not
scanned for NUL bytes (files hold them); every other route keeps the usual limit and guard."""

from __future__ import annotations

import httpx
from fastapi import Request

from runtime.http import create_app


def _app():
    app = create_app("t", readiness={}, max_body=1024,
                     uploads=[(r"/things/[^/]+/files", 10_000)])

    @app.post("/things/{thing_id}/files")
    async def files(thing_id: str, request: Request):
        return {"size": len(await request.body())}

    @app.post("/things/{thing_id}/notes")
    async def notes(thing_id: str, request: Request):
        return {"size": len(await request.body())}

    return app


async def _post(path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post(path, **kwargs)


async def test_an_upload_route_takes_a_larger_multipart_body_with_nul_bytes():
    r = await _post("/things/1/files", files={"file": ("a.png", b"\x00" * 5000, "image/png")})
    assert r.status_code == 200 and r.json()["size"] > 5000


async def test_the_upload_limit_still_holds_and_other_routes_keep_theirs():
    r = await _post("/things/1/files", files={"file": ("a.png", b"x" * 11_000, "image/png")})
    assert r.status_code == 413 and r.json()["details"] == {"max_bytes": 10_000}
    r = await _post("/things/1/notes", files={"file": ("a.png", b"x" * 2000, "image/png")})
    assert r.status_code == 413 and r.json()["details"] == {"max_bytes": 1024}
    # a path that only starts like an upload route is not one
    r = await _post("/things/1/files/x", content=b"x" * 2000)
    assert r.status_code == 413


async def test_a_non_multipart_body_on_an_upload_route_is_still_guarded():
    r = await _post("/things/1/files", content=b'{"a": "\x00"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await _post("/things/1/notes", files={"file": ("a.png", b"\x00", "image/png")})
    assert r.status_code == 400
