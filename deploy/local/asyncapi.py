"""Writes the committed AsyncAPI documents: each service's (`python -m <service> asyncapi`) into
`docs/02-api/asyncapi/`, and the combined one there and into the gateway, which serves it at
`/api/v1/asyncapi` (a page) and `/api/v1/asyncapi.json`. `--check` says which are out of date
instead (exit 1).

Run it as `make asyncapi` after changing a contract, a consumer or what an outbox publishes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtime.asyncapi import combine

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("billing", "gateway", "provisioner", "telegram", "tickets")
DOCS = ROOT / "docs" / "02-api" / "asyncapi"
GATEWAY_COPY = ROOT / "services" / "gateway" / "src" / "gateway" / "asyncapi.json"


def service_document(service: str) -> dict[str, Any]:
    # The development defaults only: what a document says must not depend on this shell.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "APP_ENV": "development", "LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", service, "asyncapi"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"{service} asyncapi failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def generate() -> dict[Path, dict[str, Any]]:
    """Every committed document by its path."""
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        docs = dict(zip(SERVICES, pool.map(service_document, SERVICES), strict=True))
    combined = combine(docs)
    files = {DOCS / f"{name}.json": doc for name, doc in docs.items()}
    files[DOCS / "combined.json"] = combined
    files[GATEWAY_COPY] = combined
    return files


def text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def stale(files: dict[Path, dict[str, Any]]) -> list[Path]:
    return [p for p, doc in files.items() if not p.exists() or p.read_text() != text(doc)]


def main() -> int:
    files = generate()
    if "--check" in sys.argv:
        for path in stale(files):
            sys.stderr.write(f"{path.relative_to(ROOT)}: out of date, run `make asyncapi`\n")
        return 1 if stale(files) else 0
    DOCS.mkdir(parents=True, exist_ok=True)
    for path, doc in files.items():
        path.write_text(text(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
