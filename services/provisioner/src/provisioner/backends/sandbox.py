"""The built-in sandbox VPN backend (the default): no outside server, well-formed fake keys.

Its "server" state lives in the `sandbox_vpn_accounts` table (each account marked with the
sandbox server holding it: every sandbox server of the pool sees only its own) and is written
on its own connections (one statement each, or a short transaction), exactly as a remote server
would be
changed independently of our domain transaction. Failures can be injected (the internal
`/internal/sandbox/faults` endpoint; kept in Redis by `runtime.faults`, never in the
provisioning schema), so retry and failure paths run without a real backend.

It carries no traffic, but stands in for a panel that enforces both limits: the traffic an
account "used" is set through its control API (`set_used`), an account at or over its
allowance is limited (refused until a grant resets it), and its device limit is kept.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from provisioner.backends.base import (
    REF_PREFIX,
    AccessDetails,
    AccountMissing,
    BackendError,
    Usage,
    VpnBackend,
    operation,
)
from provisioner.models import SandboxAccount
from runtime.db import Database
from runtime.faults import FaultSwitch

METHOD = "chacha20-ietf-poly1305"


class SandboxBackend(VpnBackend):
    name = "sandbox"
    enforces_devices = True
    enforces_traffic = True

    def __init__(self, db: Database, *, host: str, port: int, faults: FaultSwitch,
                 data_limit_bytes: int = 0, server: str = ""):
        self.db = db
        # The sandbox "server" it is: its accounts are apart from every other one's.
        self.server = server
        self.host = host
        self.port = port
        self.faults = faults
        self.data_limit_bytes = data_limit_bytes or None

    async def _injected_fault(self, op: str) -> None:
        fault = await self.faults.take(op)
        if fault is not None:
            raise BackendError(self.name, op, fault.message, status=503)

    UPSERT = (
        "INSERT INTO sandbox_vpn_accounts (ref, secret, enabled, expires_at, max_devices,"
        " data_limit_bytes, created_at, updated_at, server)"
        " VALUES ($1, $2, true, $3, $4, $5, $6, $6, $7)"
        " ON CONFLICT (ref) DO UPDATE SET enabled = true, expires_at = EXCLUDED.expires_at,"
        " server = EXCLUDED.server,"
        " max_devices = EXCLUDED.max_devices, data_limit_bytes = EXCLUDED.data_limit_bytes,"
        " updated_at = EXCLUDED.updated_at,"
        # a used-up allowance (by the old limit or the new one) is reset, as the panels do
        # (LEAST ignores a NULL, i.e. unlimited, limit)
        " used_bytes = CASE WHEN sandbox_vpn_accounts.used_bytes >= LEAST("
        "sandbox_vpn_accounts.data_limit_bytes, EXCLUDED.data_limit_bytes)"
        " THEN 0 ELSE sandbox_vpn_accounts.used_bytes END"
    )

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        await self._injected_fault("ensure_active")
        limit = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        await self.db.execute(self.UPSERT, ref, secrets.token_urlsafe(16), expires_at,
                              max_devices, limit, datetime.now(UTC), self.server)

    @operation("disable")
    async def disable(self, ref: str) -> None:
        await self._injected_fault("disable")
        async with self.db.transaction() as s:
            await s.execute(sa.update(SandboxAccount).where(SandboxAccount.ref == ref,
                                                            SandboxAccount.server == self.server)
                            .values(enabled=False, updated_at=datetime.now(UTC)))

    DISABLE_MANY = ("UPDATE sandbox_vpn_accounts SET enabled = false, updated_at = $3"
                    " WHERE ref = ANY($1::text[]) AND server = $2")

    @operation("disable_many")
    async def disable_many(self, refs: Sequence[str], concurrency: int = 4
                           ) -> dict[str, BackendError]:
        """One statement for every account; an injected `disable` fault hits as many
        accounts as it has calls left (the first ones), as one call each would."""
        faults = await self.faults.take_many("disable", len(refs))
        failed = {ref: BackendError(self.name, "disable", fault.message, status=503)
                  for ref, fault in zip(refs, faults, strict=False)}
        rest = [ref for ref in refs if ref not in failed]
        if rest:
            await self.db.execute(self.DISABLE_MANY, rest, self.server, datetime.now(UTC))
        return failed

    @operation("access")
    async def access(self, ref: str) -> AccessDetails:
        await self._injected_fault("access")
        acc = await self._account(ref)
        if acc is None:
            raise AccountMissing(self.name, "access", "no such account", status=404)
        userinfo = base64.urlsafe_b64encode(f"{METHOD}:{acc.secret}".encode()).decode().rstrip("=")
        url = f"ss://{userinfo}@{self.host}:{self.port}/?outline=1#{ref}"
        return AccessDetails(url, {"method": METHOD, "host": self.host, "port": self.port,
                                   "enabled": acc.enabled, "max_devices": acc.max_devices,
                                   "data_limit_bytes": acc.data_limit_bytes})

    @operation("usage")
    async def usage(self, ref: str) -> Usage:
        """Its limits, and the traffic "used" when the control API set some (else unknown)."""
        await self._injected_fault("usage")
        acc = await self._account(ref)
        if acc is None:
            raise AccountMissing(self.name, "usage", "no such account", status=404)
        return self._usage_of(acc)

    async def _account(self, ref: str) -> SandboxAccount | None:
        async with self.db.transaction() as s:
            acc = await s.get(SandboxAccount, ref)
        return acc if acc is not None and acc.server == self.server else None

    @staticmethod
    def _usage_of(acc: SandboxAccount) -> Usage:
        limit = acc.data_limit_bytes
        return Usage(used_bytes=acc.used_bytes or None, limit_bytes=limit,
                     devices_limit=acc.max_devices,
                     limited=bool(limit) and acc.used_bytes >= limit)

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        await self._injected_fault("accounts")
        async with self.db.transaction() as s:
            rows = (await s.execute(
                sa.select(SandboxAccount.ref, SandboxAccount.enabled)
                .where(SandboxAccount.ref.startswith(REF_PREFIX),
                       SandboxAccount.server == self.server))).all()
        return {r.ref: r.enabled for r in rows}

    async def probe(self) -> None:
        await self._injected_fault("accounts")
        async with self.db.transaction() as s:
            await s.execute(sa.select(SandboxAccount.ref)
                            .where(SandboxAccount.server == self.server).limit(1))

    # control API of the sandbox "server" (used by tests and local runs)
    async def add_fault(self, operation: str, remaining: int | None, message: str) -> int:
        """Fail the next `remaining` calls of `operation` ('*' = any; None = until cleared)."""
        return await self.faults.add(operation, message=message, count=remaining)

    async def set_used(self, ref: str, used_bytes: int) -> Usage:
        """Control API: the traffic the account has used (at its allowance: limited)."""
        async with self.db.transaction() as s:
            found = (await s.execute(
                sa.update(SandboxAccount).where(SandboxAccount.ref == ref)
                .values(used_bytes=used_bytes, updated_at=datetime.now(UTC))
                .returning(SandboxAccount))).scalar_one_or_none()
            if found is None:
                raise AccountMissing(self.name, "set_used", "no such account", status=404)
            return self._usage_of(found)

    async def clear_faults(self) -> None:
        await self.faults.clear()

    async def close(self) -> None:
        await self.faults.close()
