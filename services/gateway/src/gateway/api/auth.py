"""`/auth/*`: register, login, logout, me, Telegram deep link, and sign-in from Telegram (the
bot's one-time link, the Login Widget)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from contracts.public.common import ErrorOut
from contracts.public.telegram import TelegramLinkOut
from gateway.account import delete_session_cookie, set_session_cookie
from gateway.api.deps import Account, Caller, CurrentCaller, client_ip, current_caller_even_blocked
from gateway.models import User
from gateway.repository import SignedInUser
from gateway.schemas import CsrfOut, LoginBody, RegisterBody, TelegramWidgetBody, UserEnvelope
from gateway.security import csrf_token

router = APIRouter(prefix="/auth", tags=["auth"])


def user_out(user: User | SignedInUser) -> dict:
    return {"id": user.id, "email": user.email, "role": user.role, "created_at": user.created_at,
            "telegram": {"linked": user.telegram_linked, "username": user.telegram_username,
                         "id": user.telegram_id}}


@router.post("/register", status_code=201, response_model=UserEnvelope)
async def register(body: RegisterBody, request: Request, response: Response, account: Account):
    signed = await account.register(body.email, body.password, client_ip(request),
                                    request.headers.get("user-agent"), ref=body.ref)
    set_session_cookie(request, response, signed.token)
    return {"user": user_out(signed.user)}


@router.post("/login", response_model=UserEnvelope)
async def login(body: LoginBody, request: Request, response: Response, account: Account):
    signed = await account.login(body.email, body.password, client_ip(request),
                                 request.headers.get("user-agent"))
    set_session_cookie(request, response, signed.token)
    return {"user": user_out(signed.user)}


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, account: Account,
                 caller: Annotated[Caller, Depends(current_caller_even_blocked)]):
    await account.logout(caller.token)
    response = Response(status_code=204)
    delete_session_cookie(request, response)
    return response


@router.get("/me", response_model=UserEnvelope)
async def me(caller: CurrentCaller):
    return {"user": user_out(caller.user)}


@router.get("/csrf", response_model=CsrfOut, responses={401: {"model": ErrorOut}})
async def csrf(request: Request, caller: CurrentCaller):
    """The session's CSRF token, for writes that cannot be JSON (`POST
    /tickets/{id}/attachments`). Bound to this session; no other origin can read it (no CORS)."""
    return {"csrf_token": csrf_token(request.app.state.settings.internal_signing_key,
                                     caller.token)}


@router.post("/telegram-link", status_code=201, response_model=TelegramLinkOut)
async def telegram_link(account: Account, caller: CurrentCaller):
    return (await account.telegram_link(caller)).response()


@router.get("/telegram-login", status_code=303, response_class=RedirectResponse,
            responses={303: {"description": "signed in: on to the panel, with the session "
                                            "cookie"},
                       401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                       429: {"model": ErrorOut}})
async def telegram_login(request: Request, account: Account,
                         token: Annotated[str, Query(min_length=1, max_length=128)]):
    """The bot's one-time sign-in link (`/login`: 10 minutes, single use)."""
    signed = await account.telegram_link_sign_in(token, client_ip(request),
                                                 request.headers.get("user-agent"))
    response = RedirectResponse("/app", status_code=303)
    set_session_cookie(request, response, signed.token)
    return response


@router.post("/telegram-widget", response_model=UserEnvelope,
             responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                        429: {"model": ErrorOut}})
async def telegram_widget(body: TelegramWidgetBody, request: Request, response: Response,
                          account: Account):
    """Sign-in with the Telegram Login Widget's fields: the hash is checked with the bot
    token and `auth_date` must be within 24 h; the Telegram user must have an account."""
    signed = await account.telegram_widget_sign_in(body.signed_fields(), client_ip(request),
                                                   request.headers.get("user-agent"))
    set_session_cookie(request, response, signed.token)
    return {"user": user_out(signed.user)}
