"""The shared Avro test vectors (``schemas/vectors``): where they are, each read as a datum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


DIRECTORY = ROOT / "schemas" / "vectors"


FILES = sorted(DIRECTORY.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return document


def hex_bytes(value: Any, schema: Any, named: dict[str, Any], decode: bool) -> Any:
    """``value`` with every Avro ``bytes`` datum turned to (``decode``) or from hex."""
    if value is None:
        return None
    if isinstance(schema, list):
        return hex_bytes(value, next(s for s in schema if s != "null"), named, decode)
    if isinstance(schema, str):
        if schema == "bytes":
            return bytes.fromhex(value) if decode else value.hex()
        return hex_bytes(value, named[schema], named, decode) if schema in named else value
    if schema["type"] == "record":
        named[schema["name"]] = schema
        return {
            f["name"]: hex_bytes(value[f["name"]], f["type"], named, decode)
            for f in schema["fields"]
        }
    if schema["type"] == "array":
        return [hex_bytes(v, schema["items"], named, decode) for v in value]
    return hex_bytes(value, schema["type"], named, decode)


def datum_of(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = hex_bytes(value, schema, {}, True)
    return result


def vectors() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(p.name, load(p), v) for p in FILES for v in load(p)["vectors"]]
