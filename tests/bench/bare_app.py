"""The ceiling of this stack on this machine: a bare FastAPI endpoint doing one asyncpg query."""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Request


def create(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await asyncpg.create_pool(dsn, min_size=5, max_size=20)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/bare")
    async def bare(request: Request):
        row = await request.app.state.pool.fetchrow(
            "SELECT id, email, role, created_at FROM identity.users ORDER BY id LIMIT 1")
        return {"user": dict(row) if row else None}

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dsn", required=True)
    ns = p.parse_args()
    uvicorn.run(create(ns.dsn), host="127.0.0.1", port=ns.port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")
