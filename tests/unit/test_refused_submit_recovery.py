"""A refused submit's dead letter is a function of its event: a crash between the refusal and
the dead letter (recovery recomputes the side records from the event log) still gives a
dead letter that carries the submitted task and can be redriven."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from schemas.catalog import OperationSpec, load_catalog
from schemas.codec import CODEC
from schemas.commands import Command, RegisterSession, SubmitTask, TaskAssignee, TaskStep
from schemas.events import TaskRejected
from schemas.records import DeadLetter
from streams.distributor import Distributor
from streams.domain.submission import build_submit
from streams.redrive import DeadLetterEntry, Selection, plan_redrive, redrive_id
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import Processor, RuntimeTopics
from streams.runtime.recovery import recover_partition
from streams.runtime.store import PartitionStore
from streams.settings import Settings
from tests.support.runtime_fakes import Broker, Rec

TOPICS = RuntimeTopics("ts.commands", "ts.events")
SETTINGS = Settings(topic_prefix="ts")
REFUSED = SubmitTask(
    client_id="A",
    task_id="t1",
    operation="teleport",  # not in the catalog: refused
    payload={"to": "mars", "crew": [1, 2]},
    priority=2,
    max_retries=5,
    tags=["far"],
    metadata={"ticket": 7},
    assigned_to=TaskAssignee(kind="agent", id="ag"),
    steps=[TaskStep(id="s1", operation="contact_update", config={"k": "v"})],
)


def command(broker: Broker, model: Command) -> Rec:
    log = broker.log(TOPICS.commands)
    record = Rec(TOPICS.commands, 0, len(log), 1_000, CODEC.encode(model), b"A")
    log.append(record)
    return record


async def recover(app: Distributor, broker: Broker, path: Path) -> PartitionRun[Any]:
    store, reason = PartitionStore.open(path)
    run, _ = await recover_partition(
        app, store, 0, TOPICS, broker, broker, broker.committed.get(0), rebuilt_reason=reason
    )
    return run


def dead_letters(broker: Broker) -> list[DeadLetter]:
    return [CODEC.decode_as(r.value, DeadLetter) for r in broker.log("ts.dlq")]


async def refuse(path: Path, *, crash: bool) -> Broker:
    """Register a session (a complete cycle), then refuse REFUSED: with ``crash``, the process
    dies once the refusal's event is in the log, before its dead letter is produced, and a
    new process recovers the partition."""
    broker = Broker()
    app = Distributor(SETTINGS)
    run = await recover(app, broker, path)
    processor = Processor(app, TOPICS, broker, broker.commit)
    processor.apply_commands(
        run, [command(broker, RegisterSession(client_id="A", session_id="s", agent_id="ag"))]
    )
    await processor.complete()
    processor = Processor(app, TOPICS, broker, broker.commit)
    processor.apply_commands(run, [command(broker, REFUSED)])
    if not crash:
        await processor.complete()
        return broker
    broker.fail_after = 1  # the event reached the log; no store write, no side record
    await broker.flush()
    run.store.close()
    assert [CODEC.record_name(r.value) for r in broker.log("ts.events")][-1] == "TaskRejected"
    assert dead_letters(broker) == []
    run = await recover(Distributor(SETTINGS), broker, path)  # a new process: nothing kept
    run.store.close()
    return broker


async def test_a_crash_before_the_dead_letter_still_gives_a_redrivable_one(
    tmp_path: Path,
) -> None:
    broker = await refuse(tmp_path / "s", crash=True)
    (letter,) = dead_letters(broker)
    assert (letter.task_id, letter.reason) == ("t1", "unknown operation 'teleport'")
    assert SubmitTask.model_validate(letter.submit) == REFUSED
    entries = [DeadLetterEntry(0, 0, letter)]
    # Redrive goes through the submission door: with the same catalog it is refused again ...
    plan, report = plan_redrive(entries, Selection(task_ids=["t1"]))
    assert plan == [] and "unknown operation 'teleport'" in (report.not_redrivable[0].why or "")
    # ... and once the operator adds the operation (TASKSTREAM_OPERATIONS_FILE) it goes through.
    teleport = OperationSpec(name="teleport", urgency=3, expected_duration_ms=1000)
    door = partial(build_submit, {**load_catalog(), "teleport": teleport}, 1_048_576)
    plan, report = plan_redrive(entries, Selection(task_ids=["t1"]), door)
    assert report.not_redrivable == []
    assert [submit for _, submit in plan] == [
        REFUSED.model_copy(update={"task_id": redrive_id("t1")})
    ]


async def test_the_recovered_dead_letter_is_the_one_an_uncrashed_run_writes(
    tmp_path: Path,
) -> None:
    crashed = await refuse(tmp_path / "a", crash=True)
    clean = await refuse(tmp_path / "b", crash=False)
    assert [r.value for r in crashed.log("ts.dlq")] == [r.value for r in clean.log("ts.dlq")]
    assert [r.value for r in crashed.log("ts.failed")] == [r.value for r in clean.log("ts.failed")]


def test_a_refused_submit_carries_no_plaintext_credential_on() -> None:
    app = Distributor(SETTINGS)
    state = app.initial_state()
    sent = SubmitTask(
        client_id="A",
        task_id="t2",
        operation="contact_update",
        payload={"url": "https://x.example", "apiKey": "plain-secret"},
    )
    (rejected,) = app.decide(sent, state, 1_000)
    assert isinstance(rejected, TaskRejected) and "plaintext" in rejected.reason
    assert rejected.submit["payload"] == {"url": "https://x.example", "apiKey": "***"}
    (_, dlq) = app.outputs(app.evolve(state, rejected), rejected)
    assert b"plain-secret" not in CODEC.encode(rejected) and b"plain-secret" not in dlq.value


def test_a_submit_too_large_to_carry_sheds_its_payload() -> None:
    app = Distributor(Settings(topic_prefix="ts", max_payload_bytes=2048))
    sent = SubmitTask(
        client_id="A", task_id="t3", operation="contact_update", payload={"blob": "x" * 3000}
    )
    (rejected,) = app.decide(sent, app.initial_state(), 1_000)
    assert isinstance(rejected, TaskRejected) and "payload larger" in rejected.reason
    assert rejected.submit["task_id"] == "t3"
    (note,) = rejected.submit["payload"].values()
    assert note.startswith("omitted: the submit was ") and note.endswith("over the limit of 2048")
    letter = CODEC.decode_as(list(app.outputs(app.initial_state(), rejected))[1].value, DeadLetter)
    assert letter.submit == rejected.submit
