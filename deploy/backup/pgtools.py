"""Helpers shared by backup.py, restore.py and drill.py: URLs, manifests, pg_* commands.

Credentials never go on a command line: libpq tools get the URL without its password and
the password in PGPASSWORD.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/vpn"
# Each service's schema (services/<svc>/src/<svc>/config.py); the drill expects all of them.
SERVICE_SCHEMAS = {"gateway": "identity", "billing": "billing", "provisioner": "provisioning",
                   "tickets": "tickets", "telegram": "telegram"}
# Tables whose row counts the manifest records and the drill compares.
KEY_TABLES = {
    "identity": ["users", "sessions", "audit_log"],
    "billing": ["plans", "invoices", "payments"],
    "provisioning": ["subscriptions", "grants", "backend_accounts"],
    "tickets": ["tickets", "messages"],
    "telegram": ["account_links", "ticket_threads", "outgoing"],
}
SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
MANIFEST_VERSION = 1


class ToolError(RuntimeError):
    """A pg_* command failed or timed out."""


def database_url(explicit: str | None) -> str:
    return explicit or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def _plain(url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... (libpq and asyncpg want the plain scheme)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.split("+")[0], *parts[1:]))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/")) or "postgres"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(_plain(url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def connect_url(url: str) -> str:
    """The URL for asyncpg (password included, driver suffix removed)."""
    return _plain(url)


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """(URL without the password, environment with PGPASSWORD) for pg_dump/pg_restore."""
    parts = urlsplit(_plain(url))
    env = dict(os.environ)
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), env


def ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsafe identifier {name!r}")
    return f'"{name}"'


async def run_process(argv: list[str], env: dict[str, str], timeout: float, *,
                      cwd: Path | None = None, merge_stderr: bool = False
                      ) -> tuple[int, bytes, bytes]:
    """Run a command with a deadline: its exit code, stdout and stderr (empty when merged into
    stdout). Past the deadline it is killed and TimeoutError raised."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out, err or b""


async def run_tool(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a command with a deadline; its stdout, or ToolError with the tail of stderr."""
    try:
        returncode, out, err = await run_process(argv, env, timeout)
    except TimeoutError:
        raise ToolError(f"{argv[0]} timed out after {timeout:.0f}s") from None
    if returncode != 0:
        raise ToolError(f"{argv[0]} exited {returncode}: "
                        f"{err.decode(errors='replace').strip()[-2000:]}")
    return out.decode(errors="replace")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Backup:
    """One backup: `<stamp>.dump` (whole database), `<stamp>/<schema>.dump`, `<stamp>.json`."""

    full: Path

    @property
    def stamp(self) -> str:
        return self.full.stem

    @property
    def schema_dir(self) -> Path:
        return self.full.with_suffix("")

    @property
    def manifest_path(self) -> Path:
        return self.full.with_suffix(".json")

    def schema_dump(self, schema: str) -> Path:
        return self.schema_dir / f"{schema}.dump"

    def manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text())

    def verify_checksums(self, only: list[Path] | None = None) -> list[str]:
        """Files whose SHA-256 differs from the manifest, or that are missing (all files, or
        only the given ones). Empty without a manifest."""
        manifest = self.manifest()
        if manifest is None:
            return []
        wanted = None if only is None else {p.resolve() for p in only}
        bad = []
        for rel, expected in manifest["sha256"].items():
            path = self.full.parent / rel
            if wanted is not None and path.resolve() not in wanted:
                continue
            if not path.exists() or sha256(path) != expected:
                bad.append(rel)
        return bad


def backup_of(path: Path) -> Backup:
    """The backup a path belongs to: `<stamp>.dump` itself, or `<stamp>/<schema>.dump`."""
    sibling = path.parent.with_suffix(".dump")
    if path.parent.is_dir() and sibling.is_file():
        return Backup(sibling)
    return Backup(path)


def latest_backup(directory: Path) -> Backup | None:
    dumps = sorted(p for p in directory.glob("*.dump") if p.is_file())
    return Backup(dumps[-1]) if dumps else None
