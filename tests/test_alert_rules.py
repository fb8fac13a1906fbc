"""deploy/prometheus and deploy/grafana: alert rules and dashboard queries parse, use metrics the
code defines, and every alert has a runbook section."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
RULES = PROM_DIR / "alerts.yml"
RUNBOOKS = ROOT / "docs" / "05-ops" / "runbooks.md"
RUNBOOK_PREFIX = "docs/05-ops/runbooks.md#"

# What the issue asks alerts for, as a metric each must watch.
REQUIRED_COVERAGE = {
    "5xx spikes": "http_requests_total",
    "queue backlog": "broker_queue_messages",
    "job backlog": "job_queue_jobs",
    "provision failures": "provisioner_provisions_total",
    "webhook auth failures": "telegram_webhook_auth_failures_total",
    "dead letters": "broker_dead_letters",
    "outbox lag": "outbox_lag_seconds",
    "payment webhook auth failures": "billing_webhook_signature_failures_total",
    "first response": "tickets_first_response_seconds_bucket",
}
BUILTIN_SERIES = {"up", "ALERTS"}
METRIC_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][\w:]*)\"")


def _alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["groups"], "alerts.yml has no groups"
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _defined_metrics() -> set[str]:
    """Series names the code exposes (prometheus_client adds _total/_bucket/... suffixes)."""
    names: set[str] = set()
    for path in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]:
        for kind, name in METRIC_DEFINITION.findall(path.read_text()):
            base = name.removesuffix("_total")
            if kind == "Counter":
                names.update({base + "_total", base + "_created"})
            elif kind in ("Histogram", "Summary"):
                names.update({name, *(name + s for s in ("_bucket", "_sum", "_count"))})
            else:
                names.add(name)
    return names


def _selectors(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node, *_):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    text = RUNBOOKS.read_text()
    anchors = {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    return anchors


def test_every_expression_parses_and_uses_metrics_the_code_defines():
    alerts = _alerts()
    defined = _defined_metrics() | BUILTIN_SERIES
    assert {"http_requests_total", "outbox_lag_seconds", "provisioner_provisions_total"} <= defined
    for rule in alerts:
        try:
            names = _selectors(rule["expr"])
        except ValueError as exc:  # promql-parser's parse error
            pytest.fail(f"{rule['alert']}: expr does not parse: {exc}")
        assert names, f"{rule['alert']} selects no series"
        unknown = sorted(set(names) - defined)
        assert not unknown, f"{rule['alert']} uses metrics no code defines: {unknown}"


def test_the_issue_alerts_exist():
    watched = {name for rule in _alerts() for name in _selectors(rule["expr"])}
    missing = {what for what, metric in REQUIRED_COVERAGE.items() if metric not in watched}
    assert not missing, f"no alert for: {sorted(missing)}"


def test_every_alert_has_for_severity_summary_description_and_a_runbook_that_exists():
    anchors = _runbook_anchors()
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for`"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        url = annotations.get("runbook_url", "")
        assert url.startswith(RUNBOOK_PREFIX), f"{name}: runbook_url {url!r}"
        anchor = url.removeprefix(RUNBOOK_PREFIX)
        assert anchor in anchors, f"{name}: runbooks.md has no section #{anchor}"


def test_the_prometheus_config_loads_the_rules():
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert [(PROM_DIR / f).resolve() for f in config["rule_files"]] == [RULES.resolve()]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"api", "worker"} <= jobs  # ProcessDown selects up{job=~"api|worker"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_checks_the_rules_config_and_rule_unit_tests():
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "alerts.test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=PROM_DIR, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def _dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "vpn.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_dashboard_queries_parse_and_use_metrics_the_code_defines():
    defined = _defined_metrics() | BUILTIN_SERIES
    targets = _dashboard_targets()
    assert targets
    watched: set[str] = set()
    for title, expr in targets:
        concrete = expr.replace("$__rate_interval", "5m").replace("$service", ".*")
        try:
            names = _selectors(concrete)
        except ValueError as exc:
            pytest.fail(f"panel {title!r}: query does not parse: {exc}")
        unknown = sorted(set(names) - defined)
        assert not unknown, f"panel {title!r} uses metrics no code defines: {unknown}"
        watched.update(names)
    wanted = {"http_requests_total", "http_request_duration_seconds_bucket",
              "broker_queue_messages", "broker_dead_letters", "outbox_lag_seconds",
              "jobs_handled_total", "job_queue_jobs", "provisioner_provisions_total",
              "messages_handled_total", "billing_revenue_usd_total",
              "provisioner_active_subscriptions", "tickets_first_response_seconds_bucket"}
    assert wanted <= watched, f"dashboard lacks {sorted(wanted - watched)}"


def test_grafana_provisioning_points_at_the_dashboard_and_the_datasource_it_uses():
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in sources["datasources"]}
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "vpn.json").read_text())
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert used and used <= uids
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/vpn.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in compose["volumes"]}
    for provider in providers["providers"]:
        assert mounts.get(provider["options"]["path"]) == "./deploy/grafana/dashboards"
