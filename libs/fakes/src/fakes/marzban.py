"""Marzban (v0.8.4) REST API fake: a real HTTP server for driver tests.

Owns the fake side of the Marzban integration and copies the real server's behaviour, as
measured against a running v0.8.4 and read in its source:

* `POST /api/admin/token` takes a **form** body (`username`, `password`) and answers
  `{"access_token", "token_type": "bearer"}`; tokens are HS256 JWTs signed with the server's
  secret, so they survive a restart (`revoke_tokens()` rotates the secret); a wrong password is
  401 `{"detail": "Incorrect username or password"}`; API calls without a token are 401
  `{"detail": "Not authenticated"}`, with a bad one 401 `{"detail": "Could not validate
  credentials"}`; a validation error is 422 `{"detail": {field: message}}`;
* `POST /api/user` answers **200** (not 201) with the user; `expire`/`data_limit` of 0 come back
  as `null`; leaving `inbounds` out gives a user with **no links**, `"inbounds": {}` means all
  inbounds of each proxy; the same username again is 409 `{"detail": "User already exists"}`; a
  bad username is 422; a protocol with no inbound on the server is 400; `"proxies": {}` is 422
  but leaving `proxies` out stores a broken row after which `GET /api/users` answers 500;
* `PUT /api/user/{username}` changes the fields given, in the real order: `status`, then
  `data_limit` (active again when under the new limit, `limited` when not, unless disabled or
  expired), then `expire` (an active or expired user becomes active with a future expiry);
  `proxies` replaces the user's protocols (a protocol sent as `{}` gets new credentials, one
  left out is removed, a new one gets every inbound); `inbounds` replaces the chosen inbounds;
* `expired` / `limited` are set by a review every `review_interval` seconds (10 s), not on read;
* `POST /api/user/{username}/reset` zeroes `used_traffic` and sets the status to active unless
  it is `expired`: a *disabled* user is re-activated too (the real `status not in (expired or
  disabled)` bug);
* `DELETE /api/user/{username}` deletes; for users created by the environment's sudo admin
  (`admin` null, the default here) it then answers 500; later calls are 404 `{"detail": "User
  not found"}`;
* `GET /api/users?offset&limit` → `{"users": [...], "total": N}`; `limit=0` means all;
* `subscription_url` is `<prefix>/sub/<token>`, the token signs the username and the current
  second, so it changes once per second, not per read; `GET /sub/<token>` serves the
  subscription (base64 links, `subscription-userinfo` header); with the default empty prefix
  the URL is relative.

Tests reach the in-memory state (`app.state.marzban`) to inspect users, spend traffic, run the
review, or make the next calls fail or lose their answers; `/_fake/...` does the same over HTTP.
Run: `python -m fakes.marzban --port 8000`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, field_validator

__all__ = ["MarzbanState", "create_app", "main"]

USERNAME_RE = re.compile(r"^(?=\w{3,32}\b)[a-zA-Z0-9-_@.]+(?:_[a-zA-Z0-9-_@.]+)*$")
DEFAULT_INBOUNDS = {"vless": ["VLESS TCP REALITY"], "vmess": ["VMess TCP"]}
RESET_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
JWT_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Unauthorized(Exception):
    def __init__(self, detail: str):
        self.detail = detail


@dataclass
class MarzbanUser:
    username: str
    proxies: dict[str, dict]
    inbounds: dict[str, list[str]]
    excluded_inbounds: dict[str, list[str]]
    expire: int | None
    data_limit: int | None
    status: str
    note: str | None
    created_at: float
    data_limit_reset_strategy: str = "no_reset"
    used_traffic: int = 0
    last_reset_at: float | None = None
    broken: bool = False  # created without `proxies`: the real listing fails on it


@dataclass
class MarzbanState:
    admin_username: str = "admin"
    admin_password: str = "admin-password"
    # False: the environment's sudo admin (not in the database), as in a default install
    admin_in_db: bool = False
    subscription_prefix: str = ""
    server_host: str = "vpn.example.test"
    secret: str = "marzban-fake-secret"
    review_interval: float | None = 10.0
    last_review: float = field(default_factory=time.time)
    inbounds: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_INBOUNDS))
    users: dict[str, MarzbanUser] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    lose_next: int = 0  # requests carried out whose answer is replaced by a 502
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------------ control

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (a new signing secret)."""
        with self.lock:
            self.secret = secrets.token_hex(16)

    def inject_failures(self, count: int, status: int = 500) -> None:
        with self.lock:
            self.fail_next, self.fail_status = count, status

    def lose_answers(self, count: int) -> None:
        """Carry out the next `count` requests but answer 502, as a proxy losing them would."""
        with self.lock:
            self.lose_next = count

    def use_traffic(self, username: str, nbytes: int) -> None:
        with self.lock:
            self.users[username].used_traffic += nbytes

    def review(self, now: float | None = None) -> None:
        """The real review job: active users over their limit become `limited`, past their
        expiry `expired`."""
        now = time.time() if now is None else now
        with self.lock:
            self.last_review = now
            for u in self.users.values():
                if u.status != "active":
                    continue
                if u.data_limit and u.used_traffic >= u.data_limit:
                    u.status = "limited"
                elif u.expire and u.expire <= now:
                    u.status = "expired"

    def run_reset_job(self, now: float | None = None) -> None:
        """The real hourly usage reset: active/limited users whose strategy period passed."""
        now = time.time() if now is None else now
        with self.lock:
            for u in self.users.values():
                days = RESET_DAYS.get(u.data_limit_reset_strategy)
                last = u.last_reset_at or u.created_at
                if u.status in ("active", "limited") and days and (now - last) // 86400 >= days:
                    self.reset_usage(u, now)

    def reset_usage(self, user: MarzbanUser, now: float | None = None) -> None:
        user.used_traffic = 0
        user.last_reset_at = time.time() if now is None else now
        if user.status not in "expired":  # real: `not in (expired or disabled)`
            user.status = "active"

    def maybe_review(self) -> None:
        if self.review_interval is not None and time.time() - self.last_review >= \
                self.review_interval:
            self.review()

    # ------------------------------------------------------------------ tokens

    def _sign(self, data: str) -> bytes:
        return hmac.new(self.secret.encode(), data.encode(), hashlib.sha256).digest()

    def admin_token(self) -> str:
        payload = _b64(json.dumps({"sub": self.admin_username, "access": "sudo",
                                   "iat": int(time.time())}).encode())
        return f"{JWT_HEADER}.{payload}.{_b64(self._sign(f'{JWT_HEADER}.{payload}'))}"

    def token_valid(self, token: str) -> bool:
        parts = token.split(".")
        if len(parts) != 3:
            return False
        want = _b64(self._sign(f"{parts[0]}.{parts[1]}"))
        if not hmac.compare_digest(want, parts[2]):
            return False
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return False
        return payload.get("sub") == self.admin_username

    def subscription_token(self, username: str) -> str:
        data = _b64(f"{username},{math.ceil(time.time())}".encode())
        sig = base64.urlsafe_b64encode(
            hashlib.sha256((data + self.secret).encode()).digest()).decode()[:10]
        return data + sig

    def subscription_user(self, token: str) -> MarzbanUser | None:
        if len(token) < 15:
            return None
        data, sig = token[:-10], token[-10:]
        want = base64.urlsafe_b64encode(
            hashlib.sha256((data + self.secret).encode()).digest()).decode()[:10]
        if not hmac.compare_digest(want, sig):
            return None
        try:
            name, issued = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode() \
                .split(",")
        except ValueError:
            return None
        user = self.users.get(name)
        if user is None or user.created_at > int(issued):
            return None
        return user

    # ------------------------------------------------------------------ views

    def links(self, user: MarzbanUser) -> list[str]:
        out = []
        for proto, settings in user.proxies.items():
            for tag in user.inbounds.get(proto, []):
                ident = settings.get("id") or settings.get("password") or ""
                out.append(f"{proto}://{ident}@{self.server_host}:443?security=reality"
                           f"#{tag.replace(' ', '%20')}")
        return out

    def public(self, user: MarzbanUser) -> dict[str, Any]:
        return {
            "username": user.username, "status": user.status,
            "expire": user.expire, "data_limit": user.data_limit,
            "data_limit_reset_strategy": user.data_limit_reset_strategy,
            "proxies": user.proxies, "inbounds": user.inbounds,
            "excluded_inbounds": user.excluded_inbounds, "note": user.note,
            "sub_updated_at": None, "sub_last_user_agent": None, "online_at": None,
            "on_hold_expire_duration": None, "on_hold_timeout": None,
            "auto_delete_in_days": None, "next_plan": None, "used_traffic": user.used_traffic,
            "lifetime_used_traffic": user.used_traffic,
            "created_at": datetime.fromtimestamp(user.created_at, UTC).replace(tzinfo=None)
            .isoformat(),
            "links": self.links(user),
            "subscription_url":
                f"{self.subscription_prefix}/sub/{self.subscription_token(user.username)}",
            "admin": ({"username": self.admin_username, "is_sudo": True, "telegram_id": None,
                       "discord_webhook": None, "users_usage": None}
                      if self.admin_in_db else None),
        }


Strategy = Literal["no_reset", "day", "week", "month", "year"]


class UserCreate(BaseModel):
    username: str
    proxies: dict[str, dict] | None = None
    inbounds: dict[str, list[str]] | None = None
    expire: int | None = None
    data_limit: int | None = Field(None, ge=0)
    data_limit_reset_strategy: Strategy = "no_reset"
    status: Literal["active", "on_hold"] | None = None
    note: str | None = Field(None, max_length=500)

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if not USERNAME_RE.match(v):
            raise ValueError("Username only can be 3 to 32 characters and contain a-z, 0-9, "
                             "and underscores in between.")
        return v

    @field_validator("proxies")
    @classmethod
    def _proxies(cls, v: dict | None) -> dict | None:
        if v is not None and not v:
            raise ValueError("Each user needs at least one proxy")
        return v


class UserModify(BaseModel):
    proxies: dict[str, dict] | None = None
    inbounds: dict[str, list[str]] | None = None
    expire: int | None = None
    data_limit: int | None = Field(None, ge=0)
    data_limit_reset_strategy: Strategy | None = None
    status: Literal["active", "disabled", "on_hold"] | None = None
    note: str | None = Field(None, max_length=500)


class Amount(BaseModel):
    bytes: int = Field(ge=0)


class Failures(BaseModel):
    count: int = Field(1, ge=0)
    status: int = 500
    lose_answers: bool = False


def create_app(*, admin_username: str = "admin", admin_password: str = "admin-password",
               subscription_prefix: str = "", inbounds: dict[str, list[str]] | None = None,
               secret: str = "marzban-fake-secret", review_interval: float | None = 10.0,
               admin_in_db: bool = False) -> FastAPI:
    state = MarzbanState(admin_username=admin_username, admin_password=admin_password,
                         subscription_prefix=subscription_prefix.rstrip("/"),
                         inbounds=dict(inbounds or DEFAULT_INBOUNDS), secret=secret,
                         review_interval=review_interval, admin_in_db=admin_in_db)
    app = FastAPI(title="Marzban API (fake)", docs_url=None, redoc_url=None)
    app.state.marzban = state

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized):
        return JSONResponse({"detail": exc.detail}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        details = {str(e["loc"][-1]): e.get("msg") for e in exc.errors()}
        return JSONResponse(jsonable_encoder({"detail": details}), status_code=422)

    @app.middleware("http")
    async def record_and_fail(request: Request, call_next):
        control = request.url.path.startswith("/_fake/")
        with state.lock:
            if not control:
                state.requests.append((request.method, request.url.path))
                if state.fail_next > 0:
                    state.fail_next -= 1
                    return JSONResponse({"detail": "Internal Server Error"},
                                        status_code=state.fail_status)
            state.maybe_review()
            lose = not control and state.lose_next > 0
            if lose:
                state.lose_next -= 1
        response = await call_next(request)
        if lose:
            return PlainTextResponse("Bad Gateway", status_code=502)
        return response

    def admin(authorization: Annotated[str | None, Header()] = None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("Not authenticated")
        with state.lock:
            if not state.token_valid(authorization.split(" ", 1)[1].strip()):
                raise Unauthorized("Could not validate credentials")
        return state.admin_username

    # (a default, not Annotated: annotations here are strings that FastAPI cannot resolve)
    auth = Depends(admin)

    def not_found() -> JSONResponse:
        return JSONResponse({"detail": "User not found"}, status_code=404)

    def disabled_protocol(proxies: dict[str, dict]) -> JSONResponse | None:
        for proto in proxies:
            if not state.inbounds.get(proto):
                return JSONResponse({"detail": f"Protocol {proto} is disabled on your server"},
                                    status_code=400)
        return None

    def unknown_inbound(given: dict[str, list[str]]) -> JSONResponse | None:
        known = {t for tags in state.inbounds.values() for t in tags}
        for tags in given.values():
            for tag in tags:
                if tag not in known:
                    return JSONResponse({"detail": {"inbounds": f"Inbound {tag} doesn't exist"}},
                                        status_code=422)
        return None

    def proxy_settings(proto: str, settings: dict | None) -> dict:
        settings = dict(settings or {})
        if proto in ("vless", "vmess"):
            settings.setdefault("id", str(uuid.uuid4()))
            if proto == "vless":
                settings.setdefault("flow", "")
        else:
            settings.setdefault("password", secrets.token_urlsafe(12))
        return settings

    @app.post("/api/admin/token")
    async def token(request: Request):
        # OAuth2 password form: urlencoded fields only (a JSON body has no form fields → 422)
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                                  keep_blank_values=True).items()}
        missing = [f for f in ("username", "password") if f not in form]
        if missing:
            return JSONResponse({"detail": {f: "Field required" for f in missing}},
                                status_code=422)
        username, password = form["username"], form["password"]
        if username != state.admin_username or not secrets.compare_digest(
                password.encode(), state.admin_password.encode()):
            return JSONResponse({"detail": "Incorrect username or password"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        with state.lock:
            return {"access_token": state.admin_token(), "token_type": "bearer"}

    @app.post("/api/user")
    async def add_user(body: UserCreate, _: str = auth):
        proxies = body.proxies or {}
        if (bad := disabled_protocol(proxies)) is not None:
            return bad
        if body.inbounds and (bad := unknown_inbound(body.inbounds)) is not None:
            return bad
        chosen: dict[str, list[str]] = {}
        excluded: dict[str, list[str]] = {}
        for proto in proxies:
            if body.inbounds is None:  # left out: every inbound excluded, so no links
                chosen[proto] = []
            else:
                chosen[proto] = list(body.inbounds.get(proto) or state.inbounds[proto])
            excluded[proto] = [t for t in state.inbounds[proto] if t not in chosen[proto]]
        with state.lock:
            if body.username.lower() in {u.lower() for u in state.users}:
                return JSONResponse({"detail": "User already exists"}, status_code=409)
            user = MarzbanUser(
                username=body.username,
                proxies={p: proxy_settings(p, s) for p, s in proxies.items()},
                inbounds=chosen, excluded_inbounds=excluded, expire=body.expire or None,
                data_limit=body.data_limit or None, status=body.status or "active",
                note=body.note, created_at=float(int(time.time())),
                data_limit_reset_strategy=body.data_limit_reset_strategy,
                broken=body.proxies is None)
            state.users[user.username] = user
            return state.public(user)

    @app.get("/api/user/{username}")
    async def get_user(username: str, _: str = auth):
        with state.lock:
            user = state.users.get(username)
            return state.public(user) if user else not_found()

    @app.put("/api/user/{username}")
    async def modify_user(username: str, body: UserModify, _: str = auth):
        if body.proxies and (bad := disabled_protocol(body.proxies)) is not None:
            return bad
        if body.inbounds and (bad := unknown_inbound(body.inbounds)) is not None:
            return bad
        with state.lock:
            user = state.users.get(username)
            if user is None:
                return not_found()
            if body.proxies:  # replaces the protocols; a new one gets every inbound
                for proto in list(user.proxies):
                    if proto not in body.proxies:
                        del user.proxies[proto]
                        user.inbounds.pop(proto, None)
                        user.excluded_inbounds.pop(proto, None)
                for proto, settings in body.proxies.items():
                    if proto not in user.proxies:
                        user.inbounds[proto] = list(state.inbounds[proto])
                        user.excluded_inbounds[proto] = []
                    user.proxies[proto] = proxy_settings(proto, settings)
            if body.inbounds:
                for proto, tags in body.inbounds.items():
                    if proto in user.proxies:
                        user.excluded_inbounds[proto] = [t for t in state.inbounds.get(proto, [])
                                                         if t not in tags]
                        user.inbounds[proto] = [t for t in state.inbounds.get(proto, [])
                                                if t in tags]
            if body.status is not None:
                user.status = body.status
            if body.data_limit is not None:
                user.data_limit = body.data_limit or None
                if user.status not in ("expired", "disabled"):
                    if not user.data_limit or user.used_traffic < user.data_limit:
                        if user.status != "on_hold":
                            user.status = "active"
                    else:
                        user.status = "limited"
            if body.expire is not None:
                user.expire = body.expire or None
                if user.status in ("active", "expired"):
                    user.status = ("active" if not user.expire or user.expire > time.time()
                                   else "expired")
            if body.note is not None:
                user.note = body.note or None
            if body.data_limit_reset_strategy is not None:
                user.data_limit_reset_strategy = body.data_limit_reset_strategy
            return state.public(user)

    @app.post("/api/user/{username}/reset")
    async def reset_user(username: str, _: str = auth):
        with state.lock:
            user = state.users.get(username)
            if user is None:
                return not_found()
            state.reset_usage(user)
            return state.public(user)

    @app.delete("/api/user/{username}")
    async def remove_user(username: str, _: str = auth):
        with state.lock:
            if state.users.pop(username, None) is None:
                return not_found()
        if not state.admin_in_db:  # the deleted-user report fails on its null admin
            return PlainTextResponse("Internal Server Error", status_code=500)
        return {"detail": "User successfully deleted"}

    @app.get("/api/users")
    async def list_users(offset: Annotated[int | None, Query()] = None,
                         limit: Annotated[int | None, Query()] = None,
                         username: Annotated[list[str] | None, Query()] = None,
                         status: str | None = None, _: str = auth):
        with state.lock:
            if any(u.broken for u in state.users.values()):
                return PlainTextResponse("Internal Server Error", status_code=500)
            users = [u for u in state.users.values()
                     if (not username or u.username in username)
                     and (status is None or u.status == status)]
            page = users[offset or 0:]
            if limit:  # 0 (or none) means all
                page = page[:limit]
            return {"users": [state.public(u) for u in page], "total": len(users)}

    @app.get("/sub/{token}")
    @app.get("/sub/{token}/")
    async def subscription(token: str):
        with state.lock:
            user = state.subscription_user(token)
            if user is None:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            body = base64.b64encode("\n".join(state.links(user)).encode()).decode()
            info = (f"upload=0; download={user.used_traffic}; total={user.data_limit or 0}; "
                    f"expire={user.expire or 0}")
        return PlainTextResponse(body, headers={
            "content-disposition": f'attachment; filename="{user.username}"',
            "subscription-userinfo": info})

    # ------------------------------------------------------------------ control API

    @app.post("/_fake/users/{username}/traffic")
    async def spend(username: str, body: Amount):
        with state.lock:
            if username not in state.users:
                return not_found()
            state.use_traffic(username, body.bytes)
            return state.public(state.users[username])

    @app.post("/_fake/review")
    async def run_review():
        state.review()
        return {"ok": True}

    @app.post("/_fake/failures")
    async def failures(body: Failures):
        if body.lose_answers:
            state.lose_answers(body.count)
        else:
            state.inject_failures(body.count, body.status)
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.marzban")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--admin-username", default="admin")
    parser.add_argument("--admin-password", default="admin-password")
    parser.add_argument("--subscription-prefix", default="")
    parser.add_argument("--secret", default="marzban-fake-secret",
                        help="signs tokens; the same secret keeps them valid across restarts")
    ns = parser.parse_args(argv)
    app = create_app(admin_username=ns.admin_username, admin_password=ns.admin_password,
                     subscription_prefix=ns.subscription_prefix, secret=ns.secret)
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
