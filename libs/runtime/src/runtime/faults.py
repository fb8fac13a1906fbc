"""Faults injected into a sandbox adapter, kept in Redis under the service's jobs prefix.

The sandbox adapters (billing's payment provider, the provisioner's VPN backend) can be told to
fail, so retry and failure paths run without a real outside service. Their faults are kept out
of the service's schema, so production migrations never create a table for them, and in Redis
rather than in memory, because they are added through the API process and must reach the
worker as well.

A fault hits the calls of one `operation` ('*' = any): each hit call hangs `delay_ms`, then
fails with `message`; it lasts `for_seconds` (None: until cleared) and hits at most `count`
calls (None: any number). A call takes the oldest fault that matches and spends one of its
calls, atomically (one Lua script), so replicas share the count; spent and expired faults are
dropped as they are met. Redis being away reads as "no fault": the switch is a test tool, and
a Redis outage must not become an outage of the adapter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from runtime.errors import ServiceUnavailable
from runtime.logging import get_logger
from runtime.settings import ServiceSettings

log = get_logger(__name__)

TIMEOUT = 1.0

# KEYS[1]: the faults hash (id -> JSON); ARGV: the operation, the time now in ms, how many
# calls are made at once. Each call takes the oldest matching fault with calls left, as one
# call after the other would. Returns {message, delay_ms, calls, ...} for every fault taken,
# oldest first.
_TAKE_MANY = """
local ids = redis.call('HKEYS', KEYS[1])
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
local now = tonumber(ARGV[2])
local left = tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local f = cjson.decode(redis.call('HGET', KEYS[1], id))
  local spent = f.remaining ~= cjson.null and f.remaining <= 0
  local expired = f.until_ms ~= cjson.null and f.until_ms <= now
  if spent or expired then
    redis.call('HDEL', KEYS[1], id)
  elseif left > 0 and (f.operation == '*' or f.operation == ARGV[1]) then
    local calls = left
    if f.remaining ~= cjson.null then
      calls = math.min(left, f.remaining)
      f.remaining = f.remaining - calls
      redis.call('HSET', KEYS[1], id, cjson.encode(f))
    end
    left = left - calls
    table.insert(out, f.message)
    table.insert(out, f.delay_ms)
    table.insert(out, calls)
  end
end
return out
"""


@dataclass(frozen=True)
class Fault:
    message: str
    delay_ms: int


class FaultSwitch:
    """One adapter's injected faults: one Redis hash under `key`, ids from `key:ids`."""

    def __init__(self, redis_url: str, key: str):
        self.key = key
        # short timeouts and no retries: the check runs before every call of the adapter
        self.redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=TIMEOUT,
                                    socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
        self._take_many = self.redis.register_script(_TAKE_MANY)

    async def add(self, operation: str, *, message: str, delay_ms: int = 0,
                  for_seconds: float | None = None, count: int | None = None) -> int:
        """Inject a fault; returns its id."""
        until_ms = int((time.time() + for_seconds) * 1000) if for_seconds is not None else None
        fault = {"operation": operation, "message": message, "delay_ms": delay_ms,
                 "until_ms": until_ms, "remaining": count}

        async def write() -> int:
            fault_id = int(await self.redis.incr(f"{self.key}:ids"))
            await self.redis.hset(self.key, str(fault_id), json.dumps(fault))
            return fault_id

        return await self._written(write)

    async def clear(self) -> None:
        """Remove every injected fault (ids start again from 1)."""
        await self._written(lambda: self.redis.delete(self.key, f"{self.key}:ids"))

    @staticmethod
    async def _written(write):
        """A control write, tried again once: the first use of a pooled connection that a
        Redis restart closed fails (the hot path, `take`, is never retried)."""
        for attempt in (1, 2):
            try:
                return await write()
            except (RedisError, OSError) as exc:
                if attempt == 2:
                    raise ServiceUnavailable("Redis cannot be written right now") from exc

    async def take(self, operation: str) -> Fault | None:
        """The fault this call of `operation` is to suffer, if any (one of its calls spent)."""
        hit = await self.take_many(operation, 1)
        return hit[0] if hit else None

    async def take_many(self, operation: str, calls: int) -> list[Fault]:
        """The faults `calls` calls of `operation` made at once are to suffer, in call order
        (one entry per call hit, at most `calls`; the first calls are the ones hit), spent
        atomically as that many `take`s would."""
        if calls <= 0:
            return []
        try:
            hit = await self._take_many(keys=[self.key],
                                        args=[operation, int(time.time() * 1000), calls])
        except (RedisError, OSError) as exc:
            log.warning("sandbox_faults_unreadable", key=self.key, error=str(exc)[:200])
            return []
        out: list[Fault] = []
        for i in range(0, len(hit), 3):
            out += [Fault(message=hit[i], delay_ms=int(hit[i + 1]))] * int(hit[i + 2])
        return out

    async def close(self) -> None:
        await self.redis.aclose()


def sandbox_faults(settings: ServiceSettings) -> FaultSwitch:
    """The faults of this service's sandbox adapter, under its jobs prefix (so test runs with
    prefixes of their own never share them)."""
    return FaultSwitch(settings.redis_url,
                       f"{settings.jobs_prefix}:{settings.service_name}:sandbox-faults")
