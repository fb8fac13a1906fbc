"""Marzban (v0.8.x) REST API fake: a real HTTP server for driver tests.

Owns the fake side of the Marzban integration and copies the real server's oddities:

* `POST /api/admin/token` takes a **form** body (`username`, `password`) and answers
  `{"access_token", "token_type": "bearer"}`; a JSON body is 422, a wrong password 401
  `{"detail": "Incorrect username or password"}`; API calls without a token are 401
  `{"detail": "Not authenticated"}`, with a bad one 401 `{"detail": "Could not validate
  credentials"}`;
* `POST /api/user` answers **200** (not 201) with the user; `expire`/`data_limit` of 0 come back
  as `null`; leaving `inbounds` out gives a user with **no links** (every inbound excluded),
  `"inbounds": {}` means all inbounds of each proxy; the same username again is 409
  `{"detail": "User already exists"}`; a username outside 3–32 chars of `a-z0-9_` is 422; a
  protocol with no inbound on the server is 400;
* `GET|PUT|DELETE /api/user/{username}`: PUT changes only the fields given (`status` may be
  `active`, `disabled` or `on_hold`; `expired` is 422); an expired user given a future `expire`
  becomes active again; DELETE is 200 `{"detail": "User successfully deleted"}` and later calls
  are 404 `{"detail": "User not found"}`; `GET /api/users` → `{"users": [...], "total": N}`;
* `subscription_url` is `<prefix>/sub/<token>` and its token changes on every read; with the
  default empty prefix (as in Marzban's default config) the URL is relative.

Tests reach the in-memory state (`app.state.marzban`) to inspect users, revoke tokens or make
the next calls fail. Run: `python -m fakes.marzban --port 8000`.
"""

from __future__ import annotations

import argparse
import base64
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
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

__all__ = ["MarzbanState", "create_app", "main"]

USERNAME_RE = re.compile(r"^(?=\w{3,32}\b)[a-zA-Z0-9-_@.]+(?:_[a-zA-Z0-9-_@.]+)*$")
DEFAULT_INBOUNDS = {"vless": ["VLESS TCP REALITY"], "vmess": ["VMess TCP"]}


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
    created_at: str
    data_limit_reset_strategy: str = "no_reset"
    used_traffic: int = 0


@dataclass
class MarzbanState:
    admin_username: str = "admin"
    admin_password: str = "admin-password"
    subscription_prefix: str = ""
    server_host: str = "vpn.example.test"
    inbounds: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_INBOUNDS))
    users: dict[str, MarzbanUser] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def inject_failures(self, count: int, status: int = 500) -> None:
        with self.lock:
            self.fail_next, self.fail_status = count, status

    def current_status(self, user: MarzbanUser) -> str:
        if user.status == "active" and user.expire and user.expire <= time.time():
            return "expired"
        return user.status

    def links(self, user: MarzbanUser) -> list[str]:
        out = []
        for proto, settings in user.proxies.items():
            for tag in user.inbounds.get(proto, []):
                ident = settings.get("id") or settings.get("password") or ""
                out.append(f"{proto}://{ident}@{self.server_host}:443?security=reality"
                           f"#{tag.replace(' ', '%20')}")
        return out

    def public(self, user: MarzbanUser) -> dict[str, Any]:
        nonce = secrets.token_urlsafe(6)  # the real token embeds a timestamp: it changes
        token = base64.urlsafe_b64encode(f"{user.username},{nonce}".encode()).decode().rstrip("=")
        return {
            "username": user.username, "status": self.current_status(user),
            "expire": user.expire, "data_limit": user.data_limit,
            "data_limit_reset_strategy": user.data_limit_reset_strategy,
            "proxies": user.proxies, "inbounds": user.inbounds,
            "excluded_inbounds": user.excluded_inbounds, "note": user.note,
            "sub_updated_at": None, "sub_last_user_agent": None, "online_at": None,
            "on_hold_expire_duration": None, "on_hold_timeout": None,
            "auto_delete_in_days": None, "used_traffic": user.used_traffic,
            "lifetime_used_traffic": user.used_traffic, "created_at": user.created_at,
            "links": self.links(user),
            "subscription_url": f"{self.subscription_prefix}/sub/{token}",
            "admin": {"username": self.admin_username, "is_sudo": True},
        }


class UserCreate(BaseModel):
    username: str
    proxies: dict[str, dict] = Field(min_length=1)
    inbounds: dict[str, list[str]] | None = None
    expire: int | None = Field(None, ge=0)
    data_limit: int | None = Field(None, ge=0)
    data_limit_reset_strategy: Literal["no_reset", "day", "week", "month", "year"] = "no_reset"
    status: Literal["active", "on_hold"] = "active"
    note: str | None = Field(None, max_length=500)

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        if not USERNAME_RE.match(v):
            raise ValueError("Username only can be 3 to 32 characters and contain a-z, 0-9, "
                             "and underscores in between.")
        return v


class UserModify(BaseModel):
    proxies: dict[str, dict] | None = None
    inbounds: dict[str, list[str]] | None = None
    expire: int | None = Field(None, ge=0)
    data_limit: int | None = Field(None, ge=0)
    data_limit_reset_strategy: Literal["no_reset", "day", "week", "month", "year"] | None = None
    status: Literal["active", "disabled", "on_hold"] | None = None
    note: str | None = Field(None, max_length=500)


def create_app(*, admin_username: str = "admin", admin_password: str = "admin-password",
               subscription_prefix: str = "", inbounds: dict[str, list[str]] | None = None
               ) -> FastAPI:
    state = MarzbanState(admin_username=admin_username, admin_password=admin_password,
                         subscription_prefix=subscription_prefix.rstrip("/"),
                         inbounds=dict(inbounds or DEFAULT_INBOUNDS))
    app = FastAPI(title="Marzban API (fake)", docs_url=None, redoc_url=None)
    app.state.marzban = state

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized):
        return JSONResponse({"detail": exc.detail}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def record_and_fail(request: Request, call_next):
        with state.lock:
            state.requests.append((request.method, request.url.path))
            if state.fail_next > 0:
                state.fail_next -= 1
                return JSONResponse({"detail": "Internal Server Error"},
                                    status_code=state.fail_status)
        return await call_next(request)

    def admin(authorization: Annotated[str | None, Header()] = None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("Not authenticated")
        token = authorization.split(" ", 1)[1].strip()
        with state.lock:
            if token not in state.tokens:
                raise Unauthorized("Could not validate credentials")
        return state.admin_username

    # (a default, not Annotated: annotations here are strings that FastAPI cannot resolve)
    auth = Depends(admin)

    def not_found() -> JSONResponse:
        return JSONResponse({"detail": "User not found"}, status_code=404)

    def resolve_inbounds(proxies: dict[str, dict], given: dict[str, list[str]] | None
                         ) -> tuple[dict[str, list[str]], dict[str, list[str]]] | JSONResponse:
        for proto in proxies:
            if not state.inbounds.get(proto):
                return JSONResponse({"detail": f"Protocol {proto} is disabled on your server"},
                                    status_code=400)
        if given is None:  # left out: every inbound excluded, so the user gets no links
            return ({p: [] for p in proxies}, {p: list(state.inbounds[p]) for p in proxies})
        chosen: dict[str, list[str]] = {}
        for proto in proxies:
            tags = given.get(proto)
            if tags is None:
                tags = list(state.inbounds[proto])
            unknown = [t for t in tags if t not in state.inbounds[proto]]
            if unknown or not tags:
                return JSONResponse({"detail": f"Inbound {unknown[0] if unknown else ''} "
                                               "doesn't exist"}, status_code=400)
            chosen[proto] = tags
        excluded = {p: [t for t in state.inbounds[p] if t not in chosen[p]] for p in proxies}
        return chosen, excluded

    def proxy_settings(proxies: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for proto, settings in proxies.items():
            settings = dict(settings or {})
            if proto in ("vless", "vmess"):
                settings.setdefault("id", str(uuid.uuid4()))
                if proto == "vless":
                    settings.setdefault("flow", "")
            else:
                settings.setdefault("password", secrets.token_urlsafe(12))
            out[proto] = settings
        return out

    @app.post("/api/admin/token")
    async def token(request: Request):
        # OAuth2 password form: urlencoded fields only (a JSON body has no form fields → 422)
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace"),
                                                  keep_blank_values=True).items()}
        missing = [f for f in ("username", "password") if f not in form]
        if missing:
            return JSONResponse({"detail": [
                {"type": "missing", "loc": ["body", f], "msg": "Field required", "input": None}
                for f in missing]}, status_code=422)
        username, password = form["username"], form["password"]
        if username != state.admin_username or not secrets.compare_digest(
                password.encode(), state.admin_password.encode()):
            return JSONResponse({"detail": "Incorrect username or password"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        value = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens.add(value)
        return {"access_token": value, "token_type": "bearer"}

    @app.post("/api/user")
    async def add_user(body: UserCreate, _: str = auth):
        resolved = resolve_inbounds(body.proxies, body.inbounds)
        if isinstance(resolved, JSONResponse):
            return resolved
        inbounds, excluded = resolved
        with state.lock:
            if body.username.lower() in {u.lower() for u in state.users}:
                return JSONResponse({"detail": "User already exists"}, status_code=409)
            user = MarzbanUser(
                username=body.username, proxies=proxy_settings(body.proxies), inbounds=inbounds,
                excluded_inbounds=excluded, expire=body.expire or None,
                data_limit=body.data_limit or None, status=body.status, note=body.note,
                created_at=datetime.now(UTC).replace(tzinfo=None).isoformat(),
                data_limit_reset_strategy=body.data_limit_reset_strategy)
            state.users[user.username] = user
            return state.public(user)

    @app.get("/api/user/{username}")
    async def get_user(username: str, _: str = auth):
        with state.lock:
            user = state.users.get(username)
            return state.public(user) if user else not_found()

    @app.put("/api/user/{username}")
    async def modify_user(username: str, body: UserModify, _: str = auth):
        with state.lock:
            user = state.users.get(username)
            if user is None:
                return not_found()
            given = body.model_fields_set
            if "proxies" in given and body.proxies:
                resolved = resolve_inbounds(body.proxies, body.inbounds)
                if isinstance(resolved, JSONResponse):
                    return resolved
                user.proxies = proxy_settings(body.proxies)
                user.inbounds, user.excluded_inbounds = resolved
            if "expire" in given:
                user.expire = body.expire or None
            if "data_limit" in given:
                user.data_limit = body.data_limit or None
            if "data_limit_reset_strategy" in given and body.data_limit_reset_strategy:
                user.data_limit_reset_strategy = body.data_limit_reset_strategy
            if "note" in given:
                user.note = body.note
            if "status" in given and body.status:
                user.status = body.status
            return state.public(user)

    @app.delete("/api/user/{username}")
    async def remove_user(username: str, _: str = auth):
        with state.lock:
            if state.users.pop(username, None) is None:
                return not_found()
        return {"detail": "User successfully deleted"}

    @app.get("/api/users")
    async def list_users(offset: Annotated[int, Query(ge=0)] = 0,
                         limit: Annotated[int | None, Query(ge=0)] = None,
                         username: Annotated[list[str] | None, Query()] = None,
                         status: str | None = None, _: str = auth):
        with state.lock:
            users = [u for u in state.users.values()
                     if (not username or u.username in username)
                     and (status is None or state.current_status(u) == status)]
            page = users[offset: offset + limit if limit is not None else None]
            return {"users": [state.public(u) for u in page], "total": len(users)}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.marzban")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--admin-username", default="admin")
    parser.add_argument("--admin-password", default="admin-password")
    parser.add_argument("--subscription-prefix", default="")
    ns = parser.parse_args(argv)
    app = create_app(admin_username=ns.admin_username, admin_password=ns.admin_password,
                     subscription_prefix=ns.subscription_prefix)
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
