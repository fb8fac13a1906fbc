"""The public site: landing page, a referral link, register, sign in, sign out, language
switch."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from gateway.account import delete_session_cookie, set_session_cookie
from gateway.api.deps import STAFF, client_ip
from gateway.schemas import LoginBody, RegisterBody
from gateway.web.deps import Form, OptionalCaller
from gateway.web.forms import FormInvalid, password_errors, validate
from gateway.web.i18n import LANGUAGES
from gateway.web.pages import Pages
from gateway.web.rendering import (
    WebRoute,
    render,
    safe_next,
    see_other,
    set_language_cookie,
    translator,
)
from gateway.web.routes.signin import telegram_auth_url
from runtime.errors import (
    AppError,
    Conflict,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)

router = APIRouter(route_class=WebRoute)
# A referral link's code is remembered this long, for a sign-up that follows the visit.
REFERRAL_COOKIE_SECONDS = 86400
REFERRAL_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")
# Unknown pages under the web prefixes get the 404 page rather than a JSON error.
fallback = APIRouter(route_class=WebRoute)


def _home_of(user) -> str:
    return "/admin" if user.role in STAFF else "/app"


def _signed_in(request: Request, signed, url: str) -> RedirectResponse:
    """On to `url` with the new session's cookie."""
    response = see_other(url)
    set_session_cookie(request, response, signed.token)
    return response


@router.get("/")
async def landing(request: Request, caller: OptionalCaller):
    pages = Pages(request)
    try:
        plans = await pages.plans(caller)
    except ServiceUnavailable:
        plans = None
    backend = await pages.backend(caller) if plans else None
    return render(request, "public/landing.html", plans=plans, backend=backend)


def _referral(request: Request) -> str:
    code = request.cookies.get(request.app.state.settings.referral_cookie, "")
    return code if REFERRAL_CODE.match(code) else ""


@router.get("/r/{code}")
async def referral_link(request: Request, code: str):
    """A referral link: its code remembered in a cookie, then on to sign up (which sends it;
    billing ignores a code it does not know)."""
    response = see_other("/register")
    if REFERRAL_CODE.match(code):
        st = request.app.state.settings
        response.set_cookie(st.referral_cookie, code.lower(), max_age=REFERRAL_COOKIE_SECONDS,
                            httponly=True, samesite="lax", secure=st.cookie_secure, path="/")
    return response


@router.get("/register")
async def register_page(request: Request, caller: OptionalCaller, next: str | None = None):
    if caller:
        return see_other(_home_of(caller.user))
    return render(request, "public/register.html", errors={}, values={"ref": _referral(request)},
                  next=safe_next(next))


@router.post("/register")
async def register(request: Request, caller: OptionalCaller, form: Form):
    t = translator(request)
    nxt = safe_next(form.get("next"))
    # A referral code that cannot be one is left out: it never stops a sign-up.
    ref = form.get("ref", "") if REFERRAL_CODE.match(form.get("ref", "")) else ""
    try:
        body = validate(RegisterBody, {**form, "ref": ref}, t)
        signed = await request.app.state.account.register(
            body.email, body.password, client_ip(request), request.headers.get("user-agent"),
            ref=body.ref)
    except FormInvalid as exc:
        errors = exc.errors
    except Conflict:
        errors = {"email": t("register.email_taken")}
    except ValidationFailed as exc:  # the password rules (common, equal to the email)
        errors = password_errors(exc, t)
    except RateLimited as exc:
        errors = {"form": exc.message}
    else:
        response = _signed_in(request, signed, nxt)
        st = request.app.state.settings
        response.delete_cookie(st.referral_cookie, path="/", secure=st.cookie_secure,
                               httponly=True, samesite="lax")
        return response
    return render(request, "public/register.html", http_status=400, errors=errors,
                  values={"email": form.get("email", ""), "ref": ref}, next=nxt)


@router.get("/login")
async def login_page(request: Request, caller: OptionalCaller, next: str | None = None):
    if caller:
        return see_other(safe_next(next, _home_of(caller.user)))
    return render(request, "public/login.html", errors={}, values={}, next=next or "",
                  telegram_auth_url=telegram_auth_url(request))


@router.post("/login")
async def login(request: Request, caller: OptionalCaller, form: Form):
    t = translator(request)
    status = 400
    try:
        body = validate(LoginBody, form, t)
        signed = await request.app.state.account.login(
            body.email, body.password, client_ip(request), request.headers.get("user-agent"))
    except FormInvalid as exc:
        errors = exc.errors
    except RateLimited as exc:
        errors = {"form": t("login.rate_limited", seconds=exc.retry_after)}
    except AppError as exc:
        if exc.status not in (401, 403):
            raise
        status = exc.status  # 403: the right password of a blocked account, no session made
        errors = {"form": t("login.invalid" if exc.status == 401 else "login.blocked")}
    else:
        return _signed_in(request, signed, safe_next(form.get("next"), _home_of(signed.user)))
    return render(request, "public/login.html", http_status=status, errors=errors,
                  values={"email": form.get("email", "")}, next=form.get("next", ""),
                  telegram_auth_url=telegram_auth_url(request))


@router.post("/logout")
async def logout(request: Request, caller: OptionalCaller, form: Form):
    if caller:
        await request.app.state.account.logout(caller.token)
    response = see_other("/")
    delete_session_cookie(request, response)
    return response


@router.get("/lang/{lang}")
async def switch_language(lang: str, next: str | None = None):
    if lang not in LANGUAGES:
        raise NotFound("Unknown language")
    response = see_other(safe_next(next, "/"))
    set_language_cookie(response, lang)
    return response


@fallback.api_route("/app/{rest:path}", methods=["GET", "POST"])
@fallback.api_route("/admin/{rest:path}", methods=["GET", "POST"])
async def not_found(request: Request, caller: OptionalCaller, rest: str):
    raise NotFound("There is no such page")
