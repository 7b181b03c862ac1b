"""The shared test vectors (``schemas/vectors/``) agree with the codec and with plain fastavro.

Other languages' clients test against these files, so each vector is checked from the file
alone: its bytes are the single-object header of its ``.avsc`` plus the body fastavro writes
for its value, fastavro reads them back to the value, and the project's codec decodes them to
a model that encodes to the same bytes. The files are also what ``schemas.testvectors`` builds
now: a schema change without regenerated vectors fails here.
"""

from __future__ import annotations

import fnmatch
import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas import testvectors
from schemas.codec import CODEC, load_schema_files
from tests.support.codec import crc64_avro
from tests.support.vectors import DIRECTORY, FILES, ROOT, datum_of, hex_bytes, load, vectors

SCHEMAS = {f.source: f for f in load_schema_files()}


def schema_of(document: dict[str, Any], key: str = "schema") -> dict[str, Any]:
    name = Path(document[key]).name
    assert (DIRECTORY / document[key]).resolve() == ROOT / "schemas" / "avro" / name
    return SCHEMAS[name].schema


def value_of(datum: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = hex_bytes(datum, schema, {}, False)
    return result


def test_every_schema_has_its_vector_file_and_none_is_stale() -> None:
    names = {f"{source.removesuffix('.avsc')}.json" for source in SCHEMAS}
    assert {p.name for p in FILES} == names
    assert list(testvectors.stale(DIRECTORY)) == [], "run: python -m schemas.testvectors"


def test_every_current_schema_has_hand_written_or_full_and_minimal_vectors() -> None:
    for path in FILES:
        document = load(path)
        kinds = [v["name"] for v in document["vectors"]]
        assert kinds[-2:] == ["minimal", "full"], path.name
        assert len(set(kinds)) == len(kinds), path.name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_header_is_the_fingerprint_of_the_schema_file(path: Path) -> None:
    document = load(path)
    schema = schema_of(document)
    canonical = to_parsing_canonical_form(schema).encode()
    fingerprint = crc64_avro(canonical).to_bytes(8, "little").hex()
    assert document["fingerprint"] == fingerprint
    assert document["record"] == f"taskstream.{schema['name']}"
    assert document["format"] == testvectors.FORMAT
    for vector in document["vectors"]:
        assert vector["bytes"].startswith("c301" + fingerprint)


@pytest.mark.parametrize(("file", "document", "vector"), vectors(), ids=lambda x: str(x)[:40])
def test_fastavro_and_the_codec_agree_with_every_vector(
    file: str, document: dict[str, Any], vector: dict[str, Any]
) -> None:
    schema = schema_of(document)
    blob = bytes.fromhex(vector["bytes"])
    datum = datum_of(vector["value"], schema)

    # fastavro alone, from the schema file: same body both ways.
    body = io.BytesIO(blob[10:])
    assert schemaless_reader(body, parse_schema(schema), None) == datum
    assert body.tell() == len(blob) - 10
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), datum)
    assert out.getvalue() == blob[10:]

    # The project's codec: decodes the bytes, and the model encodes to them again.
    model = CODEC.decode(blob)
    assert type(model).__name__ == schema["name"]
    if document["version"] is None:
        assert value_of(model.model_dump(), schema) == vector["value"]
        assert CODEC.encode(model) == blob
        assert CODEC.decode_trusted(blob) == model
    else:  # an older version: it reads as the current schema with the new fields' defaults
        current = schema_of(document, "reads_as_schema")
        assert value_of(model.model_dump(), current) == vector["reads_as"]
        resolved = schemaless_reader(
            io.BytesIO(blob[10:]), parse_schema(schema), parse_schema(current)
        )
        assert isinstance(resolved, dict)
        assert value_of(resolved, current) == vector["reads_as"]


def test_vector_files_are_plain_json_any_language_reads_exactly() -> None:
    def numbers(node: Any) -> list[Any]:
        if isinstance(node, dict):
            return [n for v in node.values() for n in numbers(v)]
        if isinstance(node, list):
            return [n for v in node for n in numbers(v)]
        return [node] if isinstance(node, int | float) and not isinstance(node, bool) else []

    for path in FILES:
        document = load(path)
        assert all(abs(n) < 2**53 for n in numbers(document)), path.name  # exact in JS
        assert all(set(v["bytes"]) <= set("0123456789abcdef") for v in document["vectors"])


def test_the_package_ships_the_schemas_and_the_vectors() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["schemas"]
    shipped = [
        p.relative_to(ROOT / "schemas").as_posix()
        for p in (ROOT / "schemas").rglob("*")
        if p.is_file() and p.parent.name in ("avro", "vectors")
    ]
    unshipped = [f for f in shipped if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert unshipped == []
