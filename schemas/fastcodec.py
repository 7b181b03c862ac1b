"""Compiled Avro writers and trusted builders for the flat records of the wire contract.

fastavro's ``schemaless_writer`` needs a dict (``model_dump``) and a file object and pays for
both on every record; the processor encodes one or more records per command, so that was a
third of the codec's cost. Here each record schema becomes one generated Python function that
reads the model's attributes and appends the Avro binary encoding to a ``bytearray``. Only the
types the contract uses are compiled (string, bytes, long, boolean, double, two-branch unions
with null, arrays, nested records); for anything else the compilers return ``None`` and the
codec refuses the schema (one codec path: fastavro only resolves older writer schemas).
``tests/unit/test_codec.py`` checks the output is byte-identical to fastavro's for every wire
type.

``trusted_builder`` is the read-side counterpart for records the processor itself wrote: it
builds the model from fastavro's dict without pydantic validation (``model_construct``
semantics, nested records and JSON documents included).
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel, PlainSerializer
from pydantic.functional_validators import BeforeValidator

__all__ = [
    "Builder",
    "Reader",
    "Writer",
    "compile_reader",
    "compile_writer",
    "encode_long",
    "trusted_builder",
]

Writer = Callable[[Any, bytearray], None]
Builder = Callable[[dict[str, Any]], BaseModel]

_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
# Zigzag varints of -64..63 are one byte: the common case for lengths, counts and flags.
_SMALL: Final = {n: bytes(((n << 1) ^ (n >> 63),)) for n in range(-64, 64)}
_PACK_DOUBLE: Final = struct.Struct("<d").pack


def encode_long(n: int) -> bytes:
    """The Avro zigzag varint of ``n`` (OverflowError outside the signed 64-bit range)."""
    small = _SMALL.get(n)
    if small is not None:
        return small
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError(f"{n} does not fit an Avro long")
    z = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Varints of recent longer values: the events of a cycle share a few timestamps, and a
# 6-byte varint costs ~1 us to compute in Python against ~0.1 us to look up. Bounded.
_VARINTS: Final[dict[int, bytes]] = {}
_VARINTS_MAX: Final = 4_096  # a few hundred kB at most


def _write_long(out: bytearray, n: int) -> None:
    """Append the zigzag varint of ``n`` to ``out`` (the generated writers inline the one-byte
    case and call this for the rest)."""
    exact = n.__class__ is int  # not bool or float: those take the checked path every time
    encoded = _VARINTS.get(n) if exact else None
    if encoded is None:
        encoded = encode_long(n)
        if exact:
            if len(_VARINTS) >= _VARINTS_MAX:
                _VARINTS.clear()
            _VARINTS[n] = encoded
    out += encoded


class _Unsupported(Exception):
    """The schema or the model uses something the compiler does not handle."""


def _short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _field_serializer(model: type[BaseModel], name: str) -> Callable[[Any], Any] | None:
    """The PlainSerializer function of a field (JSON documents), None for plain fields."""
    info = model.model_fields[name]
    found = None
    for meta in info.metadata:
        if isinstance(meta, PlainSerializer):
            if meta.when_used != "always":
                raise _Unsupported(f"{model.__name__}.{name}: conditional serializer")
            found = _one_argument(meta.func, f"{model.__name__}.{name}")
    return found


def _field_validator(model: type[BaseModel], name: str) -> Callable[[Any], Any] | None:
    """The BeforeValidator of a field (JSON documents parse their wire string), or None."""
    info = model.model_fields[name]
    found = None
    for meta in info.metadata:
        if isinstance(meta, BeforeValidator):
            found = _one_argument(meta.func, f"{model.__name__}.{name}")
    return found


def _one_argument(func: Callable[..., Any], where: str) -> Callable[[Any], Any]:
    """``func`` if it takes the value alone (no pydantic info argument)."""
    try:
        signature = inspect.signature(func)
        signature.bind(None)
    except (TypeError, ValueError):
        raise _Unsupported(f"{where}: serializer or validator needs more than the value") from None
    return func


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class of a ``Model`` / ``list[Model]`` / ``Model | None`` annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _check_model(model: type[BaseModel]) -> None:
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers:
        raise _Unsupported(f"{model.__name__}: custom serializers")
    if decorators.model_validators or model.model_computed_fields:
        raise _Unsupported(f"{model.__name__}: model validators or computed fields")


class _Compiler:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "_SMALL": _SMALL,
            "_long": encode_long,
            "_write_long": _write_long,
            "_pack_double": _PACK_DOUBLE,
        }
        self.records: dict[str, str] = {}  # schema name -> generated function name
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def record(self, schema: dict[str, Any], model: type[BaseModel]) -> str:
        key = f"{schema['name']}:{model.__qualname__}"
        if key in self.records:
            return self.records[key]
        _check_model(model)
        fn = self.name(f"_w_{_short_name(schema['name'])}_")
        self.records[key] = fn
        body: list[str] = []
        for field in schema["fields"]:
            fname = field["name"]
            if fname not in model.model_fields:
                raise _Unsupported(f"{model.__name__} has no field {fname}")
            annotation = model.model_fields[fname].annotation
            serializer = _field_serializer(model, fname)
            var = self.name("v")
            body.append(f"    {var} = m.{fname}")
            if serializer is not None:
                ser = self.name("_ser")
                self.env[ser] = serializer
                body.append(f"    {var} = {ser}({var})")
            body.extend(self.value(field["type"], var, annotation, 1))
        fields = set(model.model_fields)
        if fields - {f["name"] for f in schema["fields"]}:
            raise _Unsupported(f"{model.__name__} has fields the schema lacks")
        self.lines.append(f"def {fn}(m, out):")
        self.lines.extend(body or ["    pass"])
        return fn

    def length(self, expr: str, pad: str) -> list[str]:
        """Lines appending the varint of a length (never negative: one byte below 64)."""
        n = self.name("n")
        return [
            f"{pad}{n} = {expr}",
            f"{pad}if {n} < 64:",
            f"{pad}    out.append({n} << 1)",
            f"{pad}else:",
            f"{pad}    _write_long(out, {n})",
        ]

    def value(self, schema: Any, var: str, annotation: Any, depth: int) -> list[str]:
        pad = "    " * depth
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, str):
            if schema == "string":
                enc = self.name("b")
                return [
                    f"{pad}{enc} = {var}.encode()",
                    *self.length(f"len({enc})", pad),
                    f"{pad}out += {enc}",
                ]
            if schema == "bytes":
                return [*self.length(f"len({var})", pad), f"{pad}out += {var}"]
            if schema == "long":
                # One byte for -64..63 (inline); anything else (range-checked) in _write_long.
                return [
                    f"{pad}if -64 <= {var} < 64:",
                    f"{pad}    out.append(({var} << 1) ^ ({var} >> 63))",
                    f"{pad}else:",
                    f"{pad}    _write_long(out, {var})",
                ]
            if schema == "boolean":
                return [f'{pad}out += b"\\x01" if {var} else b"\\x00"']
            if schema == "double":
                return [f"{pad}out += _pack_double({var})"]
            if schema == "null":
                return [f"{pad}if {var} is not None: raise TypeError('expected None')"]
            raise _Unsupported(f"type {schema}")
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise _Unsupported(f"union {schema}")
            null_index = schema.index("null")
            other = schema[1 - null_index]
            inner = _strip_none(annotation)
            return [
                f"{pad}if {var} is None:",
                f"{pad}    out += {encode_long(null_index)!r}",
                f"{pad}else:",
                f"{pad}    out += {encode_long(1 - null_index)!r}",
                *self.value(other, var, inner, depth + 1),
            ]
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind == "array":
                item = self.name("i")
                args = get_args(annotation)
                item_annotation = args[0] if get_origin(annotation) is list and args else Any
                return [
                    f"{pad}if {var}:",
                    f"{pad}    out += _long(len({var}))",
                    f"{pad}    for {item} in {var}:",
                    *self.value(schema["items"], item, item_annotation, depth + 2),
                    f'{pad}out += b"\\x00"',
                ]
            if kind == "record":
                nested = _nested_model(annotation)
                if nested is None:
                    raise _Unsupported(f"no model class for record {schema['name']}")
                fn = self.record(schema, nested)
                return [f"{pad}{fn}({var}, out)"]
            if kind in ("string", "bytes", "long", "boolean", "double") and len(schema) == 1:
                return self.value(kind, var, annotation, depth)
        raise _Unsupported(f"type {schema!r}")


def _strip_none(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Union or (origin is not None and origin.__class__.__name__ == "UnionType"):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    if type(annotation).__name__ == "UnionType":
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return annotation


def compile_writer(model: type[BaseModel], schema: dict[str, Any]) -> Writer | None:
    """A function appending the Avro body of a ``model`` instance to a bytearray, or None
    when the schema or model needs something this compiler does not handle."""
    compiler = _Compiler(schema.get("__named_schemas", {}))
    try:
        fn = compiler.record(schema, model)
    except _Unsupported:
        return None
    namespace = dict(compiler.env)
    exec("\n".join(compiler.lines), namespace)  # noqa: S102 - source generated above
    writer: Writer = namespace[fn]
    return writer


def trusted_builder(model: type[BaseModel], schema: dict[str, Any]) -> Builder | None:
    """A function turning the record dict for ``schema`` into a ``model`` without validation,
    or None when the model needs more than field conversions (the codec refuses it).

    JSON documents are parsed by their field's validator and nested records are built the
    same way; everything else is taken as decoded. Only for records this system wrote.
    """
    try:
        return _builder(model, schema, schema.get("__named_schemas", {}))
    except _Unsupported:
        return None


_PLAIN: Final = (str, int, bool, float, bytes)


def _plain(annotation: Any) -> bool:
    """Whether values of ``annotation`` are taken as fastavro decodes them (no conversion)."""
    if annotation in _PLAIN or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is list:
        return all(_plain(a) for a in get_args(annotation))
    if origin is Union or type(annotation).__name__ == "UnionType":
        return all(_plain(a) for a in get_args(annotation))
    return False


def _builder(model: type[BaseModel], schema: dict[str, Any], named: dict[str, Any]) -> Builder:
    _check_model(model)
    if model.__pydantic_decorators__.field_validators:
        raise _Unsupported(f"{model.__name__}: field validators")
    if model.model_config.get("extra") == "allow":
        raise _Unsupported(f"{model.__name__}: extra fields")
    names = {f["name"] for f in schema["fields"]}
    if set(model.model_fields) - names:
        raise _Unsupported(f"{model.__name__} has fields the schema lacks")
    converters: list[tuple[str, Callable[[Any], Any]]] = []
    for field in schema["fields"]:
        fname = field["name"]
        if fname not in model.model_fields:
            raise _Unsupported(f"{model.__name__} has no field {fname}")
        convert = _converter(model, fname, field["type"], named)
        if convert is not None:
            converters.append((fname, convert))
    fields_set = frozenset(model.model_fields)
    new = object.__new__
    setattr_ = object.__setattr__

    def build(record: dict[str, Any]) -> BaseModel:
        for fname, convert in converters:
            record[fname] = convert(record[fname])
        instance = new(model)
        setattr_(instance, "__dict__", record)
        setattr_(instance, "__pydantic_fields_set__", set(fields_set))
        setattr_(instance, "__pydantic_extra__", None)
        setattr_(instance, "__pydantic_private__", None)
        return instance

    return build


def _converter(
    model: type[BaseModel], name: str, schema: Any, named: dict[str, Any]
) -> Callable[[Any], Any] | None:
    validator = _field_validator(model, name)
    annotation = model.model_fields[name].annotation
    if validator is not None:
        if annotation is not dict and get_origin(annotation) is not dict:
            raise _Unsupported(f"{model.__name__}.{name}: validator on a non-document field")
        return validator
    nested = _nested_model(annotation)
    if nested is None:
        if not _plain(annotation):
            raise _Unsupported(f"{model.__name__}.{name}: {annotation!r} needs validation")
        return None
    item_schema = schema
    if isinstance(item_schema, list):
        item_schema = next(s for s in item_schema if s != "null")
    if isinstance(item_schema, dict) and item_schema.get("type") == "array":
        items = item_schema["items"]
        build = _builder(
            nested, named.get(items, items) if isinstance(items, str) else items, named
        )
        return lambda values: [build(v) for v in values]
    if isinstance(item_schema, str) and item_schema in named:
        item_schema = named[item_schema]
    if isinstance(item_schema, dict) and item_schema.get("type") == "record":
        build = _builder(nested, item_schema, named)
        return lambda value: None if value is None else build(value)
    raise _Unsupported(f"{model.__name__}.{name}: nested model in {schema!r}")


Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (value, next position). IndexError when truncated."""
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 64 bits")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n > 0xFFFFFFFFFFFFFFFF:
        raise ValueError("varint longer than 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def _read_bool(data: bytes, pos: int) -> bool:
    b = data[pos]
    if b > 1:
        raise ValueError(f"boolean byte {b}")
    return b == 1


def _bad_union(index: int) -> Any:
    raise ValueError(f"union branch {index} out of range")


def _negative(n: int) -> Any:
    raise ValueError(f"negative length {n}")


class _ReaderCompiler:
    """Generates ``read(data, pos) -> (record dict, pos)`` for one record schema.

    Stricter than fastavro on damaged input (a boolean byte other than 0/1, a union branch
    out of range and over-long varints are errors); identical on everything a writer emits.
    """

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "_read_long": _read_long,
            "_read_bool": _read_bool,
            "_bad_union": _bad_union,
            "_negative": _negative,
            "_unpack_double": struct.Struct("<d").unpack_from,
        }
        self.records: dict[str, str] = {}
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def record(self, schema: dict[str, Any]) -> str:
        if schema["name"] in self.records:
            return self.records[schema["name"]]
        fn = self.name(f"_r_{_short_name(schema['name'])}_")
        self.records[schema["name"]] = fn
        body: list[str] = []
        names: list[tuple[str, str]] = []
        for field in schema["fields"]:
            var = self.name("f")
            body.extend(self.value(field["type"], var, 1))
            names.append((field["name"], var))
        body.append("    return {" + ", ".join(f"{n!r}: {v}" for n, v in names) + "}, pos")
        self.lines.append(f"def {fn}(data, pos):")
        self.lines.extend(body)
        return fn

    def _long(self, target: str, pad: str) -> list[str]:
        return [
            f"{pad}b = data[pos]",
            f"{pad}if b < 0x80:",
            f"{pad}    {target} = (b >> 1) ^ -(b & 1)",
            f"{pad}    pos += 1",
            f"{pad}else:",
            f"{pad}    {target}, pos = _read_long(data, pos)",
        ]

    def _sized(self, target: str, pad: str) -> list[str]:
        n = self.name("n")
        return [
            *self._long(n, pad),
            f"{pad}if {n} < 0: _negative({n})",
            f"{pad}end = pos + {n}",
            f"{pad}if end > len(data): raise EOFError",
            f"{pad}{target} = data[pos:end]",
            f"{pad}pos = end",
        ]

    def value(self, schema: Any, target: str, depth: int) -> list[str]:
        pad = "    " * depth
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, dict) and schema.get("type") in (
            "string",
            "bytes",
            "long",
            "boolean",
            "double",
        ):
            if len(schema) != 1:
                raise _Unsupported(f"type {schema!r}")
            schema = schema["type"]
        if isinstance(schema, str):
            if schema == "string":
                raw = self.name("s")
                return [*self._sized(raw, pad), f"{pad}{target} = {raw}.decode()"]
            if schema == "bytes":
                return self._sized(target, pad)
            if schema == "long":
                return self._long(target, pad)
            if schema == "boolean":
                return [f"{pad}{target} = _read_bool(data, pos)", f"{pad}pos += 1"]
            if schema == "double":
                return [
                    f"{pad}if pos + 8 > len(data): raise EOFError",
                    f"{pad}{target} = _unpack_double(data, pos)[0]",
                    f"{pad}pos += 8",
                ]
            if schema == "null":
                return [f"{pad}{target} = None"]
            raise _Unsupported(f"type {schema}")
        if isinstance(schema, list):
            if len(schema) != 2 or "null" not in schema:
                raise _Unsupported(f"union {schema}")
            null_index = schema.index("null")
            other = schema[1 - null_index]
            index = self.name("u")
            return [
                *self._long(index, pad),
                f"{pad}if {index} == {null_index}:",
                f"{pad}    {target} = None",
                f"{pad}elif {index} == {1 - null_index}:",
                *self.value(other, target, depth + 1),
                f"{pad}else:",
                f"{pad}    _bad_union({index})",
            ]
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind == "array":
                count = self.name("c")
                item = self.name("i")
                return [
                    f"{pad}{target} = []",
                    *self._long(count, pad),
                    f"{pad}while {count}:",
                    f"{pad}    if {count} < 0:",
                    f"{pad}        {count} = -{count}",
                    f"{pad}        _, pos = _read_long(data, pos)",
                    f"{pad}    for _ in range({count}):",
                    *self.value(schema["items"], item, depth + 2),
                    f"{pad}        {target}.append({item})",
                    *self._long(count, pad + "    "),
                ]
            if kind == "record":
                fn = self.record(schema)
                return [f"{pad}{target}, pos = {fn}(data, pos)"]
        raise _Unsupported(f"type {schema!r}")


def compile_reader(schema: dict[str, Any]) -> Reader | None:
    """``read(data, pos) -> (record dict, end position)`` for a parsed record schema, or None
    when it uses a type this compiler does not handle. Damaged input raises
    IndexError/EOFError (truncated), ValueError or UnicodeDecodeError."""
    compiler = _ReaderCompiler(schema.get("__named_schemas", {}))
    try:
        fn = compiler.record(schema)
    except _Unsupported:
        return None
    namespace = dict(compiler.env)
    exec("\n".join(compiler.lines), namespace)  # noqa: S102 - source generated above
    reader: Reader = namespace[fn]
    return reader
