"""Generates the JSON Schema of every contract and checks released ones for compatibility.

Run `python -m contracts.schemas` to write `libs/contracts/schemas/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope, registry

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def generate() -> dict[str, dict[str, Any]]:
    out = {key: model.model_json_schema() for key, model in sorted(registry.items())}
    out["envelope"] = Envelope.model_json_schema()
    return out


def write(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for key, schema in generate().items():
        (directory / f"{key}.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


def _resolve(schema: dict, root: dict) -> dict:
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return root.get("$defs", {}).get(name, {})
    return schema


def _types(schema: dict, root: dict) -> set[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return set().union(*(_types(s, root) for s in schema["anyOf"]))
    t = schema.get("type")
    if isinstance(t, list):
        return set(t)
    if t:
        return {t}
    if "const" in schema or "enum" in schema:
        return {"enum"}
    return {"object"} if "properties" in schema else {"any"}


def incompatibilities(old: dict, new: dict, path: str = "", old_root=None,
                      new_root=None) -> list[str]:
    """What `new` breaks for a consumer written against `old` (empty when compatible)."""
    old_root, new_root = old_root or old, new_root or new
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    for name in old_props:
        if name not in new_props:
            problems.append(f"{path}{name}: removed")
    for name in new_req - old_req:
        problems.append(f"{path}{name}: became required (new fields must be optional)")
    for name in old_req - new_req:
        if name in new_props:
            problems.append(f"{path}{name}: no longer required")
    for name, old_field in old_props.items():
        if name not in new_props:
            continue
        new_field = new_props[name]
        ot, nt = _types(old_field, old_root), _types(new_field, new_root)
        if ot != nt:
            problems.append(f"{path}{name}: type changed {sorted(ot)} -> {sorted(nt)}")
        oe = _resolve(old_field, old_root).get("enum")
        ne = _resolve(new_field, new_root).get("enum")
        if oe and ne and set(oe) != set(ne):
            problems.append(f"{path}{name}: allowed values changed")
        if "properties" in _resolve(old_field, old_root):
            problems += incompatibilities(old_field, new_field, f"{path}{name}.", old_root,
                                          new_root)
    return problems


def check(directory: Path = SCHEMA_DIR) -> list[str]:
    current = generate()
    problems: list[str] = []
    for file in sorted(directory.glob("*.json")):
        key = file.stem
        released = json.loads(file.read_text())
        if key not in current:
            problems.append(f"{key}: released contract removed")
            continue
        problems += [f"{key}: {p}" for p in incompatibilities(released, current[key])]
    return problems


if __name__ == "__main__":
    if "--check" in sys.argv:
        found = check()
        for p in found:
            sys.stderr.write(p + "\n")
        sys.exit(1 if found else 0)
    write()
