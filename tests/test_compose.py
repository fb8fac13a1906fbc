"""compose.yaml: valid for Docker Compose, and it runs every service the way `make run` does."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"


def _stack_services() -> dict[str, int]:
    """SERVICES from deploy/local/stack.py (what `make run` starts)."""
    spec = importlib.util.spec_from_file_location("local_stack", ROOT / "deploy/local/stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.SERVICES


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin), else a standalone v2 `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                               timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version", "--short"], capture_output=True,
                               text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return ["docker-compose"]
    return None


def _run_compose(*args: str) -> subprocess.CompletedProcess:
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("Docker Compose v2 is not installed")
    return subprocess.run([*cmd, "-f", str(COMPOSE_FILE), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker client not installed")
def test_compose_file_is_valid():
    result = _run_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def _compose_services() -> dict[str, dict]:
    try:
        import yaml
    except ImportError:
        result = _run_compose("config", "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["services"]
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def test_every_service_has_an_api_and_a_worker_container():
    services = _compose_services()
    expected = _stack_services()
    assert expected, "deploy/local/stack.py lists no services"
    for name in expected:
        for role in ("api", "worker"):
            container = f"{name}-{role}"
            assert container in services, f"compose.yaml has no {container}"
            assert _command(services[container])[-3:] == ["-m", name, role], (
                f"{container} does not run `python -m {name} {role}`")


def test_only_the_gateway_is_published():
    services = _compose_services()
    published = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert published == ["gateway-api"]
