"""Helpers of the codec and schema tests: the CRC-64-AVRO fingerprint written out, the schema
files by name, writing a record with a given writer schema, and a hypothesis strategy per model."""

from __future__ import annotations

import io
import types
import typing
from typing import Any

import annotated_types
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import strategies as st
from pydantic import BaseModel, PlainSerializer

from schemas.codec import (
    MAGIC,
    load_schema_files,
)
from schemas.commands import FAILURE_CLASSES

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(LONG_MIN, LONG_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)


json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            found["ge"] = m.ge
        elif isinstance(m, annotated_types.Le):
            found["le"] = m.le
        elif isinstance(m, annotated_types.MinLen):
            found["min_len"] = m.min_length
    return found


def value_strategy(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values for one pydantic field, derived from its annotation and constraints."""
    if any(isinstance(m, PlainSerializer) for m in metadata):
        return json_objects
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        (member,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return st.none() | value_strategy(member, metadata)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return st.lists(value_strategy(item, []), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_strategy(annotation)
    bounds = _bounds(metadata)
    if annotation is str:
        return st.text(min_size=bounds.get("min_len", 0), max_size=12)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(
            max(bounds.get("ge", LONG_MIN), LONG_MIN), min(bounds.get("le", LONG_MAX), LONG_MAX)
        )
    if annotation is float:
        return st.floats(bounds.get("ge"), bounds.get("le"), allow_nan=False)
    if annotation is bytes:
        return st.binary(max_size=16)
    raise AssertionError(f"no strategy for {annotation}")


def model_strategy(cls: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Instances of ``cls``; fields with defaults are sometimes left out."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in cls.model_fields.items():
        if name == "failure_class":  # a closed set, checked by the model
            strategy = st.none() | st.sampled_from(FAILURE_CLASSES)
        else:
            strategy = value_strategy(field.annotation, list(field.metadata))
        (required if field.is_required() else optional)[name] = strategy
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))


def header(schema: dict[str, Any]) -> bytes:
    return MAGIC + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def write_with(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A blob written by a third party: fastavro directly, no AvroCodec."""
    buf = io.BytesIO()
    buf.write(header(schema))
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def schema_file(name: str, version: int | None = None) -> dict[str, Any]:
    (file,) = [f for f in load_schema_files() if f.name == name and f.version == version]
    return file.schema


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp
