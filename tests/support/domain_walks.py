"""Random walks through the decider for the property tests: a hypothesis strategy of actions,
the commands they become, and a drive of every open task to its end."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from schemas import commands as c
from schemas.states import ACTIVE_STATES, TERMINAL_STATES
from streams.domain import Status
from tests.support.gwt import Harness, config, register

CFG = config(
    batch_window_ms=100,
    max_batch_size=3,
    retry_base_ms=10,
    retry_max_ms=40,
    session_stale_ms=20_000,
    default_timeout_ms=5_000,
    aging_step_ms=1_000,
    circuit_cooldown_ms=500,
)


CLIENTS = ("A", "B")


OPS = ("workflow_trigger", "conversation_read", "tag_add", "contact_create", "integration_sync")


TASKS = [f"t{i}" for i in range(8)]


SESSIONS = [f"s{i}" for i in range(4)]


def session_client(session_id: str) -> str:
    return CLIENTS[int(session_id[1:]) % 2]


def task_client(task_id: str) -> str:
    return CLIENTS[int(task_id[1:]) % 2]  # t0, t2, ... belong to A; t1, t3, ... to B


_rarely = st.sampled_from([False, False, False, True])


_submit = st.tuples(
    st.just("submit"),
    st.sampled_from(TASKS),
    st.sampled_from(OPS),
    _rarely,  # requires review
    _rarely,  # scheduled
    st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(TASKS), max_size=2)),
    st.integers(0, 2),  # max retries
)


_register = st.tuples(st.just("register"), st.sampled_from(SESSIONS))


_result = st.tuples(st.just("result"), st.sampled_from(TASKS), st.booleans(), st.booleans())


_tick = st.tuples(st.just("tick"), st.integers(1, 6_000))


# Weighted by repetition: mostly submits, sessions and results, some of everything else.
actions = st.one_of(
    _submit,
    _submit,
    _submit,
    _register,
    _register,
    _result,
    _result,
    _result,
    _tick,
    _tick,
    st.tuples(st.sampled_from(["release", "heartbeat"]), st.sampled_from(SESSIONS)),
    st.tuples(
        st.sampled_from(["cancel", "approve", "reject", "expedite", "start", "retry_due"]),
        st.sampled_from(TASKS),
    ),
)


def to_command(h: Harness, action: tuple[Any, ...]) -> c.Command | None:
    kind = action[0]
    if kind == "submit":
        _, tid, op, review, scheduled, deps, retries = action
        return c.SubmitTask(
            client_id=task_client(tid),
            task_id=tid,
            operation=op,
            requires_review=review,
            scheduled_for_ms=h.now + 300 if scheduled else None,
            depends_on=[d for d in deps if task_client(d) == task_client(tid)],
            max_retries=retries,
        )
    if kind == "register":
        sid = action[1]
        return register(sid, client=session_client(sid), max_concurrent=1 + int(sid[1:]) % 3)
    if kind == "release":
        return c.ReleaseSession(client_id=session_client(action[1]), session_id=action[1])
    if kind == "heartbeat":
        return c.SessionHeartbeat(client_id=session_client(action[1]), session_id=action[1])
    tid = action[1]
    client = task_client(tid)
    task = h.state.task(tid)
    token = task.fencing_token if task is not None and task.fencing_token is not None else 0
    if kind == "cancel":
        return c.CancelTask(client_id=client, task_id=tid)
    if kind == "approve":
        return c.ApproveTask(client_id=client, task_id=tid)
    if kind == "reject":
        return c.RejectTask(client_id=client, task_id=tid)
    if kind == "expedite":
        return c.ExpediteTask(client_id=client, task_id=tid)
    if kind == "start":
        return c.TaskStarted(client_id=client, task_id=tid, fencing_token=token)
    if kind == "retry_due":
        attempt = task.attempt if task is not None else 1
        due = task.due_at_ms if task is not None and task.due_at_ms is not None else h.now
        what = "scheduled" if task is not None and task.status == Status.SCHEDULED else "retry"
        return c.RetryDue(client_id=client, task_id=tid, attempt=attempt, due_at_ms=due, kind=what)
    if kind == "result":
        _, _, success, stale = action
        if task is not None and task.batch_id is not None and task.status in ACTIVE_STATES:
            return c.ReportResult(
                client_id=client,
                batch_id=task.batch_id,
                fencing_token=token,
                success=success,
                items=[c.ItemResult(task_id=tid, success=success, error="item error")],
            )
        return c.ReportResult(
            client_id=client,
            task_id=tid,
            fencing_token=token + (1 if stale else 0),
            success=success,
            error=None if success else "boom",
        )
    raise AssertionError(action)


def drive_to_the_end(h: Harness) -> None:
    """Approve, start, succeed, wait and register until every task is terminal."""
    for client in CLIENTS:
        h.do(register(f"finisher-{client}", client=client, max_concurrent=50))
    for _ in range(60):
        live = [t for t in h.state.tasks.values() if t.status not in TERMINAL_STATES]
        if not live:
            return
        for task in sorted(live, key=lambda t: t.accepted_seq):
            task = h.record(task.task_id)
            if task.status == Status.PENDING_REVIEW:
                h.do(c.ApproveTask(client_id=task.client_id, task_id=task.task_id))
            elif task.status in (Status.SCHEDULED, Status.RETRY_SCHEDULED):
                h.retry_due(task.task_id, at=max(h.now, task.due_at_ms or 0))
            elif task.status in ACTIVE_STATES:
                if task.batch_id is not None:
                    batch = h.state.batches[task.batch_id]
                    assert batch.fencing_token is not None
                    h.do(
                        c.ReportResult(
                            client_id=task.client_id,
                            batch_id=task.batch_id,
                            fencing_token=batch.fencing_token,
                            success=True,
                        )
                    )
                else:
                    h.succeed(task.task_id)
            elif task.status == Status.WAITING:
                deps = [h.state.task(d) for d in task.depends_on]
                if any(d is None for d in deps):  # waits for a task nobody submits
                    h.do(c.CancelTask(client_id=task.client_id, task_id=task.task_id))
        h.tick(h.now + 1_000)
        for client in CLIENTS:  # keep the finishers alive
            h.do(c.SessionHeartbeat(client_id=client, session_id=f"finisher-{client}"))
    raise AssertionError(
        f"not finished: {[(t.task_id, t.status) for t in h.state.tasks.values() if t.status not in TERMINAL_STATES]}"
    )


def random_action(rng: random.Random, h: Harness) -> tuple[Any, ...]:
    """A state-aware random step: fresh task ids, results mostly for work in flight."""
    known = sorted(h.state.all_tasks())
    active = sorted(t.task_id for t in h.state.tasks.values() if t.status in ACTIVE_STATES)
    roll = rng.random()
    if roll < 0.35:
        newest = max((int(k[1:]) for k in known), default=-1)
        fresh = (
            f"t{newest + rng.randint(1, 2)}" if rng.random() < 0.95 else rng.choice(known or TASKS)
        )
        same_client = [k for k in known if task_client(k) == task_client(fresh)]
        deps = rng.sample(same_client, min(len(same_client), rng.choice([0, 0, 0, 1, 2])))
        return (
            "submit",
            fresh,
            rng.choice(OPS),
            rng.random() < 0.15,
            rng.random() < 0.15,
            deps,
            rng.randint(0, 2),
        )
    if roll < 0.45:
        return ("register", rng.choice(SESSIONS))
    if roll < 0.70:
        target = rng.choice(active) if active and rng.random() < 0.9 else rng.choice(TASKS)
        return ("result", target, rng.random() < 0.75, rng.random() < 0.05)
    if roll < 0.82:
        return ("tick", rng.choice([50, 150, 600, 3_000, 6_000]))
    if roll < 0.86:
        return (rng.choice(["release", "heartbeat", "heartbeat"]), rng.choice(SESSIONS))
    return (
        rng.choice(["cancel", "approve", "approve", "reject", "expedite", "start", "retry_due"]),
        rng.choice(known or TASKS),
    )


def random_walk(rng: random.Random, h: Harness, steps: int = 150) -> Iterator[int]:
    """Random commands and ticks on ``h``; yields after every tenth step for the checks."""
    for step in range(steps):
        action = random_action(rng, h)
        if action[0] == "tick":
            h.tick(h.now + action[1])
        else:
            command = to_command(h, action)
            assert command is not None
            h.do(command, at=h.now + rng.randint(0, 40))
        if step % 10 == 0:
            yield step
