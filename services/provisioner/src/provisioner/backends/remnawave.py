"""Remnawave panel driver (the 3.x API, written against 3.3.2: numeric user `id`, no `uuid`).

Every call carries the API token as a bearer token and `X-Forwarded-For` / `X-Forwarded-Proto:
https`: outside development the panel cuts the connection of a request without them, so a
direct in-network call must claim to come through an HTTPS proxy. Success bodies are
`{"response": ...}`; errors carry an `errorCode` (A0xx).

The account is a user whose `username` is our ref. `POST /api/users` creates it; 400 `A019`
(username taken) is the success of an earlier try or of a concurrent one, after which the user
is found by username and `PATCH /api/users` sets the wanted expiry, limits, squads and status.
A user whose traffic is used up (LIMITED, or over the new limit) is reset first
(`actions/reset-traffic`, which also turns LIMITED into ACTIVE), so a re-grant makes it usable.
`hwidDeviceLimit` is the plan's device limit and `trafficLimitBytes` with
`trafficLimitStrategy` (NO_RESET or MONTH) its traffic allowance: the panel enforces both.
Access is granted through the internal squads of `REMNAWAVE_SQUADS`, given on every grant (an
unknown squad makes the panel answer 500 `A018`: a configuration error). Disabling is
`actions/disable` (the user is kept, so re-enabling keeps its subscription URL). The user list
is paged newest first, so a user created while `accounts()` pages may be seen twice (harmless)
or missed until the next reconciliation. The access URL
is the user's `subscriptionUrl`, read live. `parse_webhook` checks and reads the panel's
signed webhook (`user.limited`, `user.expired`); no endpoint receives it yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
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
    paged_accounts,
)

PAGE = 1000  # the panel's largest page
# What the panel's proxy check wants to see on a call that did not come through a proxy.
FORWARDED = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
STRATEGY = {"NONE": "NO_RESET", "MONTH": "MONTH"}
# Statuses of a user that is ours to keep enabled: LIMITED is the panel enforcing the traffic
# allowance, not drift (reconciliation re-granting it would reset the allowance).
ENABLED = ("ACTIVE", "LIMITED")
CONFIG_ERRORS = {"A018": "the panel could not create the user (check REMNAWAVE_SQUADS)",
                 "A039": "the panel could not update the user (check REMNAWAVE_SQUADS)"}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def next_month_start(now: datetime) -> datetime:
    """When a MONTH allowance renews: the panel resets it at the start of each calendar month."""
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


class WebhookRejected(ValueError):
    """Not a webhook from our panel: a bad signature or body."""


@dataclass(frozen=True)
class PanelEvent:
    """A user event the panel posted (`user.limited`, `user.expired`, ...) for one of ours."""

    event: str
    ref: str
    status: str | None
    timestamp: str | None


def parse_webhook(raw: bytes, signature: str | None, secret: str) -> PanelEvent | None:
    """The panel's webhook checked and read; None when it is not a user event of ours.

    The panel signs the exact body it sends (`X-Remnawave-Signature: hex(HMAC-SHA256(secret,
    body))`), so the check runs over the raw bytes, never a re-serialized body."""
    if not secret:
        raise WebhookRejected("no REMNAWAVE_WEBHOOK_SECRET configured")
    wanted = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(wanted, signature.strip().lower()):
        raise WebhookRejected("bad signature")
    try:
        body = json.loads(raw)
    except ValueError:
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(body, dict) or body.get("scope") != "user":
        return None
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    ref = str(data.get("username") or "")
    if not ref.startswith(REF_PREFIX):
        return None
    return PanelEvent(str(body.get("event") or ""), ref, data.get("status"),
                      body.get("timestamp"))


class RemnawaveBackend(VpnBackend):
    name = "remnawave"
    enforces_devices = True
    enforces_traffic = True

    def __init__(self, base_url: str, api_token: str, *, squads: list[str],
                 data_limit_bytes: int = 0, timeout: float = 10.0):
        self._base = base_url.rstrip("/")
        self.squads = list(squads)
        self.data_limit_bytes = data_limit_bytes
        self._client = httpx.AsyncClient(
            base_url=self._base, timeout=httpx.Timeout(timeout, connect=min(timeout, 5)),
            headers={"Authorization": f"Bearer {api_token}", **FORWARDED})

    async def _call(self, op: str, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # a dropped connection lands here too (proxy check)
            raise BackendError(self.name, op, f"transport error: {type(exc).__name__}") from None

    @staticmethod
    def _body(resp: httpx.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _error_code(self, resp: httpx.Response) -> str | None:
        return self._body(resp).get("errorCode")

    def _fail(self, op: str, resp: httpx.Response) -> BackendError:
        body = self._body(resp)
        code = body.get("errorCode")
        detail = f" {code}" if code else ""
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            # a validation failure: name the fields (never their values)
            fields = sorted({".".join(map(str, e.get("path") or [])) for e in errors
                             if isinstance(e, dict)})
            detail += f": invalid {', '.join(fields)[:120]}"
        elif code in CONFIG_ERRORS:
            detail += f": {CONFIG_ERRORS[code]}"
        elif resp.status_code == 401:
            detail += ": the API token was refused (check REMNAWAVE_API_TOKEN)"
        return BackendError(self.name, op, f"HTTP {resp.status_code}{detail}",
                            status=resp.status_code)

    @staticmethod
    def _response(resp: httpx.Response) -> Any:
        return resp.json()["response"]

    async def _user(self, op: str, ref: str) -> dict[str, Any] | None:
        resp = await self._call(op, "GET", f"/api/users/by-username/{quote(ref, safe='')}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(op, resp)
        return self._response(resp)

    async def _action(self, op: str, user_id: int, action: str, *,
                      ok_codes: tuple[str, ...] = ()) -> None:
        resp = await self._call(op, "POST", f"/api/users/{user_id}/actions/{action}")
        if resp.status_code != 200 and self._error_code(resp) not in ok_codes:
            raise self._fail(op, resp)

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        limit = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        wanted: dict[str, Any] = {
            "expireAt": _iso(expires_at), "trafficLimitBytes": limit,
            "trafficLimitStrategy": STRATEGY.get(traffic_reset, "NO_RESET") if limit
            else "NO_RESET",
            "hwidDeviceLimit": max_devices, "activeInternalSquads": self.squads,
        }
        resp = await self._call("ensure_active", "POST", "/api/users",
                                json={"username": ref, "status": "ACTIVE", **wanted})
        if resp.status_code == 201:
            return
        if self._error_code(resp) != "A019":
            raise self._fail("ensure_active", resp)
        # A019: the username is taken by an earlier try (its answer lost) or a concurrent one.
        user = await self._user("ensure_active", ref)
        if user is None:
            raise BackendError(self.name, "ensure_active", "username taken but no such user",
                               status=404)
        used = int((user.get("userTraffic") or {}).get("usedTrafficBytes") or 0)
        if user.get("status") == "LIMITED" or (limit and used >= limit):
            await self._action("ensure_active", user["id"], "reset-traffic")
        resp = await self._call("ensure_active", "PATCH", "/api/users",
                                json={"id": user["id"], "status": "ACTIVE", **wanted})
        if resp.status_code != 200:
            raise self._fail("ensure_active", resp)

    @operation("disable")
    async def disable(self, ref: str) -> None:
        user = await self._user("disable", ref)
        if user is None or user.get("status") == "DISABLED":
            return
        # A029: already disabled by a concurrent call; A025: deleted meanwhile.
        await self._action("disable", user["id"], "disable", ok_codes=("A029", "A025"))

    @operation("access")
    async def access(self, ref: str) -> AccessDetails:
        user = await self._user("access", ref)
        if user is None:
            raise AccountMissing(self.name, "access", "no such user", status=404)
        return AccessDetails(user["subscriptionUrl"], {
            "status": user.get("status"), "expire_at": user.get("expireAt"),
            "short_uuid": user.get("shortUuid"),
            "traffic_limit_bytes": user.get("trafficLimitBytes"),
            "used_traffic_bytes": (user.get("userTraffic") or {}).get("usedTrafficBytes"),
            "hwid_device_limit": user.get("hwidDeviceLimit"),
        })

    @operation("usage")
    async def usage(self, ref: str) -> Usage:
        user = await self._user("usage", ref)
        if user is None:
            raise AccountMissing(self.name, "usage", "no such user", status=404)
        resp = await self._call("usage", "GET", f"/api/hwid/devices/{user['id']}")
        if resp.status_code != 200:
            raise self._fail("usage", resp)
        limit = int(user.get("trafficLimitBytes") or 0) or None
        resets = (next_month_start(datetime.now(UTC))
                  if limit and user.get("trafficLimitStrategy") == "MONTH" else None)
        traffic = user.get("userTraffic") or {}
        return Usage(used_bytes=traffic.get("usedTrafficBytes"), limit_bytes=limit,
                     resets_at=resets, devices_limit=user.get("hwidDeviceLimit"),
                     devices_used=self._response(resp).get("total"),
                     limited=user.get("status") == "LIMITED")

    @operation("revoke")
    async def revoke(self, ref: str) -> AccessDetails:
        """A new subscription URL (and new passwords): the old link stops working."""
        user = await self._user("revoke", ref)
        if user is None:
            raise AccountMissing(self.name, "revoke", "no such user", status=404)
        resp = await self._call("revoke", "POST", f"/api/users/{user['id']}/actions/revoke",
                                json={})
        if resp.status_code != 200:
            raise self._fail("revoke", resp)
        return AccessDetails(self._response(resp)["subscriptionUrl"])

    async def _users_page(self, start: int, size: int) -> httpx.Response:
        """A page of the panel's users (a 200, else BackendError)."""
        resp = await self._call("accounts", "GET", "/api/users",
                                params={"start": start, "size": size})
        if resp.status_code != 200:
            raise self._fail("accounts", resp)
        return resp

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        async def page(start: int, size: int) -> dict[str, Any]:
            return self._response(await self._users_page(start, size))

        return await paged_accounts(page, PAGE, ENABLED)

    async def probe(self) -> None:
        await self._users_page(0, 1)

    async def close(self) -> None:
        await self._client.aclose()
