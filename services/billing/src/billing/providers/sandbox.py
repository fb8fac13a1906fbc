"""The sandbox provider: a simulated chain in the billing schema (addresses, transfers, blocks).

Each invoice gets its own address derived from its id. Transfers start with 0 confirmations;
mining blocks adds confirmations; `observe` reads the chain exactly as a real watcher would read
a node, so the ordinary watch/settle path runs with no outside service. Outages can be injected
(`/internal/sandbox/faults`, kept in Redis by `runtime.faults`, never in the billing schema):
the provider's calls then hang for a while and fail as a timed-out provider would, so the retry
paths run without a real one.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import Invoice, SandboxTransfer
from billing.providers.base import (
    Checkout,
    CheckoutRequest,
    Observed,
    ObservedPayment,
    ProviderError,
    observe_one,
)
from billing.repository import SandboxRepository
from runtime.db import Database
from runtime.faults import FaultSwitch

OPTIONS = [("USDT", "TRON"), ("USDT", "ETHEREUM"), ("BTC", "BITCOIN"), ("ETH", "ETHEREUM")]
_ADDRESS_PREFIX = {"TRON": "T", "ETHEREUM": "0x", "BITCOIN": "bcrt1q"}


def derive_address(network: str, invoice_id: str) -> str:
    digest = hashlib.sha256(f"sandbox:{network}:{invoice_id}".encode()).hexdigest()
    return f"{_ADDRESS_PREFIX.get(network, 'sbx')}{digest[:40]}"


class SandboxProvider:
    name = "sandbox"
    title = "Sandbox chain"

    def __init__(self, db: Database, confirmations: int, faults: FaultSwitch):
        self.db = db
        self.confirmations = confirmations
        self.faults = faults

    async def _injected_fault(self, operation: str) -> None:
        fault = await self.faults.take(operation)
        if fault is None:
            return
        await asyncio.sleep(fault.delay_ms / 1000)
        raise ProviderError(self.name, operation, fault.message)

    def options(self) -> list[tuple[str, str]]:
        return list(OPTIONS)

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        await self._injected_fault("create_checkout")
        return Checkout(provider_ref=None,
                        address=derive_address(request.network, request.invoice_id),
                        payment_url=None)

    async def observe(self, invoice: Invoice) -> list[ObservedPayment]:
        return await observe_one(self, invoice)

    async def observe_many(self, invoices: Sequence[Invoice]) -> Observed:
        """The whole batch in one read of the chain, as a watcher reads a node."""
        watched = [i for i in invoices if i.address]
        out: Observed = {i.id: [] for i in invoices}
        if not watched:
            return out
        try:
            await self._injected_fault("observe")
        except ProviderError as exc:
            return {i.id: exc for i in invoices}
        async with self.db.transaction() as s:
            repo = SandboxRepository(s)
            height = await repo.height()
            transfers = await repo.transfers_to_many([(i.network, i.address) for i in watched])
        for invoice in watched:
            payments = []
            for t in transfers.get(invoice.address, []):
                if (t.network, t.asset) != (invoice.network, invoice.asset):  # other coin
                    continue
                confs = 0 if t.block_height is None else max(0, height - t.block_height + 1)
                payments.append(ObservedPayment(txid=t.txid, amount_asset=t.amount_asset,
                                                confirmations=confs,
                                                confirmed=confs >= self.confirmations))
            out[invoice.id] = payments
        return out

    async def close(self) -> None:
        await self.faults.close()


class SandboxChain:
    """Writes to the simulated chain (what a customer's wallet and the miners would do)."""

    async def transfer(self, session: AsyncSession, *, address: str, amount_asset: Decimal,
                       asset: str, network: str) -> SandboxTransfer:
        transfer = SandboxTransfer(txid=secrets.token_hex(32), address=address, asset=asset,
                                   network=network, amount_asset=amount_asset,
                                   created_at=datetime.now(UTC), block_height=None)
        session.add(transfer)
        await session.flush()
        return transfer

    async def mine(self, session: AsyncSession, count: int) -> int:
        """Mine `count` blocks; pending transfers land in the first of them. Returns the height."""
        repo = SandboxRepository(session)
        height = await repo.advance(count)
        await repo.include_pending(height - count + 1)
        return height


sandbox_chain = SandboxChain()
