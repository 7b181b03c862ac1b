"""Task lifecycle on the embedded broker: cancel (queued and assigned), approve, reject,
scheduled_for and depends_on (issue 3, "Done when" 7).

One processor, delay agent and fake executor serve the whole module; each test uses its own
client (so its own queue and sessions) and the executor's script is chosen per client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.records import Assignment, DeadLetter
from streams.settings import Settings
from tests.integration.distributor_harness import (
    FAST,
    Reply,
    Rig,
    now_ms,
    of_task,
    read_topic,
    register,
    result_for,
    rig,
    submit,
)

pytestmark = pytest.mark.integration

SCRIPTS: dict[str, Callable[[Assignment], Reply | None]] = {}


def by_client(a: Assignment) -> Reply | None:
    script = SCRIPTS.get(a.client_id)
    return script(a) if script is not None else Reply(output={"ran": a.task_id})


@pytest.fixture(scope="module")
async def shared(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    prefix = f"lc{uuid.uuid4().hex[:8]}"
    data: Path = tmp_path_factory.mktemp("lifecycle")

    def make_settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": prefix,
            "group_id": f"{prefix}-processor",
            "data_dir": data,
            "partitions": 4,
            **FAST,
        }
        values.update(overrides)
        return Settings(**values)

    async with rig(make_settings, by_client, retry_base_ms=100, max_retries=0) as r:
        yield r


def client() -> str:
    return f"c{uuid.uuid4().hex[:6]}"


def is_(kind: type[Any], task_id: str) -> Callable[[list[Any]], bool]:
    return lambda es: any(isinstance(e, kind) and e.task_id == task_id for e in es)


async def test_cancel_of_a_queued_task_never_reaches_an_executor(shared: Rig) -> None:
    cl = client()
    await shared.send(submit(cl, f"{cl}-q", "conversation_send"))
    await shared.send(c.CancelTask(client_id=cl, task_id=f"{cl}-q", reason="changed my mind"))
    await shared.send(c.CancelTask(client_id=cl, task_id=f"{cl}-q"))  # again: refused
    # A session appears only now, and a second task shows it takes work.
    await shared.send(register(cl, f"{cl}-s"), submit(cl, f"{cl}-next", "conversation_send"))
    events = await shared.wait(is_(ev.TaskCompleted, f"{cl}-next"))

    mine = of_task(events, f"{cl}-q")
    cancelled = [e for e in mine if isinstance(e, ev.TaskCancelled)]
    assert len(cancelled) == 1 and cancelled[0].reason == "changed my mind"
    assert cancelled[0].session_id is None and cancelled[0].fencing_token is None
    assert not [e for e in mine if isinstance(e, ev.TaskAssigned)]
    refused = [e for e in mine if isinstance(e, ev.TaskRejected)]
    assert len(refused) == 1 and refused[0].command == "CancelTask"
    assert "cancelled" in refused[0].reason
    assert f"{cl}-q" not in {r.assignment.task_id for r in shared.executor.received}


async def test_cancel_of_an_assigned_task_signals_the_executor(shared: Rig) -> None:
    cl = client()
    held: list[Assignment] = []

    def silent_first(a: Assignment) -> Reply | None:
        if a.task_id == f"{cl}-run":
            held.append(a)
            return None  # still running when the cancel comes
        return Reply(output={"ran": a.task_id})

    SCRIPTS[cl] = silent_first
    await shared.send(register(cl, f"{cl}-s"), submit(cl, f"{cl}-run", "conversation_send"))
    await shared.executor.wait_for(lambda x: bool(held))
    await shared.send(c.CancelTask(client_id=cl, task_id=f"{cl}-run", reason="stop"))
    await shared.executor.wait_for(lambda x: any(a.task_id == f"{cl}-run" for a in x.cancels()))
    # The executor answers anyway (it did not stop in time): recorded and ignored.
    await shared.executor.send(result_for(held[0], Reply(output={"too": "late"})))
    # The session's capacity came back: the next task runs on it.
    await shared.send(submit(cl, f"{cl}-next", "conversation_send"))
    events = await shared.wait(
        lambda es: (
            is_(ev.TaskCompleted, f"{cl}-next")(es) and is_(ev.ResultIgnored, f"{cl}-run")(es)
        )
    )

    cancel = next(a for a in shared.executor.cancels() if a.task_id == f"{cl}-run")
    assert cancel.kind == "cancel" and cancel.session_id == f"{cl}-s"
    assert cancel.fencing_token == held[0].fencing_token and cancel.reason == "stop"
    mine = of_task(events, f"{cl}-run")
    cancelled = [e for e in mine if isinstance(e, ev.TaskCancelled)]
    assert len(cancelled) == 1 and cancelled[0].session_id == f"{cl}-s"
    assert cancelled[0].fencing_token == held[0].fencing_token
    assert not [e for e in mine if isinstance(e, ev.TaskCompleted)]
    nxt = next(e for e in events if isinstance(e, ev.TaskAssigned) and e.task_id == f"{cl}-next")
    assert nxt.session_id == f"{cl}-s"
    completed = await read_topic(shared.settings, "completed")
    assert f"{cl}-run" not in {r.value.task_id for r in completed}


async def test_approved_task_runs_and_rejected_task_never_does(shared: Rig) -> None:
    cl = client()
    await shared.send(register(cl, f"{cl}-s"))
    await shared.send(
        submit(cl, f"{cl}-ok", "workflow_trigger", requires_review=True),
        submit(cl, f"{cl}-no", "workflow_trigger", requires_review=True),
    )
    await shared.wait(is_(ev.TaskPendingReview, f"{cl}-no"))
    assert not [a for a in shared.executor.work() if a.client_id == cl]
    await shared.send(c.ApproveTask(client_id=cl, task_id=f"{cl}-ok", reviewer="ann"))
    await shared.send(
        c.RejectTask(client_id=cl, task_id=f"{cl}-no", reviewer="bob", reason="not today")
    )
    events = await shared.wait(is_(ev.TaskCompleted, f"{cl}-ok"))
    events = await shared.wait(is_(ev.TaskRejected, f"{cl}-no"))

    ok = [type(e).__name__ for e in of_task(events, f"{cl}-ok")]
    assert ok == [
        "TaskAccepted",
        "TaskPendingReview",
        "TaskApproved",
        "TaskQueued",
        "TaskAssigned",
        "TaskCompleted",
    ]
    no = of_task(events, f"{cl}-no")
    assert [type(e).__name__ for e in no] == ["TaskAccepted", "TaskPendingReview", "TaskRejected"]
    assert no[-1].command == "RejectTask" and no[-1].reviewer == "bob"
    assert no[-1].reason == "not today"
    assert {a.task_id for a in shared.executor.work() if a.client_id == cl} == {f"{cl}-ok"}


async def test_a_scheduled_task_waits_until_its_time(shared: Rig) -> None:
    cl = client()
    due = now_ms() + 2500
    await shared.send(register(cl, f"{cl}-s"))
    await shared.send(submit(cl, f"{cl}-later", "conversation_send", scheduled_for_ms=due))
    await shared.send(submit(cl, f"{cl}-now", "conversation_send"))
    events = await shared.wait(is_(ev.TaskCompleted, f"{cl}-later"))

    mine = of_task(events, f"{cl}-later")
    scheduled = next(e for e in mine if isinstance(e, ev.TaskScheduled))
    assert scheduled.due_at_ms == due
    queued = next(e for e in mine if isinstance(e, ev.TaskQueued))
    assert queued.reason == "scheduled"
    assert due - 500 <= queued.occurred_at_ms <= due + 1500
    first = next(e for e in events if isinstance(e, ev.TaskCompleted) and e.client_id == cl)
    assert first.task_id == f"{cl}-now"  # the unscheduled one did not wait
    received = next(r for r in shared.executor.received if r.assignment.task_id == f"{cl}-later")
    assert received.wall_ms >= due - 500


async def test_dependencies_gate_a_task_and_a_failed_dependency_fails_its_dependents(
    shared: Rig,
) -> None:
    cl = client()
    SCRIPTS[cl] = lambda a: (
        Reply(success=False, error="no such pipeline")
        if a.task_id == f"{cl}-bad"
        else Reply(output={"ran": a.task_id})
    )
    await shared.send(register(cl, f"{cl}-s", max_concurrent=3))
    # The dependent arrives first and waits for a task not submitted yet.
    await shared.send(
        submit(cl, f"{cl}-child", "conversation_send", depends_on=[f"{cl}-parent"]),
        submit(cl, f"{cl}-orphan", "conversation_send", depends_on=[f"{cl}-bad"]),
        submit(cl, f"{cl}-grandchild", "conversation_send", depends_on=[f"{cl}-orphan"]),
    )
    await shared.wait(is_(ev.TaskWaiting, f"{cl}-grandchild"))
    await shared.send(
        submit(cl, f"{cl}-parent", "pipeline_update"),
        submit(cl, f"{cl}-bad", "pipeline_update", max_retries=0),
    )
    events = await shared.wait(
        lambda es: (
            is_(ev.TaskCompleted, f"{cl}-child")(es) and is_(ev.TaskFailed, f"{cl}-grandchild")(es)
        )
    )

    def first(kind: type[Any], task_id: str) -> Any:
        return next(e for e in of_task(events, task_id) if isinstance(e, kind))

    parent_done = first(ev.TaskCompleted, f"{cl}-parent")
    child_queued = first(ev.TaskQueued, f"{cl}-child")
    assert child_queued.reason == "dependencies_met"
    assert events.index(child_queued) > events.index(parent_done)
    assert first(ev.TaskWaiting, f"{cl}-child").waiting_on == [f"{cl}-parent"]
    for task_id, dead in ((f"{cl}-orphan", f"{cl}-bad"), (f"{cl}-grandchild", f"{cl}-orphan")):
        failed = first(ev.TaskFailed, task_id)
        assert failed.reason == f"dependency {dead} failed"
        assert not [e for e in of_task(events, task_id) if isinstance(e, ev.TaskAssigned)]
    letters = [r.value for r in await read_topic(shared.settings, "dlq")]
    reasons = {d.task_id: d.reason for d in letters if isinstance(d, DeadLetter)}
    assert reasons[f"{cl}-orphan"] == f"dependency {cl}-bad failed"
    assert reasons[f"{cl}-bad"].startswith("retries exhausted after 1 attempts")
