"""3x-ui panel driver: the `/panel/api/clients/*` API of v3.x (written against MHSanaei/3x-ui
v3.6.0, commit 02002dc1; v3.1.0 moved clients there and removed `/panel/api/inbounds/addClient`).

Transport: every route lives under the panel's web base path (`XUI_BASE_URL` includes it).
Login is cookie based: `GET {base}csrf-token` opens a session (cookie `3x-ui`) and gives the
CSRF token that `POST {base}login` and every later POST must carry in `X-CSRF-Token`. With
`X-Requested-With: XMLHttpRequest` a lost or expired session answers 401 (else a bare 404, the
same as a wrong base path), and then the driver logs in again, once. Errors come as HTTP 200
with `{"success": false, "msg": ...}`; the panel's message (our refs at most) goes into
`BackendError`, never the URL or credentials.

One client per subscription, attached to every inbound of `XUI_INBOUND_IDS`: `email` is our ref
(unique across the panel), `limitIp` the device limit, `totalGB` the traffic allowance in
**bytes** despite its name, `expiryTime` unix **milliseconds**, `trafficReset` `monthly` for a
monthly allowance. The panel disables a client whose allowance is used up or whose time ran
out; a re-grant of such a client resets its traffic (which also re-enables it). Adding an email
that exists is an error ("email already in use", or "Duplicate email" when two adds race), so
ensure_active then reads the client and updates it; `update` replaces the whole client, so the
fields we do not own are sent back as read. The access URL is `XUI_SUB_BASE_URL` + the client's
`subId`, read live. A disabled client keeps no traffic reset cycle: the panel's monthly reset
re-enables a client that its allowance switched off, a suspended one too.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from provisioner.backends.base import (
    REF_PREFIX,
    AccessDetails,
    AccountMissing,
    BackendError,
    Usage,
    VpnBackend,
    operation,
)

COOKIE = "3x-ui"
# Fields of a client record sent back unchanged on update (update replaces the whole client).
KEPT_FIELDS = ("subId", "flow", "security", "tgId", "group", "comment", "reset", "resetDay",
               "resetMax", "limitHwid")


def _next_month_start(now: datetime) -> datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


class XuiBackend(VpnBackend):
    name = "xui"
    enforces_devices = True
    enforces_traffic = True

    def __init__(self, base_url: str, username: str, password: str, *, inbound_ids: list[int],
                 sub_base_url: str, data_limit_bytes: int = 0, timeout: float = 10.0):
        self._base = base_url.rstrip("/") + "/"
        self._username = username
        self._password = password
        self.inbound_ids = list(inbound_ids)
        self.sub_base_url = sub_base_url
        self.data_limit_bytes = data_limit_bytes
        self._client = httpx.AsyncClient(base_url=self._base,
                                         timeout=httpx.Timeout(timeout, connect=min(timeout, 5)),
                                         headers={"X-Requested-With": "XMLHttpRequest"})
        self._session: tuple[str, str] | None = None  # (cookie, csrf token)
        self._login_lock = asyncio.Lock()

    # --- transport -----------------------------------------------------------------------

    async def _send(self, op: str, method: str, path: str, *, cookie: str | None = None,
                    csrf: str | None = None, **kwargs) -> httpx.Response:
        headers = {}
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        if csrf:
            headers["X-CSRF-Token"] = csrf
        try:
            resp = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(self.name, op, f"transport error: {type(exc).__name__}") from None
        finally:
            self._client.cookies.clear()  # the session cookie is kept by hand, below
        return resp

    def _envelope(self, op: str, resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code != 200:
            hint = " (is the web base path in XUI_BASE_URL right?)" if resp.status_code == 404 \
                else ""
            raise BackendError(self.name, op, f"HTTP {resp.status_code}{hint}",
                               status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            raise BackendError(self.name, op, "not a JSON answer", status=200) from None
        if not isinstance(body, dict) or "success" not in body:
            raise BackendError(self.name, op, "unexpected answer", status=200)
        return body

    async def _login(self, op: str, stale: tuple[str, str] | None) -> tuple[str, str]:
        async with self._login_lock:
            if self._session is not None and self._session != stale:
                return self._session  # another call already logged in again
            resp = await self._send(op, "GET", "csrf-token")
            body = self._envelope(op, resp)
            cookie, token = resp.cookies.get(COOKIE), body.get("obj")
            if not body.get("success") or not cookie or not isinstance(token, str):
                raise BackendError(self.name, op, "login refused: no CSRF token", status=200)
            resp = await self._send(op, "POST", "login", cookie=cookie, csrf=token,
                                    data={"username": self._username,
                                          "password": self._password})
            body = self._envelope(op, resp)
            if not body.get("success"):
                raise BackendError(self.name, op, "login refused: wrong username or password",
                                   status=200)
            self._session = (resp.cookies.get(COOKIE) or cookie, token)
            return self._session

    async def _call(self, op: str, method: str, path: str, **kwargs) -> dict[str, Any]:
        """The panel's `{success, msg, obj}` answer (success or not) to an authenticated call."""
        session = self._session or await self._login(op, None)
        for attempt in (1, 2):
            resp = await self._send(op, method, f"panel/api/{path}", cookie=session[0],
                                    csrf=session[1], **kwargs)
            if resp.status_code in (401, 403) and attempt == 1:  # session expired: log in again
                session = await self._login(op, session)
                continue
            if (fresh := resp.cookies.get(COOKIE)) and fresh != session[0]:
                self._session = session = (fresh, session[1])
            return self._envelope(op, resp)
        raise AssertionError("unreachable")

    def _fail(self, op: str, body: dict[str, Any]) -> BackendError:
        msg = " ".join(str(body.get("msg") or "failed").split())[:200]
        return BackendError(self.name, op, f"panel error: {msg}", status=200)

    @staticmethod
    def _missing(body: dict[str, Any]) -> bool:
        return not body.get("success") and "not found" in str(body.get("msg") or "").lower()

    async def _ok(self, op: str, method: str, path: str, **kwargs) -> Any:
        body = await self._call(op, method, path, **kwargs)
        if not body.get("success"):
            raise self._fail(op, body)
        return body.get("obj")

    @staticmethod
    def _email(ref: str) -> str:
        return quote(ref, safe="")

    async def _get(self, op: str, ref: str) -> dict[str, Any] | None:
        """`{client, inboundIds, usedTraffic, ...}` of the client, None when there is none."""
        body = await self._call(op, "GET", f"clients/get/{self._email(ref)}")
        if self._missing(body):
            return None
        if not body.get("success") or not isinstance(body.get("obj"), dict):
            raise self._fail(op, body)
        return body["obj"]

    # --- operations ----------------------------------------------------------------------

    def _wanted(self, ref: str, expires_at: datetime, max_devices: int,
                data_limit_bytes: int | None, traffic_reset: str) -> dict[str, Any]:
        limit = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        return {"email": ref, "enable": True, "limitIp": max(0, int(max_devices)),
                "totalGB": int(limit or 0), "expiryTime": int(expires_at.timestamp() * 1000),
                "trafficReset": "monthly" if traffic_reset == "MONTH" else "never",
                "trafficResetDay": 1}

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        wanted = self._wanted(ref, expires_at, max_devices, data_limit_bytes, traffic_reset)
        body = await self._call("ensure_active", "POST", "clients/add",
                                json={"client": wanted, "inboundIds": self.inbound_ids})
        if body.get("success"):
            return
        # The email exists (an earlier try whose answer was lost, a racing add, a re-grant) or
        # the add failed for good: only the client's presence tells them apart.
        current = await self._get("ensure_active", ref)
        if current is None:
            raise self._fail("ensure_active", body)
        client = current.get("client") or {}
        used = int(current.get("usedTraffic") or 0)
        total = int(client.get("totalGB") or 0)
        # Used up (switched off already, or soon by the panel's job) under the old or the new
        # allowance: the re-grant starts the count again.
        used_up = (total > 0 and used >= total) or (0 < wanted["totalGB"] <= used)
        update = {k: client[k] for k in KEPT_FIELDS if k in client} | wanted
        await self._ok("ensure_active", "POST", f"clients/update/{self._email(ref)}", json=update)
        missing = [i for i in self.inbound_ids if i not in (current.get("inboundIds") or [])]
        if missing:  # a crash between the inbounds of an add, or a newly configured inbound
            await self._ok("ensure_active", "POST", f"clients/{self._email(ref)}/attach",
                           json={"inboundIds": missing})
        if used_up:
            await self._ok("ensure_active", "POST",
                           f"clients/resetTraffic/{self._email(ref)}")

    @operation("disable")
    async def disable(self, ref: str) -> None:
        current = await self._get("disable", ref)
        if current is None:
            return
        client = current.get("client") or {}
        # The panel's own reset cycle re-enables a client whose allowance is used up, so a
        # switched-off client keeps no cycle (a re-grant sets it again).
        if not client.get("enable", True) and client.get("trafficReset") in (None, "", "never"):
            return
        update = {k: client[k] for k in (*KEPT_FIELDS, "limitIp", "totalGB", "expiryTime",
                                         "trafficResetDay") if k in client}
        body = await self._call("disable", "POST", f"clients/update/{self._email(ref)}",
                                json=update | {"email": ref, "enable": False,
                                               "trafficReset": "never"})
        if not body.get("success") and not self._missing(body):
            raise self._fail("disable", body)

    @operation("access")
    async def access(self, ref: str) -> AccessDetails:
        current = await self._get("access", ref)
        if current is None:
            raise AccountMissing(self.name, "access", "no such client", status=200)
        client = current.get("client") or {}
        sub_id = client.get("subId") or ""
        if not sub_id:
            raise BackendError(self.name, "access", "the client has no subId", status=200)
        return AccessDetails(f"{self.sub_base_url}{quote(sub_id, safe='')}",
                             {"sub_id": sub_id, "enable": client.get("enable"),
                              "expiry_time_ms": client.get("expiryTime"),
                              "total_bytes": client.get("totalGB"),
                              "used_bytes": current.get("usedTraffic"),
                              "limit_ip": client.get("limitIp"),
                              "inbound_ids": current.get("inboundIds") or []})

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        # The panel answers every inbound at once (no paging); clients are in each inbound's
        # `settings`, a JSON document in a string, and their counters in `clientStats`.
        # A client's counters sit under one of its inbounds only.
        inbounds = await self._ok("accounts", "GET", "inbounds/list") or []
        stats = {s.get("email"): s for inbound in inbounds
                 for s in inbound.get("clientStats") or []}
        seen: dict[str, list[bool]] = {}
        for inbound in inbounds:
            if inbound.get("id") not in self.inbound_ids:
                continue
            settings = inbound.get("settings") or "{}"
            if isinstance(settings, str):
                settings = json.loads(settings)
            for client in settings.get("clients") or []:
                email = str(client.get("email") or "")
                if not email.startswith(REF_PREFIX):
                    continue
                st = stats.get(email) or {}
                total = int(st.get("total") or 0)
                used = int(st.get("up") or 0) + int(st.get("down") or 0)
                # Switched off by its used-up allowance is the plan enforced, not drift: a
                # re-grant from reconciliation would reset the traffic.
                depleted = total > 0 and used >= total
                seen.setdefault(email, []).append(bool(client.get("enable")) or depleted)
        wanted = len(self.inbound_ids)
        return {ref: len(flags) >= wanted and all(flags) for ref, flags in seen.items()}

    @operation("usage")
    async def usage(self, ref: str) -> Usage:
        current = await self._get("usage", ref)
        if current is None:
            raise AccountMissing(self.name, "usage", "no such client", status=200)
        client = current.get("client") or {}
        traffic = await self._ok("usage", "GET", f"clients/traffic/{self._email(ref)}") or {}
        used = int(traffic.get("up") or 0) + int(traffic.get("down") or 0)
        total = int(traffic.get("total") or client.get("totalGB") or 0)
        resets_at = (_next_month_start(datetime.now(UTC))
                     if total and client.get("trafficReset") == "monthly" else None)
        # The IPs the panel's IP-limit job saw lately (what limitIp counts); none recorded may
        # as well mean that job has no access log to read, so it tells nothing.
        ips = await self._ok("usage", "POST", f"clients/ips/{self._email(ref)}")
        seen = len({str(i.get("ip")) for i in ips if isinstance(i, dict)}) \
            if isinstance(ips, list) else 0
        return Usage(used_bytes=used, limit_bytes=total or None, resets_at=resets_at,
                     devices_limit=int(client.get("limitIp") or 0) or None,
                     devices_used=seen or None, limited=total > 0 and used >= total)

    async def close(self) -> None:
        await self._client.aclose()
