"""Who is asking (session cookie), what they may open (roles), and checked form posts (CSRF)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.api.deps import STAFF, Caller, session_token
from gateway.security import anon_csrf_valid, csrf_valid
from gateway.web.i18n import request_language
from gateway.web.rendering import sign_in_redirect
from runtime.errors import Forbidden


async def optional_caller(request: Request) -> Caller | None:
    """The signed-in visitor, or None; also fixes the page language for the request."""
    request.state.lang = request_language(request)
    token = session_token(request)
    if not token:
        return None
    user = await request.app.state.auth.user_for_token(request.app.state.db, token)
    if user is None:
        return None
    caller = Caller(user, token)
    request.state.web_caller = caller
    request.state.user_id = user.id
    return caller


async def signed_in(request: Request,
                    caller: Annotated[Caller | None, Depends(optional_caller)]) -> Caller:
    if caller is None:
        raise sign_in_redirect(request)
    if caller.user.is_blocked:
        raise Forbidden("Your account is blocked. Contact support to find out why.")
    return caller


async def staff(caller: Annotated[Caller, Depends(signed_in)]) -> Caller:
    if caller.role not in STAFF:
        raise Forbidden("This page is for the support team.")
    return caller


async def admin(caller: Annotated[Caller, Depends(signed_in)]) -> Caller:
    if caller.role != "ADMIN":
        raise Forbidden("This page is for administrators.")
    return caller


async def checked_form(request: Request,
                       caller: Annotated[Caller | None, Depends(optional_caller)]
                       ) -> dict[str, str]:
    """The posted form, refused with a 403 page unless it carries this visitor's CSRF token.

    With a live session only that session's token counts (an anonymous token minted before
    sign-in, or another session's token, is refused); without one, the anonymous cookie's.
    """
    form = await request.form()
    given = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
    st = request.app.state.settings
    if caller is not None:
        ok = csrf_valid(st.internal_signing_key, caller.token, given)
    else:
        anon = request.cookies.get(st.anon_cookie)
        ok = anon is not None and anon_csrf_valid(st.internal_signing_key, anon, given)
    if not ok:
        raise Forbidden("This form has expired or was sent from another site. "
                        "Go back, reload the page and try again.")
    return {k: v.strip() if isinstance(v, str) else "" for k, v in form.items()
            if k != "csrf_token"}


OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
SignedIn = Annotated[Caller, Depends(signed_in)]
Staff = Annotated[Caller, Depends(staff)]
Admin = Annotated[Caller, Depends(admin)]
Form = Annotated[dict[str, str], Depends(checked_form)]
