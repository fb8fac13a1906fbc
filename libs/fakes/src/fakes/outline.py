"""Outline server (shadowbox) management API fake: a real HTTP(S) server for driver tests.

Owns the fake side of the Outline integration and copies the real server's behaviour:

* every route lives under a secret path prefix (the `apiUrl` is `https://host:port/<secret>`);
  any other path is 404 `{"code": "ResourceNotFound", ...}`, checked before routing;
* `POST /access-keys` → 201 with a server-chosen, increasing numeric id; `PUT /access-keys/{id}`
  → 201 with the caller's id, 409 `Conflict` if the id exists (so a retried create is visible as
  409), 409 also when the password is already used by another key;
* `GET /access-keys` → `{"accessKeys": [...]}`; `GET|DELETE /access-keys/{id}` → 200/204, or 404
  `{"code": "NotFoundError", "message": ...}`; `PUT /access-keys/{id}/name` → 204;
  `PUT|DELETE /access-keys/{id}/data-limit` with `{"limit": {"bytes": N}}` → 204 (400 on a bad
  limit); `dataLimit` is omitted from a key that has none; `GET /server` (with
  `accessKeyDataLimit` once `PUT /server/access-key-data-limit` set a server-wide default);
  `PUT /name`; `GET /metrics/transfer` → `{"bytesTransferredByUserId": {...}}` (bytes over the
  last 30 days, set by tests in `state.transfer`);
* access URLs are SIP002 `ss://<base64url(method:password)>@host:port/?outline=1`.

Serve it over HTTPS with a self-signed certificate (uvicorn's `ssl_certfile`/`ssl_keyfile`), as a
real Outline server does; its `certSha256` is the SHA-256 of that certificate's DER bytes.
Tests reach the in-memory state (`app.state.outline`) to inspect keys, see which requests
arrived, or make the next calls fail. Run: `python -m fakes.outline --port 8443 --certfile c.pem
--keyfile k.pem --secret S`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import itertools
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["OutlineState", "create_app", "main"]

CIPHERS = {"aes-256-gcm", "aes-192-gcm", "aes-128-gcm", "chacha20-ietf-poly1305"}
DEFAULT_CIPHER = "chacha20-ietf-poly1305"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _not_found(key_id: str) -> JSONResponse:
    return _error(404, "NotFoundError", f"Access key \"{key_id}\" not found")


@dataclass
class AccessKey:
    id: str
    name: str
    password: str
    port: int
    method: str
    data_limit: int | None = None

    def public(self, hostname: str) -> dict[str, Any]:
        userinfo = base64.urlsafe_b64encode(f"{self.method}:{self.password}".encode()).decode()
        out: dict[str, Any] = {
            "id": self.id, "name": self.name, "password": self.password, "port": self.port,
            "method": self.method,
            "accessUrl": f"ss://{userinfo.rstrip('=')}@{hostname}:{self.port}/?outline=1",
        }
        if self.data_limit is not None:
            out["dataLimit"] = {"bytes": self.data_limit}
        return out


@dataclass
class OutlineState:
    secret: str
    hostname: str = "127.0.0.1"
    port_for_new_keys: int = 12345
    name: str = "Outline Server"
    keys: dict[str, AccessKey] = field(default_factory=dict)
    transfer: dict[str, int] = field(default_factory=dict)
    # the server-wide data limit for keys without their own (`accessKeyDataLimit`)
    default_data_limit: int | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    _ids: itertools.count = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject_failures(self, count: int, status: int = 500) -> None:
        with self.lock:
            self.fail_next, self.fail_status = count, status

    def new_id(self) -> str:
        while True:
            candidate = str(next(self._ids))
            if candidate not in self.keys:
                return candidate


def _valid_limit(limit: Any) -> int | None:
    if not isinstance(limit, dict):
        return None
    value = limit.get("bytes")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def create_app(secret: str | None = None, *, hostname: str = "127.0.0.1",
               port_for_new_keys: int = 12345) -> FastAPI:
    state = OutlineState(secret=secret or secrets.token_urlsafe(16), hostname=hostname,
                         port_for_new_keys=port_for_new_keys)
    prefix = f"/{state.secret}"
    app = FastAPI(title="Outline management API (fake)", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.outline = state

    @app.middleware("http")
    async def prefix_filter(request: Request, call_next):
        path = request.url.path
        with state.lock:
            state.requests.append((request.method, path))
        head = path[: len(prefix)]
        if not (hmac.compare_digest(head.encode(), prefix.encode())
                and (len(path) == len(prefix) or path[len(prefix)] == "/")):
            return _error(404, "ResourceNotFound", f"{path} does not exist")
        with state.lock:
            if state.fail_next > 0:
                state.fail_next -= 1
                return _error(state.fail_status, "InternalServerError", "injected failure")
        return await call_next(request)

    async def params(request: Request) -> dict[str, Any]:
        body = await request.body()
        if not body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            return {"__invalid__": True}
        return data if isinstance(data, dict) else {"__invalid__": True}

    def create_key(data: dict[str, Any], key_id: str | None) -> JSONResponse:
        if data.get("__invalid__"):
            return _error(400, "BadRequest", "Invalid JSON body")
        method = data.get("method") or DEFAULT_CIPHER
        if not isinstance(method, str) or method not in CIPHERS:
            return _error(400, "InvalidArgument", f"Invalid cipher {method}")
        name = data.get("name", "")
        if not isinstance(name, str):
            return _error(400, "InvalidArgument", "Expected a string for name")
        password = data.get("password")
        if password is not None and not isinstance(password, str):
            return _error(400, "InvalidArgument", "Expected a string for password")
        port = data.get("port", state.port_for_new_keys)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            return _error(400, "InvalidArgument", "Expected a numeric port")
        limit = None
        if "limit" in data:
            limit = _valid_limit(data["limit"])
            if limit is None:
                return _error(400, "InvalidArgument", "`limit.bytes` must be an non-negative "
                                                      "integer")
        with state.lock:
            if key_id is not None and key_id in state.keys:
                return _error(409, "Conflict", f"Access key \"{key_id}\" already exists")
            if password is not None and any(k.password == password for k in state.keys.values()):
                return _error(409, "Conflict", "Password is already in use by another key")
            key = AccessKey(id=key_id if key_id is not None else state.new_id(), name=name,
                            password=password or secrets.token_urlsafe(16)[:22], port=port,
                            method=method, data_limit=limit)
            state.keys[key.id] = key
            return JSONResponse(key.public(state.hostname), status_code=201)

    @app.get(prefix + "/server")
    async def get_server():
        return {"name": state.name, "serverId": "00000000-fake-4000-8000-outline00000",
                "metricsEnabled": False, "createdTimestampMs": 1700000000000,
                "version": "1.12.0", "portForNewAccessKeys": state.port_for_new_keys,
                "hostnameForAccessKeys": state.hostname,
                **({"accessKeyDataLimit": {"bytes": state.default_data_limit}}
                   if state.default_data_limit is not None else {})}

    @app.put(prefix + "/server/access-key-data-limit")
    async def set_default_data_limit(request: Request):
        limit = _valid_limit((await params(request)).get("limit"))
        if limit is None:
            return _error(400, "InvalidArgument", "`limit.bytes` must be an non-negative integer")
        state.default_data_limit = limit
        return Response(status_code=204)

    @app.delete(prefix + "/server/access-key-data-limit")
    async def remove_default_data_limit():
        state.default_data_limit = None
        return Response(status_code=204)

    @app.put(prefix + "/name")
    async def rename_server(request: Request):
        name = (await params(request)).get("name")
        if not isinstance(name, str) or not name or len(name) > 100:
            return _error(400, "InvalidArgument", "Parameter `name` is missing or invalid")
        state.name = name
        return Response(status_code=204)

    @app.post(prefix + "/access-keys")
    async def create_new_access_key(request: Request):
        data = await params(request)
        if data.get("id"):
            return _error(400, "InvalidArgument", "Parameter `id` is not allowed")
        return create_key(data, None)

    @app.put(prefix + "/access-keys/{key_id}")
    async def create_access_key(key_id: str, request: Request):
        return create_key(await params(request), key_id)

    @app.get(prefix + "/access-keys")
    async def list_access_keys():
        with state.lock:
            return {"accessKeys": [k.public(state.hostname) for k in state.keys.values()]}

    @app.get(prefix + "/access-keys/{key_id}")
    async def get_access_key(key_id: str):
        with state.lock:
            key = state.keys.get(key_id)
            return key.public(state.hostname) if key else _not_found(key_id)

    @app.delete(prefix + "/access-keys/{key_id}")
    async def remove_access_key(key_id: str):
        with state.lock:
            if state.keys.pop(key_id, None) is None:
                return _not_found(key_id)
        return Response(status_code=204)

    @app.put(prefix + "/access-keys/{key_id}/name")
    async def rename_access_key(key_id: str, request: Request):
        name = (await params(request)).get("name")
        if not name:
            return _error(400, "MissingParameter", "Parameter `name` is missing")
        if not isinstance(name, str):
            return _error(400, "InvalidArgument", "Parameter `name` must be of type string")
        with state.lock:
            if key_id not in state.keys:
                return _not_found(key_id)
            state.keys[key_id].name = name
        return Response(status_code=204)

    @app.put(prefix + "/access-keys/{key_id}/data-limit")
    async def set_data_limit(key_id: str, request: Request):
        limit = _valid_limit((await params(request)).get("limit"))
        if limit is None:
            return _error(400, "InvalidArgument", "`limit.bytes` must be an non-negative integer")
        with state.lock:
            if key_id not in state.keys:
                return _not_found(key_id)
            state.keys[key_id].data_limit = limit
        return Response(status_code=204)

    @app.delete(prefix + "/access-keys/{key_id}/data-limit")
    async def remove_data_limit(key_id: str):
        with state.lock:
            if key_id not in state.keys:
                return _not_found(key_id)
            state.keys[key_id].data_limit = None
        return Response(status_code=204)

    @app.get(prefix + "/metrics/transfer")
    async def transfer():
        with state.lock:
            return {"bytesTransferredByUserId": dict(state.transfer)}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.outline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    ns = parser.parse_args(argv)
    app = create_app(ns.secret, hostname=ns.host)
    uvicorn.run(app, host=ns.host, port=ns.port, ssl_certfile=ns.certfile,
                ssl_keyfile=ns.keyfile, log_level="warning")


if __name__ == "__main__":
    main()
