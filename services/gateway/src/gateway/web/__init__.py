"""The web site, customer panel and admin panel, server-rendered by the gateway.

Jinja2 templates with htmx for the live parts; no front-end build, nothing from a CDN. `router`
holds every page (none of them in the OpenAPI document) and `static_files()` serves
`static/` (htmx, the stylesheet and a few lines of JavaScript).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from gateway.web.routes import (
    admin,
    attachments,
    broadcasts,
    desk,
    links,
    panel,
    public,
    signin,
)

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)
router.include_router(public.router)
router.include_router(links.router)
router.include_router(signin.router)
router.include_router(panel.router)
router.include_router(admin.router)
router.include_router(desk.router)
router.include_router(desk.panel)
router.include_router(attachments.panel)
router.include_router(attachments.router)
router.include_router(broadcasts.router)
router.include_router(public.fallback)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
