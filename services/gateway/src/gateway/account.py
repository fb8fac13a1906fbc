"""A person's account as the API and the web pages both run it: sign-up, sign-in, sign-out,
password change, the Telegram link, and the session cookie that carries the result.

Each function takes the database and opens its own transaction (docs/01-architecture/gateway.md,
"Transactions"); the rate limits of these writes are checked first.
"""

from __future__ import annotations

from fastapi import Request, Response

from contracts.public.telegram import TelegramLinkOut
from gateway.clients import Clients, Reply, Who
from gateway.ratelimit import Limits
from gateway.service import AuthService, SignedIn
from runtime.db import Database


class AccountService:
    def __init__(self, db: Database, auth: AuthService, limits: Limits, clients: Clients):
        self.db = db
        self.auth = auth
        self.limits = limits
        self.clients = clients

    async def register(self, email: str, password: str, ip: str,
                       user_agent: str | None, ref: str | None = None) -> SignedIn:
        await self.limits.register(ip)
        async with self.db.transaction() as s:
            return await self.auth.register(s, email, password, ip, user_agent, ref=ref)

    async def login(self, email: str, password: str, ip: str, user_agent: str | None) -> SignedIn:
        await self.limits.login(ip, email)
        async with self.db.transaction() as s:
            return await self.auth.login(s, email, password, ip, user_agent)

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
