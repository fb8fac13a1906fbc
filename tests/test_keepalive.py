"""The gateway's pooled connections to the services must go idle-closed on the gateway's side
first: a server that closes a keep-alive connection while the client reuses it fails that
request (a 503 to the customer)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from gateway.config import Settings as GatewaySettings
from gateway.upstream import Upstream
from runtime.service import uvicorn_options
from tickets.config import Settings as TicketsSettings


def _pooled_idle_seconds() -> float:
    """The keep-alive of the gateway's real upstream connector (built on a loop of its own)."""
    async def read() -> float:
        upstream = Upstream("tickets", GatewaySettings().tickets_url, "key", 5.0)
        try:
            return upstream._client().connector._keepalive_timeout
        finally:
            await upstream.close()

    # a thread: the suite's browser tests may leave an event loop running in the main one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=30)


def test_services_keep_idle_connections_longer_than_the_gateway_pools_them():
    # what `python -m <service> api` really hands uvicorn
    server_idle = uvicorn_options(TicketsSettings())["timeout_keep_alive"]
    client_idle = _pooled_idle_seconds()  # what the gateway's upstream client pools with
    assert client_idle > 0
    assert server_idle >= client_idle + 5, (server_idle, client_idle)
