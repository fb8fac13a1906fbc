"""compose.yaml: valid for Docker Compose, and it runs every service the way `make run` does.

Without Docker Compose v2 on the machine, the file is validated against the Compose
Specification's JSON Schema instead (a vendored copy: tests/data/compose-spec.NOTICE.md). The
structure of every profile is checked either way: active services reference only defined
services, volumes and files.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
PROFILES = [None, "dev", "observability"]


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


def _schema_errors(document: dict) -> list[str]:
    """Where `document` breaks the Compose Specification's JSON Schema (empty: valid)."""
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(document)]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_compose_file_is_valid(profile):
    if _compose_command() is None:  # the schema Compose v2 validates against, for every profile
        assert _schema_errors(yaml.safe_load(COMPOSE_FILE.read_text())) == []
        return
    result = _run_compose(*(["--profile", profile] if profile else []), "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_the_compose_schema_catches_a_broken_file():
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["gateway-api"]["restart_policy"] = "always"  # not a Compose key
    broken["services"]["redis"]["ports"] = "6379"  # a list, not a string
    errors = _schema_errors(broken)
    assert any("restart_policy" in e for e in errors), errors
    assert any(e.startswith("services.redis.ports") for e in errors), errors


def _compose_services() -> dict[str, dict]:
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
    services = _active(None)
    published = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert published == ["gateway-api"]
    for name, svc in _compose_services().items():
        if name != "gateway-api":  # anything else (observability) only on loopback
            assert all(str(port).startswith("127.0.0.1:") for port in svc.get("ports", [])), name


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _active(profile: str | None) -> dict[str, dict]:
    """Services `docker compose [--profile PROFILE] up` starts."""
    return {name: svc for name, svc in _compose_services().items()
            if not svc.get("profiles") or profile in svc["profiles"]}


def _depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    return {name: {} for name in deps} if isinstance(deps, list) else deps


def _volume_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        sources.append(volume["source"] if isinstance(volume, dict) else volume.split(":")[0])
    return sources


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_every_profile_references_only_defined_services_volumes_and_files(profile):
    compose = _compose()
    defined, active = compose["services"], _active(profile)
    named_volumes = set(compose.get("volumes") or {})
    for name, service in active.items():
        assert "image" in service or "build" in service, f"{name} has no image"
        for dep, condition in _depends_on(service).items():
            assert dep in defined, f"{name} depends on undefined service {dep}"
            if dep not in active:
                assert condition.get("required") is False, (
                    f"{name} needs {dep}, which profile {profile or 'default'} does not start")
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in defined[dep], f"{dep} has no healthcheck"
        for source in _volume_sources(service):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named_volumes, f"{name} uses undeclared volume {source}"


def test_profiles_add_the_emulator_and_the_observability_stack():
    services = _compose_services()
    assert services["telegram-emulator"]["profiles"] == ["dev"]
    assert services["set-webhook"]["profiles"] == ["dev"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    default = _active(None)
    assert {"postgres", "rabbitmq", "redis", "migrate"} <= set(default)
    mounts = {source for svc in ("prometheus", "grafana")
              for source in _volume_sources(services[svc])}
    assert {"./deploy/prometheus", "./deploy/grafana/provisioning",
            "./deploy/grafana/dashboards"} <= mounts


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_prometheus_scrapes_every_api_and_worker_compose_runs():
    services = _compose_services()
    expected = set()
    for name in _stack_services():
        api_env = _environment(services[f"{name}-api"])
        worker_env = _environment(services[f"{name}-worker"])
        assert int(worker_env.get("WORKER_METRICS_PORT", "0")) > 0, f"{name}-worker: no /metrics"
        expected.add(f"{name}-api:{api_env[f'{name.upper()}_PORT']}")
        expected.add(f"{name}-worker:{worker_env['WORKER_METRICS_PORT']}")
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    scraped = {target for job in config["scrape_configs"] if job["job_name"] in ("api", "worker")
               for group in job["static_configs"] for target in group["targets"]}
    assert scraped == expected
