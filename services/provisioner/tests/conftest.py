"""Provisioner test fixtures: a migrated database of its own (so the service functions can run
with a fake clock while no worker touches the data), and fake VPN servers over real HTTP(S)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
import uvicorn

from provisioner.config import Settings
from runtime.db import Database
from runtime.migrations import bootstrap, upgrade

SLOT = int(os.environ.get("TEST_SLOT", "0"))
UNIT_DB = f"vpn_test{SLOT or ''}_provisioner"
SERVER_DSN = "postgresql://postgres@127.0.0.1:5432"
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "provisioner" / "migrations"
TABLES = ["subscriptions", "grants", "backend_accounts", "user_blocks", "sandbox_vpn_accounts",
          "sandbox_vpn_faults", "outbox", "inbox"]


@pytest.fixture(scope="session")
def unit_settings() -> Settings:
    async def recreate():
        conn = await asyncpg.connect(f"{SERVER_DSN}/postgres")
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = $1", UNIT_DB)
            await conn.execute(f'DROP DATABASE IF EXISTS "{UNIT_DB}"')
            await conn.execute(f'CREATE DATABASE "{UNIT_DB}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    settings = Settings(DATABASE_URL=f"{SERVER_DSN}/{UNIT_DB}", VPN_BACKEND="sandbox")
    asyncio.run(bootstrap(settings))
    upgrade(settings, MIGRATIONS)
    return settings


@pytest.fixture
async def db(unit_settings) -> AsyncIterator[Database]:
    database = Database(unit_settings, pool_size=5)
    async with database.transaction() as s:
        await s.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    yield database
    await database.dispose()


# ----------------------------------------------------------------------------- fake servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app, *, certfile: str | None = None, keyfile: str | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", ssl_certfile=certfile,
                                           ssl_keyfile=keyfile))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake server did not start"
        assert thread.is_alive(), "fake server crashed at startup"
        time.sleep(0.01)
    try:
        yield f"{'https' if certfile else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Certificate:
    certfile: str
    keyfile: str
    sha256: str  # uppercase hex of the DER certificate, as Outline's certSha256


def self_signed_certificate(directory: Path, name: str = "outline.test") -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    der = cert.public_bytes(serialization.Encoding.DER)
    return Certificate(str(certfile), str(keyfile), hashlib.sha256(der).hexdigest().upper())


@pytest.fixture(scope="session")
def fake_server():
    """`with fake_server(app, certfile=..., keyfile=...) as base_url:` (test modules cannot
    import conftest under --import-mode=importlib, so helpers are handed out as fixtures)."""
    return serve


@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> tuple[Certificate, Certificate]:
    """The fake Outline server's self-signed certificate and an impostor's."""
    directory = tmp_path_factory.mktemp("certs")
    return self_signed_certificate(directory), self_signed_certificate(directory, "impostor.test")
