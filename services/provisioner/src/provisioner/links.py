"""The stable subscription link: one token per subscription, served from whichever server holds
the access now.

`GET /sub/{token}` finds the subscription by its token and answers what its server's panel
serves at the account's own subscription URL (the body, its Content-Type and the headers VPN
clients read), or, for a backend that only has a key (Outline, the sandbox), that key as a
one-line subscription (base64, as panels serve it) with the headers made here. A customer's apps
keep this link for life: moving the access to another server, or to another panel, changes
nothing for them.

The token (32 random bytes, base64url) is stored as is, because the access page and the bot show
the link again every time; it is a bearer capability of the same worth as the panel's own
subscription URL, and can be rotated or revoked at any moment. It is looked up by its SHA-256
(`link_hash`, unique): the index is walked with the digest, never with the token's own bytes, so
how long a lookup takes says nothing about how close a guess was; the row found is then compared
with `hmac.compare_digest`. An unknown, rotated or revoked token takes the same path and gets
the same 404.

What was fetched is kept in Redis for `SUB_LINK_CACHE_SECONDS` under the token's digest, the
server's id and the app's User-Agent (panels choose the format by it, and get it passed on): a
rotated or revoked token is refused by the lookup before the cache is read (and its entries
dropped), and an access moved to another server is looked up under a new key. Redis
being away only skips the cache. A server that cannot answer is a 503 with `Retry-After`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.public.links import TOKEN_RE, link_view
from provisioner.backends import AccountMissing, BackendError, VpnBackend
from provisioner.config import Settings
from provisioner.metrics import SUB_LINK_REQUESTS
from provisioner.models import Server, Subscription
from provisioner.repository import ProvisioningRepository, ServerRepository
from provisioner.servers import ACTIVE, ServerPool
from runtime.clock import now
from runtime.db import Database
from runtime.errors import NotFound, ServiceUnavailable
from runtime.identity import Identity
from runtime.logging import get_logger

log = get_logger(__name__)

TOKEN_BYTES = 32
RETRY_AFTER_SECONDS = 30
NOT_FOUND = "No such subscription link"
# The panel's headers VPN clients read, passed on as they come.
PASSED = ("subscription-userinfo", "profile-update-interval", "content-disposition",
          "profile-title", "profile-web-page-url", "support-url", "announce")
COUNTRY_RE = re.compile(r"^([a-z]{2})(?:-|$)")
# The link's lookup: one statement on the driver's connections (no ORM, no transaction), as
# every app refreshes it.
LOOKUP = ("SELECT link_token, provision_ref, server_id, expires_at FROM subscriptions"
          " WHERE link_hash = $1")


def new_token() -> tuple[str, str]:
    """A fresh token and its digest."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Content:
    """A subscription as served: the body, its media type and the clients' headers."""

    body: bytes
    media_type: str
    headers: dict[str, str]

    def dumps(self) -> str:
        return json.dumps({"b": base64.b64encode(self.body).decode(), "t": self.media_type,
                           "h": self.headers})

    @classmethod
    def loads(cls, raw: str | bytes) -> Content:
        d = json.loads(raw)
        return cls(base64.b64decode(d["b"]), d["t"], dict(d["h"]))


def unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _userinfo(upload: int, download: int, total: int, expire: int) -> str:
    return f"upload={upload}; download={download}; total={total}; expire={expire}"


class LinkService:
    """Tokens (made, rotated, revoked), the content behind them, and the public locations."""

    def __init__(self, settings: Settings, db: Database, pool: ServerPool | None,
                 backend: VpnBackend, redis: Redis | None = None,
                 http: httpx.AsyncClient | None = None):
        self.settings = settings
        self.db = db
        self.pool = pool
        self.backend = backend
        self.redis = redis if redis is not None else Redis.from_url(
            settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
        self.http = http if http is not None else httpx.AsyncClient(
            timeout=settings.vpn_timeout_seconds, follow_redirects=False)
        self.prefix = f"{settings.jobs_prefix}:{settings.service_name}:sub-link"

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()

    def view(self, token: str | None) -> dict:
        return link_view(self.settings.app_base_url, token, self.settings.sub_profile_title)

    def _key(self, digest: str, server_id: str | None, user_agent: str = "") -> str:
        agent = hashlib.sha256(user_agent.encode()).hexdigest()[:16]
        return f"{self.prefix}:{digest}:{server_id or '-'}:{agent}"

    # ---- tokens -----------------------------------------------------------------------------
    async def _own(self, s: AsyncSession, sub_id: str, who: Identity | None) -> Subscription:
        """The subscription, locked; `who` (a customer) must own it (else not found)."""
        sub = await ProvisioningRepository(s).subscription(sub_id, for_update=True)
        if sub is None or (who is not None and sub.user_id != who.user_id):
            raise NotFound("Subscription not found")
        return sub

    async def rotate(self, s: AsyncSession, sub_id: str, who: Identity | None) -> dict:
        """A new token (the old one, if any, is refused from the commit on)."""
        sub = await self._own(s, sub_id, who)
        old = sub.link_hash
        sub.link_token, sub.link_hash = new_token()
        sub.updated_at = now()
        await s.flush()
        await self._forget(old)
        log.info("subscription_link_rotated", subscription_id=sub.id,
                 by="owner" if who is not None else "staff")
        return self.view(sub.link_token)

    async def revoke(self, s: AsyncSession, sub_id: str, who: Identity | None) -> None:
        """No token at all until one is rotated in again (idempotent)."""
        sub = await self._own(s, sub_id, who)
        old = sub.link_hash
        if old is None:
            return
        sub.link_token = sub.link_hash = None
        sub.updated_at = now()
        await s.flush()
        await self._forget(old)
        log.info("subscription_link_revoked", subscription_id=sub.id,
                 by="owner" if who is not None else "staff")

    async def _forget(self, digest: str | None) -> None:
        if digest is None:
            return
        try:
            keys = [k async for k in self.redis.scan_iter(f"{self.prefix}:{digest}:*")]
            if keys:
                await self.redis.delete(*keys)
        except (RedisError, OSError) as exc:  # the lookup refuses the token anyway
            log.warning("sub_link_cache_unavailable", error=type(exc).__name__)

    # ---- the content ------------------------------------------------------------------------
    async def content(self, token: str, user_agent: str = "") -> Content:
        """What `GET /sub/{token}` answers; `NotFound` for an unknown or revoked token,
        `ServiceUnavailable` (with Retry-After) while the server cannot answer. The app's
        `user_agent` goes on to the panel, which picks the format by it (Clash's YAML,
        sing-box's JSON, base64 links), so answers are kept per agent too."""
        if not TOKEN_RE.match(token):
            SUB_LINK_REQUESTS.labels("not_found").inc()
            raise NotFound(NOT_FOUND)
        digest = token_hash(token)
        row = await self.db.fetchrow(LOOKUP, digest)
        if row is None or not hmac.compare_digest((row["link_token"] or "").encode(),
                                                  token.encode()):
            SUB_LINK_REQUESTS.labels("not_found").inc()
            raise NotFound(NOT_FOUND)
        ref, server_id, expires_at = row["provision_ref"], row["server_id"], row["expires_at"]
        try:
            driver = (await self.pool.driver(server_id) if self.pool is not None
                      else self.backend)
        except Exception as exc:  # its row unreadable (credentials under another key)
            log.warning("sub_link_driver_failed", server_id=server_id, error=type(exc).__name__)
            SUB_LINK_REQUESTS.labels("unavailable").inc()
            raise unavailable("The VPN server is unavailable") from exc
        user_agent = user_agent[:300]
        key = self._key(digest, server_id, user_agent)
        cached = await self._cached(key)
        if cached is not None:
            SUB_LINK_REQUESTS.labels("cached").inc()
            return cached
        try:
            out = await self._fetch(driver, ref, int(expires_at.timestamp()), user_agent)
        except ServiceUnavailable:
            SUB_LINK_REQUESTS.labels("unavailable").inc()
            raise
        SUB_LINK_REQUESTS.labels("fetched").inc()
        await self._store(key, out)
        return out

    async def _cached(self, key: str) -> Content | None:
        if not self.settings.sub_link_cache_seconds:
            return None
        try:
            raw = await self.redis.get(key)
        except (RedisError, OSError) as exc:
            log.warning("sub_link_cache_unavailable", error=type(exc).__name__)
            return None
        return Content.loads(raw) if raw else None

    async def _store(self, key: str, out: Content) -> None:
        if not self.settings.sub_link_cache_seconds:
            return
        try:
            await self.redis.set(key, out.dumps(), ex=self.settings.sub_link_cache_seconds)
        except (RedisError, OSError) as exc:
            log.warning("sub_link_cache_unavailable", error=type(exc).__name__)

    async def _fetch(self, driver: VpnBackend, ref: str, expire: int,
                     user_agent: str) -> Content:
        try:
            details = await driver.access(ref)
        except AccountMissing as exc:
            raise unavailable("The access is being set up; try again shortly") from exc
        except BackendError as exc:
            raise unavailable("The VPN server is unavailable") from exc
        if details.access_url.startswith(("https://", "http://")):
            return await self._from_panel(driver, details.access_url, user_agent)
        return await self._from_key(driver, ref, details.access_url, expire)

    async def _from_panel(self, driver: VpnBackend, url: str, user_agent: str) -> Content:
        """The panel's own subscription URL, fetched now as the app would."""
        headers = {"Accept": "*/*", **({"User-Agent": user_agent} if user_agent else {})}
        try:
            r = await self.http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("sub_link_fetch_failed", backend=driver.name, error=type(exc).__name__)
            raise unavailable("The VPN server is unavailable") from exc
        if r.status_code != 200:
            log.warning("sub_link_fetch_failed", backend=driver.name, status=r.status_code)
            raise unavailable("The VPN server is unavailable")
        headers = {k: r.headers[k] for k in PASSED if k in r.headers}
        headers.setdefault("profile-update-interval", str(self.settings.sub_update_interval_hours))
        headers.setdefault("content-disposition",
                           f'attachment; filename="{self.settings.sub_profile_title}"')
        media = r.headers.get("content-type") or "text/plain; charset=utf-8"
        return Content(r.content, media, headers)

    async def _from_key(self, driver: VpnBackend, ref: str, key: str, expire: int) -> Content:
        """A key-only backend: the key as a one-line subscription, its use where known."""
        try:
            used = await driver.usage(ref)
            upload, download, total = 0, used.used_bytes or 0, used.limit_bytes or 0
        except BackendError:  # the key came; its counters are a nicety
            upload = download = total = 0
        body = base64.b64encode((key + "\n").encode())
        return Content(body, "text/plain; charset=utf-8", {
            "subscription-userinfo": _userinfo(upload, download, total, expire),
            "profile-update-interval": str(self.settings.sub_update_interval_hours),
            "content-disposition": f'attachment; filename="{self.settings.sub_profile_title}"',
        })

    # ---- locations --------------------------------------------------------------------------
    async def locations(self, s: AsyncSession) -> list[dict]:
        """Locations with a server that takes new customers now (ACTIVE, healthy, room)."""
        if self.pool is not None:
            await self.pool.seed()
        repo = ServerRepository(s)
        servers: list[Server] = [x for x in await repo.all() if x.status == ACTIVE and x.healthy]
        loads = await repo.loads([x.id for x in servers])
        codes = sorted({x.location for x in servers if loads.get(x.id, 0) < x.capacity})
        names = self.settings.location_names
        return [{"id": code, "name": names.get(code, code),
                 "country": (m.group(1).upper() if (m := COUNTRY_RE.match(code)) else None)}
                for code in codes]
