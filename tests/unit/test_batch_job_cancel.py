"""Cancelling a batch job in the decider: held items fail unreleased, unfinished children are
cancelled, the job completes once, and nothing is released afterwards."""

from __future__ import annotations

from schemas import commands as c
from schemas import events as ev
from schemas import management_events as mev
from schemas.states import TERMINAL_STATES
from tests.support.batch_jobs import job
from tests.support.gwt import Harness, names, of


def cancel_job(reason: str | None = "stop") -> c.CancelBatchJob:
    return c.CancelBatchJob(client_id="A", batch_job_id="J", reason=reason, actor="ops")


def test_cancel_fails_held_items_cancels_running_children_and_completes_the_job() -> None:
    h = Harness().given(job(n=5, parallelism=2, max_retries=0), at=0)
    h.succeed("J.0", at=1, output={"v": 0})  # releases J.2; J.1 and J.2 run, J.3/J.4 held
    events = h.do(cancel_job(), at=5)
    kinds = names(events)
    assert kinds[0] == "BatchJobCancelled" and kinds.count("TaskCancelled") == 2
    assert kinds[-1] == "BatchJobCompleted" and "TaskAccepted" not in kinds
    (cancelled,) = of(events, mev.BatchJobCancelled)
    assert (cancelled.cancelled_task_ids, cancelled.unreleased) == (["J.1", "J.2"], 2)
    assert cancelled.actor == "ops"
    (done,) = of(events, ev.BatchJobCompleted)
    assert (done.total, done.succeeded, done.failed) == (5, 1, 4)
    assert {r.task_id: r.error for r in done.results if not r.success} == {
        f"J.{i}": "cancelled: stop" for i in range(1, 5)
    }
    assert "J.3" not in h.state.tasks and "J.4" not in h.state.tasks  # never released
    assert all(h.status(t) in TERMINAL_STATES for t in ("J.0", "J.1", "J.2"))
    assert h.state.batch_jobs["J"].completed_at_ms == 5


def test_cancel_of_a_job_with_every_item_released_completes_once_its_children_end() -> None:
    h = Harness().given(job(n=2, parallelism=2), at=0)
    events = h.do(cancel_job(None), at=3)
    assert names(events).count("BatchJobCompleted") == 1
    assert of(events, ev.BatchJobCompleted)[0].failed == 2
    assert of(events, mev.BatchJobCancelled)[0].unreleased == 0


def test_a_finished_or_unknown_or_other_clients_job_is_refused() -> None:
    h = Harness().given(job(n=1, parallelism=1), at=0)
    h.succeed("J.0", at=1)
    (refused,) = h.do(cancel_job(), at=2)
    assert isinstance(refused, ev.CommandRejected) and "already finished" in refused.reason
    (unknown,) = h.do(c.CancelBatchJob(client_id="A", batch_job_id="nope"), at=3)
    assert isinstance(unknown, ev.CommandRejected) and "no batch job 'nope'" in unknown.reason
    h2 = Harness().given(job(n=1, parallelism=1), at=0)
    (other,) = h2.do(c.CancelBatchJob(client_id="B", batch_job_id="J"), at=1)
    assert isinstance(other, ev.CommandRejected) and h2.status("J.0") not in TERMINAL_STATES


def test_a_cancelled_job_releases_nothing_later_and_a_second_cancel_is_refused() -> None:
    h = Harness().given(job(n=3, parallelism=1, max_retries=0), at=0)
    h.do(cancel_job(), at=1)
    assert [t for t in h.state.all_tasks() if t.startswith("J.")] == ["J.0"]
    (again,) = h.do(cancel_job(), at=2)
    assert isinstance(again, ev.CommandRejected)
