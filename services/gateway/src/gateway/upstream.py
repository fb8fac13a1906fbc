"""The HTTP hop to a service's internal API: the signed identity header, pooled connections.

Only the typed clients (`gateway.clients`) use it. It is on every proxied request, so it is
built on aiohttp's client (why: docs/05-ops/performance.md, the profile of the gateway).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from runtime import identity as signed
from runtime.errors import NotFound, ServiceUnavailable
from runtime.logging import correlation_id, get_logger

log = get_logger(__name__)

# Idle pooled connections are dropped after this; shorter than the services' own keep-alive
# (`runtime.service.SERVER_KEEPALIVE_SECONDS`), so the gateway never reuses one being closed.
KEEPALIVE_SECONDS = 30


def segment(value: str) -> str:
    """An id taken from the caller as one percent-encoded path segment: it can neither add
    segments nor walk the internal path tree."""
    if value in {"", ".", ".."}:
        raise NotFound()
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """What a service answered: status, raw body and (case-insensitive) headers."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return orjson.loads(self.content)


class Upstream:
    def __init__(self, name: str, base_url: str, signing_key: str, timeout: float):
        self.name = name
        self.key = signing_key
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=3.0)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=200,
                                               keepalive_timeout=KEEPALIVE_SECONDS),
                auto_decompress=False,
            )
        return self._session

    async def call(self, method: str, path: str, *, user_id: str, role: str,
                   json: Any = None, params: dict | None = None, content: bytes | None = None,
                   headers: dict[str, str] | None = None) -> UpstreamResponse:
        url = URL(self.base_url + path, encoded=True)  # ids in it are `segment`s
        # The caller's headers first, so none of them can stand in for the signed identity.
        hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != signed.HEADER.lower()}
        hdrs[signed.HEADER] = signed.sign(self.key, user_id, role, audience=self.name)
        if correlation_id.get():
            hdrs["X-Request-ID"] = correlation_id.get() or ""
        if json is not None:
            content = orjson.dumps(json)
            hdrs["Content-Type"] = "application/json"
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._client().request(method, url, params=query or None, data=content,
                                              headers=hdrs) as r:
                return UpstreamResponse(r.status, await r.read(), r.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("upstream_unavailable", upstream=self.name, error=type(exc).__name__)
            raise ServiceUnavailable(f"The {self.name} service is unavailable") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
