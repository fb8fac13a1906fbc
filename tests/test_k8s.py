"""deploy/k8s: every manifest is valid Kubernetes, and the base runs the system as designed.

Schemas come from the `kubernetes-validate` package (offline). When `kustomize` or `kubectl` is
installed, the base and the overlays are also built and their output validated.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.32.0"
SERVICES = ("gateway", "billing", "provisioner", "tickets", "telegram")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|SIGNING_KEY|API_KEY|DATABASE_URL|RABBITMQ_URL"
                         r"|REDIS_URL|OUTLINE_API_URL")
KUSTOMIZATION = "kustomization.yaml"


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != KUSTOMIZATION)


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob(KUSTOMIZATION))


def _base_objects() -> dict[tuple[str, str], dict]:
    objects: dict[tuple[str, str], dict] = {}
    for name in yaml.safe_load((BASE / KUSTOMIZATION).read_text())["resources"]:
        for doc in _docs(BASE / name):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def _validate(doc: dict, where: str, strict: bool = True) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=strict)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}: "
                    f"{exc.message} at {'.'.join(str(p) for p in exc.path)}")


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def _merged(base: dict, patch: dict) -> dict:
    """A strategic-merge patch of maps applied to a base object (enough for our patches)."""
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return out


def _patch_files() -> set[Path]:
    return {(k.parent / p["path"]).resolve() for k in _kustomizations()
            for p in yaml.safe_load(k.read_text()).get("patches", []) if "path" in p}


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_kubernetes(path):
    docs = _docs(path)
    assert docs, f"{path} is empty"
    base = _base_objects() if path.resolve() in _patch_files() else {}
    for doc in docs:
        if base:  # a patch: validate the object it produces
            key = (doc["kind"], doc["metadata"]["name"])
            assert key in base, f"{path.name} patches {key}, which the base does not define"
            doc = _merged(base[key], doc)
        _validate(doc, str(path.relative_to(ROOT)))


def test_kustomizations_list_files_that_exist_and_the_base_lists_every_manifest():
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        referenced = list(spec.get("resources", []))
        referenced += [p["path"] for p in spec.get("patches", []) if "path" in p]
        assert referenced, f"{kustomization} references nothing"
        for ref in referenced:
            target = kustomization.parent / ref
            assert target.exists(), f"{kustomization.relative_to(ROOT)}: {ref} does not exist"
            if target.is_dir():
                assert (target / KUSTOMIZATION).exists(), f"{ref} is not a kustomization"
    listed = set(yaml.safe_load((BASE / KUSTOMIZATION).read_text())["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {KUSTOMIZATION, "secret.example.yaml"}
    assert listed == on_disk, f"base/kustomization.yaml out of date: {listed ^ on_disk}"


def test_no_secret_value_is_applied():
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        assert not any("secret" in ref for ref in spec.get("resources", [])), kustomization
        assert "secretGenerator" not in spec, f"{kustomization} generates secrets"
    for path in _manifest_files():
        if path.name == "secret.example.yaml":
            continue
        kinds = {doc["kind"] for doc in _docs(path)}
        assert "Secret" not in kinds, f"{path} ships a Secret"
    config = _base_objects()[("ConfigMap", "vpn-config")]["data"]
    leaked = sorted(k for k in config if SECRET_NAME.search(k))
    assert not leaked, f"secrets in the ConfigMap: {leaked}"


def test_config_and_secret_keys_are_settings_the_services_read():
    known = _env_example_names()
    config_keys = set(_base_objects()[("ConfigMap", "vpn-config")]["data"])
    for overlay in OVERLAYS:
        for path in overlay.glob("*.yaml"):
            for doc in _docs(path):
                if doc.get("kind") == "ConfigMap":
                    config_keys |= set(doc["data"])
    secret_keys = {key for doc in _docs(BASE / "secret.example.yaml")
                   for key in doc["stringData"]}
    unknown = sorted((config_keys | secret_keys) - known)
    assert not unknown, f"not settings in .env.example: {unknown}"
    for svc in SERVICES:
        assert f"{svc.upper()}_DB_PASSWORD" in secret_keys
        assert f"{svc.upper()}_PORT" in config_keys


def _container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _selects(selector: dict, deployment: dict) -> bool:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(pod_labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("svc", SERVICES)
def test_each_service_has_an_api_and_a_worker_with_probes_resources_and_config(svc):
    objects = _base_objects()
    port = int(objects[("ConfigMap", "vpn-config")]["data"][f"{svc.upper()}_PORT"])
    metrics_port = int(objects[("ConfigMap", "vpn-config")]["data"]["WORKER_METRICS_PORT"])
    for role in ("api", "worker"):
        deployment = objects[("Deployment", f"{svc}-{role}")]
        container = _container(deployment)
        assert container["command"] == ["python", "-m", svc, role]
        refs = {(ref.get("configMapRef") or ref.get("secretRef"))["name"]
                for ref in container["envFrom"]}
        assert refs == {"vpn-config", "vpn-secrets"}
        requests = container["resources"]["requests"]
        assert requests.get("cpu") and requests.get("memory"), f"{svc}-{role}: no requests"
        assert container["resources"]["limits"].get("memory")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["port"] in ports
        assert _selects(deployment["spec"]["selector"]["matchLabels"], deployment)
        pdb = objects[("PodDisruptionBudget", f"{svc}-{role}")]
        assert _selects(pdb["spec"]["selector"]["matchLabels"], deployment)
        if role == "api":
            assert ports == {"http": port}
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            service = objects[("Service", f"{svc}-api")]
            assert _selects(service["spec"]["selector"], deployment)
            assert service["spec"]["ports"][0]["port"] == port
            assert pdb["spec"].get("minAvailable") == 1
        else:
            # Workers have no /healthz: liveness is their metrics server.
            assert ports == {"metrics": metrics_port}
            assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"


def test_internal_urls_point_at_the_api_services():
    objects = _base_objects()
    config = objects[("ConfigMap", "vpn-config")]["data"]
    for svc in SERVICES[1:]:
        assert config[f"{svc.upper()}_URL"] == f"http://{svc}-api:{config[f'{svc.upper()}_PORT']}"
        assert ("Service", f"{svc}-api") in objects


def test_autoscalers_cover_the_gateway_api_and_every_worker():
    objects = _base_objects()
    scaled = {}
    for (kind, name), doc in objects.items():
        if kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            assert doc["apiVersion"] == "autoscaling/v2"
            assert ("Deployment", target["name"]) in objects, f"{name} scales nothing"
            assert doc["spec"]["minReplicas"] >= 2 and doc["spec"]["metrics"]
            scaled[target["name"]] = doc
    assert set(scaled) == {"gateway-api", *(f"{svc}-worker" for svc in SERVICES)}


def test_the_migration_job_migrates_every_service_as_the_database_owner():
    job = _base_objects()[("Job", "vpn-migrate")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(container["command"])
    assert "set -e" in script and "migrate" in script
    for svc in SERVICES:
        assert re.search(rf"\b{svc}\b", script), f"the migration Job skips {svc}"
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "vpn-db-owner"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def _build_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_build_command() is None, reason="neither kustomize nor kubectl installed")
@pytest.mark.parametrize("target", [BASE, *OVERLAYS], ids=lambda p: str(p.relative_to(K8S)))
def test_kustomize_build_output_is_valid(target):
    result = subprocess.run([*_build_command(), str(target)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = [doc["kind"] for doc in docs]
    assert kinds.count("Deployment") == 2 * len(SERVICES)
    assert kinds.count("Job") == 1 and "Secret" not in kinds
    if target != BASE:  # the base's files are validated one by one above
        for doc in docs:
            _validate(doc, f"kustomize build {target.relative_to(ROOT)}")
        overlay = yaml.safe_load((target / KUSTOMIZATION).read_text())
        image = overlay["images"][0]
        expected = f"{image['newName']}:{image['newTag']}"
        for doc in docs:
            if doc["kind"] in ("Deployment", "Job"):
                assert doc["metadata"]["namespace"] == overlay["namespace"]
                assert _container_image(doc) == expected


def _container_image(doc: dict) -> str:
    return doc["spec"]["template"]["spec"]["containers"][0]["image"]


def _config_of(target: Path) -> dict[str, str]:
    """The ConfigMap `vpn-config` a kustomization renders (base data, its patches merged)."""
    config = _base_objects()[("ConfigMap", "vpn-config")]
    if target != BASE:
        spec = yaml.safe_load((target / KUSTOMIZATION).read_text())
        for patch in spec.get("patches", []):
            for doc in _docs(target / patch["path"]):
                if (doc["kind"], doc["metadata"]["name"]) == ("ConfigMap", "vpn-config"):
                    config = _merged(config, doc)
    return config["data"]


def _settings_of(svc: str, config: dict[str, str], secrets: dict[str, str]):
    module = importlib.import_module(f"{svc}.config")
    return module.Settings(**{**config, **secrets})


SANDBOX_SETTINGS = {"PAYMENT_PROVIDER": ("gateway", "billing"), "VPN_BACKEND": ("provisioner",)}


def test_the_base_names_real_adapters_and_refuses_to_start_on_its_placeholders():
    config = _config_of(BASE)
    assert config["APP_ENV"] == "production"
    for setting in SANDBOX_SETTINGS:
        assert config[setting] != "sandbox", f"the base ships {setting}=sandbox"
    assert config.get("ALLOW_SANDBOX_IN_PRODUCTION", "false") != "true"
    example_secrets = {key: value for doc in _docs(BASE / "secret.example.yaml")
                       for key, value in doc["stringData"].items()}
    for svc in ("billing", "provisioner"):
        with pytest.raises(ValidationError, match="CHANGE-ME placeholders") as refused:
            _settings_of(svc, config, example_secrets)
        assert "sandbox" not in str(refused.value)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_an_overlay_runs_a_sandbox_in_production_only_as_an_allowed_staging(overlay):
    config = _config_of(overlay)
    sandboxes = [name for name in SANDBOX_SETTINGS if config.get(name) == "sandbox"]
    if config["APP_ENV"] != "production" or not sandboxes:
        return
    assert overlay.name in ("staging", "dev"), f"{overlay.name} sells with {sandboxes}"
    assert config.get("ALLOW_SANDBOX_IN_PRODUCTION") == "true"
    real_secrets = {"INTERNAL_SIGNING_KEY": "k" * 40, "TELEGRAM_WEBHOOK_SECRET": "w" * 40,
                    "TELEGRAM_BOT_TOKEN": "42:real-token"}
    for name in sandboxes:
        for svc in SANDBOX_SETTINGS[name]:
            settings = _settings_of(svc, config, {**real_secrets,
                                                  f"{svc.upper()}_DB_PASSWORD": "real-one"})
            assert any(f"{name}=sandbox" in w for w in settings.startup_warnings()), svc


def test_the_staging_overlay_exists_and_uses_the_sandboxes():
    staging = K8S / "overlays" / "staging"
    assert staging in OVERLAYS
    config = _config_of(staging)
    assert config["PAYMENT_PROVIDER"] == config["VPN_BACKEND"] == "sandbox"


def test_the_example_overlay_trusts_its_ingress_for_forwarded_headers():
    proxies = _config_of(K8S / "overlays" / "example")["TRUSTED_PROXIES"]
    assert proxies and all(ipaddress.ip_network(cidr) for cidr in proxies.split(","))
    assert _config_of(BASE)["TRUSTED_PROXIES"] == ""
