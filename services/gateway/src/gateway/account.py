"""A person's account as the API and the web pages both run it: sign-up, sign-in (password,
the bot's one-time link, the Login Widget, the Mini App), sign-out, password change and reset,
the Telegram link, and the session cookie that carries the result.

Each function takes the database and opens its own transaction (docs/01-architecture/gateway.md,
"Transactions"); the rate limits of these writes are checked first.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import Request, Response

from contracts.public.telegram import TelegramLinkOut
from gateway.clients import Clients, Reply, Who
from gateway.ratelimit import Limits
from gateway.service import PASSWORD_RESET_TTL, AuthService, SignedIn
from gateway.telegram_login import TelegramUser, check_init_data, check_widget
from runtime.db import Database
from runtime.errors import Unauthenticated
from runtime.logging import get_logger

log = get_logger(__name__)


class AccountService:
    def __init__(self, db: Database, auth: AuthService, limits: Limits, clients: Clients,
                 settings=None):
        self.db = db
        self.auth = auth
        self.limits = limits
        self.clients = clients
        self.settings = settings

    async def register(self, email: str, password: str, ip: str,
                       user_agent: str | None, ref: str | None = None) -> SignedIn:
        await self.limits.register(ip)
        async with self.db.transaction() as s:
            return await self.auth.register(s, email, password, ip, user_agent, ref=ref)

    async def login(self, email: str, password: str, ip: str, user_agent: str | None) -> SignedIn:
        await self.limits.login(ip, email)
        async with self.db.transaction() as s:
            return await self.auth.login(s, email, password, ip, user_agent)

    async def telegram_link_sign_in(self, token: str, ip: str,
                                    user_agent: str | None) -> SignedIn:
        """The bot's one-time `/login` link: the telegram service spends it and names the
        account."""
        await self.limits.telegram_sign_in(ip)
        account = await self.clients.telegram.redeem_login_token(token)
        return await self._telegram_session(account, ip, user_agent)

    async def telegram_widget_sign_in(self, fields: dict[str, str], ip: str,
                                      user_agent: str | None) -> SignedIn:
        await self.limits.telegram_sign_in(ip)
        st = self.settings
        who = check_widget(fields, st.telegram_bot_token, time.time(), st.telegram_login_max_age)
        return await self._linked_session(who, ip, user_agent)

    async def telegram_webapp_sign_in(self, init_data: str, ip: str,
                                      user_agent: str | None) -> SignedIn:
        await self.limits.telegram_sign_in(ip)
        st = self.settings
        who = check_init_data(init_data, st.telegram_bot_token, time.time(),
                              st.telegram_login_max_age)
        return await self._linked_session(who, ip, user_agent)

    async def _linked_session(self, who: TelegramUser, ip: str,
                              user_agent: str | None) -> SignedIn:
        account = await self.clients.telegram.account_by_telegram(who.id)
        if account is None:
            raise Unauthenticated("No account uses this Telegram yet: open the bot and press "
                                  "Start, or link Telegram in your account's settings",
                                  {"reason": "no_account"})
        return await self._telegram_session(account, ip, user_agent)

    async def _telegram_session(self, account: dict, ip: str,
                                user_agent: str | None) -> SignedIn:
        async with self.db.transaction() as s:
            return await self.auth.telegram_sign_in(s, account, ip, user_agent)

    async def forgot_password(self, email: str, ip: str) -> None:
        """Send a reset link to the Telegram linked to the account of `email`, if there is
        one; the caller answers the same whatever happened, so nobody learns which emails
        have accounts."""
        await self.limits.password_reset(ip, email)
        async with self.db.transaction() as s:
            started = await self.auth.start_password_reset(s, email)
        if started is None:
            return
        user, token = started
        url = (f"{self.settings.app_base_url.rstrip('/')}/reset-password?token="
               f"{quote(token, safe='')}")
        await self.clients.telegram.send_password_reset(
            user.id, url, int(PASSWORD_RESET_TTL.total_seconds() // 60))
        log.info("password_reset_sent", user_id=user.id)

    async def reset_password(self, token: str, new: str, ip: str) -> None:
        await self.limits.password_reset_try(ip)
        async with self.db.transaction() as s:
            await self.auth.reset_password(s, token, new)

    async def logout(self, token: str) -> None:
        async with self.db.transaction() as s:
            await self.auth.logout(s, token)

    async def change_password(self, user_id: str, token: str, current: str, new: str) -> None:
        """The new password takes effect and every other session of the account ends."""
        await self.limits.password_change(user_id)
        async with self.db.transaction() as s:
            await self.auth.change_password(s, user_id, current, new, keep_token=token)

    async def telegram_link(self, who: Who) -> Reply[TelegramLinkOut]:
        await self.limits.telegram_link(who.id)
        return await self.clients.telegram.link_token(who)


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
