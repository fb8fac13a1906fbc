"""The VPN backend interface every driver implements, its errors, and call instrumentation.

Operations are idempotent and state-based ("make the account active until X", "make it unable
to connect"), never relative ("add N days"), so a retry after a lost answer or a rolled-back
transaction converges on the same backend state.
"""

from __future__ import annotations

import asyncio
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provisioner.metrics import BACKEND_CALLS, BACKEND_ERRORS

# Every account this service creates has an id starting with this; reconciliation leaves
# anything else on a shared backend alone.
REF_PREFIX = "vpn_"


@dataclass(frozen=True)
class AccessDetails:
    access_url: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """What the panel says of an account's use now; None where it cannot tell."""

    used_bytes: int | None = None
    limit_bytes: int | None = None
    resets_at: datetime | None = None
    devices_limit: int | None = None
    devices_used: int | None = None
    # The traffic allowance is used up: the panel refuses connections until a reset.
    limited: bool = False


# How a traffic allowance renews: never (`NONE`), or every calendar month (`MONTH`).
TRAFFIC_RESETS = ("NONE", "MONTH")


class BackendError(Exception):
    """A backend call failed; the message never carries secrets (API URLs, tokens, keys)."""

    def __init__(self, backend: str, operation: str, message: str, status: int | None = None):
        super().__init__(f"{backend} {operation}: {message}")
        self.backend = backend
        self.operation = operation
        self.status = status


class AccountMissing(BackendError):
    """The backend has no account with this ref."""


def operation(name: str):
    """Time the call, count failures, and turn unexpected errors into `BackendError`."""

    def wrap(fn):
        @functools.wraps(fn)
        async def inner(self: VpnBackend, *args, **kwargs):
            started = time.perf_counter()
            try:
                return await fn(self, *args, **kwargs)
            except AccountMissing:
                raise
            except BackendError:
                BACKEND_ERRORS.labels(self.name, name).inc()
                raise
            except Exception as exc:
                BACKEND_ERRORS.labels(self.name, name).inc()
                raise BackendError(self.name, name, type(exc).__name__) from exc
            finally:
                BACKEND_CALLS.labels(self.name, name).observe(time.perf_counter() - started)

        return inner

    return wrap


async def paged_accounts(read_page: Callable[[int, int], Awaitable[dict[str, Any]]], size: int,
                         enabled: Collection[str]) -> dict[str, bool]:
    """`accounts` of a panel that pages its users by offset: `read_page(offset, size)` answers
    `{users: [{username, status}, ...], total}`; every user of ours, ref → its status is one
    of `enabled`, read page after page until `total` are seen."""
    out: dict[str, bool] = {}
    offset = 0
    while True:
        page = await read_page(offset, size)
        users = page.get("users") or []
        for u in users:
            name = str(u.get("username", ""))
            if name.startswith(REF_PREFIX):
                out[name] = u.get("status") in enabled
        offset += len(users)
        if not users or offset >= int(page.get("total") or 0):
            return out


class VpnBackend(ABC):
    name: str
    # What the panel itself enforces (the plan page says so instead of promising it).
    enforces_devices: bool = False
    enforces_traffic: bool = False
    # A grant (`ensure_active`) makes a used-up allowance usable again; False where the panel
    # cannot reset traffic (Outline counts a rolling 30 days).
    grant_resets_traffic: bool = True

    @property
    def default_data_limit(self) -> bool:
        """An account given no allowance of its own still has one (`VPN_DATA_LIMIT_BYTES`)."""
        return bool(getattr(self, "data_limit_bytes", 0))

    @abstractmethod
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        """Create the account if missing (same ref = same account), enabled until `expires_at`,
        allowed `data_limit_bytes` of traffic (None: the backend's configured default),
        renewed as `traffic_reset` says. An account whose allowance was used up is usable
        again afterwards (a re-grant resets it)."""

    @abstractmethod
    async def disable(self, ref: str) -> None:
        """Make the account unable to connect; a missing account is already disabled."""

    async def disable_many(self, refs: Sequence[str], concurrency: int = 4
                           ) -> dict[str, BackendError]:
        """`disable` for many accounts; returns those that failed, each with its error (every
        other one is disabled). This default calls `disable` per account, `concurrency` at a
        time (a panel with no documented bulk call); a backend that can do it in one call
        overrides it."""
        gate = asyncio.Semaphore(concurrency)
        failed: dict[str, BackendError] = {}

        async def one(ref: str) -> None:
            async with gate:
                try:
                    await self.disable(ref)
                except AccountMissing:
                    pass  # a missing account is already disabled
                except BackendError as exc:
                    failed[ref] = exc
                except Exception as exc:  # noqa: BLE001  (one account's failure is its own)
                    failed[ref] = BackendError(self.name, "disable", type(exc).__name__)

        await asyncio.gather(*(one(ref) for ref in refs))
        return failed

    @abstractmethod
    async def access(self, ref: str) -> AccessDetails:
        """The live access URL/config; raises `AccountMissing` if there is no account."""

    @abstractmethod
    async def accounts(self) -> dict[str, bool]:
        """Every account of ours on the backend (ref → can connect)."""

    async def probe(self) -> None:
        """Raise unless the backend answers an authenticated read (the health check). This
        default reads every account: right for a panel that lists them in one call; a panel
        that pages them reads one page, whatever the number of accounts."""
        await self.accounts()

    async def usage(self, ref: str) -> Usage:
        """The account's use, live from the panel (raises `AccountMissing` if there is none);
        a backend that cannot tell answers all None."""
        return Usage()

    async def close(self) -> None:  # noqa: B027  (optional hook)
        pass
