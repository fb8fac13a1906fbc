"""The server pool: VPN servers as data, their drivers, placement, and the seeded server.

A server row names its backend kind, its driver options (`settings`) and its credentials, kept
as a Fernet token under a key derived from `SERVER_CREDENTIALS_KEY` (never in the clear, never
in an answer or a log). The server `VPN_BACKEND` describes is seeded once per database
(`SEED_SERVER_NAME`; idempotent) with `settings = {"from_env": true}`: its driver keeps coming
from the environment, and it adopts every subscription and account made before the pool
(`ServerPool.adopt`: in batches, by the worker, never on a request path).

The health check (`ServerPool.check_health`, the `server_health` schedule) asks every server not
DISABLED for one authenticated read (`VpnBackend.probe`: a page of its accounts, not all of
them), within `SERVER_HEALTH_TIMEOUT_SECONDS`: a server that fails is marked
unhealthy and takes no new placements until a check succeeds again.

Placement (`ServerPool.place`) runs inside the caller's transaction: it locks the candidate
servers (ACTIVE, healthy, in the location) in id order, counts what each holds now (running
subscriptions) and picks the least loaded one with room; the locks are held until the caller
commits the subscription that uses the room, so concurrent placements never oversubscribe. A
full pool raises `PoolFull` (the grant then waits, see `ProvisioningService._apply`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.public.servers import ServerCreate, ServerUpdate
from provisioner.backends import VpnBackend, build_server_backend
from provisioner.config import Settings
from provisioner.metrics import PLACEMENTS, POOL_FULL, SERVER_LOAD, SERVER_UP
from provisioner.models import Server
from provisioner.repository import ServerRepository
from runtime.clock import now
from runtime.db import Database
from runtime.errors import Conflict, NotFound, ValidationFailed
from runtime.logging import get_logger

log = get_logger(__name__)

ACTIVE, DRAINING, DISABLED = "ACTIVE", "DRAINING", "DISABLED"
FROM_ENV = "from_env"
# Rows made before the pool placed on the seeded server per transaction (`ServerPool.adopt`).
ADOPT_BATCH = 5000

# What each backend kind needs to be driven: a base URL, driver options, credentials.
REQUIRED: dict[str, tuple[bool, tuple[str, ...], tuple[str, ...]]] = {
    "sandbox": (False, (), ()),
    "outline": (False, ("cert_sha256",), ("api_url",)),
    "marzban": (True, (), ("username", "password")),
    "remnawave": (True, ("squads",), ("api_token",)),
    "xui": (True, ("inbound_ids", "sub_base_url"), ("username", "password")),
}


class PoolFull(Conflict):
    """No server of the location is ACTIVE, healthy and has room."""

    code = "POOL_FULL"

    def __init__(self, location: str | None):
        where = f"in location {location}" if location else "in any location"
        super().__init__(f"No VPN server {where} has room; the grant waits for capacity",
                         {"location": location})
        self.location = location


class CredentialBox:
    """Fernet encryption of a server's credentials (a JSON object) at rest."""

    def __init__(self, secret: str, refuse_sealing: bool = False):
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        self._fernet = Fernet(key)
        self.refuse_sealing = refuse_sealing

    def seal(self, credentials: dict[str, str]) -> str | None:
        if not credentials:
            return None
        if self.refuse_sealing:
            raise Conflict("Set SERVER_CREDENTIALS_KEY before storing a server's credentials "
                           "in production (the development key encrypts nothing worth it)")
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    def open(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:  # the key changed: say so, never show the token
            raise RuntimeError("server credentials cannot be decrypted with "
                               "SERVER_CREDENTIALS_KEY") from exc


def env_server_values(settings: Settings) -> dict:
    """The seeded server's row: what the environment says of the one backend."""
    base_url = {"marzban": settings.marzban_base_url, "remnawave": settings.remnawave_base_url,
                "xui": settings.xui_base_url}.get(settings.vpn_backend)
    return {"name": settings.seed_server_name, "location": settings.seed_server_location,
            "backend": settings.vpn_backend, "base_url": base_url,
            "settings": {FROM_ENV: True}, "credentials": None,
            "capacity": settings.seed_server_capacity, "status": ACTIVE}


def check_driver_config(backend: str, base_url: str | None, options: dict,
                        credentials: dict) -> None:
    needs_url, opts, creds = REQUIRED[backend]
    missing = ([] if base_url or not needs_url else ["base_url"])
    missing += [f"settings.{k}" for k in opts if not options.get(k)]
    missing += [f"credentials.{k}" for k in creds if not credentials.get(k)]
    if missing:
        raise ValidationFailed(f"A {backend} server needs {', '.join(missing)}",
                               {"missing": missing})


class ServerPool:
    """Servers of the pool and one driver per server (built from its row, cached until the row
    changes); the seeded server's driver is `env_backend`."""

    def __init__(self, db: Database, settings: Settings, env_backend: VpnBackend):
        self.db = db
        self.settings = settings
        self.env_backend = env_backend
        self.box = CredentialBox(settings.server_credentials_key, refuse_sealing=(
            settings.is_production and settings.credentials_key_is_default))
        self.default_location = settings.server_default_location or None
        self._drivers: dict[str, tuple[object, VpnBackend]] = {}
        self._retired: list[VpnBackend] = []
        self._seeded: str | None = None
        self._seed_lock = asyncio.Lock()
        self._adopted = False
        self._adopt_lock = asyncio.Lock()

    # ---- the seeded server ------------------------------------------------------------------
    async def seed(self) -> str:
        """The seeded server's id, inserted on first use (idempotent across processes). What
        was made before the pool is placed on it by `adopt`, not here: a request never waits
        for a customer base to be rewritten."""
        if self._seeded is not None:
            return self._seeded
        async with self._seed_lock:
            if self._seeded is None:
                values = env_server_values(self.settings)
                async with self.db.transaction() as s:
                    self._seeded = await ServerRepository(s).insert_if_absent(
                        id=uuid.uuid4().hex, created_at=now(), updated_at=now(), **values)
        return self._seeded

    async def adopt(self) -> int:
        """Place the subscriptions and accounts made before the pool (no server yet) on the
        seeded server, `ADOPT_BATCH` rows of each a transaction, until none is left; later
        calls in this process return at once. Run by the worker's health check, and first by
        whatever must see every placement (reconciliation, draining). Until it is done, a
        row without a server is on the seeded one (its driver) but not in its load."""
        server_id = await self.seed()
        if self._adopted:
            return 0
        async with self._adopt_lock:
            adopted = 0
            while not self._adopted:
                async with self.db.transaction() as s:
                    n = await ServerRepository(s).adopt_unplaced(server_id, ADOPT_BATCH)
                adopted += n
                self._adopted = n == 0
            if adopted:
                log.info("server_pool_adopted", server_id=server_id, rows=adopted)
        return adopted

    # ---- drivers ----------------------------------------------------------------------------
    async def driver(self, server_id: str | None, s: AsyncSession | None = None) -> VpnBackend:
        """The driver of `server_id`, its row read in the caller's session `s` when given (a
        caller holding a connection never waits for a second one)."""
        seeded = await self.seed()
        if server_id is None or server_id == seeded:
            return self.env_backend
        if s is not None:
            server = await ServerRepository(s).get(server_id)
        else:
            async with self.db.transaction() as own:
                server = await ServerRepository(own).get(server_id)
        if server is None:
            raise NotFound("No such server")
        return self.driver_for(server)

    def driver_for(self, server: Server) -> VpnBackend:
        if (server.settings or {}).get(FROM_ENV):
            return self.env_backend
        cached = self._drivers.get(server.id)
        if cached is not None and cached[0] == server.updated_at:
            return cached[1]
        backend = build_server_backend(server.backend, server.base_url, server.settings or {},
                                       self.box.open(server.credentials), self.settings,
                                       self.db, self.env_backend, server.id)
        if cached is not None:
            self._retired.append(cached[1])
        self._drivers[server.id] = (server.updated_at, backend)
        return backend

    async def close(self) -> None:
        for backend in [*self._retired, *(b for _, b in self._drivers.values())]:
            if backend is not self.env_backend:
                await backend.close()

    # ---- placement --------------------------------------------------------------------------
    async def place(self, s: AsyncSession, location: str | None = None,
                    prefer: str | None = None, *, exclude: str | None = None,
                    anywhere: bool = False) -> Server:
        """The server a subscription goes to (locked until the caller commits): `prefer` when
        it still takes placements and has room, else the least loaded one with room; never
        `exclude` (the server a move leaves); `anywhere`: in any location, `location`'s first
        (every candidate locked at once, in id order, so it never deadlocks a placement)."""
        await self.seed()
        location = location or self.default_location
        repo = ServerRepository(s)
        candidates = [c for c in await repo.lock_placeable(None if anywhere else location)
                      if c.id != exclude]
        loads = await repo.loads([c.id for c in candidates])
        with_room = [c for c in candidates if loads.get(c.id, 0) < c.capacity]
        if anywhere and location:
            with_room = [c for c in with_room if c.location == location] or with_room
        where = None if anywhere else location
        if not with_room:
            PLACEMENTS.labels("waiting").inc()
            POOL_FULL.labels(where or "any").set(1)
            log.warning("server_pool_full", location=where)
            raise PoolFull(where)
        chosen = next((c for c in with_room if c.id == prefer), None) or min(
            with_room, key=lambda c: (loads.get(c.id, 0) / max(c.capacity, 1), c.id))
        PLACEMENTS.labels("placed").inc()
        POOL_FULL.labels(where or "any").set(0)
        SERVER_LOAD.labels(chosen.name).set(loads.get(chosen.id, 0) + 1)
        return chosen

    # ---- health -----------------------------------------------------------------------------
    async def check_health(self, ts: datetime) -> dict[str, bool]:
        """Probe every server not DISABLED (all at once, each bounded by the timeout) and
        record the outcome on its row; returns server name → healthy."""
        await self.adopt()
        async with self.db.transaction() as s:
            servers = [x for x in await ServerRepository(s).all() if x.status != DISABLED]

        async def probe(server: Server) -> bool:
            try:
                driver = self.driver_for(server)
                await asyncio.wait_for(driver.probe(),
                                       self.settings.server_health_timeout_seconds)
                return True
            except Exception as exc:  # any failure or timeout: not answering
                log.warning("server_unhealthy", server=server.name,
                            error=type(exc).__name__ if isinstance(exc, TimeoutError)
                            else str(exc)[:200])
                return False

        results = await asyncio.gather(*(probe(x) for x in servers))
        async with self.db.transaction() as s:
            repo = ServerRepository(s)
            for server, healthy in zip(servers, results, strict=True):
                if healthy != server.healthy:
                    log.warning("server_health_changed", server=server.name, healthy=healthy)
                await repo.set_health(server.id, healthy, ts)
                SERVER_UP.labels(server.name).set(1 if healthy else 0)
        return {x.name: ok for x, ok in zip(servers, results, strict=True)}

    # ---- administration ---------------------------------------------------------------------
    def view(self, server: Server, load: int) -> dict:
        out = {c: getattr(server, c) for c in (
            "id", "name", "location", "backend", "base_url", "capacity", "status", "healthy",
            "created_at", "updated_at")}
        out["settings"] = dict(server.settings or {})
        out["load"] = load
        out["has_credentials"] = bool(server.credentials)
        return out

    async def list(self, s: AsyncSession) -> list[dict]:
        await self.seed()
        repo = ServerRepository(s)
        servers = await repo.all()
        loads = await repo.loads([x.id for x in servers])
        return [self.view(x, loads.get(x.id, 0)) for x in servers]

    async def one(self, s: AsyncSession, server_id: str) -> dict:
        repo = ServerRepository(s)
        server = await repo.get(server_id)
        if server is None:
            raise NotFound("No such server")
        return self.view(server, (await repo.loads([server.id])).get(server.id, 0))

    async def create(self, s: AsyncSession, body: ServerCreate) -> dict:
        await self.seed()
        check_driver_config(body.backend, body.base_url, body.settings, body.credentials)
        repo = ServerRepository(s)
        if await repo.by_name(body.name) is not None:
            raise Conflict("A server with this name exists", {"name": body.name})
        settings = {k: v for k, v in body.settings.items() if k != FROM_ENV}
        ts = now()
        server = Server(id=uuid.uuid4().hex, name=body.name, location=body.location,
                        backend=body.backend, base_url=body.base_url, settings=settings,
                        credentials=self.box.seal(body.credentials), capacity=body.capacity,
                        status=body.status, healthy=True, created_at=ts, updated_at=ts)
        repo.add(server)
        await s.flush()
        log.info("server_created", server=server.name, location=server.location,
                 backend=server.backend)
        return self.view(server, 0)

    async def update(self, s: AsyncSession, server_id: str, body: ServerUpdate) -> dict:
        repo = ServerRepository(s)
        server = await repo.get(server_id, for_update=True)
        if server is None:
            raise NotFound("No such server")
        changes = body.model_dump(exclude_unset=True)
        if "name" in changes and changes["name"] != server.name:
            if await repo.by_name(changes["name"]) is not None:
                raise Conflict("A server with this name exists", {"name": changes["name"]})
        from_env = bool((server.settings or {}).get(FROM_ENV))
        if from_env and ({"base_url", "settings", "credentials"} & changes.keys()):
            raise Conflict("The seeded server is driven by the VPN_BACKEND settings; change "
                           "them there", {"fields": sorted(
                               {"base_url", "settings", "credentials"} & changes.keys())})
        credentials = changes.pop("credentials", None)
        if "settings" in changes:
            changes["settings"] = {k: v for k, v in changes["settings"].items() if k != FROM_ENV}
        if not from_env:
            check_driver_config(server.backend, changes.get("base_url", server.base_url),
                                changes.get("settings", server.settings or {}),
                                credentials if credentials is not None
                                else self.box.open(server.credentials))
        for key, value in changes.items():
            setattr(server, key, value)
        if credentials is not None:
            server.credentials = self.box.seal(credentials)
        server.updated_at = now()
        await s.flush()
        log.info("server_updated", server=server.name, fields=sorted(
            [*changes, *(["credentials"] if credentials is not None else [])]))
        return self.view(server, (await repo.loads([server.id])).get(server.id, 0))
