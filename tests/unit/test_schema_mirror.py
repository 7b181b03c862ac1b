"""The ``.avsc`` files and the pydantic models describe the same records, so they cannot drift."""

from __future__ import annotations

import json
import types
import typing
from importlib import resources
from typing import Any

import pytest
from fastavro.schema import parse_schema
from pydantic import BaseModel, PlainSerializer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from schemas.codec import NAMESPACE, WIRE_TYPES, load_schema_files
from schemas.commands import COMMAND_TYPES
from schemas.events import EVENT_TYPES
from schemas.management_events import MANAGEMENT_EVENTS
from schemas.records import RECORD_TYPES, Assignment, DeadLetter

PRIMITIVES: dict[type, str] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}

CURRENT = {f.name: f for f in load_schema_files() if f.version is None}
OLDER = [f for f in load_schema_files() if f.version is not None]


def _is_json(metadata: list[Any]) -> bool:
    return any(isinstance(m, PlainSerializer) for m in metadata)


def expected_type(annotation: Any, metadata: list[Any]) -> Any:
    """The Avro type a pydantic annotation must have on the wire."""
    if _is_json(metadata):
        return "string"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        return expected_type(inner, [*extra, *metadata])
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(members) == 1, f"only X | None unions are mirrored, got {annotation}"
        return ["null", expected_type(members[0], metadata)]
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": expected_type(item, [])}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return expected_record(annotation)
    return PRIMITIVES[annotation]


def expected_default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "{}" if _is_json(field.metadata) else value
    if field.default is PydanticUndefined:
        return PydanticUndefined
    return field.default


def expected_record(cls: type[BaseModel]) -> dict[str, Any]:
    fields = []
    for name, field in cls.model_fields.items():
        entry: dict[str, Any] = {
            "name": name,
            "type": expected_type(field.annotation, list(field.metadata)),
        }
        default = expected_default(field)
        if default is not PydanticUndefined:
            entry["default"] = default
        fields.append(entry)
    return {"type": "record", "name": cls.__name__, "fields": fields}


def strip(schema: Any) -> Any:
    """The parts of a schema the models decide (drops namespace and doc)."""
    if isinstance(schema, dict):
        return {k: strip(v) for k, v in schema.items() if k not in ("namespace", "doc")}
    if isinstance(schema, list):
        return [strip(v) for v in schema]
    return schema


def test_every_wire_class_has_a_current_schema() -> None:
    top_level: tuple[type[BaseModel], ...] = (
        *COMMAND_TYPES,
        *EVENT_TYPES,
        *MANAGEMENT_EVENTS,
        Assignment,
        DeadLetter,
    )
    assert set(WIRE_TYPES) == set(top_level)
    assert sorted(CURRENT) == sorted(cls.__name__ for cls in top_level)


def test_nested_records_are_inline_not_top_level() -> None:
    nested = set(RECORD_TYPES) - {Assignment, DeadLetter}
    assert nested, "AssignmentItem is expected to travel inside Assignment"
    for cls in nested:
        assert cls.__name__ not in CURRENT
        assert cls.__name__ in json.dumps(CURRENT["Assignment"].schema)


def test_only_schema_files_in_the_avro_directory() -> None:
    names = [e.name for e in resources.files("schemas").joinpath("avro").iterdir()]
    assert all(name.endswith(".avsc") for name in names), names
    assert len(names) == len(CURRENT) + len(OLDER)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
def test_schema_mirrors_model(cls: type[BaseModel]) -> None:
    schema = CURRENT[cls.__name__].schema
    assert schema["namespace"] == NAMESPACE
    assert [f["name"] for f in schema["fields"]] == list(cls.model_fields)
    nullable = {f["name"] for f in schema["fields"] if isinstance(f["type"], list)}
    optional = {
        name
        for name, field in cls.model_fields.items()
        if type(None) in typing.get_args(field.annotation)
    }
    assert nullable == optional
    assert strip(schema) == expected_record(cls)


@pytest.mark.parametrize("file", OLDER, ids=lambda f: f.source)
def test_older_versions_resolve_to_the_current_schema(file: Any) -> None:
    parse_schema(file.schema)
    assert file.schema["name"] == file.name
    assert f"version {file.version}" in file.schema.get("doc", "")
    assert_resolves(file.schema, CURRENT[file.name].schema)


def _record_of(kind: Any) -> Any:
    """The record an array of records holds (the one nesting the wire schemas use)."""
    if isinstance(kind, dict) and kind.get("type") == "array":
        items = kind["items"]
        if isinstance(items, dict) and items.get("type") == "record":
            return items
    return None


def assert_resolves(old: dict[str, Any], current: dict[str, Any]) -> None:
    """Every field the old record has keeps its type; every field added has a default. Nested
    records (arrays of records) follow the same rule."""
    written = {f["name"]: f for f in old["fields"]}
    for field in current["fields"]:
        if field["name"] in written:
            before, after = written[field["name"]]["type"], field["type"]
            old_item, new_item = _record_of(before), _record_of(after)
            if old_item is not None and new_item is not None and old_item != new_item:
                assert old_item["name"] == new_item["name"]
                assert_resolves(old_item, new_item)
            else:
                assert strip(before) == strip(after)
        else:
            assert "default" in field, f"{field['name']} was added without a default"
