"""The gateway's pooled connections to the services must go idle-closed on the gateway's side
first: a server that closes a keep-alive connection while the client reuses it fails that
request (a 503 to the customer, seen in the bench with uvicorn's default 5 s keep-alive)."""

from __future__ import annotations

from gateway.upstream import KEEPALIVE_SECONDS
from runtime.service import SERVER_KEEPALIVE_SECONDS


def test_services_keep_idle_connections_longer_than_the_gateway_pools_them():
    assert SERVER_KEEPALIVE_SECONDS >= KEEPALIVE_SECONDS + 5
