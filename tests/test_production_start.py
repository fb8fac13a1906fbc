"""Processes started as an operator starts them: with APP_ENV=production a sandbox adapter stops
the start with a clear reason (no traceback) unless ALLOW_SANDBOX_IN_PRODUCTION=true, and then
every start logs a warning; internal services serve no API docs outside development."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from billing.app import create_api as billing_api
from billing.config import Settings as BillingSettings
from provisioner.app import create_api as provisioner_api
from provisioner.config import Settings as ProvisionerSettings
from telegram.app import create_api as telegram_api
from telegram.config import Settings as TelegramSettings
from tickets.app import create_api as tickets_api
from tickets.config import Settings as TicketsSettings

SERVICES = ("gateway", "billing", "provisioner", "tickets", "telegram")
DOC_PATHS = {"/docs", "/redoc", "/openapi.json"}


def production_env(**extra: str) -> dict[str, str]:
    """A production configuration with every secret set; the adapters are the sandboxes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "PAYMENT_", "VPN_"))}
    env.update({"APP_ENV": "production", "INTERNAL_SIGNING_KEY": "k" * 40,
                "TELEGRAM_WEBHOOK_SECRET": "w" * 40, "TELEGRAM_BOT_TOKEN": "42:real-token",
                "PAYMENT_PROVIDER": "sandbox", "VPN_BACKEND": "sandbox", "PYTHONUNBUFFERED": "1",
                "BIND_HOST": "127.0.0.1",
                # Nothing listens there: a process that does start touches no shared state.
                "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/"})
    for svc in SERVICES:
        env[f"{svc.upper()}_DB_PASSWORD"] = f"{svc}-real-password"
        env[f"{svc.upper()}_PORT"] = "0"  # any free port: the test never calls it
    env.update(extra)
    return env


@pytest.mark.parametrize(("svc", "role", "setting"), [
    ("billing", "api", "PAYMENT_PROVIDER"), ("gateway", "api", "PAYMENT_PROVIDER"),
    ("provisioner", "worker", "VPN_BACKEND")])
def test_production_refuses_to_start_with_a_sandbox_adapter(svc, role, setting, tmp_path):
    result = subprocess.run([sys.executable, "-m", svc, role], env=production_env(),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{setting}=sandbox" in result.stderr and "ALLOW_SANDBOX_IN_PRODUCTION" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _first_line_with(proc: subprocess.Popen, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            if text in line:
                return line
    raise AssertionError(f"no {text!r} in the output: {''.join(seen)[-2000:]}")


@pytest.mark.parametrize(("svc", "role", "setting"), [
    ("billing", "api", "PAYMENT_PROVIDER"), ("provisioner", "worker", "VPN_BACKEND")])
def test_a_staging_cluster_may_allow_the_sandbox_and_every_start_warns(svc, role, setting,
                                                                        tmp_path):
    env = production_env(ALLOW_SANDBOX_IN_PRODUCTION="true")
    proc = subprocess.Popen([sys.executable, "-m", svc, role], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = _first_line_with(proc, "startup_warning")
        assert '"level": "warning"' in line and f"{setting}=sandbox" in line
        assert f'"role": "{role}"' in line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("create_api", "settings_class"), [
    (billing_api, BillingSettings), (provisioner_api, ProvisionerSettings),
    (tickets_api, TicketsSettings), (telegram_api, TelegramSettings)],
    ids=["billing", "provisioner", "tickets", "telegram"])
def test_internal_services_serve_api_docs_only_in_development(create_api, settings_class):
    def paths(app_env: str, **extra: str) -> set[str]:
        app = create_api(settings_class(APP_ENV=app_env, **extra))
        return {getattr(route, "path", "") for route in app.routes}

    assert DOC_PATHS <= paths("development")
    production = {"INTERNAL_SIGNING_KEY": "k" * 40, "db_password": "a-real-password",
                  "TELEGRAM_WEBHOOK_SECRET": "w" * 40, "TELEGRAM_BOT_TOKEN": "42:real-token",
                  "ALLOW_SANDBOX_IN_PRODUCTION": "true"}
    assert not DOC_PATHS & paths("production", **production)
    assert not DOC_PATHS & paths("staging")
