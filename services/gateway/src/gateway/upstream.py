"""Calls to the services' internal APIs with the signed identity header; answers passed through."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from fastapi import Response

from runtime import identity as signed
from runtime.errors import NotFound, ServiceUnavailable
from runtime.logging import correlation_id, get_logger

log = get_logger(__name__)


def safe_path(path: str) -> str:
    """Percent-encode ids taken from the caller; no segment may walk the internal path tree."""
    segments = path.split("/")
    if any(seg in {".", ".."} for seg in segments):
        raise NotFound()
    return "/".join(quote(seg, safe="") for seg in segments)


class Upstream:
    def __init__(self, name: str, base_url: str, signing_key: str, timeout: float):
        self.name = name
        self.key = signing_key
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )

    async def call(self, method: str, path: str, *, user_id: str, role: str,
                   json: Any = None, params: dict | None = None, content: bytes | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        path = safe_path(path)
        hdrs = {signed.HEADER: signed.sign(self.key, user_id, role)}
        if correlation_id.get():
            hdrs["X-Request-ID"] = correlation_id.get() or ""
        if headers:
            hdrs.update(headers)
        try:
            return await self.client.request(method, path, json=json,
                                             params={k: v for k, v in (params or {}).items()
                                                     if v is not None},
                                             content=content, headers=hdrs)
        except httpx.HTTPError as exc:
            log.warning("upstream_unavailable", upstream=self.name, error=type(exc).__name__)
            raise ServiceUnavailable(f"The {self.name} service is unavailable") from exc

    async def relay(self, method: str, path: str, **kwargs) -> Response:
        """Call and hand the upstream's status and JSON body to the client unchanged."""
        r = await self.call(method, path, **kwargs)
        if r.status_code >= 500:
            raise ServiceUnavailable(f"The {self.name} service failed")
        extra = {k: v for k, v in r.headers.items()
                 if k.lower() in {"retry-after", "idempotent-replayed"}}
        return Response(content=r.content, status_code=r.status_code,
                        media_type="application/json", headers=extra)

    async def close(self) -> None:
        await self.client.aclose()
