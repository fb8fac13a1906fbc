"""The gateway as started by `python -m gateway api`: with no TRUSTED_PROXIES (the stack's
default), an X-Forwarded-For from loopback is not believed, so the address sessions and rate
limits record is the TCP peer's."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import ADMIN_DSN, unique_email


async def test_a_spoofed_forwarded_for_does_not_become_the_client_address(gateway_url):
    email = unique_email("xff")
    async with httpx.AsyncClient(base_url=gateway_url + "/api/v1", timeout=15) as client:
        r = await client.post("/auth/register", json={"email": email,
                                                       "password": "correct horse 1"},
                              headers={"X-Forwarded-For": "203.0.113.77"})
        assert r.status_code == 201, r.text
        r = await client.post("/auth/login", json={"email": email, "password": "correct horse 1"},
                              headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.78"})
        assert r.status_code == 200, r.text
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        ips = await conn.fetch("SELECT s.ip FROM identity.sessions s JOIN identity.users u "
                               "ON u.id = s.user_id WHERE u.email = $1", email)
    finally:
        await conn.close()
    assert [row["ip"] for row in ips] == ["127.0.0.1", "127.0.0.1"]
