"""Multi-step tasks (seed 004 US-002): a task's steps run as child tasks.

A task submitted with ``steps`` is admitted like any task (review, scheduled start, the tasks
it depends on); where it would be queued, it starts its steps instead (``lifecycle.enqueue``
calls ``start``) and goes ``running``. Each step runs as an ordinary child task with the id
``<task_id>:<step_id>``: the step's operation and config (as the payload), the parent's
priority, retries, timeout, capabilities and assignment. So a step is dispatched like any task
(sessions, batching windows, the pool, retries with backoff, timeouts, dead letters) and has the
child's progress and attempts; steps whose dependencies allow it run at the same time.

A step is ``pending`` until the steps it depends on ended as its start needs, then
``running`` (``task.step_started``) until its child ends (``task.step_finished``):
``completed`` with the child's output, ``failed`` with its error (the child failed for good,
was cancelled, or its id was already taken), or ``skipped``. What a failure does is the failed
step's ``failure_policy``:

* ``fail_task``: the task fails at once ("step <id> failed"); running steps are cancelled
  (failed, "cancelled"), pending ones skipped.
* ``skip_dependents``: every step that depends on it, directly or not, is skipped; the rest go on.
* ``continue``: its dependents run as if it had completed.

When every step ended the task completes (unless a ``fail_task`` step failed it) with the
aggregate ``{"steps": {<id>: {"status", "output" | "error"}}}`` as its output; steps that
failed under ``skip_dependents`` or ``continue`` are in it, the task still completes. A task
that ends otherwise first (cancelled, a dependency failed) cancels its running steps and skips
its pending ones.

``settle`` runs at the end of every decision and tick over its events (as batch jobs do), so
no rule that ends a task needs to know about steps.
"""

from __future__ import annotations

from typing import Any, Final

from schemas import events as ev
from schemas.commands import TaskAssignee, TaskStep
from schemas.states import ACTIVE_STATES as ACTIVE
from schemas.states import TERMINAL_STATES as TERMINAL
from streams.domain import lifecycle
from streams.domain.context import Decision
from streams.domain.dispatch import dispatch
from streams.domain.records import StepRun
from streams.domain.state import TaskRecord

RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
ENDED: Final = frozenset({COMPLETED, FAILED, SKIPPED})
RELEASE_REASON: Final = "step"


def child_id(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}"


def runs(task: TaskRecord) -> dict[str, StepRun]:
    """Each started or ended step's latest run, by step id."""
    return {run.step_id: run for run in task.step_runs}


def _finished(
    ctx: Decision,
    task: TaskRecord,
    step_id: str,
    status: str,
    *,
    child: str | None = None,
    output: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    ctx.emit(
        ev.TaskStepFinished(
            client_id=task.client_id,
            task_id=task.task_id,
            occurred_at_ms=ctx.now,
            step_id=step_id,
            status=status,
            child_task_id=child,
            output=output or {},
            error=error,
        )
    )


def _verdict(step: TaskStep, done: dict[str, StepRun], policies: dict[str, str]) -> str:
    """``ready``, ``wait`` or ``skip`` for a pending step."""
    ready = True
    for dep in step.depends_on:
        run = done.get(dep)
        if run is None or run.status == RUNNING:
            ready = False
        elif run.status == SKIPPED or (
            run.status == FAILED and policies.get(dep) == "skip_dependents"
        ):
            return "skip"
        elif run.status == FAILED and policies.get(dep) != "continue":
            ready = False  # fail_task: the task is ending
    return "ready" if ready else "wait"


def _release(ctx: Decision, task: TaskRecord, step: TaskStep) -> str | None:
    """Start ``step`` as its child task; the error when it cannot start."""
    st = ctx.state
    child = child_id(task.task_id, step.id)
    if st.knows(child):
        return f"task id {child!r} was taken by another task"
    spec = ctx.config.catalog.get(step.operation)
    if spec is None:
        return f"unknown operation {step.operation!r}"
    ctx.emit(
        ev.TaskStepStarted(
            client_id=task.client_id,
            task_id=task.task_id,
            occurred_at_ms=ctx.now,
            step_id=step.id,
            child_task_id=child,
        )
    )
    ctx.emit(
        ev.TaskAccepted(
            client_id=task.client_id,
            task_id=child,
            occurred_at_ms=ctx.now,
            operation=step.operation,
            payload=step.config,
            priority=task.priority,
            explicit_priority=task.explicit_priority,
            max_retries=task.max_retries,
            timeout_ms=task.timeout_ms,
            capabilities=list(task.capabilities),
            batchable=spec.batchable,
            session_required=spec.session_required,
            title=step.name or step.id,
            assigned_to=(
                TaskAssignee(kind=task.assigned_to[0], id=task.assigned_to[1])
                if task.assigned_to is not None
                else None
            ),
        )
    )
    lifecycle.admit(ctx, child, RELEASE_REASON)
    return None


def start(ctx: Decision, task_id: str) -> None:
    """The task would be queued now: start the steps that depend on nothing."""
    advance(ctx, task_id)


def advance(ctx: Decision, task_id: str) -> None:
    """Start the steps that became ready, skip the doomed ones; end the task when all ended."""
    st = ctx.state
    task = st.tasks[task_id]
    policies = {s.id: s.failure_policy for s in task.steps}
    progressed = True
    while progressed and st.tasks[task_id].status not in TERMINAL:
        progressed = False
        for step in st.tasks[task_id].steps:
            task = st.tasks[task_id]
            done = runs(task)
            if step.id in done or task.status in TERMINAL:
                continue
            verdict = _verdict(step, done, policies)
            if verdict == "skip":
                blocked = next(
                    d for d in step.depends_on if d in done and done[d].status != COMPLETED
                )
                _finished(
                    ctx, task, step.id, SKIPPED, error=f"step {blocked} {done[blocked].status}"
                )
                progressed = True
            elif verdict == "ready":
                error = _release(ctx, task, step)
                if error is not None:
                    _finished(ctx, st.tasks[task_id], step.id, FAILED, error=error)
                    _after_failure(ctx, task_id, step, error)
                progressed = True
    task = st.tasks[task_id]
    if task.status in TERMINAL:
        return
    done = runs(task)
    if all(s.id in done and done[s.id].status in ENDED for s in task.steps):
        lifecycle.complete(ctx, task_id, _aggregate(task), 0)


def _aggregate(task: TaskRecord) -> dict[str, Any]:
    done = runs(task)
    steps: dict[str, Any] = {}
    for step in task.steps:
        run = done[step.id]
        entry: dict[str, Any] = {"status": run.status}
        if run.status == COMPLETED:
            entry["output"] = run.output or {}
        elif run.error is not None:
            entry["error"] = run.error
        steps[step.id] = entry
    return {"steps": steps}


def _after_failure(ctx: Decision, task_id: str, step: TaskStep, error: str) -> None:
    if step.failure_policy == "fail_task":
        end_unfinished(ctx, task_id, f"step {step.id} failed")
        lifecycle.fail_permanently(ctx, task_id, reason=f"step {step.id} failed", error=error)


def end_unfinished(ctx: Decision, task_id: str, why: str) -> None:
    """Cancel the running steps and skip the pending ones (the task is ending: ``why``)."""
    st = ctx.state
    task = st.tasks[task_id]
    done = runs(task)
    for step in task.steps:
        run = done.get(step.id)
        if run is None:
            _finished(ctx, st.tasks[task_id], step.id, SKIPPED, error=why)
        elif run.status == RUNNING and run.child_task_id is not None:
            child = st.task(run.child_task_id)
            if child is not None and child.status not in TERMINAL:
                active = child.status in ACTIVE
                ctx.emit(
                    ev.TaskCancelled(
                        client_id=child.client_id,
                        task_id=child.task_id,
                        occurred_at_ms=ctx.now,
                        reason=why,
                        session_id=child.session_id if active else None,
                        fencing_token=child.fencing_token if active else None,
                    )
                )
            _finished(
                ctx,
                st.tasks[task_id],
                step.id,
                FAILED,
                child=run.child_task_id,
                error=f"cancelled: {why}",
            )


def _child_outcome(event: ev.Event) -> tuple[str, dict[str, Any], str | None] | None:
    if isinstance(event, ev.TaskCompleted):
        return COMPLETED, dict(event.output), None
    if isinstance(event, ev.TaskFailed):
        return FAILED, {}, event.error
    if isinstance(event, ev.TaskCancelled):
        return FAILED, {}, "cancelled" + (f": {event.reason}" if event.reason else "")
    if isinstance(event, ev.TaskRejected) and event.command == "RejectTask":
        return FAILED, {}, f"rejected: {event.reason}"
    return None


def settle(ctx: Decision) -> None:
    """After a decision: record the steps whose child ended in it, and move their tasks on;
    end the steps of tasks that ended otherwise."""
    st = ctx.state
    start_at = 0
    while start_at < len(ctx.events):
        end = len(ctx.events)
        clients: dict[str, None] = {}
        for event in ctx.events[start_at:end]:
            if not isinstance(event, ev.TaskEvent):
                continue
            parent_id = st.step_children.get(event.task_id)
            outcome = _child_outcome(event) if parent_id is not None else None
            if parent_id is not None and outcome is not None:
                parent = st.tasks[parent_id]
                step_id = event.task_id[len(parent_id) + 1 :]
                status, output, error = outcome
                _finished(
                    ctx, parent, step_id, status, child=event.task_id, output=output, error=error
                )
                if parent.status not in TERMINAL:
                    if status == FAILED:
                        step = next(s for s in parent.steps if s.id == step_id)
                        _after_failure(ctx, parent_id, step, error or "failed")
                    if st.tasks[parent_id].status not in TERMINAL:
                        advance(ctx, parent_id)
                clients[parent.client_id] = None
                continue
            if not _outcome_ends(event):
                continue
            task = st.task(event.task_id)
            if (
                task is not None
                and task.steps
                and task.status in TERMINAL
                and any(runs(task).get(s.id, _PENDING).status not in ENDED for s in task.steps)
            ):
                end_unfinished(ctx, task.task_id, f"task {task.status}")
                clients[task.client_id] = None
        start_at = end
        for client_id in clients:
            dispatch(ctx, client_id)


_PENDING: Final = StepRun(step_id="", status="pending")


def _outcome_ends(event: ev.Event) -> bool:
    return isinstance(event, ev.TaskCancelled | ev.TaskFailed | ev.TaskRejected)
