"""Templates, the per-request page context, and friendly error pages for every web route.

`WebRoute` is the route class of every web router: whatever a page handler or its dependencies
raise becomes an HTML page (a redirect to sign-in, a 403/404 page, a 500 page without internals)
instead of the JSON error the API answers with.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.security import anon_csrf_token, csrf_token
from gateway.web import views
from gateway.web.config import web_settings
from gateway.web.i18n import COOKIE as LANG_COOKIE
from gateway.web.i18n import LANGUAGES, Translator, request_language
from runtime.errors import AppError
from runtime.logging import correlation_id, get_logger

log = get_logger(__name__)

env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_datetime(value) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else "—"


def format_date(value) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d") if parsed else "—"


def days_left(value) -> int:
    parsed = _parse_time(value)
    if parsed is None:
        return 0
    seconds = (parsed - datetime.now(UTC)).total_seconds()
    return max(0, int(-(-seconds // 86400)))


def format_money(value) -> str:
    try:
        return f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def format_iso(value) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).isoformat() if parsed else ""


def format_filesize(value) -> str:
    """A file's size as people read it: 800 B, 12 KB, 4.8 MB."""
    size = int(value or 0)
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB"


env.filters.update(datetime=format_datetime, date=format_date, days_left=days_left,
                   money=format_money, iso=format_iso, filesize=format_filesize)
env.globals["invoice_settled"] = views.invoice_settled


class WebRedirect(Exception):
    """Raised anywhere in a page handler to answer with a 303 redirect."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


def see_other(url: str) -> RedirectResponse:
    """The answer to a page's form post, or to a page that lives elsewhere (303)."""
    return RedirectResponse(url, status_code=303)


def sign_in_redirect(request: Request) -> WebRedirect:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return WebRedirect("/login?next=" + quote(target, safe=""))


def safe_next(target: str | None, default: str = "/app") -> str:
    """Only same-site paths, so `?next=` cannot send anyone to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _anon_token(request: Request) -> str:
    name = request.app.state.settings.anon_cookie
    token = request.cookies.get(name) or getattr(request.state, "new_anon", None)
    if not token:
        token = secrets.token_urlsafe(24)
        request.state.new_anon = token
    return token


def csrf_for(request: Request) -> str:
    """The CSRF token of this visitor: bound to the session, or to an anonymous cookie."""
    key = request.app.state.settings.internal_signing_key
    caller = getattr(request.state, "web_caller", None)
    if caller is not None:
        return csrf_token(key, caller.token)
    return anon_csrf_token(key, _anon_token(request))


def translator(request: Request) -> Translator:
    return Translator(getattr(request.state, "lang", None) or request_language(request))


def page_context(request: Request) -> dict:
    lang = getattr(request.state, "lang", None) or request_language(request)
    caller = getattr(request.state, "web_caller", None)
    ws = web_settings()
    t = Translator(lang)
    done = request.query_params.get("done", "")
    flash = t(f"flash.{done}") if f"flash.{done}" in t.messages else None
    return {"request": request, "t": t, "lang": lang, "languages": LANGUAGES, "flash": flash,
            "user": caller.user if caller else None, "csrf": csrf_for(request),
            "path": request.url.path, "sandbox": ws.sandbox,
            "bot_username": ws.telegram_bot_username}


def render(request: Request, template: str, http_status: int = 200,
           headers: dict[str, str] | None = None, **values) -> HTMLResponse:
    body = env.get_template(template).render(**page_context(request), **values)
    response = HTMLResponse(body, status_code=http_status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    new_anon = getattr(request.state, "new_anon", None)
    if new_anon:
        st = request.app.state.settings
        response.set_cookie(st.anon_cookie, new_anon, httponly=True, samesite="lax", path="/",
                            secure=st.cookie_secure)
    return response


def render_thread(request: Request, ticket: dict, seen: str, poll_url: str) -> Response:
    """A ticket page's live thread: 204 while the page's version (`seen`) is still current."""
    version = views.ticket_version(ticket)
    if seen == version:
        return Response(status_code=204)
    return render(request, "_thread.html", ticket=ticket, version=version, poll_url=poll_url)


def error_page(request: Request, status: int, message: str | None = None,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    return render(request, "error.html", http_status=status, headers=headers,
                  status_code=status, message=message, request_id=correlation_id.get())


def set_language_cookie(response: Response, lang: str) -> None:
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")


class WebRoute(APIRoute):
    """An APIRoute whose failures are HTML pages (never a stack trace, never JSON)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except WebRedirect as redirect:
                return see_other(redirect.url)
            except AppError as exc:
                if exc.status == 401:
                    return see_other(sign_in_redirect(request).url)
                return error_page(request, exc.status, exc.message if exc.status < 500 else None,
                                  headers=exc.headers)
            except RequestValidationError:
                return error_page(request, 400)
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code)
            except Exception as exc:
                log.exception("web_page_failed", error_type=type(exc).__name__,
                              path=request.url.path)
                return error_page(request, 500)

        return guarded
