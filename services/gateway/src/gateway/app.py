"""The gateway API process: `/api/v1` for customers, admins and Telegram."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from gateway import web
from gateway.account import AccountService
from gateway.actions import AdminActions
from gateway.api import (
    admin,
    auth,
    billing,
    broadcasts,
    links,
    ops,
    servers,
    subscriptions,
    telegram,
    tickets,
)
from gateway.api.insight import router as insight
from gateway.asyncapi import install_asyncapi
from gateway.clients import Clients
from gateway.config import Settings
from gateway.openapi import install as install_openapi
from gateway.openapi import install_docs
from gateway.ops import Ops
from gateway.ratelimit import Limits, RateLimiter
from gateway.service import AuthService
from gateway.web.routes.attachments import WEB_UPLOAD_PATTERN
from runtime.db import Database
from runtime.http import create_app
from runtime.service import dependency_checks

API_PREFIX = "/api/v1"


class NoStoreApi:
    """`Cache-Control: no-store` on every `/api/v1` response that sets no policy of its own.

    Simplest safe rule: nearly every answer is someone's data (the access endpoint returns a
    VPN key), so no browser or shared cache keeps any of them unless a route says otherwise.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX + "/"):
            return await self.app(scope, receive, send)

        async def send_no_store(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_no_store)


def create_api(settings: Settings) -> FastAPI:
    db = Database(settings)  # the per-request session lookup uses the reader pool
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    clients = Clients.connect({"tickets": settings.tickets_url, "telegram": settings.telegram_url,
                               "billing": settings.billing_url,
                               "provisioner": settings.provisioner_url},
                              settings.internal_signing_key, settings.upstream_timeout)

    # What every service checks, with the gateway's own Redis client (it rate limits there).
    readiness = {**dependency_checks(settings, db), "redis": redis.ping}

    https = settings.app_base_url.startswith("https://")
    extra_headers = [
        (b"content-security-policy",
         b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
         b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    ]
    if https:
        extra_headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    app = create_app(
        "gateway",
        title="VPN service public API",
        readiness=readiness,
        max_body=settings.max_body_bytes,
        input_guard_exempt={f"{API_PREFIX}/telegram/webhook"},  # relayed as-is
        uploads=[(API_PREFIX + tickets.UPLOAD_PATTERN, tickets.UPLOAD_MAX_BODY),
                 (WEB_UPLOAD_PATTERN, tickets.UPLOAD_MAX_BODY)],
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by install_docs with the gateway's own copy of Swagger UI
        redoc_url=None,
        extra_headers=extra_headers,
        on_close=[clients.close, redis.aclose, db.dispose],
        version="1.0.0",
    )
    app.add_middleware(NoStoreApi)  # outermost: refusals by AppMiddleware (400, 413) too
    app.state.settings = settings
    app.state.db = db
    app.state.redis = redis
    app.state.readiness = readiness
    app.state.limiter = RateLimiter(redis, settings.rate_limits_enabled)
    app.state.limits = Limits(app.state.limiter, settings)
    app.state.auth = AuthService(settings.session_ttl_days, settings.admin_bootstrap_email)
    app.state.clients = clients
    app.state.account = AccountService(db, app.state.auth, app.state.limits, clients, settings)
    app.state.actions = AdminActions(db, clients)
    app.state.ops = Ops(settings, db, clients)

    # FastAPI matches routes one by one in this order, so the customers' and Telegram's come
    # first and the admin ones last: every route tried before a match costs the hot paths time
    # (docs/05-ops/performance.md). No two routers share a path, so the order changes nothing
    # else.
    api = APIRouter(prefix=API_PREFIX)
    for r in (auth.router, links.router, subscriptions.router, billing.router, tickets.router,
              telegram.router, tickets.admin, subscriptions.admin, links.admin, billing.admin,
              admin.router, servers.admin, ops.router, insight, broadcasts.router):
        api.include_router(r)
    app.include_router(api)
    install_openapi(app)
    install_docs(app, f"{API_PREFIX}/docs")
    install_asyncapi(app, API_PREFIX, f"{API_PREFIX}/docs")  # the events' page and document
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    return app
