"""Multi-step tasks (``streams.domain.steps``), given/when/then."""

from __future__ import annotations

from typing import Any

from schemas import commands as c
from schemas import events as ev
from tests.support.gwt import Harness, of, submit

POOL_OP = "integration_sync"  # a pool operation: a released step is assigned at once


def step(step_id: str, *deps: str, policy: str = "fail_task") -> c.TaskStep:
    return c.TaskStep(
        id=step_id,
        operation=POOL_OP,
        config={"s": step_id},
        depends_on=list(deps),
        failure_policy=policy,
    )


def workflow(*steps: c.TaskStep, **kw: Any) -> c.SubmitTask:
    return submit("wf", operation=POOL_OP, steps=list(steps), max_retries=0, **kw)


def report(h: Harness, task_id: str, success: bool = True, **kw: Any) -> list[ev.Event]:
    return h.do(
        c.ReportResult(
            client_id="A",
            task_id=task_id,
            fencing_token=h.token(task_id),
            success=success,
            error=None if success else "boom",
            **kw,
        )
    )


def step_states(h: Harness) -> dict[str, str]:
    return {r.step_id: r.status for r in h.record("wf").step_runs}


def test_independent_steps_start_together_and_a_dependent_waits() -> None:
    h = Harness()
    events = h.do(workflow(step("a"), step("b"), step("c", "b")), at=10)
    started = [e.child_task_id for e in of(events, ev.TaskStepStarted)]
    assert started == ["wf:a", "wf:b"]
    assert not of(events, ev.TaskQueued) or all(
        e.task_id != "wf" for e in of(events, ev.TaskQueued)
    )
    assert h.status("wf") == "running"
    assert [e.task_id for e in of(events, ev.TaskAssigned)] == ["wf:a", "wf:b"]
    (child,) = [e for e in of(events, ev.TaskAccepted) if e.task_id == "wf:a"]
    assert (child.operation, child.payload, child.title) == (POOL_OP, {"s": "a"}, "a")
    report(h, "wf:b", output={"x": 1})
    assert step_states(h) == {"a": "running", "b": "completed", "c": "running"}


def test_skip_dependents_skips_what_depends_on_the_failed_step_and_the_task_completes() -> None:
    h = Harness().given(
        workflow(step("a"), step("b", policy="skip_dependents"), step("c", "b")), at=10
    )
    report(h, "wf:a", output={"a": 1})
    events = report(h, "wf:b", success=False)
    assert step_states(h) == {"a": "completed", "b": "failed", "c": "skipped"}
    (done,) = [e for e in of(events, ev.TaskCompleted) if e.task_id == "wf"]
    assert done.output == {
        "steps": {
            "a": {"status": "completed", "output": {"a": 1}},
            "b": {"status": "failed", "error": "boom"},
            "c": {"status": "skipped", "error": "step b failed"},
        }
    }
    assert "wf:c" not in h.state.tasks  # a skipped step never ran


def test_fail_task_cancels_the_running_steps_and_fails_the_task() -> None:
    h = Harness().given(workflow(step("a"), step("b"), step("c", "b")), at=10)
    events = report(h, "wf:b", success=False)
    assert step_states(h) == {"a": "failed", "b": "failed", "c": "skipped"}
    assert h.status("wf:a") == "cancelled"
    (failed,) = [e for e in of(events, ev.TaskFailed) if e.task_id == "wf"]
    assert failed.reason == "step b failed"
    assert h.state.step_children == {}


def test_continue_lets_the_dependents_run() -> None:
    h = Harness().given(workflow(step("b", policy="continue"), step("c", "b")), at=10)
    report(h, "wf:b", success=False)
    assert step_states(h) == {"b": "failed", "c": "running"}
    events = report(h, "wf:c")
    assert [e.task_id for e in of(events, ev.TaskCompleted)] == ["wf:c", "wf"]


def test_a_cancelled_task_cancels_its_steps() -> None:
    h = Harness().given(workflow(step("a"), step("c", "a")), at=10)
    h.do(c.CancelTask(client_id="A", task_id="wf"))
    assert step_states(h) == {"a": "failed", "c": "skipped"}
    assert h.status("wf:a") == "cancelled"


def test_a_step_id_taken_by_another_task_fails_the_step() -> None:
    h = Harness().given(submit("wf:a", operation=POOL_OP), at=5)
    h.do(workflow(step("a", policy="continue"), step("b", "a")), at=10)
    run = {r.step_id: r for r in h.record("wf").step_runs}
    assert run["a"].status == "failed" and "taken" in (run["a"].error or "")
    assert run["b"].status == "running"


def test_steps_survive_a_reload_and_a_replay() -> None:
    h = Harness().given(workflow(step("a"), step("b"), step("c", "b")), at=10)
    report(h, "wf:b")
    for state in (h.reloaded(), h.replayed()):
        assert state == h.state
        assert state.step_children == {"wf:a": "wf", "wf:c": "wf"}
