"""Remnawave panel (3.x API, as 3.3.2) fake: a real HTTP server for driver tests and drills.

Owns the fake side of the Remnawave integration and copies the real panel's behaviour:

* every route under ``/api``; ``Authorization: Bearer <API token>`` (missing or wrong: 401
  ``{"statusCode": 401, "message": "Unauthorized"}``); an admin login JWT (``--admin-token``)
  is 403 ``Forbidden`` unless ``X-Remnawave-Client-Type: browser`` comes with it;
* outside development mode (the default; ``--development`` switches it off) a request without
  ``X-Forwarded-For`` or with ``X-Forwarded-Proto`` other than ``https`` gets no HTTP answer at
  all: the connection is dropped, as the panel's proxy check destroys the socket;
* success bodies are ``{"response": ...}``; business errors ``{"timestamp", "path", "message",
  "errorCode"}`` with the code's HTTP status; validation errors 400 ``{"statusCode": 400,
  "message": "Validation failed", "errors": [...]}``;
* users have numeric ``id`` (no ``uuid``): ``POST /api/users`` → 201 (a taken username is 400
  ``A019``, an unknown internal squad 500 ``A018``), ``PATCH /api/users`` by ``id`` or
  ``username`` (``expireAt`` must be in the future; ``status`` only ACTIVE or DISABLED; a
  LIMITED user given a higher or zero ``trafficLimitBytes`` and an EXPIRED user given a new
  future ``expireAt`` become ACTIVE; DISABLED only takes from ACTIVE), ``GET /api/users/{id}``,
  ``/by-username/{u}``, ``/by-short-uuid/{s}`` (unknown: 404 ``A063``), ``DELETE`` → 204 with
  no body, ``POST /api/users/{id}/actions/{enable,disable,reset-traffic,revoke}`` (unknown
  user 404 ``A025``; enable twice 400 ``A030``, disable twice 400 ``A029``; a reset turns a
  LIMITED user ACTIVE; a revoke gives a new ``shortUuid`` and so a new subscription URL);
  ``GET /api/users?start=&size=`` pages newest first, ``size`` 1–1000;
* ``activeInternalSquads`` come back as ``[{uuid, name}]``; ``subscriptionUrl`` is
  ``https://<sub public domain>/<shortUuid>`` whatever scheme the panel is reached by, and
  ``GET /api/sub/{shortUuid}`` (public) answers the links with ``subscription-userinfo``;
* HWID devices: ``GET /api/hwid/devices/{userId}`` → ``{"total", "devices"}``, ``POST
  /api/hwid/devices`` (add), ``/devices/delete``, ``/devices/delete-all``;
* a user whose ``expireAt`` has passed is EXPIRED; one whose traffic reaches its limit LIMITED;
  with a webhook URL set, each sends ``user.expired`` / ``user.limited`` as the panel does:
  ``{"scope": "user", "event", "timestamp", "data": <user>, "meta": null}`` as compact JSON,
  ``X-Remnawave-Signature: hex(HMAC-SHA256(secret, raw body))``, ``X-Remnawave-Timestamp``,
  3 tries 5 s apart.

A duplicate create races as the real one does: with ``create_delay`` set, creates of the same
username are in flight together and every one but the first answers 400 ``A019``.

Control API under ``/_fake`` (no auth, no proxy check), users named by id or username:
``GET /_fake/users``; ``POST /_fake/users/{key}/traffic`` ``{"used_bytes"}`` (reaching the
limit makes the user LIMITED, as the panel's traffic check does); ``POST
/_fake/users/{key}/limited`` (traffic used up now); ``POST /_fake/users/{key}/expired``;
``POST /_fake/users/{key}/devices`` ``{"hwid", "platform"?}`` (a device connecting: refused
with 409 once the user's ``hwidDeviceLimit`` is reached); ``POST /_fake/faults`` ``{"op",
"status", "error_code", "delay_ms", "times", "after", "drop"}`` (ops: create, update, get,
list, delete, enable, disable, reset-traffic, revoke, hwid, or ``*``); ``DELETE
/_fake/faults``; ``POST /_fake/settings`` ``{"create_delay_ms", "development", "webhook_url",
"webhook_secret", "webhook_retry_delay_ms"}``; ``GET /_fake/webhooks`` (deliveries); ``GET
/_fake/calls``; ``POST /_fake/reset``.

Run: ``python -m fakes.remnawave --host 127.0.0.1 --port 23300 --token T`` (add
``--webhook-url URL --webhook-secret S`` for webhooks, ``--development`` to skip the proxy check).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["RemnawaveFake", "create_app", "main"]

USERNAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TAG_RE = re.compile(r"^[A-Z0-9_]+$")
STRATEGIES = ("NO_RESET", "DAY", "WEEK", "MONTH", "MONTH_ROLLING")
STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
DEFAULT_SQUADS = {"0b6c7e9a-4a57-4a8e-9a53-6f7b7e2d9c01": "Default-Squad"}

ERRORS = {
    "A018": (500, "Failed to create user"),
    "A019": (400, "User username already exists"),
    "A025": (404, "User not found"),
    "A029": (400, "User already disabled"),
    "A030": (400, "User already enabled"),
    "A039": (500, "Update user error"),
    "A063": (404, "User with specified params not found"),
}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, status: int | None = None):
        self.code = code
        self.status = status or ERRORS.get(code, (500, ""))[0]
        self.message = message or ERRORS.get(code, (0, "Internal server error"))[1]


class Invalid(Exception):
    def __init__(self, issues: list[dict[str, Any]]):
        self.issues = issues


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


@dataclass
class User:
    id: int
    username: str
    short_uuid: str
    status: str
    expire_at: datetime
    traffic_limit_bytes: int = 0
    traffic_limit_strategy: str = "NO_RESET"
    hwid_device_limit: int | None = None
    squads: list[str] = field(default_factory=list)
    description: str | None = None
    tag: str | None = None
    telegram_id: int | None = None
    email: str | None = None
    used_bytes: int = 0
    lifetime_used_bytes: int = 0
    last_triggered_threshold: int = 0
    sub_revoked_at: datetime | None = None
    last_traffic_reset_at: datetime | None = None
    vless_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    trojan_password: str = field(default_factory=lambda: secrets.token_urlsafe(18)[:24])
    ss_password: str = field(default_factory=lambda: secrets.token_urlsafe(18)[:24])
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Fault:
    op: str
    status: int | None = 500
    error_code: str | None = None
    delay: float = 0.0
    times: int | None = None
    after: bool = False  # the work is done first, then the answer fails (or is lost)
    drop: bool = False  # no answer at all: the connection is cut


@dataclass
class RemnawaveFake:
    token: str = "remnawave-api-token"
    admin_token: str | None = None
    development: bool = False
    sub_public_domain: str = "panel.example.test/api/sub"
    squads: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SQUADS))
    create_delay: float = 0.0
    users: dict[int, User] = field(default_factory=dict)
    devices: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1
    creating: dict[str, asyncio.Event] = field(default_factory=dict)
    # Webhooks (WEBHOOK_URL, WEBHOOK_SECRET_HEADER on the panel): none sent without a URL.
    webhook_url: str | None = None
    webhook_secret: str = ""
    webhook_retry_delay: float = 5.0
    outbox: list[tuple[str, User]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.users.clear()
        self.devices.clear()
        self.faults.clear()
        self.calls.clear()
        self.creating.clear()
        self.outbox.clear()
        self.deliveries.clear()
        self.create_delay = 0.0
        self.next_id = 1

    # ------------------------------------------------------------------ panel-side rules

    def refresh(self, user: User) -> None:
        """The panel's own checks: expiry and used-up traffic change the status."""
        if user.status == "ACTIVE" and user.expire_at <= datetime.now(UTC):
            self.set_status(user, "EXPIRED")
        if (user.status == "ACTIVE" and user.traffic_limit_bytes
                and user.used_bytes >= user.traffic_limit_bytes):
            self.set_status(user, "LIMITED")

    def set_status(self, user: User, status: str) -> None:
        """A status the panel sets itself, with its webhook event."""
        if user.status != status:
            user.status = status
            self.outbox.append((f"user.{status.lower()}", user))

    def flush_webhooks(self) -> None:
        """Deliver what happened, as the panel's webhook queue does (3 tries, 5 s apart)."""
        events, self.outbox[:] = list(self.outbox), []
        if not self.webhook_url:
            return
        for event, user in events:
            body = json.dumps({"scope": "user", "event": event,
                               "timestamp": iso(datetime.now(UTC)), "data": self.public(user),
                               "meta": None}, separators=(",", ":"))
            asyncio.get_running_loop().create_task(self._deliver(self.webhook_url, body))

    async def _deliver(self, url: str, body: str) -> None:
        signature = hmac.new(self.webhook_secret.encode(), body.encode(),
                             hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Remnawave-Signature": signature,
                   "X-Remnawave-Timestamp": json.loads(body)["timestamp"],
                   "User-Agent": "Remnawave"}
        record = {"url": url, "body": body, "attempts": 0, "status": None}
        self.deliveries.append(record)
        async with httpx.AsyncClient(timeout=10) as client:
            for attempt in range(3):
                record["attempts"] = attempt + 1
                try:
                    resp = await client.post(url, content=body.encode(), headers=headers)
                    record["status"] = resp.status_code
                    if resp.status_code < 300:
                        return
                except httpx.HTTPError:
                    record["status"] = None
                await asyncio.sleep(self.webhook_retry_delay)

    def by_username(self, username: str) -> User | None:
        return next((u for u in self.users.values() if u.username == username), None)

    def by_key(self, key: str) -> User | None:
        user = self.users.get(int(key)) if key.isdigit() else None
        return user or self.by_username(key)

    def public(self, user: User) -> dict[str, Any]:
        self.refresh(user)
        return {
            "id": user.id, "shortUuid": user.short_uuid, "username": user.username,
            "status": user.status, "trafficLimitBytes": user.traffic_limit_bytes,
            "trafficLimitStrategy": user.traffic_limit_strategy, "expireAt": iso(user.expire_at),
            "telegramId": user.telegram_id, "email": user.email,
            "description": user.description, "tag": user.tag,
            "hwidDeviceLimit": user.hwid_device_limit, "externalSquadUuid": None,
            "trojanPassword": user.trojan_password, "vlessUuid": user.vless_uuid,
            "ssPassword": user.ss_password,
            "lastTriggeredThreshold": user.last_triggered_threshold,
            "subRevokedAt": iso(user.sub_revoked_at) if user.sub_revoked_at else None,
            "lastTrafficResetAt": (iso(user.last_traffic_reset_at)
                                   if user.last_traffic_reset_at else None),
            "createdAt": iso(user.created_at), "updatedAt": iso(user.updated_at),
            "subscriptionUrl": f"https://{self.sub_public_domain}/{user.short_uuid}",
            "activeInternalSquads": [{"uuid": s, "name": self.squads.get(s, "")}
                                     for s in user.squads],
            "userTraffic": {"usedTrafficBytes": user.used_bytes,
                            "lifetimeUsedTrafficBytes": user.lifetime_used_bytes,
                            "onlineAt": None, "firstConnectedAt": None,
                            "lastConnectedNodeUuid": None},
        }

    def device_list(self, user_id: int) -> dict[str, Any]:
        devices = self.devices.get(user_id, [])
        return {"total": len(devices), "devices": list(devices)}

    def take_fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.op in (op, "*"):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None


# ---------------------------------------------------------------------- validation


def _issue(path: str, message: str, code: str = "custom") -> dict[str, Any]:
    return {"code": code, "path": [path], "message": message}


def _user_fields(body: dict[str, Any], *, create: bool) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    if create:
        name = body.get("username")
        if not isinstance(name, str):
            issues.append(_issue("username", "Required", "invalid_type"))
        elif not 3 <= len(name) <= 36 or not USERNAME_RE.match(name):
            issues.append(_issue("username", "Username can only contain letters, numbers, "
                                             "underscores and dashes (3-36 characters)"))
    if create or "expireAt" in body:
        expire = parse_iso(body.get("expireAt"))
        if expire is None:
            issues.append(_issue("expireAt", "Invalid ISO datetime", "invalid_format"))
        elif not create and expire <= datetime.now(UTC):
            issues.append(_issue("expireAt", "Expiration date cannot be in the past"))
    if "status" in body:
        allowed = STATUSES if create else ("ACTIVE", "DISABLED")
        if body["status"] not in allowed:
            issues.append(_issue("status", f"Invalid option: expected one of {allowed}",
                                 "invalid_value"))
    limit = body.get("trafficLimitBytes")
    if "trafficLimitBytes" in body and (isinstance(limit, bool) or not isinstance(limit, int)
                                        or limit < 0):
        issues.append(_issue("trafficLimitBytes", "Traffic limit must be greater than 0"))
    if "trafficLimitStrategy" in body and body["trafficLimitStrategy"] not in STRATEGIES:
        issues.append(_issue("trafficLimitStrategy", "Invalid option", "invalid_value"))
    devices = body.get("hwidDeviceLimit")
    if "hwidDeviceLimit" in body and not (devices is None and not create) and (
            isinstance(devices, bool) or not isinstance(devices, int) or devices < 0):
        issues.append(_issue("hwidDeviceLimit", "Expected int >= 0", "invalid_type"))
    squads = body.get("activeInternalSquads")
    if "activeInternalSquads" in body:
        try:
            assert isinstance(squads, list)
            for s in squads:
                uuid.UUID(str(s))
        except (AssertionError, ValueError):
            issues.append(_issue("activeInternalSquads", "Invalid UUID", "invalid_format"))
    tag = body.get("tag")
    if tag is not None and (not isinstance(tag, str) or len(tag) > 16 or not TAG_RE.match(tag)):
        issues.append(_issue("tag", "Tag can only contain uppercase letters, numbers, "
                                    "underscores"))
    return issues


# ---------------------------------------------------------------------- the app


class ProxyCheck:
    """The panel's proxy check: outside development, no forwarded headers = a cut connection."""

    def __init__(self, app: Any, fake: RemnawaveFake):
        self.app, self.fake = app, fake

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["fake.transport"] = getattr(getattr(receive, "__self__", None), "transport", None)
        if not self.fake.development and not scope["path"].startswith("/_fake"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if not headers.get("x-forwarded-for") or headers.get("x-forwarded-proto") != "https":
                return _drop(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            self.fake.flush_webhooks()


def _drop(scope) -> None:
    transport = scope.get("fake.transport")
    if transport is None:  # not served by uvicorn (an in-process transport): fail loudly
        raise ConnectionResetError("connection dropped by the fake Remnawave")
    transport.abort()


def create_app(fake: RemnawaveFake | None = None) -> Any:
    """The ASGI app; the FastAPI app inside is `.app`, the state `.fake` (and `.app.state.fake`)."""
    fake = fake or RemnawaveFake()
    app = FastAPI(title="Remnawave (fake)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = fake
    lock = asyncio.Lock()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"timestamp": iso(datetime.now(UTC)), "path": request.url.path,
                             "message": exc.message, "errorCode": exc.code},
                            status_code=exc.status)

    @app.exception_handler(Invalid)
    async def invalid(_: Request, exc: Invalid):
        return JSONResponse({"statusCode": 400, "message": "Validation failed",
                             "errors": exc.issues}, status_code=400)

    @app.exception_handler(ControlError)
    async def control_error(_: Request, exc: ControlError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def authorize(request: Request) -> JSONResponse | None:
        value = request.headers.get("authorization", "")
        token = value[7:].strip() if value.lower().startswith("bearer ") else ""
        if token and fake.admin_token and secrets.compare_digest(token, fake.admin_token):
            if request.headers.get("x-remnawave-client-type") != "browser":
                return JSONResponse({"timestamp": iso(datetime.now(UTC)),
                                     "path": request.url.path, "message": "Forbidden",
                                     "errorCode": "A002"}, status_code=403)
            return None
        if not token or not secrets.compare_digest(token, fake.token):
            return JSONResponse({"statusCode": 401, "message": "Unauthorized"}, status_code=401)
        return None

    async def run(request: Request, op: str, work, *, status: int = 200) -> Response:
        denied = authorize(request)
        if denied is not None:
            return denied
        fake.calls.append({"op": op, "method": request.method, "path": request.url.path})
        fault = fake.take_fault(op)
        if fault is not None and not fault.after:
            await _apply(fault, request)
        result = await work()
        if fault is not None and fault.after:
            await _apply(fault, request)
        if status == 204:
            return Response(status_code=204)
        return JSONResponse({"response": result}, status_code=status)

    async def _apply(fault: Fault, request: Request) -> None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:  # whatever is answered next goes nowhere
            _drop(request.scope)
            raise ApiError("A000", "dropped", status=500)
        if fault.status is not None:
            code = fault.error_code or ("A018" if fault.status >= 500 else "A000")
            raise ApiError(code, ERRORS.get(code, (0, "Internal server error"))[1],
                           status=fault.status)

    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise Invalid([_issue("body", "Invalid JSON")]) from None
        if not isinstance(body, dict):
            raise Invalid([_issue("body", "Expected object", "invalid_type")])
        return body

    def user_by_id(user_id: str, missing: str = "A025") -> User:
        user = fake.users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise ApiError(missing)
        return user

    def check_squads(squads: list[str], code: str) -> None:
        if any(s not in fake.squads for s in squads):
            raise ApiError(code)  # the foreign key fails inside the panel: a 500

    # ------------------------------------------------------------------ users

    @app.post("/api/users")
    async def create_user(request: Request):
        body = await json_body(request)

        async def work():
            issues = _user_fields(body, create=True)
            if issues:
                raise Invalid(issues)
            name = body["username"]
            squads = [str(s) for s in body.get("activeInternalSquads") or []]
            check_squads(squads, "A018")
            # A second insert of the same username waits for the first one's transaction, as
            # on the panel's database, then fails on the unique index (or goes on after a
            # rollback).
            while name in fake.creating:
                await fake.creating[name].wait()
            if fake.by_username(name):
                raise ApiError("A019")
            done = fake.creating[name] = asyncio.Event()
            try:
                if fake.create_delay:  # creates in flight together
                    await asyncio.sleep(fake.create_delay)
                async with lock:
                    user = User(
                        id=fake.next_id, username=name,
                        short_uuid=body.get("shortUuid") or secrets.token_urlsafe(12),
                        status=body.get("status") or "ACTIVE",
                        expire_at=parse_iso(body["expireAt"]),
                        traffic_limit_bytes=int(body.get("trafficLimitBytes") or 0),
                        traffic_limit_strategy=body.get("trafficLimitStrategy") or "NO_RESET",
                        hwid_device_limit=body.get("hwidDeviceLimit"), squads=squads,
                        description=body.get("description"), tag=body.get("tag"),
                        telegram_id=body.get("telegramId"), email=body.get("email"))
                    fake.next_id += 1
                    fake.users[user.id] = user
            finally:
                del fake.creating[name]
                done.set()
            return fake.public(user)

        return await run(request, "create", work, status=201)

    @app.patch("/api/users")
    async def update_user(request: Request):
        body = await json_body(request)

        async def work():
            issues = _user_fields(body, create=False)
            if body.get("id") is None and body.get("username") is None:
                issues.append(_issue("", "At least one of username, id must be provided"))
            if issues:
                raise Invalid(issues)
            async with lock:
                user = (fake.users.get(int(body["id"])) if body.get("id") is not None
                        else fake.by_username(str(body["username"])))
                if user is None:
                    raise ApiError("A025")
                fake.refresh(user)
                status = body.get("status")
                if "activeInternalSquads" in body:
                    squads = [str(s) for s in body["activeInternalSquads"]]
                    check_squads(squads, "A039")
                    user.squads = squads
                if user.status != "ACTIVE" and status == "ACTIVE":
                    user.status = "ACTIVE"
                elif user.status == "ACTIVE" and status == "DISABLED":
                    user.status = "DISABLED"
                if "trafficLimitBytes" in body:
                    limit = int(body["trafficLimitBytes"])
                    if user.status == "LIMITED" and (limit > user.traffic_limit_bytes
                                                     or limit == 0):
                        user.status = "ACTIVE"
                    user.traffic_limit_bytes = limit
                    user.last_triggered_threshold = 0
                if "expireAt" in body:
                    expire = parse_iso(body["expireAt"])
                    if user.status == "EXPIRED" and not status and expire != user.expire_at:
                        user.status = "ACTIVE"
                    user.expire_at = expire
                if body.get("trafficLimitStrategy"):
                    user.traffic_limit_strategy = body["trafficLimitStrategy"]
                if "hwidDeviceLimit" in body:
                    user.hwid_device_limit = body["hwidDeviceLimit"]
                for key, attr in (("description", "description"), ("tag", "tag"),
                                  ("telegramId", "telegram_id"), ("email", "email")):
                    if key in body:
                        setattr(user, attr, body[key])
                user.updated_at = datetime.now(UTC)
                return fake.public(user)

        return await run(request, "update", work)

    @app.get("/api/users")
    async def list_users(request: Request):
        async def work():
            q = request.query_params
            try:
                start = int(q.get("start", 0))
                size = int(q.get("size", 25))
            except ValueError:
                raise Invalid([_issue("start", "Expected number", "invalid_type")]) from None
            if start < 0:
                raise Invalid([_issue("start", "Too small: expected number to be >=0")])
            if not 1 <= size <= 1000:
                raise Invalid([_issue("size", "Number must be less than 1000", "too_big")])
            users = sorted(fake.users.values(), key=lambda u: (u.created_at, u.id), reverse=True)
            return {"users": [fake.public(u) for u in users[start:start + size]],
                    "total": len(users)}

        return await run(request, "list", work)

    @app.get("/api/users/by-username/{username}")
    async def get_by_username(username: str, request: Request):
        async def work():
            user = fake.by_username(username)
            if user is None:
                raise ApiError("A063")
            return fake.public(user)

        return await run(request, "get", work)

    @app.get("/api/users/by-short-uuid/{short_uuid}")
    async def get_by_short_uuid(short_uuid: str, request: Request):
        async def work():
            user = next((u for u in fake.users.values() if u.short_uuid == short_uuid), None)
            if user is None:
                raise ApiError("A063")
            return fake.public(user)

        return await run(request, "get", work)

    @app.get("/api/users/{user_id}")
    async def get_user(user_id: str, request: Request):
        async def work():
            return fake.public(user_by_id(user_id, "A063"))

        return await run(request, "get", work)

    @app.delete("/api/users/{user_id}")
    async def delete_user(user_id: str, request: Request):
        async def work():
            async with lock:
                user = user_by_id(user_id)
                del fake.users[user.id]
                fake.devices.pop(user.id, None)

        return await run(request, "delete", work, status=204)

    @app.post("/api/users/{user_id}/actions/{action}")
    async def user_action(user_id: str, action: str, request: Request):
        if action not in ("enable", "disable", "reset-traffic", "revoke"):
            return JSONResponse({"statusCode": 404, "message": "Not Found"}, status_code=404)
        body = await json_body(request) if action == "revoke" else {}

        async def work():
            async with lock:
                user = user_by_id(user_id)
                fake.refresh(user)
                if action == "enable":
                    if user.status == "ACTIVE":
                        raise ApiError("A030")
                    user.status = "ACTIVE"
                elif action == "disable":
                    if user.status == "DISABLED":
                        raise ApiError("A029")
                    user.status = "DISABLED"
                elif action == "reset-traffic":
                    if user.status == "LIMITED":
                        user.status = "ACTIVE"
                    user.used_bytes = 0
                    user.last_traffic_reset_at = datetime.now(UTC)
                else:
                    short = body.get("shortUuid")
                    if short is not None and not (isinstance(short, str)
                                                  and 16 <= len(short) <= 64):
                        raise Invalid([_issue("shortUuid", "Expected 16-64 characters")])
                    if not body.get("revokeOnlyPasswords"):
                        user.short_uuid = short or secrets.token_urlsafe(12)
                    user.vless_uuid = str(uuid.uuid4())
                    user.trojan_password = secrets.token_urlsafe(18)[:24]
                    user.ss_password = secrets.token_urlsafe(18)[:24]
                    user.sub_revoked_at = datetime.now(UTC)
                user.updated_at = datetime.now(UTC)
                return fake.public(user)

        return await run(request, action, work)

    # ------------------------------------------------------------------ HWID devices

    @app.get("/api/hwid/devices/{user_id}")
    async def user_devices(user_id: str, request: Request):
        async def work():
            return fake.device_list(user_by_id(user_id).id)

        return await run(request, "hwid", work)

    @app.post("/api/hwid/devices")
    async def add_device(request: Request):
        body = await json_body(request)

        async def work():
            user = user_by_id(str(body.get("userId", "")))
            _add_device(fake, user, body)
            return fake.device_list(user.id)

        return await run(request, "hwid", work)

    @app.post("/api/hwid/devices/delete")
    async def delete_device(request: Request):
        body = await json_body(request)

        async def work():
            user = user_by_id(str(body.get("userId", "")))
            fake.devices[user.id] = [d for d in fake.devices.get(user.id, [])
                                     if d["hwid"] != body.get("hwid")]
            return fake.device_list(user.id)

        return await run(request, "hwid", work)

    @app.post("/api/hwid/devices/delete-all")
    async def delete_all_devices(request: Request):
        body = await json_body(request)

        async def work():
            user = user_by_id(str(body.get("userId", "")))
            fake.devices[user.id] = []
            return fake.device_list(user.id)

        return await run(request, "hwid", work)

    # ------------------------------------------------------------------ public subscription

    @app.get("/api/sub/{short_uuid}")
    async def subscription(short_uuid: str):
        user = next((u for u in fake.users.values() if u.short_uuid == short_uuid), None)
        if user is None:
            return JSONResponse({"statusCode": 404, "message": "Not Found"}, status_code=404)
        fake.refresh(user)
        links = [] if user.status != "ACTIVE" else [
            f"vless://{user.vless_uuid}@node.example.test:443?security=reality#{user.username}"]
        info = (f"upload=0; download={user.used_bytes}; total={user.traffic_limit_bytes}; "
                f"expire={int(user.expire_at.timestamp())}")
        return Response(base64.b64encode("\n".join(links).encode()), media_type="text/plain",
                        headers={"subscription-userinfo": info})

    # ------------------------------------------------------------------ control API

    def control_user(key: str) -> User:
        user = fake.by_key(key)
        if user is None:
            raise ControlError(404, "no such user")
        return user

    async def control_body(request: Request) -> dict[str, Any]:
        try:
            return await json_body(request)
        except Invalid:
            raise ControlError(400, "the body must be a JSON object") from None

    @app.get("/_fake/users")
    async def control_users():
        return {"users": [fake.public(u) for u in fake.users.values()]}

    @app.post("/_fake/users/{key}/traffic")
    async def control_traffic(key: str, request: Request):
        body = await control_body(request)
        try:
            used = int(body["used_bytes"])
        except (KeyError, TypeError, ValueError):
            raise ControlError(400, "used_bytes is a number") from None
        async with lock:
            user = control_user(key)
            user.lifetime_used_bytes += max(0, used - user.used_bytes)
            user.used_bytes = used
            return fake.public(user)

    @app.post("/_fake/users/{key}/limited")
    async def control_limited(key: str):
        async with lock:
            user = control_user(key)
            if user.traffic_limit_bytes:
                user.lifetime_used_bytes += max(0, user.traffic_limit_bytes - user.used_bytes)
                user.used_bytes = max(user.used_bytes, user.traffic_limit_bytes)
            fake.set_status(user, "LIMITED")
            return fake.public(user)

    @app.post("/_fake/users/{key}/expired")
    async def control_expired(key: str):
        async with lock:
            user = control_user(key)
            user.expire_at = min(user.expire_at, datetime.now(UTC) - timedelta(seconds=1))
            fake.set_status(user, "EXPIRED")
            return fake.public(user)

    @app.post("/_fake/users/{key}/devices")
    async def control_device(key: str, request: Request):
        body = await control_body(request)
        async with lock:
            user = control_user(key)
            limit = user.hwid_device_limit
            known = {d["hwid"] for d in fake.devices.get(user.id, [])}
            if body.get("hwid") not in known and limit and len(known) >= limit:
                raise ControlError(409, "device limit reached")
            _add_device(fake, user, body)
            return fake.device_list(user.id)

    @app.post("/_fake/faults")
    async def control_fault(request: Request):
        body = await control_body(request)
        try:
            fault = Fault(op=str(body.get("op") or "*"),
                          status=(int(body["status"]) if body.get("status") is not None
                                  else (None if body.get("drop") or "status" in body else 500)),
                          error_code=body.get("error_code"),
                          delay=float(body.get("delay_ms") or 0) / 1000,
                          times=int(body["times"]) if body.get("times") is not None else None,
                          after=bool(body.get("after", False)), drop=bool(body.get("drop")))
        except (TypeError, ValueError):
            raise ControlError(400, "status, delay_ms and times are numbers") from None
        fake.faults.append(fault)
        return {"faults": len(fake.faults)}

    @app.delete("/_fake/faults")
    async def control_clear_faults():
        fake.faults.clear()
        return {"faults": 0}

    @app.post("/_fake/settings")
    async def control_settings(request: Request):
        body = await control_body(request)
        if "create_delay_ms" in body:
            fake.create_delay = float(body["create_delay_ms"] or 0) / 1000
        if "development" in body:
            fake.development = bool(body["development"])
        if "webhook_url" in body:
            fake.webhook_url = body["webhook_url"] or None
        if "webhook_secret" in body:
            fake.webhook_secret = str(body["webhook_secret"] or "")
        if "webhook_retry_delay_ms" in body:
            fake.webhook_retry_delay = float(body["webhook_retry_delay_ms"] or 0) / 1000
        return {"create_delay_ms": fake.create_delay * 1000, "development": fake.development,
                "webhook_url": fake.webhook_url}

    @app.get("/_fake/webhooks")
    async def control_webhooks():
        return {"deliveries": fake.deliveries}

    @app.get("/_fake/calls")
    async def control_calls(op: str | None = None):
        return {"calls": [c for c in fake.calls if op is None or c["op"] == op]}

    @app.post("/_fake/reset")
    async def control_reset():
        fake.reset()
        return {"ok": True}

    wrapped = ProxyCheck(app, fake)
    wrapped.fake = fake  # type: ignore[attr-defined]
    return wrapped


def _add_device(fake: RemnawaveFake, user: User, body: dict[str, Any]) -> None:
    hwid = body.get("hwid")
    if not isinstance(hwid, str) or not hwid:
        raise Invalid([_issue("hwid", "Required", "invalid_type")])
    now = iso(datetime.now(UTC))
    devices = fake.devices.setdefault(user.id, [])
    devices[:] = [d for d in devices if d["hwid"] != hwid]
    devices.append({"hwid": hwid, "userId": user.id, "platform": body.get("platform"),
                    "osVersion": body.get("osVersion"), "deviceModel": body.get("deviceModel"),
                    "userAgent": body.get("userAgent"), "requestIp": body.get("requestIp"),
                    "createdAt": now, "updatedAt": now})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.remnawave")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=23300)
    parser.add_argument("--token", default="remnawave-api-token",
                        help="the API token callers send as Bearer (REMNAWAVE_API_TOKEN)")
    parser.add_argument("--admin-token", default=None,
                        help="an admin login JWT, refused without X-Remnawave-Client-Type")
    parser.add_argument("--development", action="store_true",
                        help="skip the proxy check (no forwarded headers needed)")
    parser.add_argument("--sub-public-domain", default=None,
                        help="host and path of subscription URLs (default HOST:PORT/api/sub)")
    parser.add_argument("--webhook-url", default=None,
                        help="where user.limited / user.expired events are posted (none: off)")
    parser.add_argument("--webhook-secret", default="",
                        help="the panel's WEBHOOK_SECRET_HEADER (REMNAWAVE_WEBHOOK_SECRET)")
    parser.add_argument("--squads", default=",".join(DEFAULT_SQUADS),
                        help="the internal squad uuids that exist (comma separated)")
    ns = parser.parse_args(argv)
    squads = {s.strip(): f"Squad-{i + 1}" for i, s in enumerate(ns.squads.split(",")) if s.strip()}
    fake = RemnawaveFake(token=ns.token, admin_token=ns.admin_token, development=ns.development,
                         sub_public_domain=ns.sub_public_domain or f"{ns.host}:{ns.port}/api/sub",
                         squads=squads, webhook_url=ns.webhook_url,
                         webhook_secret=ns.webhook_secret)
    uvicorn.run(create_app(fake), host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
