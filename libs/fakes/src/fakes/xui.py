"""3x-ui (v3.x) panel fake: a real HTTP server for the driver's tests and local runs.

Owns the fake side of the 3x-ui integration and copies what the real v3.6.0 panel does:

* every route lives under the web base path (`--base-path`, default `/`);
* `GET {base}csrf-token` opens a session (cookie `3x-ui`, `Path` = the base path, HttpOnly,
  SameSite=Lax, Max-Age = the session age) and answers `{"success": true, "obj": <token>}`;
  every POST (the login too) without that token in `X-CSRF-Token` is a bare 403;
* `POST {base}login` (form or JSON `username`, `password`) always answers HTTP 200, `success`
  true or false; API calls without a logged-in session are a bare 404, or 401 when
  `X-Requested-With: XMLHttpRequest` is sent;
* answers are `{"success", "msg", "obj"}`, always HTTP 200; an error's `msg` is
  `<what> (<error>)`, the error often ending in a newline as the panel's `fmt.Sprintln` leaves;
* `{base}panel/api/clients/*`: `add` (`{"client", "inboundIds"}`; `enable` is forced on; a
  missing `subId` gets a uuid; an email in use is `email already in use: <email>`), `update/
  {email}` (replaces the whole client, keeping the credentials and `subId` when left out),
  `del/{email}`, `{email}/attach`, `get/{email}` (`{client, inboundIds, externalLinks,
  usedTraffic}`, unknown: `Obtain (record not found)`), `traffic/{email}` (the counters; an
  unknown email is `success` with `obj: null`), `resetTraffic/{email}` (zeroes and re-enables),
  `updateTraffic/{email}`, `list`, `ips/{email}` (`[{ip, time, node}]` the IP-limit job saw);
* `{base}panel/api/inbounds/list` and `get/{id}`: `settings`, `streamSettings` and `sniffing` are
  JSON documents **in strings**; a client's counters (`clientStats`) sit under its first inbound;
* `totalGB` is bytes, `expiryTime` unix ms; a client over its `totalGB` or past its
  `expiryTime` is switched off (`enable: false` in its record, its counters and the inbounds'
  settings), checked on every call where the real panel's job runs every few seconds.

Control API under `{base}_fake/` (no login): `POST clients/{email}/traffic` `{up, down}`,
`POST clients/{email}/ips` `{ips: [...]}`, `POST traffic-reset` `{period}` (the panel's
periodic reset of clients on that cycle: zeroed and re-enabled unless switched off by hand
below the allowance),
`POST clients/{email}/use-up`, `POST clients/{email}/expire`, `POST fail` `{count, status,
msg}` (status 200 answers `success: false` with msg), `POST hang` `{count, seconds, after}`
(after: the call is carried out, then its answer hangs, as a lost answer), `POST
sessions/expire`, `POST race-add` `{email}` (the next add of that email loses a race: another
add made it first, and the answer is `Duplicate email`), `GET state`, `POST reset`.
Run: `python -m fakes.xui --host 127.0.0.1 --port 2053 --username admin --password admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

__all__ = ["XuiState", "create_app", "main"]

COOKIE = "3x-ui"
NOT_FOUND = "record not found"
WRONG = "Something went wrong"


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Inbound:
    id: int
    remark: str
    protocol: str = "vless"
    port: int = 443
    enable: bool = True

    @property
    def tag(self) -> str:
        return f"inbound-{self.port}"


@dataclass
class Client:
    id: int
    email: str
    sub_id: str
    uuid: str
    password: str
    inbound_ids: list[int]
    fields: dict[str, Any]  # limitIp, totalGB, expiryTime, enable, flow, comment, ...
    up: int = 0
    down: int = 0
    ips: list[str] = field(default_factory=list)  # seen by the panel's IP-limit job
    created_at: int = field(default_factory=_ms)
    updated_at: int = field(default_factory=_ms)

    @property
    def enable(self) -> bool:
        return bool(self.fields.get("enable"))

    def record(self) -> dict[str, Any]:
        f = self.fields
        return {"id": self.id, "email": self.email, "subId": self.sub_id, "uuid": self.uuid,
                "password": self.password, "auth": "", "flow": f.get("flow", ""),
                "security": f.get("security", ""), "limitIp": int(f.get("limitIp") or 0),
                "limitHwid": int(f.get("limitHwid") or 0),
                "totalGB": int(f.get("totalGB") or 0),
                "expiryTime": int(f.get("expiryTime") or 0), "enable": self.enable,
                "tgId": int(f.get("tgId") or 0), "group": f.get("group", ""),
                "comment": f.get("comment", ""), "reset": int(f.get("reset") or 0),
                "resetDay": int(f.get("resetDay") or 0), "resetMax": int(f.get("resetMax") or 0),
                "trafficReset": f.get("trafficReset") or "never",
                "trafficResetDay": int(f.get("trafficResetDay") or 1),
                "createdAt": self.created_at, "updatedAt": self.updated_at, "reverse": None}

    def in_settings(self, inbound: Inbound) -> dict[str, Any]:
        """The client as the inbound's `settings` JSON holds it."""
        r = self.record()
        out = {"email": self.email, "limitIp": r["limitIp"], "totalGB": r["totalGB"],
               "expiryTime": r["expiryTime"], "enable": r["enable"], "tgId": r["tgId"],
               "subId": self.sub_id, "comment": r["comment"], "reset": r["reset"],
               "created_at": self.created_at, "updated_at": self.updated_at}
        if inbound.protocol in ("vless", "vmess"):
            out["id"] = self.uuid
            out["flow"] = r["flow"]
        else:
            out["password"] = self.password
        return out

    def traffic(self) -> dict[str, Any]:
        r = self.record()
        return {"id": self.id, "inboundId": self.inbound_ids[0] if self.inbound_ids else 0,
                "enable": self.enable, "email": self.email, "uuid": self.uuid,
                "subId": self.sub_id, "up": self.up, "down": self.down,
                "allTime": self.up + self.down, "expiryTime": r["expiryTime"],
                "total": r["totalGB"], "reset": r["reset"], "resetDay": r["resetDay"],
                "resetMax": r["resetMax"], "resetCount": 0, "lastOnline": 0, "lastSubFetch": 0}


@dataclass
class Session:
    csrf: str
    expires: float
    logged_in: bool = False


@dataclass
class XuiState:
    username: str = "admin"
    password: str = "admin"
    base_path: str = "/"
    session_max_age: int = 360 * 60
    inbounds: dict[int, Inbound] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)  # by lower-case email
    sessions: dict[str, Session] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    logins: int = 0
    fail_next: int = 0
    fail_status: int = 500
    fail_msg: str = "Something went wrong (database is locked)"
    hang_next: int = 0
    hang_seconds: float = 30.0
    hang_after: bool = False
    race_emails: set[str] = field(default_factory=set)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- tests reach these directly too --------------------------------------------------

    def client(self, email: str) -> Client | None:
        return self.clients.get(email.lower())

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def inject_failures(self, count: int, status: int = 500, msg: str | None = None) -> None:
        with self.lock:
            self.fail_next, self.fail_status = count, status
            if msg:
                self.fail_msg = msg

    def hang(self, count: int, seconds: float, *, after: bool = False) -> None:
        with self.lock:
            self.hang_next, self.hang_seconds, self.hang_after = count, seconds, after

    def set_traffic(self, email: str, up: int, down: int) -> None:
        with self.lock:
            c = self.client(email)
            if c is None:
                raise KeyError(email)
            c.up, c.down = up, down
            self.check_depleted()

    def use_up(self, email: str) -> None:
        with self.lock:
            c = self.client(email)
            if c is None:
                raise KeyError(email)
            c.down = max(int(c.fields.get("totalGB") or 0) - c.up, c.down)
            self.check_depleted()

    def expire(self, email: str) -> None:
        with self.lock:
            c = self.client(email)
            if c is None:
                raise KeyError(email)
            c.fields["expiryTime"] = _ms() - 1000
            self.check_depleted()

    def check_depleted(self) -> None:
        """Switch off clients over their allowance or past their expiry (the panel's job)."""
        now = _ms()
        for c in self.clients.values():
            total, expiry = int(c.fields.get("totalGB") or 0), int(c.fields.get("expiryTime") or 0)
            if c.enable and ((total > 0 and c.up + c.down >= total) or 0 < expiry <= now):
                c.fields["enable"] = False
                c.updated_at = now

    def run_traffic_reset(self, period: str = "monthly") -> list[str]:
        """The panel's periodic reset of clients on their own cycle: zeroed and re-enabled,
        except a client switched off by hand below its allowance."""
        done = []
        with self.lock:
            for c in self.clients.values():
                total = int(c.fields.get("totalGB") or 0)
                depleted = total > 0 and c.up + c.down >= total
                if c.fields.get("trafficReset") != period or (not c.enable and not depleted):
                    continue
                c.up = c.down = 0
                c.fields["enable"] = True
                done.append(c.email)
            self.check_depleted()
        return done

    def reset(self) -> None:
        with self.lock:
            self.clients.clear()
            self.sessions.clear()
            self.requests.clear()
            self.race_emails.clear()
            self.fail_next = self.hang_next = self.logins = 0

    def inbound_json(self, ib: Inbound) -> dict[str, Any]:
        members = [c for c in self.clients.values() if ib.id in c.inbound_ids]
        settings: dict[str, Any] = {"clients": [c.in_settings(ib) for c in members]}
        if ib.protocol == "vless":
            settings |= {"decryption": "none", "fallbacks": []}
        stream = {"network": "tcp", "security": "reality", "realitySettings": {"show": False}}
        return {"id": ib.id, "up": 0, "down": 0, "total": 0, "allTime": 0, "remark": ib.remark,
                "enable": ib.enable, "expiryTime": 0, "trafficReset": "never",
                "lastTrafficResetTime": 0,
                "clientStats": [c.traffic() for c in members if c.inbound_ids[0] == ib.id],
                "listen": "", "port": ib.port, "protocol": ib.protocol,
                "settings": json.dumps(settings, indent=2), "streamSettings": json.dumps(stream),
                "tag": ib.tag, "sniffing": json.dumps({"enabled": False})}


def _ok(msg: str = "", obj: Any = None) -> JSONResponse:
    return JSONResponse({"success": True, "msg": msg, "obj": obj})


def _err(msg: str, err: str | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "msg": f"{msg} ({err})" if err else msg, "obj": None})


def _sprintln(*parts: Any) -> str:
    return " ".join(str(p) for p in parts) + "\n"


def create_app(*, username: str = "admin", password: str = "admin", base_path: str = "/",
               inbounds: list[tuple[int, str, str]] | None = None,
               session_max_age_minutes: int = 360) -> FastAPI:
    base = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
    state = XuiState(username=username, password=password, base_path=base,
                     session_max_age=session_max_age_minutes * 60)
    for i, (ib_id, remark, protocol) in enumerate(
            inbounds or [(1, "VLESS-443", "vless"), (2, "Trojan-8443", "trojan")]):
        state.inbounds[ib_id] = Inbound(ib_id, remark, protocol, 443 + 8000 * i)
    app = FastAPI(title="3x-ui panel (fake)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.xui = state
    api = f"{base}panel/api/"
    control = f"{base}_fake/"

    def session_of(request: Request) -> tuple[str | None, Session | None]:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None, None
        s = state.sessions.get(sid)
        if s is None or s.expires < time.time():
            state.sessions.pop(sid, None)
            return sid, None
        return sid, s

    def csrf_ok(request: Request, s: Session | None) -> bool:
        given = request.headers.get("x-csrf-token", "")
        return s is not None and bool(given) and secrets.compare_digest(given, s.csrf)

    @app.middleware("http")
    async def gate(request: Request, call_next):
        path = request.url.path
        if path.startswith(control) or not path.startswith(base):
            return await call_next(request)
        with state.lock:
            state.requests.append((request.method, path[len(base) - 1:]))
            if path.startswith(api):
                _, s = session_of(request)
                if s is None or not s.logged_in:
                    xhr = request.headers.get("x-requested-with") == "XMLHttpRequest"
                    return Response(status_code=401 if xhr else 404)
            if request.method == "POST" and path in (f"{base}login", f"{base}logout") or (
                    path.startswith(api) and request.method == "POST"):
                if not csrf_ok(request, session_of(request)[1]):
                    return Response(status_code=403)
            hang, after = 0.0, False
            if state.hang_next > 0 and path.startswith(api):
                state.hang_next -= 1
                hang = state.hang_seconds
                after = state.hang_after
            if state.fail_next > 0 and path.startswith(api) and not hang:
                state.fail_next -= 1
                if state.fail_status == 200:
                    return _err(state.fail_msg)
                return Response("502 Bad Gateway", status_code=state.fail_status)
        if hang and not after:
            await asyncio.sleep(hang)
        response = await call_next(request)
        if hang and after:
            await asyncio.sleep(hang)
        return response

    # -- login ---------------------------------------------------------------------------

    def set_cookie(response: Response, sid: str) -> None:
        response.set_cookie(COOKIE, sid, max_age=state.session_max_age, path=base,
                            httponly=True, samesite="lax")

    @app.get(f"{base}csrf-token")
    async def csrf_token(request: Request):
        with state.lock:
            sid, s = session_of(request)
            if s is None:
                sid = secrets.token_urlsafe(24)
                s = state.sessions[sid] = Session(secrets.token_urlsafe(32),
                                                  time.time() + state.session_max_age)
            response = _ok(obj=s.csrf)
        set_cookie(response, sid)
        return response

    @app.post(f"{base}login")
    async def login(request: Request):
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                form = await request.json()
            except ValueError:
                form = None
        else:
            form = dict(await request.form())
        if not isinstance(form, dict):
            return _err("Invalid form data.")
        user, pw = str(form.get("username") or ""), str(form.get("password") or "")
        if not user:
            return _err("Please enter username.")
        if not pw:
            return _err("Please enter password.")
        if user != state.username or not secrets.compare_digest(pw.encode(),
                                                                state.password.encode()):
            return _err("Invalid username or password or two-factor code.")
        with state.lock:
            sid, s = session_of(request)
            s.logged_in = True  # the CSRF gate made sure there is a session
            state.logins += 1
        response = _ok("You have successfully logged into your account.")
        set_cookie(response, sid)
        return response

    # -- inbounds ------------------------------------------------------------------------

    @app.get(f"{api}inbounds/list")
    async def inbounds_list():
        with state.lock:
            state.check_depleted()
            return _ok(obj=[state.inbound_json(ib) for ib in state.inbounds.values()])

    @app.get(api + "inbounds/get/{ib_id}")
    async def inbound_get(ib_id: str):
        with state.lock:
            state.check_depleted()
            ib = state.inbounds.get(int(ib_id)) if ib_id.isdigit() else None
            if ib is None:
                return _err("Obtain", NOT_FOUND)
            return _ok(obj=state.inbound_json(ib))

    # -- clients -------------------------------------------------------------------------

    async def json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def apply_fields(target: dict[str, Any], given: dict[str, Any]) -> str | None:
        for key in ("limitIp", "totalGB", "expiryTime", "tgId", "reset", "resetDay", "resetMax",
                    "trafficResetDay", "limitHwid"):
            value = given.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool):
                return f"json: cannot unmarshal {type(value).__name__} into Go struct field " \
                       f"Client.{key} of type int64"
            target[key] = value
        period = given.get("trafficReset") or "never"
        if period not in ("never", "hourly", "daily", "weekly", "monthly"):
            return _sprintln("client trafficReset must be never, hourly, daily, weekly or "
                             "monthly, got:", period)
        target["trafficReset"] = period
        for key in ("flow", "security", "group", "comment"):
            target[key] = str(given.get(key) or "")
        target["enable"] = bool(given.get("enable"))
        return None

    @app.post(f"{api}clients/add")
    async def client_add(request: Request):
        body = await json_body(request)
        if body is None or not isinstance(body.get("client"), dict):
            return _err(WRONG, "invalid request")
        given, ids = body["client"], body.get("inboundIds") or []
        email = str(given.get("email") or "").strip()
        if not email:
            return _err(WRONG, _sprintln("client email is required"))
        if any(ch in email for ch in "/\\ \t\n"):
            return _err(WRONG, _sprintln("client email contains an invalid character:", email))
        if not ids:
            return _err(WRONG, _sprintln("at least one inbound is required"))
        with state.lock:
            if any(i not in state.inbounds for i in ids):
                return _err(WRONG, NOT_FOUND)
            raced = email.lower() in state.race_emails
            state.race_emails.discard(email.lower())
            existing = state.client(email)
            if existing is not None and not raced:
                if not existing.sub_id or existing.sub_id != given.get("subId"):
                    return _err(WRONG, _sprintln("email already in use:", email))
            fields: dict[str, Any] = {}
            problem = apply_fields(fields, given)
            if problem:
                return _err(WRONG, problem)
            fields["enable"] = True  # the panel turns a new client on, whatever was sent
            sub_id = str(given.get("subId") or "") or str(uuid.uuid4())
            if any(c.sub_id == sub_id and c.email.lower() != email.lower()
                   for c in state.clients.values()):
                return _err(WRONG, _sprintln("subId already in use:", sub_id))
            if existing is None:
                client = Client(state.next_id, email, sub_id if not raced else str(uuid.uuid4()),
                                str(given.get("id") or uuid.uuid4()),
                                str(given.get("password") or uuid.uuid4().hex), list(ids), fields)
                state.next_id += 1
                state.clients[email.lower()] = client
                if raced:  # the other add committed first; this one trips on its email
                    return _err(WRONG, _sprintln("Duplicate email:", email))
            else:  # the same subId again: the identity is attached to more inbounds
                if raced:
                    return _err(WRONG, _sprintln("Duplicate email:", email))
                existing.inbound_ids += [i for i in ids if i not in existing.inbound_ids]
            return _ok("Inbound client(s) have been added.")

    @app.post(api + "clients/update/{email}")
    async def client_update(email: str, request: Request):
        body = await json_body(request)
        if body is None:
            return _err(WRONG, "invalid request")
        with state.lock:
            c = state.client(email)
            if c is None:
                return _err(WRONG, NOT_FOUND)
            new_email = str(body.get("email") or "").strip()
            if not new_email:
                return _err(WRONG, _sprintln("client email is required"))
            if new_email.lower() != c.email.lower() and state.client(new_email) is not None:
                return _err(WRONG, _sprintln("Duplicate email:", new_email))
            fields: dict[str, Any] = {}
            problem = apply_fields(fields, body)
            if problem:
                return _err(WRONG, problem)
            sub_id = str(body.get("subId") or "") or c.sub_id
            if any(o is not c and o.sub_id == sub_id for o in state.clients.values()):
                return _err(WRONG, _sprintln("Duplicate subId:", sub_id))
            state.clients.pop(c.email.lower())
            c.email, c.sub_id, c.fields = new_email, sub_id, fields
            c.uuid = str(body.get("id") or "") or c.uuid
            c.password = str(body.get("password") or "") or c.password
            c.updated_at = _ms()
            state.clients[new_email.lower()] = c
            state.check_depleted()
            return _ok("Inbound client has been updated.")

    @app.post(api + "clients/del/{email}")
    async def client_delete(email: str):
        with state.lock:
            if state.clients.pop(email.lower(), None) is None:
                return _err(WRONG, NOT_FOUND)
            return _ok("Inbound client has been deleted.")

    @app.post(api + "clients/{email}/attach")
    async def client_attach(email: str, request: Request):
        body = await json_body(request) or {}
        with state.lock:
            c = state.client(email)
            if c is None:
                return _err(WRONG, NOT_FOUND)
            ids = body.get("inboundIds") or []
            if any(i not in state.inbounds for i in ids):
                return _err(WRONG, NOT_FOUND)
            c.inbound_ids += [i for i in ids if i not in c.inbound_ids]
            return _ok("Inbound client(s) have been added.")

    @app.get(api + "clients/get/{email}")
    async def client_get(email: str):
        with state.lock:
            state.check_depleted()
            c = state.client(email)
            if c is None:
                return _err("Obtain", NOT_FOUND)
            return _ok(obj={"client": c.record(), "inboundIds": list(c.inbound_ids),
                            "externalLinks": [], "usedTraffic": c.up + c.down})

    @app.get(f"{api}clients/list")
    async def client_list():
        with state.lock:
            state.check_depleted()
            return _ok(obj=[c.record() | {"inboundIds": list(c.inbound_ids),
                                          "traffic": c.traffic()}
                            for c in sorted(state.clients.values(), key=lambda x: x.id)])

    @app.get(api + "clients/traffic/{email}")
    async def client_traffic(email: str):
        with state.lock:
            state.check_depleted()
            c = state.client(email)
            return _ok(obj=c.traffic() if c else None)

    @app.post(api + "clients/resetTraffic/{email}")
    async def client_reset_traffic(email: str):
        with state.lock:
            c = state.client(email)
            if c is None:
                return _err(WRONG, NOT_FOUND)
            c.fields["enable"] = True  # the panel re-enables a disabled client on reset
            c.up = c.down = 0
            state.check_depleted()  # still past its expiry: off again
            return _ok("Traffic has been reset.")

    @app.post(api + "clients/updateTraffic/{email}")
    async def client_update_traffic(email: str, request: Request):
        body = await json_body(request) or {}
        with state.lock:
            c = state.client(email)
            if c is not None:
                c.up, c.down = int(body.get("upload") or 0), int(body.get("download") or 0)
                state.check_depleted()
            return _ok("Inbound client has been updated.")

    @app.post(api + "clients/ips/{email}")
    async def client_ips(email: str):
        with state.lock:
            c = state.client(email)
            ips = list(c.ips) if c else []
        return _ok(obj=[{"ip": ip, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "node": ""}
                        for ip in ips])

    # -- control API ---------------------------------------------------------------------

    async def control_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def missing(email: str) -> JSONResponse:
        return JSONResponse({"detail": f"no client {email}"}, status_code=404)

    @app.post(control + "clients/{email}/traffic")
    async def control_traffic(email: str, request: Request):
        body = await control_body(request)
        try:
            state.set_traffic(email, int(body.get("up") or 0), int(body.get("down") or 0))
        except KeyError:
            return missing(email)
        return {"ok": True}

    @app.post(control + "clients/{email}/ips")
    async def control_ips(email: str, request: Request):
        body = await control_body(request)
        with state.lock:
            c = state.client(email)
            if c is None:
                return missing(email)
            c.ips = [str(ip) for ip in body.get("ips") or []]
        return {"ok": True}

    @app.post(control + "clients/{email}/use-up")
    async def control_use_up(email: str):
        try:
            state.use_up(email)
        except KeyError:
            return missing(email)
        return {"ok": True}

    @app.post(control + "clients/{email}/expire")
    async def control_expire(email: str):
        try:
            state.expire(email)
        except KeyError:
            return missing(email)
        return {"ok": True}

    @app.post(f"{control}fail")
    async def control_fail(request: Request):
        body = await control_body(request)
        state.inject_failures(int(body.get("count", 1)), int(body.get("status", 500)),
                              body.get("msg"))
        return {"ok": True}

    @app.post(f"{control}hang")
    async def control_hang(request: Request):
        body = await control_body(request)
        state.hang(int(body.get("count", 1)), float(body.get("seconds", 30)),
                   after=bool(body.get("after")))
        return {"ok": True}

    @app.post(f"{control}traffic-reset")
    async def control_traffic_reset(request: Request):
        body = await control_body(request)
        return {"reset": state.run_traffic_reset(str(body.get("period") or "monthly"))}

    @app.post(f"{control}sessions/expire")
    async def control_sessions():
        state.expire_sessions()
        return {"ok": True}

    @app.post(f"{control}race-add")
    async def control_race(request: Request):
        body = await control_body(request)
        with state.lock:
            state.race_emails.add(str(body.get("email") or "").lower())
        return {"ok": True}

    @app.get(f"{control}state")
    async def control_state():
        with state.lock:
            return {"clients": [asdict(c) for c in state.clients.values()],
                    "sessions": len(state.sessions), "logins": state.logins,
                    "requests": state.requests[-200:]}

    @app.post(f"{control}reset")
    async def control_reset():
        state.reset()
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.xui")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2053)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--base-path", default="/")
    ns = parser.parse_args(argv)
    app = create_app(username=ns.username, password=ns.password, base_path=ns.base_path)
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
