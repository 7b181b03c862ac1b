"""The shared vectors read and write the same with Apache Avro's own Python library (``avro``),
a second implementation next to fastavro: what a third party would use, from the files alone."""

from __future__ import annotations

import io
import json
from typing import Any

import avro.io
import avro.schema
import pytest

from tests.support.vectors import DIRECTORY, datum_of, vectors


def parse(document: dict[str, Any], key: str = "schema") -> Any:
    return avro.schema.parse((DIRECTORY / document[key]).read_text("utf-8"))


@pytest.mark.parametrize(("file", "document", "vector"), vectors(), ids=lambda x: str(x)[:40])
def test_apache_avro_agrees_with_every_vector(
    file: str, document: dict[str, Any], vector: dict[str, Any]
) -> None:
    writer = parse(document)
    assert writer.fingerprint("CRC-64-AVRO").hex() == document["fingerprint"]
    blob = bytes.fromhex(vector["bytes"])
    assert blob[:2] == b"\xc3\x01" and blob[2:10].hex() == document["fingerprint"]
    schema_doc = json.loads((DIRECTORY / document["schema"]).read_text("utf-8"))
    datum = datum_of(vector["value"], schema_doc)

    out = io.BytesIO()
    avro.io.DatumWriter(writer).write(datum, avro.io.BinaryEncoder(out))
    assert out.getvalue() == blob[10:]

    if document["version"] is None:
        read = avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(blob[10:])))
        assert read == datum
    else:
        reader = parse(document, "reads_as_schema")
        current = json.loads((DIRECTORY / document["reads_as_schema"]).read_text("utf-8"))
        read = avro.io.DatumReader(writer, reader).read(
            avro.io.BinaryDecoder(io.BytesIO(blob[10:]))
        )
        assert read == datum_of(vector["reads_as"], current)
