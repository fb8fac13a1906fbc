"""Purchase pipeline under load, measured two ways, with the CPU it costs, on three paths.

Paths: **plain** (an invoice paid on the sandbox chain), **promo** (the same with a 25 % code
that an admin created for the run, so every invoice takes the code's row lock and its use is
reserved, then counted when paid) and **balance** (customers topped up on the chain before the
run, then each purchase `pay_with: "balance"`: PAID in the request that creates it). Setup (the
code, the top-ups until credited) happens before the measured window.

- **Sustained throughput**: customers keep buying for `seconds` with at most `in_flight`
  purchases unfinished (bought but not yet active); the figure is grants applied per second
  between the first and the last one, so the pipeline's latency does not dilute it.
- **Latency at a fixed rate**: purchases start at `rate`/s for `seconds`; settle -> active is
  `invoices.paid_at` to `grants.applied_at` (both database time).

Both report exactly-once (invoices with exactly one grant; on the promo path also uses counted
once, on the balance path one PURCHASE ledger entry each) and the machine's CPU seconds per
purchase, split by process (services, Postgres, RabbitMQ, Redis, this load generator), which is
what bounds throughput on a machine where everything runs together.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
import uuid
from decimal import Decimal

import asyncpg
import httpx

from tests.e2e.purchases import (
    call,
    catalogue,
    mine,
    new_customer,
    pay_invoice,
    post_once,
    send_amount,
)

TICKS = os.sysconf("SC_CLK_TCK")
PATHS = ("plain", "promo", "balance")
ADMIN_EMAIL = "bench-admin@example.com"  # the bench stack's ADMIN_BOOTSTRAP_EMAIL
ADMIN_PASSWORD = "bench admin password 1"
# Sizing the promo code's uses and the top-ups for a sustained run, whose count is not known
# ahead: twice the 100 purchases/s target, so a faster system never runs dry mid-run.
MOST_PER_S = 200
TOP_UP_MAX_USD = Decimal("1000")  # billing's default TOP_UP_MAX_USD
PROMO_PER_USER_MAX = 1000  # the most max_uses_per_user a code takes


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# --------------------------------------------------------------------------- CPU accounting
def _group(pid: int, comm: str) -> str | None:
    if pid == os.getpid():
        return "load generator"
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith("beam") or comm.startswith("erl"):
        return "rabbitmq"
    if comm.startswith("redis"):
        return "redis"
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    if b"-m" in argv:
        i = argv.index(b"-m")
        return " ".join(a.decode() for a in argv[i + 1:i + 3] if a)
    return None


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds used so far, by process group, plus the machine's busy total."""
    out: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        group = _group(int(entry), comm)
        if group:
            out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    out["machine busy"] = (sum(cpu) - cpu[3] - cpu[4]) / TICKS  # all but idle and iowait
    return out


def cpu_per_purchase(before: dict[str, float], after: dict[str, float], n: int) -> dict:
    used = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    per = {k: round(v / n * 1000, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
           if v > 0.05 or k == "machine busy"}
    busy_ms = per.get("machine busy", 0.0)
    cores = os.cpu_count() or 1
    return {"cpu_ms_per_purchase": per,
            "ceiling_per_s": round(cores * 1000 / busy_ms, 1) if busy_ms else None}


# --------------------------------------------------------------------------- shared
async def admin_client(gw: str) -> httpx.AsyncClient:
    """The bench's ADMIN, signed in (registered on the first call of a run)."""
    c = httpx.AsyncClient(base_url=gw + "/api/v1", timeout=60,
                          headers={"Content-Type": "application/json"})
    creds = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    r = await call(c, "POST", "/auth/register", json=creds)
    if r.status_code == 409:
        r = await call(c, "POST", "/auth/login", json=creds)
    assert r.status_code in (200, 201), r.text
    return c


class Pipeline:
    """Customers, the catalogue, a miner, and what `path` needs set up before the window:
    `purchases` is the most the run may make (it sizes the code's uses and the top-ups)."""

    def __init__(self, stack, customers: int, path: str = "plain", purchases: int = 0):
        assert path in PATHS, path
        self.gw = stack.api_url("gateway")
        self.db_url = stack.env["DATABASE_URL"]
        self.n_customers = customers
        self.customers: list = []
        self.path = path
        self.purchases = purchases
        self.promo_code: str | None = None

    async def __aenter__(self):
        self.customers = await asyncio.gather(*(new_customer(self.gw)
                                                for _ in range(self.n_customers)))
        self.plan, self.option = await catalogue(self.customers[0])
        self.conn = await asyncpg.connect(self.db_url)
        self.stop_mining = asyncio.Event()
        self.mining = asyncio.create_task(self._miner())
        if self.path == "promo":
            await self._create_code()
        elif self.path == "balance":
            await self._top_up()
        return self

    def _each(self) -> int:
        """The most purchases one customer makes in the run (customers are used in turn)."""
        return math.ceil(max(self.purchases, 1) / self.n_customers) + 1

    async def _create_code(self) -> None:
        per_user = min(self._each(), PROMO_PER_USER_MAX)
        admin = await admin_client(self.gw)
        try:
            r = await call(admin, "POST", "/admin/promo-codes", json={
                "code": f"BENCH{uuid.uuid4().hex[:8]}", "kind": "PERCENT", "value": "25",
                "max_uses": per_user * self.n_customers, "max_uses_per_user": per_user})
            assert r.status_code == 201, r.text
            self.promo_code = r.json()["promo_code"]["code"]
        finally:
            await admin.aclose()

    async def _top_up(self) -> None:
        """Every customer tops up enough for their share of the run, paid on the chain, and
        the bench waits until every top-up is credited."""
        need = Decimal(self.plan["price_usd"]) * self._each()
        amounts = []
        while need > 0:
            amounts.append(min(need, TOP_UP_MAX_USD))
            need -= amounts[-1]

        async def one(c: httpx.AsyncClient, amount: Decimal) -> str:
            r = await post_once(c, "/balance/top-ups", {"amount_usd": str(amount), **self.option})
            assert r.status_code == 201, r.text
            invoice = r.json()["invoice"]
            await send_amount(c, invoice)
            return invoice["id"]

        top_ups = await asyncio.gather(*(one(c, a) for c in self.customers for a in amounts))
        deadline = time.monotonic() + 180
        while await self.conn.fetchval(
                "SELECT count(*) FROM billing.balance_entries WHERE kind = 'TOP_UP' AND "
                "invoice_id = ANY($1::text[])", top_ups) < len(top_ups):
            assert time.monotonic() < deadline, "the top-ups were not credited in 180 s"
            await asyncio.sleep(0.2)

    async def buy(self, c: httpx.AsyncClient) -> str:
        """One purchase on this pipeline's path; the invoice's id."""
        if self.path == "balance":
            r = await post_once(c, "/invoices", {"plan_id": self.plan["id"], **self.option,
                                                 "pay_with": "balance"})
            assert r.status_code == 201 and r.json()["invoice"]["status"] == "PAID", r.text
            return r.json()["invoice"]["id"]
        return (await pay_invoice(c, self.plan, self.option, promo_code=self.promo_code))["id"]

    async def __aexit__(self, *exc):
        self.stop_mining.set()
        await self.mining
        await self.conn.close()
        for c in self.customers:
            await c.aclose()

    async def _miner(self):  # blocks keep coming, as on a real chain
        while not self.stop_mining.is_set():
            await mine(self.customers[0], 1)
            await asyncio.sleep(0.2)

    async def applied(self, invoices: list[str]) -> int:
        return await self.conn.fetchval(
            "SELECT count(*) FROM provisioning.grants WHERE applied_at IS NOT NULL AND "
            "invoice_id = ANY($1::text[])", invoices)

    async def wait_all(self, invoices: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            done = await self.applied(invoices)
            if done >= len(invoices):
                break
            await asyncio.sleep(0.2)
        return done

    async def outcome(self, invoices: list[str]) -> dict:
        rows = await self.conn.fetch(
            "SELECT extract(epoch FROM g.applied_at - i.paid_at) * 1000 AS ms, "
            "extract(epoch FROM g.applied_at) AS at "
            "FROM billing.invoices i JOIN provisioning.grants g ON g.invoice_id = i.id "
            "WHERE i.id = ANY($1::text[]) AND g.applied_at IS NOT NULL", invoices)
        once = await self.conn.fetchval(
            "SELECT count(*) FROM (SELECT invoice_id FROM provisioning.grants WHERE "
            "invoice_id = ANY($1::text[]) GROUP BY invoice_id HAVING count(*) = 1) x", invoices)
        lat = [float(r["ms"]) for r in rows]
        at = sorted(float(r["at"]) for r in rows)
        span = at[-1] - at[0] if len(at) > 1 else float("nan")
        return {"path": self.path, "n": len(invoices), "applied": len(rows),
                "provisioned_once": once,
                "applied_per_s": (len(at) - 1) / span if len(at) > 1 and span > 0 else None,
                "settle_to_active_p50_ms": pct(lat, 50), "settle_to_active_p95_ms": pct(lat, 95),
                "settle_to_active_p99_ms": pct(lat, 99), **await self._money_once(invoices)}

    async def _money_once(self, invoices: list[str]) -> dict:
        """The path's own exactly-once: a code's use counted once per invoice, or one
        PURCHASE entry per invoice paid from the balance."""
        if self.path == "promo":
            return {"promo_counted_once": await self.conn.fetchval(
                "SELECT count(*) FROM billing.promo_redemptions WHERE status = 'COUNTED' "
                "AND invoice_id = ANY($1::text[])", invoices)}
        if self.path == "balance":
            return {"debited_once": await self.conn.fetchval(
                "SELECT count(*) FROM (SELECT invoice_id FROM billing.balance_entries WHERE "
                "kind = 'PURCHASE' AND invoice_id = ANY($1::text[]) GROUP BY invoice_id "
                "HAVING count(*) = 1) x", invoices)}
        return {}


# --------------------------------------------------------------------------- the two runs
async def purchase_throughput(stack, seconds: float, in_flight: int, customers: int = 64,
                              buyers: int = 32, path: str = "plain") -> dict:
    """Buy as fast as the system finishes, with at most `in_flight` purchases unfinished."""
    most = math.ceil(seconds * MOST_PER_S) + in_flight + buyers
    async with Pipeline(stack, customers, path, most) as p:
        invoices: list[str] = []
        finished = 0
        who = itertools.cycle(p.customers)
        deadline = time.monotonic() + seconds

        async def poll():
            nonlocal finished
            while time.monotonic() < deadline:
                if invoices:
                    finished = await p.applied(list(invoices))
                await asyncio.sleep(0.2)

        async def buyer():
            while time.monotonic() < deadline:
                if len(invoices) - finished >= in_flight:
                    await asyncio.sleep(0.05)
                    continue
                invoices.append(await p.buy(next(who)))

        before = cpu_snapshot()
        await asyncio.gather(poll(), *(buyer() for _ in range(buyers)))
        await p.wait_all(invoices, timeout=180)
        after = cpu_snapshot()
        result = await p.outcome(invoices)
    return {"seconds": seconds, "in_flight": in_flight, **result,
            **cpu_per_purchase(before, after, max(result["applied"], 1))}


async def purchase_latency(stack, rate: float, seconds: float, customers: int = 64,
                           path: str = "plain") -> dict:
    """Start purchases at `rate`/s for `seconds`; settle -> active percentiles."""
    n = max(1, int(rate * seconds))
    async with Pipeline(stack, customers, path, n) as p:
        invoices: list[str] = []
        started = time.perf_counter()

        async def buy(i: int):
            await asyncio.sleep(i / rate)
            invoices.append(await p.buy(p.customers[i % len(p.customers)]))

        before = cpu_snapshot()
        await asyncio.gather(*(buy(i) for i in range(n)))
        offered_s = time.perf_counter() - started
        await p.wait_all(invoices, timeout=180)
        after = cpu_snapshot()
        result = await p.outcome(invoices)
    return {"rate": rate, "offered_rate": n / offered_s, **result,
            **cpu_per_purchase(before, after, max(result["applied"], 1))}
