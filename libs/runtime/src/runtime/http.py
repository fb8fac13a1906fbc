"""FastAPI app factory: error format, request ids, body limit, security headers, health, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.db import is_transient_db_error
from runtime.errors import AppError, PayloadTooLarge
from runtime.logging import correlation_id, get_logger, new_correlation_id
from runtime.metrics import HTTP_DURATION, HTTP_REQUESTS

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]

_STATUS_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHENTICATED", 403: "FORBIDDEN",
                 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT",
                 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED"}


def error_response(status: int, code: str, message: str, details=None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return ORJSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError):
    out = []
    for err in exc.errors():
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg"),
                    "type": err.get("type")})
    return out


class AppMiddleware:
    """Pure ASGI middleware: request id, body limit, security headers, RED metrics."""

    def __init__(self, app, service: str, max_body: int, extra_headers: list | None = None):
        self.app = app
        self.service = service
        self.max_body = max_body
        self.extra_headers = extra_headers or []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or new_correlation_id()
        token = correlation_id.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 500}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            resp = error_response(413, "PAYLOAD_TOO_LARGE", "Request body too large",
                                  {"max_bytes": self.max_body})
            resp.headers["X-Request-ID"] = rid
            status_holder["status"] = 413
            await resp(scope, receive, self._send_with_headers(send, rid, status_holder))
            self._observe(scope, status_holder["status"], started)
            correlation_id.reset(token)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise PayloadTooLarge(details={"max_bytes": self.max_body})
            return message

        try:
            await self.app(scope, limited_receive,
                           self._send_with_headers(send, rid, status_holder))
        finally:
            self._observe(scope, status_holder["status"], started)
            correlation_id.reset(token)

    def _send_with_headers(self, send, rid: str, holder: dict):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                holder["status"] = message["status"]
                hdrs = list(message.get("headers", []))
                names = {k.lower() for k, _ in hdrs}
                hdrs.append((b"x-request-id", rid.encode("latin-1")))
                for k, v in SECURITY_HEADERS + self.extra_headers:
                    if k not in names:
                        hdrs.append((k, v))
                message = {**message, "headers": hdrs}
            await send(message)

        return wrapped

    def _observe(self, scope, status: int, started: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
        HTTP_DURATION.labels(self.service, method, path).observe(time.perf_counter() - started)


def create_app(service: str, *, readiness: dict[str, ReadinessCheck], max_body: int,
               title: str | None = None, openapi_url: str | None = "/openapi.json",
               extra_headers: list | None = None, expose_metrics: bool = True,
               **kwargs) -> FastAPI:
    app = FastAPI(title=title or service, openapi_url=openapi_url,
                  default_response_class=ORJSONResponse, **kwargs)
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        failing = {}

        async def run(name: str, check: ReadinessCheck):
            try:
                await asyncio.wait_for(check(), timeout=2)
            except Exception as exc:
                failing[name] = str(exc)[:200] or type(exc).__name__

        await asyncio.gather(*(run(n, c) for n, c in readiness.items()))
        if failing:
            return error_response(503, "SERVICE_UNAVAILABLE", "Dependencies unreachable",
                                  {"failing": failing})
        return {"status": "ready", "service": service, "checks": sorted(readiness)}

    if expose_metrics:
        @app.get("/metrics", include_in_schema=False)
        async def metrics():
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(AppMiddleware, service=service, max_body=max_body,
                       extra_headers=extra_headers)
    return app


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return error_response(400, "VALIDATION_ERROR", "Invalid input", _validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unhandled(_: Request, exc: Exception):
        if is_transient_db_error(exc):
            log.warning("database_unavailable", error_type=type(exc).__name__)
            return error_response(503, "SERVICE_UNAVAILABLE", "The database is unavailable",
                                  headers={"Retry-After": "1"})
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return error_response(500, "INTERNAL_ERROR", "Something went wrong")


def tcp_check(url: str, default_port: int) -> ReadinessCheck:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port

    async def check() -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.5)
        writer.close()

    return check
