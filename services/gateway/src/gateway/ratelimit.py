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
