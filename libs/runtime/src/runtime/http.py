"""FastAPI app factory: error format, request ids, body limit, input guard, security headers,
health, metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from runtime.db import is_transient_db_error
from runtime.errors import AppError, PayloadTooLarge, ValidationFailed
from runtime.logging import correlation_id, get_logger, new_correlation_id
from runtime.metrics import HTTP_DURATION, HTTP_REQUESTS

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
# Something the app holds (a pool, a client) closed when it shuts down.
Closer = Callable[[], Awaitable[object]]

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


_BODYLESS = (None, b"0")
_FORM = b"application/x-www-form-urlencoded"
# A JSON escape of NUL or of a UTF-16 surrogate, preceded by an even number of backslashes (so it
# is an escape, not the text "\\u..."). A high surrogate directly followed by a low one is a
# valid pair; anything else is a lone surrogate that Postgres (and UTF-8) cannot store.
_JSON_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _json_escape_problem(body: bytes) -> str | None:
    pending_high_end = -1  # where a high surrogate's escape ended, awaiting its low half
    for m in _JSON_ESCAPE.finditer(body):
        code = m.group(1).lower()
        if code == b"0000":
            return "NUL characters are not accepted"
        low = code[1] in b"cdef"
        if pending_high_end != -1:
            if not (low and m.start(1) - 2 == pending_high_end):
                return "Lone UTF-16 surrogates are not accepted"
            pending_high_end = -1
        elif low:
            return "Lone UTF-16 surrogates are not accepted"
        else:
            pending_high_end = m.end()
    if pending_high_end != -1:
        return "Lone UTF-16 surrogates are not accepted"
    return None


def body_problem(body: bytes, content_type: bytes | None) -> str | None:
    """Why a request body is refused before parsing (NUL, lone surrogate), or None.

    Plain byte scans first, so a clean body costs a few `in` checks; JSON escapes are matched
    only when the body has a `\\u` at all. A body without a Content-Type is scanned as JSON,
    because FastAPI parses it as JSON.
    """
    if b"\x00" in body:
        return "NUL characters are not accepted"
    ctype = (content_type or b"").split(b";", 1)[0].strip().lower()
    if ctype == _FORM:
        return "NUL characters are not accepted" if b"%00" in body else None
    if (not ctype or ctype.endswith(b"json")) and b"\\u" in body:
        return _json_escape_problem(body)
    return None


def target_problem(path: str, query: bytes) -> str | None:
    """Why a request's path or query string is refused (a NUL, raw or `%00`), or None."""
    if "\x00" in path or b"%00" in query or b"\x00" in query:
        return "NUL characters are not accepted"
    return None


class AppMiddleware:
    """Pure ASGI middleware: request id, body limit, input guard, security headers, RED metrics.

    A request body is read here, before the app runs, so a body over `max_body` is a 413 whether
    or not it declared its length (chunked), and the input guard can refuse NUL characters and
    lone surrogates with a 400 before anything parses or stores them. Paths in `guard_exempt`
    (webhooks that must answer 200 to whatever they are sent) skip the guard, not the limit.
    `uploads` maps path patterns (full matches) of file uploads to their own body limit: a
    multipart body there skips the byte scan (files hold NUL bytes; the route checks its text
    fields itself), any other body is guarded as usual.
    """

    def __init__(self, app, service: str, max_body: int, extra_headers: list | None = None,
                 guard_exempt: frozenset[str] = frozenset(),
                 uploads: Sequence[tuple[str, int]] = ()):
        self.app = app
        self.service = service
        self.max_body = max_body
        self.extra_headers = extra_headers or []
        self.guard_exempt = guard_exempt
        self.uploads = [(re.compile(p), limit) for p, limit in uploads]

    def _upload_limit(self, path: str) -> int | None:
        for pattern, limit in self.uploads:
            if pattern.fullmatch(path):
                return limit
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or new_correlation_id()
        token = correlation_id.set(rid)
        started = time.perf_counter()
        holder = {"status": 500}
        sender = self._send_with_headers(send, rid, holder)
        try:
            guarded = scope["path"] not in self.guard_exempt
            problem = guarded and target_problem(scope["path"], scope.get("query_string", b""))
            if problem:
                return await _refuse(scope, receive, sender, _bad_characters(problem))
            upload = self._upload_limit(scope["path"])
            max_body = self.max_body if upload is None else upload
            ctype = headers.get(b"content-type")
            if upload is not None and (ctype or b"").lower().startswith(b"multipart/form-data"):
                guarded = False
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_body:
                return await _refuse(scope, receive, sender, _too_large(max_body))
            if declared in _BODYLESS and b"transfer-encoding" not in headers:
                return await self.app(scope, receive, sender)
            body = await self._read_body(receive, max_body)
            if body is None:  # the client went away mid-body: nobody to answer
                holder["status"] = 499
                return None
            if len(body) > max_body:
                return await _refuse(scope, receive, sender, _too_large(max_body))
            problem = guarded and body_problem(body, ctype)
            if problem:
                return await _refuse(scope, receive, sender, _bad_characters(problem))
            await self.app(scope, _replay(body, receive), sender)
        finally:
            self._observe(scope, holder["status"], started)
            correlation_id.reset(token)

    async def _read_body(self, receive, max_body: int) -> bytes | None:
        """The whole body, or as soon as it passes `max_body` what was read; None on disconnect."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > max_body or not message.get("more_body", False):
                return b"".join(chunks)

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


async def _refuse(scope, receive, send, exc: AppError) -> None:
    await error_response(exc.status, exc.code, exc.message, exc.details)(scope, receive, send)


def _too_large(max_body: int) -> PayloadTooLarge:
    return PayloadTooLarge(details={"max_bytes": max_body})


def _bad_characters(message: str) -> ValidationFailed:
    return ValidationFailed(message, [{"loc": ["request"], "msg": message,
                                       "type": "invalid_characters"}])


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then waits as the server would."""
    pending = True

    async def replayed():
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def create_app(service: str, *, readiness: dict[str, ReadinessCheck], max_body: int,
               title: str | None = None, openapi_url: str | None = "/openapi.json",
               extra_headers: list | None = None, expose_metrics: bool = True,
               input_guard_exempt: frozenset[str] | set[str] = frozenset(),
               uploads: Sequence[tuple[str, int]] = (),
               on_close: Sequence[Closer] = (), **kwargs) -> FastAPI:
    """The service's app; `input_guard_exempt` lists exact paths that skip the NUL/surrogate
    guard (only webhooks that must acknowledge any update); `uploads` the file-upload routes
    with their own body limit (AppMiddleware); `on_close` is awaited in order when the app
    shuts down (its lifespan: give one or the other)."""
    if on_close:
        if "lifespan" in kwargs:
            raise TypeError("create_app takes on_close or a lifespan, not both")
        kwargs["lifespan"] = _closing(on_close)
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
                       extra_headers=extra_headers, guard_exempt=frozenset(input_guard_exempt),
                       uploads=uploads)
    return app


def _closing(on_close: Sequence[Closer]):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for close in on_close:
            await close()

    return lifespan


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return error_response(400, "VALIDATION_ERROR", "Invalid input", _validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unhandled(_: Request, exc: Exception):
        if is_transient_db_error(exc):
            log.warning("database_unavailable", error_type=type(exc).__name__)
            return error_response(503, "SERVICE_UNAVAILABLE", "The database is unavailable",
                                  headers={"Retry-After": "1"})
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return error_response(500, "INTERNAL_ERROR", "Something went wrong")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    table = getattr(request.app.state, "allow_table", None)
    if table is None:
        table = request.app.state.allow_table = _allow_table(request.app)
    path = request.scope.get("path", "")
    methods = {m for regex, route_methods in table if regex.match(path) for m in route_methods}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _allow_table(app: FastAPI) -> list[tuple[re.Pattern, set[str]]]:
    try:  # FastAPI >= 0.130 keeps included routers nested; this walks them as get_openapi does
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover
        routes = list(app.routes)
    return [(compile_path(r.path_format)[0], set(r.methods)) for r in routes
            if getattr(r, "methods", None) and getattr(r, "path_format", None)]


def tcp_check(url: str, default_port: int) -> ReadinessCheck:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port

    async def check() -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.5)
        writer.close()

    return check
