"""Shared test vectors: for every schema, JSON values and the exact single-object bytes the codec
writes for them (``schemas/vectors/``, described in ``schemas/vectors/README.md``).

Clients in other languages test their encoders and decoders against these files; the Python
tests check that the files are what this module builds from the current codec, and that plain
fastavro reads and writes the same bytes. Regenerate after a schema change with
``python -m schemas.testvectors`` (``--check`` only compares).

A vector's ``value`` is the Avro datum as JSON: field names as in the schema, a nullable field
is ``null`` or its value (every union is ``["null", T]``), ``bytes`` are lowercase hex, JSON
documents are the JSON text the codec writes (compact, keys sorted), longs stay within 2^53.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema, schemaless_writer
from pydantic import BaseModel, PlainSerializer

from schemas import commands as cmd
from schemas import events as ev
from schemas.codec import CODEC, MAGIC, WIRE_TYPES, SchemaFile, fingerprint_bytes, load_schema_files
from schemas.records import Assignment, AssignmentItem, DeadLetter

FORMAT: Final = 1
"""Version of the vector file layout (``format`` in every file)."""

DIRECTORY: Final = Path(__file__).resolve().parent / "vectors"

_T0: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a realistic epoch-millisecond value


@dataclass(frozen=True, slots=True)
class Vector:
    name: str
    description: str
    model: BaseModel


# -- hand-written vectors: the records a client author meets first --------------------------

_NAMED: Final[tuple[Vector, ...]] = (
    Vector(
        "readme-submit",
        "The README's SubmitTask: a payload as JSON text, defaults for the rest.",
        cmd.SubmitTask(
            client_id="client_acme_001",
            task_id="readme-contact-1",
            operation="contact_create",
            payload={"email": "john@example.com", "firstName": "John", "lastName": "Doe"},
        ),
    ),
    Vector(
        "submit-every-option",
        "A SubmitTask with every optional field set.",
        cmd.SubmitTask(
            client_id="client_acme_001",
            task_id="t-42",
            operation="workflow_trigger",
            payload={"workflow": "wf_9", "contact": {"id": "ct_1", "tags": ["vip"]}},
            priority=1,
            max_retries=5,
            timeout_ms=120_000,
            scheduled_for_ms=_T0 + 60_000,
            requires_review=True,
            depends_on=["t-41"],
            capabilities=["ghl", "browser"],
        ),
    ),
    Vector(
        "submit-attachments",
        "A SubmitTask with attachments: one with its size and media type, one bare reference.",
        cmd.SubmitTask(
            client_id="client_acme_001",
            task_id="t-44",
            operation="contact_create",
            payload={"email": "john@example.com"},
            attachments=[
                cmd.TaskAttachment(
                    url="https://files.example.com/contracts/acme.pdf",
                    name="contract.pdf",
                    size_bytes=482_113,
                    content_type="application/pdf",
                ),
                cmd.TaskAttachment(url="https://example.com/brief", name="brief"),
            ],
        ),
    ),
    Vector(
        "register-session",
        "An executor registers a browser session that runs two things at once.",
        cmd.RegisterSession(
            client_id="client_acme_001",
            session_id="bb_session_12345",
            agent_id="agent_001",
            max_concurrent=2,
            capabilities=["browser"],
        ),
    ),
    Vector(
        "task-assignment",
        "Work for one session: one item, the fencing token its results must carry.",
        Assignment(
            kind="task",
            client_id="client_acme_001",
            session_id="bb_session_12345",
            operation="contact_create",
            task_id="readme-contact-1",
            attempt=1,
            fencing_token=7,
            deadline_at_ms=_T0 + 30_000,
            timeout_ms=30_000,
            priority=2,
            items=[AssignmentItem(task_id="readme-contact-1", payload={"firstName": "John"})],
        ),
    ),
    Vector(
        "batch-assignment",
        "A batch: one capacity unit, several items, one ReportResult with per-item outcomes.",
        Assignment(
            kind="batch",
            client_id="client_acme_001",
            session_id="bb_session_12345",
            operation="tag_add",
            batch_id="b-client_acme_001-3",
            attempt=1,
            fencing_token=12,
            deadline_at_ms=_T0 + 30_000,
            timeout_ms=30_000,
            priority=4,
            items=[
                AssignmentItem(task_id="t-a", payload={"tag": "vip"}),
                AssignmentItem(task_id="t-b", payload={"tag": "new"}),
            ],
        ),
    ),
    Vector(
        "cancel-assignment",
        "A cancel signal for work already handed out: stop the task, run nothing.",
        Assignment(
            kind="cancel",
            client_id="client_acme_001",
            session_id="bb_session_12345",
            operation="contact_create",
            task_id="readme-contact-1",
            attempt=1,
            fencing_token=7,
            reason="customer left",
        ),
    ),
    Vector(
        "task-result",
        "A successful single-task result: the assignment's fencing token, an output document.",
        cmd.ReportResult(
            client_id="client_acme_001",
            task_id="readme-contact-1",
            session_id="bb_session_12345",
            fencing_token=7,
            success=True,
            output={"contact_id": "ct_readme-contact-1"},
            execution_time_ms=840,
        ),
    ),
    Vector(
        "batch-result",
        "A batch result: one item succeeded, one failed (items left out would fail too).",
        cmd.ReportResult(
            client_id="client_acme_001",
            batch_id="b-client_acme_001-3",
            session_id="bb_session_12345",
            fencing_token=12,
            success=True,
            items=[
                cmd.ItemResult(task_id="t-a", success=True, output={"tagged": True}),
                cmd.ItemResult(task_id="t-b", success=False, error="contact not found"),
            ],
            execution_time_ms=1_250,
        ),
    ),
    Vector(
        "outcome-completed",
        "The outcome record of a completed task on task.completed.",
        ev.TaskCompleted(
            client_id="client_acme_001",
            occurred_at_ms=_T0 + 1_000,
            task_id="readme-contact-1",
            operation="contact_create",
            attempt=1,
            session_id="bb_session_12345",
            output={"contact_id": "ct_readme-contact-1"},
            execution_time_ms=840,
        ),
    ),
    Vector(
        "outcome-cancelled",
        "The outcome record of a cancelled task on task.failed.",
        ev.TaskFailed(
            client_id="client_acme_001",
            occurred_at_ms=_T0 + 2_000,
            task_id="t-42",
            operation="workflow_trigger",
            attempt=1,
            error="cancelled: customer left",
            reason="customer left",
            outcome=ev.OUTCOME_CANCELLED,
        ),
    ),
    Vector(
        "outcome-refused",
        "The outcome record of a refused submit on task.failed: the task never existed.",
        ev.TaskFailed(
            client_id="client_acme_001",
            occurred_at_ms=_T0 + 3_000,
            task_id="t-43",
            operation="teleport",
            attempt=0,
            error="refused: unknown operation 'teleport'",
            reason="unknown operation 'teleport'",
            outcome=ev.OUTCOME_REFUSED,
        ),
    ),
    Vector(
        "undecodable-input",
        "A dead letter for input that could not be used: its raw bytes and where it was read.",
        DeadLetter(
            reason="not an Avro single-object record: starts with 7b22, expected c301",
            client_id="client_acme_001",
            source_topic="task.commands",
            source_partition=2,
            source_offset=1_234,
            raw=b'{"task_id": "x"}',
            occurred_at_ms=_T0 + 4_000,
        ),
    ),
)


# -- generated vectors: every field of every schema ---------------------------------------------

_WORDS: Final = {
    "RetryDue.kind": "retry",
    "kind": "task",
    "status": "degraded",
    "previous_status": "healthy",
    "circuit": "half_open",
    "outcome": "cancelled",
    "command": "SubmitTask",
    "closed_by": "size",
    "attempts_json": json.dumps(
        [{"attempt": 1, "session_id": "bb_session_12345", "error": "timeout", "at_ms": _T0}]
    ),
}


def _bounds(field: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in field.metadata:
        for name in ("ge", "le", "min_length", "max_length"):
            if hasattr(m, name):
                found[name] = getattr(m, name)
    return found


def _is_json(metadata: list[Any]) -> bool:
    return any(isinstance(m, PlainSerializer) for m in metadata)


def _sample(model: type[BaseModel], full: bool, seed: int) -> BaseModel:
    """An instance with every required field set (``full``: every optional one too), values
    chosen to exercise the encoding: multi-byte and negative varints, unicode, nested JSON."""
    fields: dict[str, Any] = {}
    for i, (name, field) in enumerate(model.model_fields.items()):
        if not full and not field.is_required():
            continue
        fields[name] = _value(
            f"{model.__name__}.{name}",
            field.annotation,
            list(field.metadata),
            _bounds(field),
            seed + i,
        )
    return model(**fields)


def _value(where: str, annotation: Any, metadata: list[Any], bounds: dict[str, Any], n: int) -> Any:
    name = where.rpartition(".")[2]
    if _is_json(metadata):
        return {"n": n, "note": "café ✓", "list": [1, 2.5, True, None], "nested": {"k": "v"}}
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        return _value(where, inner, [*extra, *metadata], bounds, n)
    if origin in (types.UnionType, typing.Union):
        (member,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value(where, member, metadata, bounds, n)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_value(where, item, [], {}, n + k) for k in range(2)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _sample(annotation, True, n)
    if annotation is str:
        if name == "failure_class":
            return cmd.FAILURE_CLASSES[n % len(cmd.FAILURE_CLASSES)]
        return _WORDS.get(where, _WORDS.get(name, f"{name}-{n}"))
    if annotation is bool:
        return n % 2 == 0
    if annotation is bytes:
        return bytes([0x00, 0xC3, 0x01, 0x7F, 0x80, 0xFF, n % 256])
    if annotation is float:
        return min(max(0.25 * (n % 4), bounds.get("ge", 0.0)), bounds.get("le", 1.0))
    if annotation is int:
        if name == "retry_after_ms":
            value = 2000 + n  # a duration, not a time
        elif name.endswith("_ms"):
            value = _T0 + n
        elif name in ("source_offset", "fencing_token", "current_fencing_token"):
            value = 300 + n  # a two-byte varint
        else:
            value = 1 + n % 3
        return min(max(value, bounds.get("ge", value)), bounds.get("le", value))
    raise AssertionError(f"no sample for {name}: {annotation}")


def vectors_for(model: type[BaseModel]) -> list[Vector]:
    """The vectors of one current schema: hand-written ones first, then minimal and full."""
    found = [v for v in _NAMED if type(v.model) is model]
    found.append(
        Vector("minimal", "Required fields only; every default left out.", _sample(model, False, 0))
    )
    found.append(
        Vector(
            "full", "Every field given a value, optional ones included.", _sample(model, True, 1)
        )
    )
    return found


# -- the JSON form of a datum ----------------------------------------------------------------


def _walk(value: Any, schema: Any, named: dict[str, Any], leaf: Any) -> Any:
    """``value`` with ``leaf`` applied to every ``bytes`` datum, following ``schema``."""
    if value is None:
        return None
    if isinstance(schema, str):
        if schema == "bytes":
            return leaf(value)
        if schema in named:
            return _walk(value, named[schema], named, leaf)
        return value
    if isinstance(schema, list):
        (branch,) = [s for s in schema if s != "null"]
        return _walk(value, branch, named, leaf)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        named[f"{schema.get('namespace', 'taskstream')}.{schema['name']}"] = schema
        return {
            f["name"]: _walk(value[f["name"]], f["type"], named, leaf) for f in schema["fields"]
        }
    if kind == "array":
        return [_walk(item, schema["items"], named, leaf) for item in value]
    return _walk(value, kind, named, leaf)


def to_json(datum: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The vector ``value`` of an Avro datum (bytes as hex)."""
    result: dict[str, Any] = _walk(datum, schema, {}, lambda b: bytes(b).hex())
    return result


def from_json(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The Avro datum of a vector ``value`` (hex back to bytes)."""
    result: dict[str, Any] = _walk(value, schema, {}, bytes.fromhex)
    return result


def write_plain(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """Single-object bytes written by fastavro directly (no codec): header + body."""
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint_bytes(schema))
    schemaless_writer(buf, parse_schema(schema), datum)
    return buf.getvalue()


# -- the files -------------------------------------------------------------------------------


def _entry(vector: Vector, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": vector.name,
        "description": vector.description,
        "value": to_json(vector.model.model_dump(), schema),
        "bytes": CODEC.encode(vector.model).hex(),
    }


def build() -> dict[str, dict[str, Any]]:
    """Every vector file, by file name: ``<Name>.json`` for each current schema and
    ``<Name>.v<N>.json`` for each older one (its records and what they read as today)."""
    files = load_schema_files()
    current = {f.name: f for f in files if f.version is None}
    models = {cls.__name__: cls for cls in WIRE_TYPES}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(current):
        file = current[name]
        out[f"{name}.json"] = {
            **_header(file),
            "vectors": [_entry(v, file.schema) for v in vectors_for(models[name])],
        }
    for file in sorted((f for f in files if f.version is not None), key=lambda f: f.source):
        reader = current[file.name].schema
        old_fields = {f["name"] for f in file.schema["fields"]}
        entries = []
        for vector in vectors_for(models[file.name])[-2:]:  # minimal and full
            dumped = vector.model.model_dump()
            datum = {k: v for k, v in dumped.items() if k in old_fields}
            blob = write_plain(file.schema, datum)
            entries.append(
                {
                    "name": vector.name,
                    "description": vector.description,
                    "value": to_json(datum, file.schema),
                    "bytes": blob.hex(),
                    "reads_as": to_json(CODEC.decode(blob).model_dump(), reader),
                }
            )
        out[f"{file.source.removesuffix('.avsc')}.json"] = {
            **_header(file),
            "reads_as_schema": f"../avro/{file.name}.avsc",
            "vectors": entries,
        }
    return out


def _header(file: SchemaFile) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "record": f"{file.schema.get('namespace', 'taskstream')}.{file.name}",
        "schema": f"../avro/{file.source}",
        "version": file.version,
        "fingerprint": fingerprint_bytes(file.schema).hex(),
    }


def render(document: dict[str, Any]) -> str:
    """The exact text of a vector file (stable, so files can be compared as text)."""
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def stale(directory: Path = DIRECTORY) -> Iterator[str]:
    """File names that are missing, different, or no longer built."""
    built = build()
    for name, document in built.items():
        path = directory / name
        if not path.exists() or path.read_text("utf-8") != render(document):
            yield name
    for path in sorted(directory.glob("*.json")):
        if path.name not in built:
            yield path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.testvectors", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        names = list(stale())
        for name in names:
            print(f"stale: schemas/vectors/{name}", file=sys.stderr)
        return 1 if names else 0
    DIRECTORY.mkdir(exist_ok=True)
    built = build()
    for path in DIRECTORY.glob("*.json"):
        if path.name not in built:
            path.unlink()
    for name, document in built.items():
        (DIRECTORY / name).write_text(render(document), "utf-8")
    print(f"wrote {len(built)} vector files to {DIRECTORY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
