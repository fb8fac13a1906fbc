"""Runs the whole system locally: checks infrastructure, migrates, starts every process.

`python deploy/local/stack.py` is what `make run` calls; the end-to-end tests use the same
`Stack` class, so they start the system exactly as a developer does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"gateway": 8000, "billing": 8101, "provisioner": 8102, "tickets": 8103,
            "telegram": 8104}
EMULATOR_PORT = 8081
# Fakes of payment providers `PAYMENT_FAKES` can start (`all`, or names), with their ports.
PAYMENT_FAKES = {"cryptopay": 8091, "nowpayments": 8092}
# Stars needs no fake of its own: the Telegram emulator takes its payments.
FAKE_PROVIDERS = (*PAYMENT_FAKES, "stars")

HOW_TO_START = {
    "PostgreSQL": "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) "
                  "main start`, or `docker compose up -d postgres`",
    "RabbitMQ": "start it with `rabbitmq-server -detached`, or `docker compose up -d rabbitmq`",
    "Redis": "start it with `redis-server --daemonize yes --port 6379 --save ''`, or "
             "`docker compose up -d redis`",
}


def default_env(port_offset: int = 0, db_name: str = "vpn", redis_db: int = 0,
                broker_prefix: str = "") -> dict[str, str]:
    """Environment for a local stack (no secrets needed: sandbox adapters and the emulator)."""
    env = {
        "APP_ENV": "development",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db_name}",
        "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/",
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "BROKER_PREFIX": broker_prefix,
        "JOBS_PREFIX": f"bull{broker_prefix.rstrip('.')}" if broker_prefix else "bull",
        "TELEGRAM_API_BASE": f"http://127.0.0.1:{EMULATOR_PORT + port_offset}",
        "TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN",
        "TELEGRAM_SUPPORT_CHAT_ID": "-1001000000001",
        "TELEGRAM_OPERATOR_IDS": "1001,1002",
        "EMULATOR_FORUM_CHAT_IDS": "-1001000000001",
        "PAYMENT_PROVIDER": "sandbox",
        "PAYMENT_FAKES": "",
        "VPN_BACKEND": "sandbox",
    }
    for name, port in SERVICES.items():
        env[f"{name.upper()}_PORT"] = str(port + port_offset)
        if name != "gateway":
            env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{port + port_offset}"
    env["APP_BASE_URL"] = f"http://127.0.0.1:{SERVICES['gateway'] + port_offset}"
    env["FAKES_PORT_OFFSET"] = str(port_offset)
    return env


def payment_fakes(env: dict[str, str]) -> list[str]:
    """The providers whose fakes `PAYMENT_FAKES` asks for (`all`: every one)."""
    wanted = [n.strip() for n in env.get("PAYMENT_FAKES", "").split(",") if n.strip()]
    if wanted == ["all"]:
        return list(FAKE_PROVIDERS)
    unknown = [n for n in wanted if n not in FAKE_PROVIDERS]
    if unknown:
        raise ValueError(f"PAYMENT_FAKES: unknown {', '.join(unknown)}; "
                         f"known: all, {', '.join(FAKE_PROVIDERS)}")
    return wanted


def fake_port(env: dict[str, str], name: str) -> int:
    return PAYMENT_FAKES[name] + int(env.get("FAKES_PORT_OFFSET", "0"))


def with_payment_fakes(env: dict[str, str]) -> dict[str, str]:
    """The environment with the fakes `PAYMENT_FAKES` names enabled as providers after the
    sandbox chain (still the first, so the default), each pointed at its local fake with
    development credentials, and its webhooks sent to the gateway."""
    names = payment_fakes(env)
    if not names:
        return env
    out = dict(env)
    hooks = f"{env['APP_BASE_URL']}/api/v1/payments/webhooks"
    out["PAYMENT_PROVIDERS"] = ",".join(["sandbox", *names])
    if "cryptopay" in names:
        out.update({"CRYPTOPAY_API_BASE": f"http://127.0.0.1:{fake_port(env, 'cryptopay')}/api",
                    "CRYPTOPAY_TOKEN": "12345:dev-cryptopay-token"})
    if "nowpayments" in names:
        out.update({
            "NOWPAYMENTS_API_BASE": f"http://127.0.0.1:{fake_port(env, 'nowpayments')}/v1",
            "NOWPAYMENTS_API_KEY": "dev-nowpayments-api-key",
            "NOWPAYMENTS_IPN_SECRET": "dev-nowpayments-ipn-secret",
            "NOWPAYMENTS_IPN_URL": f"{hooks}/nowpayments"})
    return out


def fake_argv(env: dict[str, str], name: str) -> list[str]:
    """How to start a provider's fake, with the credentials `with_payment_fakes` gave billing."""
    hook = f"{env['APP_BASE_URL']}/api/v1/payments/webhooks/{name}"
    argv = [sys.executable, "-m", f"fakes.{name}", "--host", "127.0.0.1",
            "--port", str(fake_port(env, name)), "--webhook-url", hook]
    if name == "cryptopay":
        argv += ["--token", env["CRYPTOPAY_TOKEN"]]
    if name == "nowpayments":
        argv += ["--api-key", env["NOWPAYMENTS_API_KEY"],
                 "--ipn-secret", env["NOWPAYMENTS_IPN_SECRET"]]
    return argv


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port),
                                      timeout=2):
            return True
    except OSError:
        return False


def check_infra(env: dict[str, str]) -> list[str]:
    """Names and fixes of the infrastructure that is not reachable (empty when all is up)."""
    problems = []
    for name, url, port in (("PostgreSQL", env["DATABASE_URL"], 5432),
                            ("RabbitMQ", env["RABBITMQ_URL"], 5672),
                            ("Redis", env["REDIS_URL"], 6379)):
        if not _reachable(url, port):
            parts = urlsplit(url)
            problems.append(f"{name} is not reachable at {parts.hostname}:{parts.port or port}: "
                            f"{HOW_TO_START[name]}")
    return problems


def ensure_database(env: dict[str, str]) -> None:
    """Create the database named in DATABASE_URL if it does not exist."""
    import asyncpg

    url = env["DATABASE_URL"]
    parts = urlsplit(url)
    name = parts.path.lstrip("/")

    async def main():
        admin = url.replace(f"/{name}", "/postgres", 1) if name else url
        conn = await asyncpg.connect(admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(main())


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path = ROOT / ".run" / "logs"
    with_emulator: bool = True
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    def migrate(self) -> None:
        ensure_database(self.env)
        env = self.full_env()
        for name in SERVICES:  # sequential: bootstrap takes a lock, migrations are quick
            subprocess.run([sys.executable, "-m", name, "migrate"], env=env, check=True,
                           cwd=ROOT, stdout=subprocess.DEVNULL)

    def seed_plans(self) -> None:
        """The demo plans (idempotent), as `make run` has them."""
        subprocess.run([sys.executable, "-m", "billing", "seed-plans"], env=self.full_env(),
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=120)

    def start_process(self, name: str, argv: list[str],
                      extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        env = {**self.full_env(), **(extra_env or {})}
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_payment_fakes(self) -> None:
        for name in payment_fakes(self.env):
            if name in PAYMENT_FAKES:
                self.start_process(f"{name}-fake", fake_argv(self.env, name))
        for name in payment_fakes(self.env):
            if name in PAYMENT_FAKES:
                self.wait_port(fake_port(self.env, name))

    def wait_port(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not _reachable(f"http://127.0.0.1:{port}", port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port}")
            self.raise_if_dead()
            time.sleep(0.1)

    def start_emulator(self) -> None:
        port = int(urlsplit(self.env["TELEGRAM_API_BASE"]).port or EMULATOR_PORT)
        self.start_process("telegram-emulator", [sys.executable, "-m", "fakes.telegram",
                                                 "--host", "127.0.0.1", "--port", str(port)])

    def worker_metrics_port(self, name: str, replica: int = 1) -> int:
        """Where a worker replica serves /metrics (API port + 100, + 50 per extra replica)."""
        return int(self.env[f"{name.upper()}_PORT"]) + 100 + 50 * (replica - 1)

    def start_service(self, name: str, role: str, replica: int = 1) -> subprocess.Popen:
        proc_name = f"{name}-{role}" if replica == 1 else f"{name}-{role}-{replica}"
        extra = ({"WORKER_METRICS_PORT": str(self.worker_metrics_port(name, replica))}
                 if role == "worker" else {})
        return self.start_process(proc_name, [sys.executable, "-m", name, role], extra)

    def start(self) -> None:
        """Start every process; if any part fails, stop what was started and re-raise."""
        try:
            if self.with_emulator:
                self.start_emulator()
            self.start_payment_fakes()
            for name in SERVICES:
                self.start_service(name, "api")
                self.start_service(name, "worker")
            self.wait_ready()
            if self.with_emulator:
                self.wait_http(self.env["TELEGRAM_API_BASE"] + "/_emulator/stats")
            subprocess.run([sys.executable, "-m", "telegram", "set-webhook"],
                           env=self.full_env(), cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                           timeout=60)
        except BaseException:
            self.stop()
            raise

    def api_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'{name.upper()}_PORT']}"

    def wait_http(self, url: str, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            self.raise_if_dead()
            time.sleep(0.2)
        raise TimeoutError(f"{url} not ready: {last}")

    def wait_ready(self, timeout: float = 180) -> None:
        for name in SERVICES:
            self.wait_http(self.api_url(name) + "/readyz", timeout)

    def raise_if_dead(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self, timeout: float = 15) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def main() -> int:
    env = {**default_env(), **{k: v for k, v in os.environ.items() if k in default_env()}}
    env = with_payment_fakes(env)
    problems = check_infra(env)
    if problems:
        sys.stderr.write("Cannot start: infrastructure is missing.\n")
        for p in problems:
            sys.stderr.write(f"  - {p}\n")
        return 2
    with_emulator = "TELEGRAM_API_BASE" not in os.environ
    stack = Stack(env, with_emulator=with_emulator)
    sys.stdout.write("Migrating schemas...\n")
    stack.migrate()
    stack.seed_plans()
    sys.stdout.write("Starting services...\n")
    try:
        stack.start()
    except Exception as exc:
        stack.stop()
        sys.stderr.write(f"Startup failed: {exc}\nLogs: {stack.log_dir}\n")
        return 1
    gw = stack.api_url("gateway")
    sys.stdout.write(
        f"\nAll services are up.\n  Gateway (web + API): {gw}\n  API docs: {gw}/api/v1/docs\n"
        f"  Telegram emulator: {env['TELEGRAM_API_BASE']}/_emulator/calls\n"
        f"  Logs: {stack.log_dir}\nPress Ctrl-C to stop.\n")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(1)
            for name, proc in list(stack.procs.items()):
                if proc.poll() is not None:
                    sys.stderr.write(f"{name} exited ({proc.returncode}); restarting\n")
                    role = name.rsplit("-", 1)
                    if name == "telegram-emulator":
                        stack.start_emulator()
                    elif name.endswith("-fake"):
                        fake = name.removesuffix("-fake")
                        stack.start_process(name, fake_argv(stack.env, fake))
                    else:
                        stack.start_service(role[0], role[1])
    except KeyboardInterrupt:
        pass
    sys.stdout.write("Stopping...\n")
    stack.stop()
    return 0


if __name__ == "__main__":
    if shutil.which("uv") is None and "VIRTUAL_ENV" not in os.environ:
        sys.stderr.write("Run through `make run` so the environment is set up.\n")
    sys.exit(main())
