"""Provisioner test fixtures: a migrated database of its own, its tables emptied before each test
(so the service functions can run with a fake clock while no worker touches the data), and
certificates for the fake Outline server over real HTTPS."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from contracts.billing import InvoicePaidV1, PlanSnapshot
from provisioner.backends.sandbox import SandboxBackend
from provisioner.config import Settings
from provisioner.servers import ServerPool
from runtime.faults import FaultSwitch
from runtime.testing import database_fixtures, test_slot, unit_database_url

TABLES = ["subscriptions", "grants", "backend_accounts", "user_blocks", "sandbox_vpn_accounts",
          "outbox", "inbox", "servers", "moves"]


def make_settings() -> Settings:
    return Settings(DATABASE_URL=unit_database_url("provisioner"), VPN_BACKEND="sandbox")


migrated, db = database_fixtures("provisioner", make_settings, emptied=TABLES)[:2]


@pytest.fixture(scope="session")
def unit_settings(migrated) -> Settings:
    return make_settings()


@pytest.fixture
async def faults():
    """The sandbox backend's fault switch, under a Redis key of its own, emptied afterwards."""
    switch = FaultSwitch(f"redis://127.0.0.1:6379/{1 + test_slot()}",
                         f"test-{uuid.uuid4().hex}:sandbox-faults")
    yield switch
    await switch.clear()
    await switch.close()


def paid(user_id: str, at: dt.datetime | None = None) -> InvoicePaidV1:
    """A paid monthly plan for `user_id`, as billing announces it."""
    plan = PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=3,
                        price_usd=Decimal("9.99"))
    return InvoicePaidV1(invoice_id=uuid.uuid4().hex, user_id=user_id, plan=plan,
                         amount_usd=plan.price_usd, asset="USDT", network="TRON",
                         amount_asset=plan.price_usd, amount_paid_asset=plan.price_usd,
                         paid_at=at or dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def backend(db, faults):
    """The sandbox backend, the servers' driver in the server-pool tests."""
    return SandboxBackend(db, host="vpn.sandbox.test", port=8388, faults=faults)


@pytest.fixture
async def pool(db, settings, backend):
    """The server pool on the module's `settings`; its servers' injected faults cleared after."""
    pool = ServerPool(db, settings, backend)
    yield pool
    for _, driver in list(pool._drivers.values()):
        if isinstance(driver, SandboxBackend):  # only the sandbox takes injected faults
            await driver.clear_faults()
    await pool.close()


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
def certificates(tmp_path_factory) -> tuple[Certificate, Certificate]:
    """The fake Outline server's self-signed certificate and an impostor's."""
    directory = tmp_path_factory.mktemp("certs")
    return self_signed_certificate(directory), self_signed_certificate(directory, "impostor.test")
