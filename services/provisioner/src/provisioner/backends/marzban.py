"""Marzban (v0.8.x) REST API driver.

Token from `POST /api/admin/token` (a form body, not JSON), cached and renewed once on a 401.
`POST /api/user` answers 200 (not 201); 409 "User already exists" is the success of an earlier
try, after which `PUT /api/user/{username}` sets the wanted expiry and status. Users are created
with `"inbounds": {}` (every inbound), because leaving it out creates a user with no links.
Disabling is `status: disabled` (the user is kept, so re-enabling keeps its subscription URL).
The access URL is the user's `subscription_url`; its token changes between reads, so it is
fetched live and never compared or stored.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from provisioner.backends.base import (
    REF_PREFIX,
    AccessDetails,
    AccountMissing,
    BackendError,
    VpnBackend,
    operation,
)

PAGE = 500


class MarzbanBackend(VpnBackend):
    name = "marzban"

    def __init__(self, base_url: str, username: str, password: str, *, proxies: list[str],
                 data_limit_bytes: int = 0, timeout: float = 10.0):
        self._base = base_url.rstrip("/")
        self._username = username
        self._password = password
        self.proxies = proxies or ["vless"]
        self.data_limit_bytes = data_limit_bytes
        self._client = httpx.AsyncClient(base_url=self._base,
                                         timeout=httpx.Timeout(timeout, connect=min(timeout, 5)))
        self._token: str | None = None
        self._token_lock = asyncio.Lock()

    async def _send(self, op: str, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(self.name, op, f"transport error: {type(exc).__name__}") from None

    async def _login(self, op: str, stale: str | None) -> str:
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another call already renewed it
            resp = await self._send(op, "POST", "/api/admin/token",
                                    data={"username": self._username, "password": self._password})
            if resp.status_code != 200:
                raise BackendError(self.name, op, f"login refused: HTTP {resp.status_code}",
                                   status=resp.status_code)
            self._token = resp.json()["access_token"]
            return self._token

    async def _call(self, op: str, method: str, path: str, **kwargs) -> httpx.Response:
        token = self._token or await self._login(op, None)
        resp = await self._send(op, method, path,
                                headers={"Authorization": f"Bearer {token}"}, **kwargs)
        if resp.status_code == 401:  # expired or revoked token: log in again, once
            token = await self._login(op, token)
            resp = await self._send(op, method, path,
                                    headers={"Authorization": f"Bearer {token}"}, **kwargs)
        return resp

    def _fail(self, op: str, resp: httpx.Response) -> BackendError:
        detail = ""
        try:
            body = resp.json()
            if isinstance(body, dict) and isinstance(body.get("detail"), str):
                detail = f" ({body['detail'][:120]})"
        except ValueError:
            pass
        return BackendError(self.name, op, f"HTTP {resp.status_code}{detail}",
                            status=resp.status_code)

    @staticmethod
    def _user_path(ref: str) -> str:
        return f"/api/user/{quote(ref, safe='')}"

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        expire = int(expires_at.timestamp())
        limit = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        body: dict[str, Any] = {
            "username": ref, "proxies": {p: {} for p in self.proxies}, "inbounds": {},
            "expire": expire, "data_limit": limit,
            "data_limit_reset_strategy": "no_reset", "status": "active",
            "note": f"max_devices={max_devices}",
        }
        resp = await self._call("ensure_active", "POST", "/api/user", json=body)
        if resp.status_code == 200:
            return
        if resp.status_code != 409:
            raise self._fail("ensure_active", resp)
        # 409 "User already exists": created by an earlier try or before a disable.
        resp = await self._call("ensure_active", "PUT", self._user_path(ref),
                                json={"expire": expire, "data_limit": limit,
                                      "status": "active"})
        if resp.status_code != 200:
            raise self._fail("ensure_active", resp)

    @operation("disable")
    async def disable(self, ref: str) -> None:
        resp = await self._call("disable", "PUT", self._user_path(ref),
                                json={"status": "disabled"})
        if resp.status_code not in (200, 404):
            raise self._fail("disable", resp)

    @operation("access")
    async def access(self, ref: str) -> AccessDetails:
        resp = await self._call("access", "GET", self._user_path(ref))
        if resp.status_code == 404:
            raise AccountMissing(self.name, "access", "no such user", status=404)
        if resp.status_code != 200:
            raise self._fail("access", resp)
        user = resp.json()
        url = user.get("subscription_url") or ""
        if url.startswith("/"):  # no XRAY_SUBSCRIPTION_URL_PREFIX on the server: relative URL
            url = self._base + url
        return AccessDetails(url, {"links": user.get("links") or [], "status": user.get("status"),
                                   "expire": user.get("expire"),
                                   "data_limit": user.get("data_limit"),
                                   "used_traffic": user.get("used_traffic")})

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        offset = 0
        while True:
            resp = await self._call("accounts", "GET", "/api/users",
                                    params={"offset": offset, "limit": PAGE})
            if resp.status_code != 200:
                raise self._fail("accounts", resp)
            users = resp.json().get("users") or []
            for u in users:
                name = str(u.get("username", ""))
                if name.startswith(REF_PREFIX):
                    out[name] = u.get("status") in ("active", "on_hold")
            offset += len(users)
            if not users or offset >= int(resp.json().get("total") or 0):
                return out

    async def close(self) -> None:
        await self._client.aclose()
