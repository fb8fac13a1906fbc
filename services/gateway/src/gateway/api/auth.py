"""`/auth/*`: register, login, logout, me, Telegram deep link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from gateway.api.deps import DB, Caller, CurrentCaller, client_ip, current_caller_even_blocked
from gateway.models import User
from gateway.repository import SignedInUser
from gateway.schemas import Credentials, LoginBody, TelegramLinkOut, UserEnvelope
from runtime.errors import ServiceUnavailable

router = APIRouter(prefix="/auth", tags=["auth"])


def user_out(user: User | SignedInUser) -> dict:
    return {"id": user.id, "email": user.email, "role": user.role, "created_at": user.created_at,
            "telegram": {"linked": user.telegram_linked, "username": user.telegram_username}}


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """The new session's cookie; the anonymous one goes, so a form token minted before sign-in
    is void after it (and after sign-out: a new anonymous cookie is minted then)."""
    st = request.app.state.settings
    response.set_cookie(st.session_cookie, token, max_age=st.session_ttl_days * 86400,
                        httponly=True, samesite="lax", secure=st.cookie_secure, path="/")
    if st.anon_cookie in request.cookies:
        response.delete_cookie(st.anon_cookie, path="/", secure=st.cookie_secure, httponly=True,
                               samesite="lax")


def delete_session_cookie(request: Request, response: Response) -> None:
    st = request.app.state.settings
    # `__Host-` cookies are only replaced by a Set-Cookie that is Secure with Path=/ as well.
    response.delete_cookie(st.session_cookie, path="/", secure=st.cookie_secure, httponly=True,
                           samesite="lax")


async def limit_telegram_links(request: Request, user_id: str) -> None:
    """Link creation per user (API and web panel share the bucket): 429 past the hourly limit."""
    await request.app.state.limiter.hit("telegram-link-user", user_id,
                                        request.app.state.settings.telegram_links_per_user_per_hour,
                                        3600)


@router.post("/register", status_code=201, response_model=UserEnvelope)
async def register(body: Credentials, request: Request, response: Response, s: DB):
    st = request.app.state.settings
    await request.app.state.limiter.hit("register-ip", client_ip(request),
                                        st.register_per_ip_per_hour, 3600)
    signed = await request.app.state.auth.register(s, body.email, body.password,
                                                   client_ip(request),
                                                   request.headers.get("user-agent"))
    set_session_cookie(request, response, signed.token)
    return {"user": user_out(signed.user)}


@router.post("/login", response_model=UserEnvelope)
async def login(body: LoginBody, request: Request, response: Response, s: DB):
    st = request.app.state.settings
    limiter = request.app.state.limiter
    await limiter.hit("login-ip", client_ip(request), st.login_per_ip_per_minute, 60)
    await limiter.hit("login-email", body.email.strip(), st.login_per_email_per_minute, 60)
    signed = await request.app.state.auth.login(s, body.email, body.password, client_ip(request),
                                                request.headers.get("user-agent"))
    set_session_cookie(request, response, signed.token)
    return {"user": user_out(signed.user)}


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, s: DB,
                 caller: Annotated[Caller, Depends(current_caller_even_blocked)]):
    await request.app.state.auth.logout(s, caller.token)
    response = Response(status_code=204)
    delete_session_cookie(request, response)
    return response


@router.get("/me", response_model=UserEnvelope)
async def me(caller: CurrentCaller):
    return {"user": user_out(caller.user)}


@router.post("/telegram-link", status_code=201, response_model=TelegramLinkOut)
async def telegram_link(request: Request, caller: CurrentCaller):
    await limit_telegram_links(request, caller.id)
    r = await request.app.state.upstreams["telegram"].call(
        "POST", "/internal/link-tokens", user_id=caller.id, role=caller.role)
    if r.status_code != 201:
        raise ServiceUnavailable("Could not create a Telegram link")
    return r.json()
