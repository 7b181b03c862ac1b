"""Every submitted task id ends with exactly one record on ``task.completed`` or ``task.failed``
(issue 13, item 4): completed, failed for good, cancelled, rejected by a reviewer and refused
at submit, read back from the topics and through the client SDK's ``outcomes()``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from schemas import commands as c
from schemas import events as ev
from schemas.records import Assignment
from streams.client import Outcome, TaskstreamClient
from streams.kafka.headers import TYPE_HEADER
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Reply,
    read_topic,
    register,
    rig,
    submit,
)
from tests.support.codec import schema_file, write_with

pytestmark = pytest.mark.integration

OP = "workflow_trigger"  # session work, not batched
CLIENT = "acme"


def script(a: Assignment) -> Reply | None:
    if a.task_id == "t-fail":
        return Reply(success=False, error="carrier refused")
    if a.task_id == "t-cancel":
        return None  # still running when the cancel comes
    return Reply(output={"ran": a.task_id})


async def test_each_ending_gives_exactly_one_outcome_record(
    make_settings: Callable[..., Settings],
) -> None:
    async with rig(make_settings, script, max_retries=0) as r:
        await r.send(
            register(CLIENT, "s1", max_concurrent=4),
            submit(CLIENT, "t-ok", OP, payload={"n": 1}),
            submit(CLIENT, "t-fail", OP),
            submit(CLIENT, "t-cancel", OP),
            submit(CLIENT, "t-review", OP, requires_review=True),
            submit(CLIENT, "t-refused", "teleport"),
        )
        await r.executor.wait_for(lambda x: any(a.task_id == "t-cancel" for a in x.work()))
        await r.send(
            c.CancelTask(client_id=CLIENT, task_id="t-cancel", reason="customer left"),
            c.RejectTask(client_id=CLIENT, task_id="t-review", reviewer="ann", reason="spam"),
            # Refused as a conflicting duplicate: the id already has its task and outcome.
            submit(CLIENT, "t-ok", OP, payload={"n": 2}),
        )
        await r.wait(
            lambda events: (
                any(isinstance(e, ev.TaskRejected) and e.task_id == "t-ok" for e in events)
                and any(
                    isinstance(e, ev.TaskRejected) and e.command == "RejectTask" for e in events
                )
                and any(isinstance(e, ev.TaskCancelled) for e in events)
            )
        )
        # Outcome records follow their events within the same cycle.
        for _ in range(100):
            completed = await read_topic(r.settings, "completed")
            failed = await read_topic(r.settings, "failed")
            if len(completed) + len(failed) >= 5:
                break
            await asyncio.sleep(0.1)

    ends = Counter(rec.value.task_id for rec in [*completed, *failed])
    assert ends == Counter(["t-ok", "t-fail", "t-cancel", "t-review", "t-refused"])
    assert [rec.value.task_id for rec in completed] == ["t-ok"]
    by_id = {rec.value.task_id: rec for rec in failed}
    outcomes = {task_id: rec.value.outcome for task_id, rec in by_id.items()}
    assert outcomes == {
        "t-fail": "failed",
        "t-cancel": "cancelled",
        "t-review": "rejected",
        "t-refused": "refused",
    }
    assert all(rec.key == CLIENT.encode() for rec in [*completed, *failed])
    assert all((TYPE_HEADER, b"TaskFailed") in rec.headers for rec in failed)
    cancelled = by_id["t-cancel"].value
    assert (cancelled.reason, cancelled.attempt, cancelled.operation) == ("customer left", 1, OP)
    refused = by_id["t-refused"].value
    assert (refused.operation, refused.reason) == ("teleport", "unknown operation 'teleport'")

    # A failure written before the outcome field existed (TaskFailed v1), as an old processor
    # left it on the topic.
    old = write_with(
        schema_file("TaskFailed", 1),
        {
            "client_id": CLIENT,
            "occurred_at_ms": 1,
            "task_id": "t-old",
            "operation": OP,
            "attempt": 4,
            "error": "boom",
            "reason": "retries exhausted",
            "attempts": [],
        },
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=r.settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(r.settings.topic("failed"), old, key=CLIENT.encode())
    finally:
        await producer.stop()

    # The SDK's iterator hands out every ending, each once, old records included.
    got: list[Outcome] = []
    async with TaskstreamClient(r.settings) as client:

        async def loop() -> None:
            async for outcome in client.outcomes(group_id="outcomes-test"):
                got.append(outcome)
                if len(got) == 6:
                    break

        await asyncio.wait_for(loop(), 60)
    assert {o.task_id: o.outcome for o in got} == {
        "t-ok": "completed",
        "t-old": "failed",
        **outcomes,
    }
