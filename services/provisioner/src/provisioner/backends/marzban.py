"""Marzban (v0.8.4) REST API driver.

Token from `POST /api/admin/token` (a form body, not JSON), cached and renewed once on a 401.
`POST /api/user` answers 200 (not 201); 409 "User already exists" is the success of an earlier
try (or a concurrent one), after which the user is read and `PUT /api/user/{username}` sets the
wanted expiry, traffic limit and its reset strategy, and status, and adds protocols of
`MARZBAN_PROXIES` the user lacks (its own protocols are sent back with their settings: a
protocol sent as `{}` would get new credentials, one left out would be removed). Users are
created with `"inbounds": {}` (every inbound), because leaving it out creates a user with no
links.

Marzban keeps a `limited` (traffic used up) user limited through that PUT, so a re-grant of a
user that was limited, or that the PUT leaves limited, resets its usage
(`POST /api/user/{username}/reset`) afterwards. The reset endpoint re-activates a *disabled*
user, so it is only ever called right after the PUT made the user active or limited, never on a
suspended one. Disabling is `status: disabled` (the user is kept, so re-enabling keeps its
subscription). The access URL is the user's `subscription_url`, whose token is re-signed every
second: it is fetched live and never compared or stored.

Marzban enforces a traffic limit (`data_limit`, renewed by `data_limit_reset_strategy`: its
`month` is 30 days from the last reset, checked hourly) but cannot limit devices; `max_devices`
is only noted on the user.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from provisioner.backends.base import (
    AccessDetails,
    AccountMissing,
    BackendError,
    Usage,
    VpnBackend,
    operation,
    paged_accounts,
)

PAGE = 500
STRATEGIES = {"NONE": "no_reset", "MONTH": "month"}
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
# Marzban does not tell when it last reset a user's usage; the driver notes its own resets.
RESET_NOTE = re.compile(r"usage_reset_at=(\d+)")
# Statuses of a user that is ours to keep enabled: `limited` is the panel enforcing the
# allowance (not drift to repair), `on_hold` waits for its first connection.
ENABLED = ("active", "on_hold", "limited")


class MarzbanBackend(VpnBackend):
    name = "marzban"
    enforces_devices = False
    enforces_traffic = True

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

    async def _user(self, op: str, ref: str) -> dict[str, Any]:
        resp = await self._call(op, "GET", self._user_path(ref))
        if resp.status_code == 404:
            raise AccountMissing(self.name, op, "no such user", status=404)
        if resp.status_code != 200:
            raise self._fail(op, resp)
        return resp.json()

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        if traffic_reset not in STRATEGIES:
            raise BackendError(self.name, "ensure_active", f"unknown traffic_reset "
                               f"{traffic_reset[:20]!r}")
        expire = int(expires_at.timestamp())
        limit = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        limit = limit or 0  # 0 = unlimited
        strategy = STRATEGIES[traffic_reset] if limit else "no_reset"
        note = f"max_devices={max_devices}"
        body: dict[str, Any] = {
            "username": ref, "proxies": {p: {} for p in self.proxies}, "inbounds": {},
            "expire": expire, "data_limit": limit, "data_limit_reset_strategy": strategy,
            "status": "active", "note": note,
        }
        resp = await self._call("ensure_active", "POST", "/api/user", json=body)
        if resp.status_code == 200:
            return
        if resp.status_code != 409:
            raise self._fail("ensure_active", resp)
        # 409 "User already exists": an earlier or concurrent try, or a user being re-granted.
        user = await self._user("ensure_active", ref)
        used = int(user.get("used_traffic") or 0)
        reset = user.get("status") == "limited" or bool(limit and used >= limit)
        anchor = _reset_anchor(user)
        if reset:
            anchor = int(time.time())
        change: dict[str, Any] = {
            "expire": expire, "data_limit": limit, "data_limit_reset_strategy": strategy,
            "status": "active",
            "note": note + (f" usage_reset_at={anchor}" if anchor is not None else ""),
        }
        have = user.get("proxies") or {}
        if any(p not in have for p in self.proxies):
            change["proxies"] = {**have, **{p: {} for p in self.proxies if p not in have}}
        resp = await self._call("ensure_active", "PUT", self._user_path(ref), json=change)
        if resp.status_code == 404:
            raise AccountMissing(self.name, "ensure_active", "user deleted meanwhile",
                                 status=404)
        if resp.status_code != 200:
            raise self._fail("ensure_active", resp)
        status = resp.json().get("status")
        # Only now, with the user active or limited, is a reset safe: on a disabled user it
        # would re-activate it.
        if status == "limited" or (reset and status == "active"):
            resp = await self._call("ensure_active", "POST", self._user_path(ref) + "/reset")
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
        user = await self._user("access", ref)
        url = user.get("subscription_url") or ""
        if url.startswith("/"):  # no XRAY_SUBSCRIPTION_URL_PREFIX on the server: relative URL
            url = self._base + url
        return AccessDetails(url, {"links": user.get("links") or [], "status": user.get("status"),
                                   "expire": user.get("expire"),
                                   "data_limit": user.get("data_limit"),
                                   "used_traffic": user.get("used_traffic")})

    @operation("usage")
    async def usage(self, ref: str) -> Usage:
        user = await self._user("usage", ref)
        used = int(user.get("used_traffic") or 0)
        limit = int(user.get("data_limit") or 0) or None
        return Usage(used_bytes=used, limit_bytes=limit, resets_at=_next_reset(user, limit),
                     devices_limit=None, devices_used=None,
                     limited=user.get("status") == "limited"
                     or bool(limit is not None and used >= limit))

    async def _users_page(self, offset: int, limit: int) -> httpx.Response:
        """A page of the panel's users (a 200, else BackendError)."""
        resp = await self._call("accounts", "GET", "/api/users",
                                params={"offset": offset, "limit": limit})
        if resp.status_code != 200:
            raise self._fail("accounts", resp)
        return resp

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        async def page(offset: int, size: int) -> dict[str, Any]:
            return (await self._users_page(offset, size)).json()

        return await paged_accounts(page, PAGE, ENABLED)

    async def probe(self) -> None:
        await self._users_page(0, 1)

    async def close(self) -> None:
        await self._client.aclose()


def _reset_anchor(user: dict[str, Any]) -> int | None:
    match = RESET_NOTE.search(user.get("note") or "")
    return int(match.group(1)) if match else None


def _next_reset(user: dict[str, Any], limit: int | None) -> datetime | None:
    """When Marzban's hourly job next renews the allowance: a whole number of periods after the
    last reset (the driver's own, noted on the user, or the user's creation)."""
    days = PERIOD_DAYS.get(str(user.get("data_limit_reset_strategy") or ""))
    if not days or limit is None:
        return None
    anchor = _reset_anchor(user)
    if anchor is not None:
        start = datetime.fromtimestamp(anchor, UTC)
    else:
        try:
            start = datetime.fromisoformat(str(user.get("created_at")))
        except ValueError:
            return None
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    period = timedelta(days=days)
    periods = max(1, math.floor((datetime.now(UTC) - start) / period) + 1)
    return start + periods * period
