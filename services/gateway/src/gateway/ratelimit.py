"""Fixed-window rate limits in Redis, answering 429 `RATE_LIMITED` with `Retry-After`."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from runtime.errors import RateLimited, ServiceUnavailable


class RateLimiter:
    def __init__(self, redis: Redis, enabled: bool = True):
        self.redis = redis
        self.enabled = enabled

    async def hit(self, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
        if not self.enabled or limit <= 0:
            return
        digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:32]
        key = f"rl:{bucket}:{digest}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, window_seconds, nx=True)
                pipe.ttl(key)
                count, _, ttl = await pipe.execute()
        except (RedisError, OSError) as exc:
            # Fail closed: without the limiter, sign-in and sign-up would be open to brute force.
            raise ServiceUnavailable("Rate limiting is unavailable, try again shortly") from exc
        if count > limit:
            raise RateLimited(retry_after=ttl if ttl and ttl > 0 else window_seconds)


class Limits:
    """Every limit a repeatable write is held to, by name: the API and the web pages share them,
    so a customer cannot get around one by switching between the two."""

    def __init__(self, limiter: RateLimiter, settings):
        self.limiter = limiter
        self.settings = settings

    async def register(self, ip: str) -> None:
        await self.limiter.hit("register-ip", ip, self.settings.register_per_ip_per_hour, 3600)

    async def login(self, ip: str, email: str) -> None:
        st = self.settings
        await self.limiter.hit("login-ip", ip, st.login_per_ip_per_minute, 60)
        await self.limiter.hit("login-email", email.strip(), st.login_per_email_per_minute, 60)

    async def password_change(self, user_id: str) -> None:
        await self.limiter.hit("password-user", user_id, 10, 3600)

    async def invoice(self, user_id: str) -> None:
        await self.limiter.hit("invoice-user", user_id, self.settings.invoices_per_user_per_hour,
                               3600)

    async def new_ticket(self, user_id: str) -> None:
        await self.limiter.hit("ticket-user", user_id, self.settings.tickets_per_user_per_hour,
                               3600)

    async def reply(self, user_id: str, ticket_id: str) -> None:
        """Per user, and per user on one ticket: the ticket bucket is keyed by user and ticket,
        so nobody can use up the owner's bucket by posting to a ticket id that is not theirs."""
        st = self.settings
        await self.limiter.hit("reply-user", user_id, st.ticket_replies_per_user_per_hour, 3600)
        await self.limiter.hit("reply-ticket", f"{user_id}:{ticket_id}",
                               st.ticket_replies_per_ticket_per_hour, 3600)

    async def attachment(self, user_id: str, ticket_id: str) -> None:
        """An upload is a reply, and carries up to 5 files of 5 MB: a bucket of its own too."""
        await self.reply(user_id, ticket_id)
        await self.limiter.hit("attachment-user", user_id,
                               self.settings.ticket_uploads_per_user_per_hour, 3600)

    async def location_change(self, user_id: str) -> None:
        """Each move of an access creates an account on a server: a few an hour."""
        await self.limiter.hit("location-user", user_id, 10, 3600)

    async def auto_renew(self, user_id: str) -> None:
        await self.limiter.hit("auto-renew-user", user_id, 60, 3600)

    async def telegram_sign_in(self, ip: str) -> None:
        """A one-time link, the Login Widget or the Mini App: each checks a secret."""
        await self.limiter.hit("telegram-sign-in-ip", ip,
                               self.settings.telegram_sign_ins_per_ip_per_minute, 60)

    async def password_reset(self, ip: str, email: str) -> None:
        st = self.settings
        await self.limiter.hit("reset-ip", ip, st.password_resets_per_ip_per_hour, 3600)
        await self.limiter.hit("reset-email", email.strip(), st.password_resets_per_email_per_hour,
                               3600)

    async def password_reset_try(self, ip: str) -> None:
        """Each try of a reset link checks a secret."""
        await self.limiter.hit("reset-try-ip", ip,
                               self.settings.telegram_sign_ins_per_ip_per_minute, 60)

    async def sub_link(self, ip: str, token: str) -> None:
        """`GET /sub/{token}`: per address (guessing tokens) and per token (a leaked link)."""
        st = self.settings
        await self.limiter.hit("sub-ip", ip, st.sub_link_per_ip_per_minute, 60)
        await self.limiter.hit("sub-token", token, st.sub_link_per_token_per_minute, 60)

    async def link_change(self, user_id: str) -> None:
        """Rotating or revoking one's subscription link."""
        await self.limiter.hit("link-change-user", user_id, 20, 3600)

    async def telegram_link(self, user_id: str) -> None:
        await self.limiter.hit("telegram-link-user", user_id,
                               self.settings.telegram_links_per_user_per_hour, 3600)

    async def broadcast_write(self, user_id: str) -> None:
        """Creating and previewing broadcasts (a preview sends a Telegram message at once)."""
        await self.limiter.hit("broadcast-user", user_id, 60, 3600)
