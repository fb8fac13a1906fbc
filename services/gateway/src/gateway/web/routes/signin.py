"""The site's ways in without a password and back to one: sign-in with Telegram (the Login
Widget's answer, the panel opened as a Mini App) and "forgot password" (the reset link goes to
the linked Telegram account, the only channel there is).

Nothing here loads Telegram's scripts (the CSP is `script-src 'self'`): the sign-in button is a
link to Telegram's authorisation page, which comes back to `/login/telegram` with the signed
fields in the URL fragment, and the Mini App page reads `initData` from its own URL fragment
(`#tgWebAppData=`), both read by `static/app.js`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request

from gateway.account import set_session_cookie
from gateway.api.deps import client_ip
from gateway.web.deps import Form, OptionalCaller
from gateway.web.rendering import WebRoute, render, see_other, translator
from runtime.errors import AppError, RateLimited, ServiceUnavailable, ValidationFailed

router = APIRouter(route_class=WebRoute)


def telegram_auth_url(request: Request) -> str:
    """Telegram's authorisation page for our bot, coming back to `/login/telegram`."""
    st = request.app.state.settings
    base = st.app_base_url.rstrip("/")
    return st.telegram_oauth_url + "?" + urlencode({
        "bot_id": st.telegram_bot_id, "origin": base, "request_access": "write",
        "return_to": f"{base}/login/telegram"})


@router.get("/login/telegram")
async def telegram_return(request: Request, caller: OptionalCaller):
    """Where Telegram's authorisation page comes back to: the script posts the fragment's
    signed fields to `POST /api/v1/auth/telegram-widget`, then opens the panel."""
    return render(request, "public/telegram_login.html")


@router.get("/tg/app")
async def mini_app(request: Request, caller: OptionalCaller):
    """The panel as a Telegram Mini App: the script posts `initData` to sign in."""
    return render(request, "public/mini_app.html")


@router.post("/tg/app")
async def mini_app_sign_in(request: Request, caller: OptionalCaller, form: Form):
    t = translator(request)
    try:
        signed = await request.app.state.account.telegram_webapp_sign_in(
            form.get("init_data", "")[:8192], client_ip(request),
            request.headers.get("user-agent"))
    except AppError as exc:
        if exc.status not in (401, 403, 429):
            raise
        return render(request, "public/mini_app.html", http_status=exc.status,
                      error=t("tgapp.no_account") if (exc.details or {}).get("reason") ==
                      "no_account" else exc.message)
    response = see_other("/app")
    set_session_cookie(request, response, signed.token)
    return response


@router.get("/forgot-password")
async def forgot_page(request: Request, caller: OptionalCaller):
    return render(request, "public/forgot_password.html", errors={}, values={}, sent=False)


@router.post("/forgot-password")
async def forgot(request: Request, caller: OptionalCaller, form: Form):
    t = translator(request)
    email = form.get("email", "")[:254]
    if "@" not in email:
        return render(request, "public/forgot_password.html", http_status=400,
                      errors={"email": t("forgot.email_invalid")}, values={"email": email},
                      sent=False)
    try:
        await request.app.state.account.forgot_password(email, client_ip(request))
    except RateLimited as exc:
        errors = {"form": t("login.rate_limited", seconds=exc.retry_after)}
    except (ServiceUnavailable, AppError):
        errors = {"form": t("forgot.unavailable")}
    else:
        return render(request, "public/forgot_password.html", errors={}, values={}, sent=True)
    return render(request, "public/forgot_password.html", http_status=400, errors=errors,
                  values={"email": email}, sent=False)


@router.get("/reset-password")
async def reset_page(request: Request, caller: OptionalCaller, token: str = ""):
    return render(request, "public/reset_password.html", errors={}, token=token[:128])


@router.post("/reset-password")
async def reset(request: Request, caller: OptionalCaller, form: Form):
    t = translator(request)
    token, password = form.get("token", "")[:128], form.get("password", "")
    errors: dict[str, str]
    if len(password) < 10:
        errors = {"password": t("forgot.password_short")}
    else:
        try:
            await request.app.state.account.reset_password(token, password[:256],
                                                           client_ip(request))
        except RateLimited as exc:
            errors = {"form": t("login.rate_limited", seconds=exc.retry_after)}
        except ValidationFailed as exc:
            errors = ({"form": t("forgot.link_invalid")}
                      if (exc.details or {}).get("field") == "token"
                      else {"password": exc.message})
        else:
            return see_other("/login?done=password_reset")
    return render(request, "public/reset_password.html", http_status=400, errors=errors,
                  token=token)
