"""Avro single-object encoding: round trips, the header, old versions and damaged input."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.codec import (
    CODEC,
    MAGIC,
    WIRE_TYPES,
    AvroCodec,
    SchemaFile,
    fingerprint_bytes,
    fingerprint_of,
)
from schemas.commands import ReportResult, RetryDue, SubmitTask
from schemas.errors import (
    BadMagicError,
    DecodeError,
    EncodeError,
    SchemaError,
    UnknownFingerprintError,
)
from schemas.events import EVENT_TYPES, AttemptRecord, TaskAssigned, TaskFailed
from schemas.fastcodec import _write_long, encode_long, trusted_builder
from schemas.records import Assignment, AssignmentItem, DeadLetter
from tests.support.codec import (
    LONG_MAX,
    LONG_MIN,
    crc64_avro,
    model_strategy,
    schema_file,
    write_with,
)

ASSIGNED = TaskAssigned(
    client_id="client-1",
    occurred_at_ms=1_700_000_000_000,
    task_id="task-1",
    operation="send_sms",
    session_id="session-1",
    attempt=1,
    fencing_token=7,
    deadline_at_ms=1_700_000_030_000,
    priority=2,
)


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_wire_class_round_trips(cls: type[BaseModel], data: st.DataObject) -> None:
    model = data.draw(model_strategy(cls))
    blob = CODEC.encode(model)
    assert blob[:2] == b"\xc3\x01"
    assert blob[2:10] == fingerprint_of(cls)
    assert CODEC.record_name(blob) == cls.__name__
    decoded = CODEC.decode(blob)
    assert type(decoded) is cls
    assert decoded == model


def test_fingerprint_is_crc64_avro_of_the_canonical_form_little_endian() -> None:
    canonical = to_parsing_canonical_form(schema_file("TaskAssigned"))
    crc = crc64_avro(canonical.encode())
    assert fingerprint_of(TaskAssigned) == crc.to_bytes(8, "little")
    assert fingerprint_of(TaskAssigned).hex() == fingerprint(canonical, "CRC-64-AVRO")
    assert CODEC.encode(ASSIGNED)[2:10] == crc.to_bytes(8, "little")


def test_fingerprint_matches_the_avro_reference_value() -> None:
    # The Avro project's schema test data gives 8247732601305521295 for "int".
    assert crc64_avro(b'"int"') == 8247732601305521295
    assert fingerprint_bytes("int") == (8247732601305521295).to_bytes(8, "little")


def test_blob_written_by_plain_fastavro_decodes() -> None:
    record = ASSIGNED.model_dump()
    assert CODEC.decode(write_with(schema_file("TaskAssigned"), record)) == ASSIGNED
    assert write_with(schema_file("TaskAssigned"), record) == CODEC.encode(ASSIGNED)


def test_submit_task_v1_decodes_with_the_current_model() -> None:
    v1 = schema_file("SubmitTask", version=1)
    blob = write_with(
        v1,
        {
            "client_id": "client-1",
            "task_id": "task-1",
            "operation": "send_sms",
            "payload": '{"to":"+15550100"}',
            "priority": 2,
            "max_retries": None,
            "timeout_ms": 30_000,
            "scheduled_for_ms": None,
            "requires_review": True,
        },
    )
    assert blob[2:10] != fingerprint_of(SubmitTask)
    assert CODEC.record_name(blob) == "SubmitTask"
    assert CODEC.decode(blob) == SubmitTask(
        client_id="client-1",
        task_id="task-1",
        operation="send_sms",
        payload={"to": "+15550100"},
        priority=2,
        timeout_ms=30_000,
        requires_review=True,
        depends_on=[],
        capabilities=[],
    )


@settings(max_examples=30, deadline=None)
@given(model=model_strategy(SubmitTask))
def test_any_v1_submit_task_decodes(model: SubmitTask) -> None:
    v1 = schema_file("SubmitTask", version=1)
    names = [f["name"] for f in v1["fields"]]
    record = {k: v for k, v in model.model_dump().items() if k in names}
    decoded = CODEC.decode_as(write_with(v1, record), SubmitTask)
    later = {
        name: field.get_default(call_default_factory=True)
        for name, field in SubmitTask.model_fields.items()
        if name not in names
    }
    assert decoded == model.model_copy(update=later)


def test_nested_records_round_trip() -> None:
    failed = TaskFailed(
        client_id="c",
        occurred_at_ms=5,
        task_id="t",
        operation="op",
        attempt=2,
        error="boom",
        attempts=[AttemptRecord(attempt=1, error="first", at_ms=3)],
    )
    assert CODEC.decode(CODEC.encode(failed)) == failed
    batch = Assignment(
        kind="batch",
        client_id="c",
        operation="op",
        batch_id="b",
        fencing_token=1,
        items=[AssignmentItem(task_id="t1", payload={"n": 1}), AssignmentItem(task_id="t2")],
    )
    assert CODEC.decode(CODEC.encode(batch)) == batch
    letter = DeadLetter(reason="undecodable", raw=b"\x00\xff", source_partition=3)
    assert CODEC.decode(CODEC.encode(letter)) == letter


def test_decode_as_refuses_another_record() -> None:
    with pytest.raises(DecodeError, match="expected SubmitTask, got TaskAssigned"):
        CODEC.decode_as(CODEC.encode(ASSIGNED), SubmitTask)


@pytest.mark.parametrize(
    "blob",
    [b"", b"hello world", b"\xc3", b"\xc3\x02" + bytes(8) + b"\x00", b"\x01\xc3" + bytes(10)],
)
def test_wrong_or_missing_marker(blob: bytes) -> None:
    with pytest.raises(BadMagicError, match="not an Avro single-object record.*expected c301"):
        CODEC.decode(blob)
    with pytest.raises(BadMagicError):
        CODEC.record_name(blob)


def test_unknown_fingerprint_is_named() -> None:
    blob = MAGIC + bytes.fromhex("0123456789abcdef") + CODEC.encode(ASSIGNED)[10:]
    with pytest.raises(UnknownFingerprintError, match="0123456789abcdef"):
        CODEC.decode(blob)


def test_truncated_header() -> None:
    with pytest.raises(DecodeError, match="truncated Avro header"):
        CODEC.decode(CODEC.encode(ASSIGNED)[:6])


@pytest.mark.parametrize("keep", [10, 11, 20, -1])
def test_truncated_body(keep: int) -> None:
    blob = CODEC.encode(ASSIGNED)
    with pytest.raises(DecodeError, match="TaskAssigned: truncated"):
        CODEC.decode(blob[:keep])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="TaskAssigned: 2 unexpected bytes"):
        CODEC.decode(CODEC.encode(ASSIGNED) + b"\x00\x00")


def test_garbage_body_names_the_record() -> None:
    blob = CODEC.encode(ASSIGNED)[:10] + b"\xff" * 12
    with pytest.raises(DecodeError, match="TaskAssigned: truncated or damaged Avro body"):
        CODEC.decode(blob)


@settings(max_examples=200, deadline=None)
@given(cls=st.sampled_from(WIRE_TYPES), body=st.binary(max_size=64))
def test_random_bodies_decode_or_raise_decode_error(cls: type[BaseModel], body: bytes) -> None:
    blob = MAGIC + fingerprint_of(cls) + body
    try:
        decoded = CODEC.decode(blob)
    except DecodeError as exc:
        assert str(exc).startswith(cls.__name__)
    else:
        assert type(decoded) is cls
        assert CODEC.encode(decoded) == blob


def test_values_the_model_refuses_are_decode_errors() -> None:
    record = SubmitTask(client_id="c", task_id="t", operation="op").model_dump()
    schema = schema_file("SubmitTask")
    with pytest.raises(DecodeError, match=r"SubmitTask: priority: .*less than or equal to 5"):
        CODEC.decode(write_with(schema, {**record, "priority": 9}))
    with pytest.raises(DecodeError, match="SubmitTask: payload: .*Expecting property name"):
        CODEC.decode(write_with(schema, {**record, "payload": "{not json"}))
    with pytest.raises(DecodeError, match="SubmitTask: payload: .*dictionary"):
        CODEC.decode(write_with(schema, {**record, "payload": "[1, 2]"}))
    with pytest.raises(DecodeError, match="SubmitTask: client_id: .*at least 1 character"):
        CODEC.decode(write_with(schema, {**record, "client_id": ""}))


def test_unencodable_values_are_encode_errors() -> None:
    with pytest.raises(EncodeError, match="SubmitTask: .*not JSON serializable"):
        CODEC.encode(SubmitTask(client_id="c", task_id="t", operation="o", payload={"s": {1}}))
    with pytest.raises(EncodeError, match="TaskAssigned"):
        CODEC.encode(ASSIGNED.model_copy(update={"fencing_token": 2**64}))
    with pytest.raises(EncodeError, match="TaskAssigned"):
        CODEC.encode(ASSIGNED.model_copy(update={"client_id": "\ud800"}))


def test_models_without_schema_are_encode_errors() -> None:
    class Stranger(BaseModel):
        name: str

    with pytest.raises(EncodeError, match="Stranger has no Avro schema"):
        CODEC.encode(Stranger(name="x"))
    with pytest.raises(EncodeError, match="Stranger has no Avro schema"):
        fingerprint_of(Stranger)


def _file(name: str, schema: dict[str, Any], version: int | None = None) -> SchemaFile:
    return SchemaFile(name=name, version=version, schema=schema, source=f"{name}.avsc")


def test_codec_refuses_inconsistent_schema_sets() -> None:
    assigned = schema_file("TaskAssigned")
    with pytest.raises(SchemaError, match="expected a record named 'TaskFailed'"):
        AvroCodec([_file("TaskFailed", assigned)], [TaskFailed])
    with pytest.raises(SchemaError, match="no model class named 'TaskAssigned'"):
        AvroCodec([_file("TaskAssigned", assigned)], [TaskFailed])
    with pytest.raises(SchemaError, match="no current TaskAssigned.avsc"):
        AvroCodec([_file("TaskAssigned", assigned, version=1)], [TaskAssigned])
    with pytest.raises(SchemaError, match="same fingerprint"):
        AvroCodec(
            [_file("TaskAssigned", assigned), _file("TaskAssigned", assigned, version=1)],
            [TaskAssigned],
        )
    broken = {**assigned, "fields": [{"name": "x", "type": "no-such-type"}]}
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        AvroCodec([_file("TaskAssigned", broken)], [TaskAssigned])


def test_json_payload_travels_as_compact_sorted_json() -> None:
    blob = CODEC.encode(
        SubmitTask(client_id="c", task_id="t", operation="o", payload={"b": 1, "a": [True]})
    )
    assert b'{"a":[true],"b":1}' in blob
    assert json.loads('{"a":[true],"b":1}') == CODEC.decode_as(blob, SubmitTask).payload


@functools.cache
def parsed_schema(name: str) -> Any:
    return parse_schema(schema_file(name))


def fastavro_body(model: BaseModel) -> bytes:
    """The body fastavro's generic writer produces for ``model`` (the reference encoding)."""
    buf = io.BytesIO()
    schemaless_writer(buf, parsed_schema(type(model).__name__), model.model_dump())
    return buf.getvalue()


@pytest.mark.parametrize("cls", WIRE_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_codec_matches_fastavro(cls: type[BaseModel], data: st.DataObject) -> None:
    """The compiled writer is byte-identical to fastavro; the compiled reader gives the dict
    fastavro's reader gives; the trusted path builds an equal model."""
    model = data.draw(model_strategy(cls))
    body = fastavro_body(model)
    blob = CODEC.encode(model)
    assert blob == MAGIC + fingerprint_of(cls) + body
    reference = schemaless_reader(io.BytesIO(body), parsed_schema(cls.__name__), None)
    assert CODEC._readers[fingerprint_of(cls)].read(blob) == reference
    trusted = CODEC.decode_trusted(blob)
    assert type(trusted) is cls
    assert trusted == model
    assert CODEC.encode(trusted) == blob


def test_what_the_processor_writes_has_a_trusted_builder() -> None:
    """Events and side records are read back without validation (commands may validate)."""
    written_types: list[type[BaseModel]] = [*EVENT_TYPES, Assignment, DeadLetter]
    for written in written_types:
        assert trusted_builder(written, CODEC._writers[written].schema) is not None, written


def test_a_model_without_a_trusted_builder_is_validated_on_the_trusted_path() -> None:
    without = [m for m in WIRE_TYPES if trusted_builder(m, CODEC._writers[m].schema) is None]
    for model in without:
        assert model not in EVENT_TYPES
    report = ReportResult(client_id="A", task_id="t", fencing_token=3, success=True)
    blob = CODEC.encode(report)
    assert CODEC.decode_trusted(blob) == CODEC.decode(blob) == report


def test_a_schema_the_compiler_cannot_compile_is_refused() -> None:
    """One codec path: a current schema with a type ``schemas.fastcodec`` does not compile is
    an error when the codec is built, never a silent second (fastavro) path."""
    schema = {
        "type": "record",
        "name": "RetryDue",
        "namespace": "taskstream",
        "fields": [{"name": "client_id", "type": {"type": "map", "values": "string"}}],
    }
    with pytest.raises(SchemaError, match="does not compile"):
        AvroCodec([SchemaFile("RetryDue", None, schema, "RetryDue.avsc")], [RetryDue])


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, -64, 64, -65, 300, 2**31, -(2**31), LONG_MAX, LONG_MIN]
)
def test_longs_encode_as_fastavro_does(n: int) -> None:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema("long"), n)
    assert encode_long(n) == buf.getvalue()
    for _ in range(2):  # computed, then from the compiled writers' cache of recent varints
        out = bytearray()
        _write_long(out, n)
        assert out == buf.getvalue()


def test_the_varint_cache_never_confuses_equal_numbers_of_other_types() -> None:
    out = bytearray()
    _write_long(out, 2**40)
    not_an_int: Any = float(2**40)  # equal to 2**40 and hashed alike, but not a long
    with pytest.raises(TypeError):
        _write_long(bytearray(), not_an_int)
    with pytest.raises(OverflowError):
        _write_long(bytearray(), LONG_MAX + 1)


def test_damaged_bodies_the_compiled_reader_refuses() -> None:
    prefix = MAGIC + fingerprint_of(TaskAssigned)
    body = fastavro_body(ASSIGNED)
    with pytest.raises(DecodeError, match="TaskAssigned: truncated Avro body"):
        CODEC.decode(prefix + body[:-1])
    # client_id claims a negative length; then an 11-byte varint; then invalid UTF-8.
    for bad in (b"\x01", b"\xff" * 11, b"\x02\xff"):
        with pytest.raises(DecodeError, match="TaskAssigned: truncated or damaged Avro body"):
            CODEC.decode(prefix + bad + body)
        with pytest.raises(DecodeError, match="TaskAssigned: truncated or damaged Avro body"):
            CODEC.decode_trusted(prefix + bad + body)
    letter = DeadLetter(reason="r", client_id="c").model_dump()
    blob = write_with(schema_file("DeadLetter"), letter)
    # The client_id union branch 1 (string) rewritten to branch 2, which does not exist.
    damaged = blob.replace(b"\x02r\x02\x02c", b"\x02r\x04\x02c", 1)
    assert damaged != blob
    with pytest.raises(DecodeError, match="union branch 2 out of range"):
        CODEC.decode(damaged)


def test_decode_trusted_of_an_old_version_resolves_to_the_current_model() -> None:
    record = SubmitTask(client_id="c", task_id="t", operation="op").model_dump()
    v1 = schema_file("SubmitTask", 1)
    fields = {f["name"] for f in v1["fields"]}
    blob = write_with(v1, {k: v for k, v in record.items() if k in fields})
    assert CODEC.decode_trusted(blob) == CODEC.decode(blob)
