"""The address rate limits key on is the TCP peer unless that peer is a trusted proxy: the
gateway's `client_ip` and per-IP login limit behind uvicorn run with the `api` command's options."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request

from gateway.api.deps import client_ip
from gateway.config import Settings
from gateway.ratelimit import RateLimiter
from runtime.http import install_error_handlers
from runtime.service import uvicorn_options
from runtime.testing import serving

LOGIN_PER_IP_PER_MINUTE = 30


async def _login_statuses(settings: Settings, redis, forwarded_for: list[str]) -> list[int]:
    """One "login" per X-Forwarded-For value, each spending the per-IP budget of `client_ip`."""
    app = FastAPI()
    install_error_handlers(app)
    limiter = RateLimiter(redis)

    @app.post("/auth/login")
    async def login(request: Request):
        await limiter.hit("login-ip", client_ip(request), LOGIN_PER_IP_PER_MINUTE, 60)
        return {"ip": client_ip(request)}

    async with (serving(app, **{**uvicorn_options(settings), "loop": "asyncio"}) as url,
                httpx.AsyncClient(base_url=url) as client):
        return [(await client.post("/auth/login", headers={"X-Forwarded-For": xff})).status_code
                for xff in forwarded_for]


def _rotating(n: int) -> list[str]:
    return [f"203.0.113.{i % 250 + 1}" for i in range(n)]


async def test_31_logins_with_rotating_forwarded_for_from_loopback_hit_429(redis):
    statuses = await _login_statuses(Settings(), redis, _rotating(31))
    assert statuses == [200] * 30 + [429]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(redis):
    statuses = await _login_statuses(Settings(TRUSTED_PROXIES="127.0.0.1/32"), redis,
                                     _rotating(31))
    assert statuses == [200] * 31
