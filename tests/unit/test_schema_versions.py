"""Records written with a released older schema keep decoding (writer -> reader resolution).

The event log is kept forever and outcome topics are read by systems that upgrade on their own
schedule, so a record written before a field was added decodes with that field's default.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import CODEC, WIRE_TYPES, SchemaFile, fingerprint_of, load_schema_files
from schemas.events import AttemptRecord, TaskFailed, TaskRejected
from tests.support.codec import model_strategy, schema_file, write_with

OLDER = [f for f in load_schema_files() if f.version is not None]
MODELS = {cls.__name__: cls for cls in WIRE_TYPES}


def test_the_outcome_and_operation_fields_have_older_versions() -> None:
    assert {(f.name, f.version) for f in OLDER} >= {("TaskFailed", 1), ("TaskRejected", 1)}


def test_a_task_failed_v1_record_decodes_as_a_permanent_failure() -> None:
    v1 = schema_file("TaskFailed", 1)
    blob = write_with(
        v1,
        {
            "client_id": "c",
            "occurred_at_ms": 5,
            "task_id": "t",
            "operation": "send_sms",
            "attempt": 2,
            "error": "boom",
            "reason": "retries exhausted",
            "attempts": [{"attempt": 1, "session_id": "s", "error": "boom", "at_ms": 4}],
        },
    )
    assert blob[2:10] != fingerprint_of(TaskFailed)
    expected = TaskFailed(
        client_id="c",
        occurred_at_ms=5,
        task_id="t",
        operation="send_sms",
        attempt=2,
        error="boom",
        reason="retries exhausted",
        attempts=[AttemptRecord(attempt=1, session_id="s", error="boom", at_ms=4)],
    )
    assert CODEC.decode(blob) == expected == CODEC.decode_trusted(blob)
    assert expected.outcome == "failed"


def test_a_task_rejected_v1_record_decodes_without_an_operation() -> None:
    v1 = schema_file("TaskRejected", 1)
    record = {
        "client_id": "c",
        "occurred_at_ms": 5,
        "task_id": "t",
        "reason": "unknown operation 'x'",
        "command": "SubmitTask",
        "reviewer": None,
    }
    decoded = CODEC.decode_as(write_with(v1, record), TaskRejected)
    assert decoded == TaskRejected(**record) and decoded.operation is None


@pytest.mark.parametrize("file", OLDER, ids=lambda f: f.source)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_older_version_decodes_to_the_current_model(
    file: SchemaFile, data: st.DataObject
) -> None:
    """A current model cut down to the old version's fields comes back with the defaults."""
    cls = MODELS[file.name]
    model = data.draw(model_strategy(cls))
    record = _cut(model.model_dump(), file.schema)
    blob = write_with(file.schema, record)
    decoded = CODEC.decode(blob)
    assert CODEC.decode_trusted(blob) == decoded
    assert decoded == cls.model_validate(_cut(model.model_dump(), file.schema))


def _cut(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``value`` with only the fields ``schema`` has (nested records too): what an old writer
    could have written. Validated by the current model, the left-out fields take defaults."""
    cut: dict[str, Any] = {}
    for field in schema["fields"]:
        name, kind = field["name"], field["type"]
        if name not in value:
            continue
        items = kind.get("items") if isinstance(kind, dict) else None
        if isinstance(items, dict) and items.get("type") == "record":
            cut[name] = [_cut(item, items) for item in value[name]]
        else:
            cut[name] = value[name]
    return cut
