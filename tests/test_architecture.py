"""Architecture rules enforced by the test suite: services never import each other."""

from __future__ import annotations

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


def test_a_cross_service_import_fails_the_suite():
    offender = ROOT / "services" / "billing" / "src" / "billing" / "_arch_probe.py"
    offender.write_text('"""Temporary probe."""\nimport tickets.service  # noqa: F401\n')
    try:
        result = _lint_imports()
    finally:
        offender.unlink()
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
