"""Architecture rules enforced by the test suite: services never import each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_services_do_not_import_each_other():
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Services never import each other KEPT" in result.stdout


def test_a_cross_service_import_fails_the_suite(tmp_path):
    """The project's own contracts, run over a copy of its package names in which billing
    imports tickets (in a scratch folder: the source tree is never written)."""
    text = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text[text.index("[tool.importlinter]"):])
    for name in ("gateway", "billing", "tickets", "telegram", "provisioner", "runtime",
                 "contracts"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "tickets" / "service.py").write_text("")
    (tmp_path / "billing" / "probe.py").write_text("import tickets.service  # noqa: F401\n")
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Services never import each other BROKEN" in result.stdout
    assert "billing.probe -> tickets.service" in result.stdout
