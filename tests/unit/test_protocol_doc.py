"""The wire contract is written down where client authors look: ``docs/protocol.md`` and the
``doc`` of the ``.avsc`` files. These tests keep both in step with the schemas."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, PlainSerializer

from schemas import reference
from schemas.codec import WIRE_TYPES, load_schema_files
from streams.kafka.topics import topic_layout
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text("utf-8")
CURRENT = {f.name: f.schema for f in load_schema_files() if f.version is None}


def json_fields(cls: type[BaseModel], path: str = "") -> list[str]:
    """Dotted paths of the fields that carry JSON text (``a.items[].payload``)."""
    found = []
    for name, field in cls.model_fields.items():
        here = f"{path}{name}"
        if any(isinstance(m, PlainSerializer) for m in field.metadata):
            found.append(here)
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                many = typing.get_origin(field.annotation) is list
                found += json_fields(arg, f"{here}[]." if many else f"{here}.")
    return found


def avsc_field(schema: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    name = head.removesuffix("[]")
    (field,) = [f for f in schema["fields"] if f["name"] == name]
    assert isinstance(field, dict)
    if not rest:
        return field
    kind = field["type"]
    inner = kind["items"] if kind["type"] == "array" else kind
    return avsc_field(inner, rest)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
def test_every_json_text_field_says_so_in_its_schema(cls: type[BaseModel]) -> None:
    for path in json_fields(cls):
        doc = avsc_field(CURRENT[cls.__name__], path).get("doc", "")
        assert doc.startswith("JSON text"), f"{cls.__name__}.{path} has no JSON-text doc"
    dead_letter = avsc_field(CURRENT["DeadLetter"], "attempts_json")
    assert dead_letter["doc"].startswith("JSON text")


def test_the_protocol_page_names_every_topic_and_links_the_partitioning_page() -> None:
    for spec in topic_layout(Settings()):
        assert f"`{spec.name}`" in PROTOCOL, spec.name
    assert "(partitioning.md)" in PROTOCOL


def test_every_relative_link_of_the_protocol_page_resolves() -> None:
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", PROTOCOL)
    assert links
    missing = [link for link in links if not (ROOT / "docs" / link).resolve().exists()]
    assert missing == []


def test_the_record_reference_is_what_the_schemas_say() -> None:
    assert reference.updated(PROTOCOL) == PROTOCOL, "run: python -m schemas.reference"


def _section(record: str) -> str:
    match = re.search(rf"^#### `{record}`\n(.*?)(?=^#|\Z)", PROTOCOL, flags=re.S | re.M)
    assert match, f"docs/protocol.md has no section #### `{record}`"
    return match.group(1)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
def test_the_protocol_page_lists_every_record_with_exactly_its_fields(
    cls: type[BaseModel],
) -> None:
    listed = re.findall(r"^\| `([a-z_]+)` \|", _section(cls.__name__), flags=re.M)
    assert listed == list(cls.model_fields), f"{cls.__name__}: fields differ from the schema"
