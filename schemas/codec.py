"""Avro single-object encoding of the wire models.

A blob is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
Parsing Canonical Form + the Avro binary body. Any Avro library can therefore produce commands
without a schema registry.

``schemas/avro/<Name>.avsc`` is the current (reader) schema of the model class ``<Name>``;
``<Name>.v<N>.avsc`` are released older versions that must keep decoding. A blob written with
any known version is resolved writer -> reader and validated by the pydantic model. Current
schemas are written and read by compiled code (``schemas.fastcodec``); fastavro resolves the
older versions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from io import BytesIO
from typing import Any, Final, TypeVar

from fastavro import schemaless_reader
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.types import Schema
from pydantic import BaseModel, ValidationError

from schemas.commands import COMMAND_TYPES
from schemas.errors import (
    BadMagicError,
    DecodeError,
    EncodeError,
    SchemaError,
    UnknownFingerprintError,
)
from schemas.events import EVENT_TYPES
from schemas.fastcodec import (
    Builder,
    Reader,
    Writer,
    compile_reader,
    compile_writer,
    trusted_builder,
)
from schemas.management_events import MANAGEMENT_EVENTS
from schemas.records import Assignment, DeadLetter

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = 10
NAMESPACE: Final = "taskstream"

WIRE_TYPES: tuple[type[BaseModel], ...] = (
    *COMMAND_TYPES,
    *EVENT_TYPES,
    *MANAGEMENT_EVENTS,
    Assignment,
    DeadLetter,
)
"""Every model class that travels as a top-level Avro record."""

_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.v(?P<version>[0-9]+))?\.avsc$")

M = TypeVar("M", bound=BaseModel)


def fingerprint_bytes(schema: Schema) -> bytes:
    """The 8 fingerprint bytes of the single-object header for ``schema``.

    fastavro renders CRC-64-AVRO as the hex of the little-endian bytes (as Java does), which is
    exactly the byte order the single-object encoding wants.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """One ``.avsc`` document: the record it describes and its version (``None`` = current)."""

    name: str
    version: int | None
    schema: dict[str, Any]
    source: str


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: Any
    """The parsed current schema (old writer schemas resolve to it)."""
    write: Writer
    """The compiled writer (``schemas.fastcodec``)."""


BodyReader = Callable[[bytes], Any]
"""Reads the Avro body of a whole single-object blob to the current schema's record dict."""


@dataclass(frozen=True, slots=True)
class _Reader:
    name: str
    model: type[BaseModel]
    read: BodyReader
    """The compiled reader for the current schema; fastavro's resolution for older ones."""
    build: Builder
    """Builds the model without validation, for ``decode_trusted``."""


class AvroCodec:
    """Encodes models to, and decodes models from, Avro single-object blobs.

    One path per direction: every current schema is compiled (``schemas.fastcodec``), writer
    and reader; a blob of an older writer schema is resolved to the current one by fastavro.
    fastavro's generic writer and reader stay the reference the compiled code is tested
    against (``tests/unit/test_codec.py``).
    """

    def __init__(self, files: Iterable[SchemaFile], models: Iterable[type[BaseModel]]) -> None:
        by_name = {cls.__name__: cls for cls in models}
        current: dict[str, SchemaFile] = {}
        older: list[SchemaFile] = []
        for file in files:
            if file.schema.get("type") != "record" or file.schema.get("name") != file.name:
                raise SchemaError(f"{file.source}: expected a record named {file.name!r}")
            if file.name not in by_name:
                raise SchemaError(f"{file.source}: no model class named {file.name!r}")
            if file.version is None:
                current[file.name] = file
            else:
                older.append(file)

        self._writers: dict[type[BaseModel], _Writer] = {}
        self._readers: dict[bytes, _Reader] = {}
        for name, file in current.items():
            parsed = _parse(file)
            fp = fingerprint_bytes(file.schema)
            model = by_name[name]
            write = compile_writer(model, parsed)
            read = compile_reader(parsed)
            if write is None or read is None:
                raise SchemaError(
                    f"{file.source}: uses an Avro type schemas.fastcodec does not compile"
                )
            self._writers[model] = _Writer(MAGIC + fp, parsed, write)
            reader = _Reader(name, model, _compiled(name, read), _builder(model, parsed))
            self._add_reader(fp, reader, file.source)
        for file in older:
            if file.name not in current:
                raise SchemaError(f"{file.source}: no current {file.name}.avsc to resolve to")
            model = by_name[file.name]
            reader_schema = self._writers[model].schema
            resolve = _resolving(file.name, _parse(file), reader_schema)
            build = _builder(model, reader_schema)
            self._add_reader(
                fingerprint_bytes(file.schema),
                _Reader(file.name, model, resolve, build),
                file.source,
            )

    def _add_reader(self, fp: bytes, reader: _Reader, source: str) -> None:
        if fp in self._readers:
            raise SchemaError(f"{source}: same fingerprint {fp.hex()} as {self._readers[fp].name}")
        self._readers[fp] = reader

    @classmethod
    def from_package(cls) -> AvroCodec:
        """The codec for the ``.avsc`` files shipped in ``schemas/avro``."""
        return cls(load_schema_files(), WIRE_TYPES)

    def encode(self, model: BaseModel) -> bytes:
        writer = self._writers.get(type(model))
        if writer is None:
            raise EncodeError(f"{type(model).__name__} has no Avro schema")
        out = bytearray(writer.header)
        try:
            writer.write(model, out)
        except (ValueError, TypeError, OverflowError, AttributeError) as exc:
            raise EncodeError(f"cannot encode {type(model).__name__}: {exc}") from None
        return bytes(out)

    def decode(self, data: bytes) -> BaseModel:
        """Decode and validate a blob from anywhere (commands from outside included)."""
        reader = self._reader_for(data)
        record = reader.read(data)
        try:
            # ``model_validate`` with its defaults, without the classmethod's own overhead.
            validated: BaseModel = reader.model.__pydantic_validator__.validate_python(record)
            return validated
        except ValidationError as exc:
            raise DecodeError(f"{reader.name}: {_describe(exc)}") from None

    def decode_trusted(self, data: bytes) -> BaseModel:
        """Decode a blob this system wrote itself (``task.events`` on recovery and in the
        projections) without pydantic validation: the writer validated the model, and the
        Avro schema still checks the shape. Never for input from outside."""
        reader = self._reader_for(data)
        record = reader.read(data)
        try:
            return reader.build(record)
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError(f"{reader.name}: {exc}") from None

    def decode_as(self, data: bytes, model: type[M]) -> M:
        """Decode ``data`` and check that it holds a ``model``."""
        value = self.decode(data)
        if not isinstance(value, model):
            raise DecodeError(f"expected {model.__name__}, got {type(value).__name__}")
        return value

    def record_name(self, data: bytes) -> str:
        """The record name a blob holds, from its header alone (no body decoding)."""
        return self._reader_for(data).name

    def fingerprint_of(self, model: type[BaseModel]) -> bytes:
        """The 8 fingerprint bytes of the current schema of ``model``."""
        writer = self._writers.get(model)
        if writer is None:
            raise EncodeError(f"{model.__name__} has no Avro schema")
        return writer.header[len(MAGIC) :]

    def _reader_for(self, data: bytes) -> _Reader:
        if data.__class__ is bytes and data[:2] == MAGIC:  # the common case, checked once
            found = self._readers.get(data[2:HEADER_SIZE])
            if found is not None:
                return found
        if data[:2] != MAGIC:
            raise BadMagicError(
                f"not an Avro single-object record: starts with {bytes(data[:2]).hex() or 'nothing'}"
                f", expected {MAGIC.hex()}"
            )
        if len(data) < HEADER_SIZE:
            raise DecodeError(
                f"truncated Avro header: {len(data)} bytes, need at least {HEADER_SIZE}"
            )
        fp = bytes(data[2:HEADER_SIZE])
        reader = self._readers.get(fp)
        if reader is None:
            raise UnknownFingerprintError(f"unknown writer schema fingerprint {fp.hex()}")
        return reader


def _parse(file: SchemaFile) -> Any:
    try:
        return parse_schema(file.schema)
    except Exception as exc:  # fastavro raises several untyped errors on bad schemas
        raise SchemaError(f"{file.source}: invalid Avro schema: {exc}") from None


def _builder(model: type[BaseModel], schema: Any) -> Builder:
    """The trusted builder of ``model``; for a model that needs more than field conversions
    (``schemas.fastcodec.trusted_builder`` gives none), its validation."""
    build = trusted_builder(model, schema)
    if build is not None:
        return build
    name = model.__name__

    def validate(record: dict[str, Any]) -> BaseModel:
        try:
            return model.model_validate(record)
        except ValidationError as exc:
            raise DecodeError(f"{name}: {_describe(exc)}") from None

    return validate


def _compiled(name: str, read: Reader) -> BodyReader:
    """The compiled body reader of a current schema, with the codec's errors."""

    def read_body(data: bytes) -> Any:
        try:
            body, end = read(data, HEADER_SIZE)
        except (EOFError, IndexError):
            raise DecodeError(f"{name}: truncated Avro body") from None
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise DecodeError(
                f"{name}: truncated or damaged Avro body ({type(exc).__name__}: {exc})"
            ) from None
        if end != len(data):
            raise DecodeError(f"{name}: {len(data) - end} unexpected bytes after the Avro body")
        return body

    return read_body


def _resolving(name: str, writer_schema: Any, reader_schema: Any) -> BodyReader:
    """fastavro reading an older writer schema's body, resolved to the current schema."""

    def read_body(data: bytes) -> Any:
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(buf, writer_schema, reader_schema)
        except EOFError:
            raise DecodeError(f"{name}: truncated Avro body") from None
        except Exception as exc:  # fastavro raises untyped errors on damaged input
            raise DecodeError(
                f"{name}: truncated or damaged Avro body ({type(exc).__name__}: {exc})"
            ) from None
        if buf.tell() != len(data):
            raise DecodeError(
                f"{name}: {len(data) - buf.tell()} unexpected bytes after the Avro body"
            )
        return record

    return read_body


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_schema_files() -> list[SchemaFile]:
    """Read every ``schemas/avro/*.avsc`` shipped with the package."""
    files: list[SchemaFile] = []
    directory = resources.files("schemas").joinpath("avro")
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise SchemaError(f"{entry.name}: expected <Name>.avsc or <Name>.v<N>.avsc")
        try:
            schema = json.loads(entry.read_text("utf-8"))
        except ValueError as exc:
            raise SchemaError(f"{entry.name}: not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise SchemaError(f"{entry.name}: expected a JSON object")
        version = match.group("version")
        files.append(
            SchemaFile(
                name=match.group("name"),
                version=None if version is None else int(version),
                schema=schema,
                source=entry.name,
            )
        )
    return files


CODEC: Final = AvroCodec.from_package()


def fingerprint_of(model: type[BaseModel]) -> bytes:
    """The 8 fingerprint bytes of the current schema of ``model`` (see ``AvroCodec``)."""
    return CODEC.fingerprint_of(model)
