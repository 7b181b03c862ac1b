"""The read-model fold over handcrafted event sequences (no I/O: a dict-backed store)."""

from __future__ import annotations

from typing import Any

from projections.memory import MemorySource
from projections.reader import ProjectionReader
from projections.rows import SLA_MS
from schemas import events as ev
from schemas.events import AttemptRecord, Event

C = "client-a"


class World:
    """Feeds events at increasing times, flushes, and reads back."""

    def __init__(self) -> None:
        self.source = MemorySource()
        self.reader = ProjectionReader(self.source)
        self.now = 1_000_000

    def at(self, ms: int) -> World:
        self.now = ms
        return self

    def feed(self, *events: Event) -> World:
        for event in events:
            self.source.feed(event, partition=0)
        self.source.flush()
        return self

    def task(self, task_id: str) -> Any:
        row = self.reader.task(task_id)
        assert row is not None
        return row


def t(now: int, **kw: Any) -> dict[str, Any]:
    return {"client_id": C, "occurred_at_ms": now, **kw}


def accept(now: int, task_id: str, op: str = "contact_update", priority: int = 3) -> Event:
    return ev.TaskAccepted(
        **t(now, task_id=task_id), operation=op, priority=priority, max_retries=3, timeout_ms=1000
    )


def queued(
    now: int, task_id: str, priority: int = 3, attempt: int = 1, reason: str = "submitted"
) -> Event:
    return ev.TaskQueued(
        **t(now, task_id=task_id), priority=priority, attempt=attempt, reason=reason
    )


def assigned(
    now: int,
    task_id: str,
    session: str = "s1",
    priority: int = 3,
    attempt: int = 1,
    batch: str | None = None,
) -> Event:
    return ev.TaskAssigned(
        **t(now, task_id=task_id),
        operation="contact_update",
        session_id=session,
        batch_id=batch,
        attempt=attempt,
        fencing_token=attempt,
        deadline_at_ms=now + 1000,
        priority=priority,
    )


def register(now: int, session: str = "s1", max_concurrent: int = 2) -> Event:
    return ev.SessionRegistered(
        **t(now), session_id=session, agent_id="agent-1", max_concurrent=max_concurrent
    )


def test_a_task_runs_to_completion() -> None:
    w = World()
    w.feed(
        register(0),
        accept(1000, "t1"),
        queued(1000, "t1"),
    )
    status = w.reader.status()
    assert status.queue_length == 1
    assert status.tasks_by_priority["normal"] == 1
    assert status.tasks_by_operation == {"contact_update": 1}

    w.feed(
        assigned(4000, "t1"),
        ev.TaskStartedEvent(**t(4500, task_id="t1"), session_id="s1", fencing_token=1),
    )
    status = w.reader.status()
    assert status.queue_length == 0
    assert status.tasks_by_operation == {}
    assert status.active_assignments == 1
    assert w.reader.session("s1").in_flight == 1  # type: ignore[union-attr]
    assert w.source.tables.counters.in_flight == {"s1": 1}

    w.feed(
        ev.TaskCompleted(
            **t(9000, task_id="t1"),
            operation="contact_update",
            attempt=1,
            session_id="s1",
            output={"contact_id": "c-9"},
            execution_time_ms=4500,
        )
    )
    row = w.task("t1")
    assert row.state == "completed"
    assert row.output == {"contact_id": "c-9"}
    assert [h.type for h in row.history] == [
        "task.accepted",
        "task.queued",
        "task.assigned",
        "task.started",
        "task.completed",
    ]
    session = w.reader.session("s1")
    assert session is not None and session.in_flight == 0 and session.tasks_completed == 1
    assert session.last_seen_ms == 9000
    assert w.source.tables.counters.in_flight == {}
    status = w.reader.status()
    assert status.active_assignments == 0
    assert status.tasks_by_state["completed"] == 1
    assert status.wait_times["normal"].assigned == 1
    assert status.wait_times["normal"].max_wait_ms == 3000
    assert status.sla_breaches == 0
    health = w.reader.health()
    assert (health.processed, health.succeeded, health.failed) == (1, 1, 0)
    assert health.success_rate == 1.0
    assert health.last_processed_at == "1970-01-01T00:00:09.000+00:00"


def test_retries_then_dead_letter() -> None:
    w = World()
    w.feed(register(0), accept(0, "t1"), queued(0, "t1"), assigned(10, "t1"))
    w.feed(
        ev.TaskAttemptFailed(**t(20, task_id="t1"), attempt=1, session_id="s1", error="boom"),
        ev.TaskRetryScheduled(
            **t(20, task_id="t1"),
            attempt=2,
            delay_ms=1000,
            due_at_ms=1020,
            tier_ms=1000,
            error="boom",
        ),
    )
    row = w.task("t1")
    assert row.state == "retry_scheduled" and row.awaiting_retry and row.retry_due_at_ms == 1020
    status = w.reader.status()
    assert status.failed_tasks_awaiting_retry == 1
    assert status.active_assignments == 0
    assert status.retries == 1
    assert w.reader.session("s1").tasks_failed == 1  # type: ignore[union-attr]

    w.feed(
        ev.TaskRetrying(**t(1020, task_id="t1"), attempt=2),
        queued(1020, "t1", priority=2, attempt=2, reason="retry"),
    )
    status = w.reader.status()
    assert status.failed_tasks_awaiting_retry == 0
    assert status.tasks_by_priority["high"] == 1 and status.tasks_by_priority["normal"] == 0

    history = [
        AttemptRecord(attempt=1, session_id="s1", error="boom", at_ms=20),
        AttemptRecord(attempt=2, session_id="s1", error="bang", at_ms=1100),
    ]
    w.feed(
        assigned(1050, "t1", priority=2, attempt=2),
        ev.TaskAttemptFailed(**t(1100, task_id="t1"), attempt=2, session_id="s1", error="bang"),
        ev.TaskFailed(
            **t(1100, task_id="t1"),
            operation="contact_update",
            attempt=2,
            error="bang",
            reason="retries_exhausted",
            attempts=history,
        ),
        ev.TaskDeadLettered(
            **t(1100, task_id="t1"),
            operation="contact_update",
            reason="retries_exhausted",
            attempts=history,
        ),
    )
    row = w.task("t1")
    assert row.state == "failed" and row.dead_lettered and row.last_error == "bang"
    assert [a.error for a in row.attempts] == ["boom", "bang"]
    status = w.reader.status()
    assert status.dead_letters == 1
    assert status.tasks_by_state["failed"] == 1
    assert status.wait_times["high"].assigned == 1  # the retry waited as "high"
    health = w.reader.health()
    assert (health.processed, health.succeeded, health.failed, health.success_rate) == (
        1,
        0,
        1,
        0.0,
    )

    page = w.reader.dead_letters(reason="retries_exhausted")
    assert [d.task_id for d in page.items] == ["t1"]
    assert [d.error for d in page.items[0].attempts] == ["boom", "bang"]
    assert w.reader.dead_letters(reason="other").items == []
    assert w.reader.dead_letters(client_id=C, operation="contact_update").items[0].task_id == "t1"
    assert w.source.tables.counters.dlq_by_operation == {"contact_update": 1}


def test_a_batch_is_collected_dispatched_and_consolidated() -> None:
    w = World()
    ids = ["b-t1", "b-t2", "b-t3"]
    w.feed(register(0, "s1", max_concurrent=5))
    for i, task_id in enumerate(ids):
        w.feed(
            accept(i, task_id, op="tag_add", priority=4),
            ev.TaskBatched(**t(i, task_id=task_id), batch_id="B1", operation="tag_add"),
        )
    batch = w.reader.batch("B1")
    assert batch is not None and batch.state == "open" and batch.task_ids == ids
    assert w.reader.status().active_batches == 1
    assert w.reader.status().tasks_by_state["batched"] == 3

    w.feed(
        ev.BatchProcessed(
            **t(2000),
            batch_id="B1",
            operation="tag_add",
            task_ids=ids,
            session_id="s1",
            fencing_token=7,
            closed_by="window",
        )
    )
    w.feed(*[assigned(2000, task_id, priority=4, batch="B1") for task_id in ids])
    assert w.reader.session("s1").in_flight == 3  # type: ignore[union-attr]
    assert w.reader.status().wait_times["low"].assigned == 3
    w.feed(
        ev.TaskCompleted(
            **t(3000, task_id="b-t1"),
            operation="tag_add",
            attempt=1,
            session_id="s1",
            batch_id="B1",
        ),
        ev.TaskCompleted(
            **t(3000, task_id="b-t2"),
            operation="tag_add",
            attempt=1,
            session_id="s1",
            batch_id="B1",
        ),
        ev.TaskAttemptFailed(
            **t(3000, task_id="b-t3"), attempt=1, session_id="s1", batch_id="B1", error="nope"
        ),
        ev.TaskRetryScheduled(
            **t(3000, task_id="b-t3"),
            attempt=2,
            delay_ms=1000,
            due_at_ms=4000,
            tier_ms=1000,
            error="nope",
        ),
        ev.BatchResultConsolidated(
            **t(3000),
            batch_id="B1",
            operation="tag_add",
            session_id="s1",
            success_count=2,
            failure_count=1,
            consolidated_output={"ok": 2},
        ),
    )
    batch = w.reader.batch("B1")
    assert batch is not None and batch.state == "consolidated"
    assert (batch.success_count, batch.failure_count, batch.consolidated_output) == (
        2,
        1,
        {"ok": 2},
    )
    assert w.reader.status().active_batches == 0
    assert w.reader.session("s1").in_flight == 0  # type: ignore[union-attr]


def test_sla_breach_is_counted_per_priority() -> None:
    w = World()
    w.feed(register(0))
    w.feed(accept(0, "crit", op="workflow_trigger", priority=1), queued(0, "crit", priority=1))
    # the processor records the breach (while it waits, or as it is assigned): that is counted
    w.feed(
        ev.TaskSlaBreached(
            client_id=C,
            task_id="crit",
            occurred_at_ms=SLA_MS["critical"] + 1,
            priority=1,
            queued_at_ms=0,
            sla_ms=SLA_MS["critical"],
            at_assignment=True,
        ),
        assigned(SLA_MS["critical"] + 1, "crit", priority=1),
    )
    w.feed(accept(0, "norm", priority=3), queued(0, "norm", priority=3))
    w.feed(assigned(SLA_MS["critical"] + 1, "norm", priority=3))
    status = w.reader.status()
    assert status.wait_times["critical"].sla_breaches == 1
    assert status.wait_times["normal"].sla_breaches == 0
    assert status.sla_breaches == 1


def test_review_schedule_and_dependency_states() -> None:
    w = World()
    w.feed(accept(0, "r1"), ev.TaskPendingReview(**t(0, task_id="r1")))
    w.feed(accept(0, "r2"), ev.TaskPendingReview(**t(0, task_id="r2")))
    w.feed(accept(0, "s1"), ev.TaskScheduled(**t(0, task_id="s1"), due_at_ms=50_000))
    w.feed(accept(0, "d1"), ev.TaskWaiting(**t(0, task_id="d1"), waiting_on=["s1"]))
    assert [w.task(i).state for i in ("r1", "r2", "s1", "d1")] == [
        "pending_review",
        "pending_review",
        "scheduled",
        "waiting",
    ]
    assert w.reader.status().failed_tasks_awaiting_retry == 0
    w.feed(ev.TaskApproved(**t(5, task_id="r1"), reviewer="ann"), queued(5, "r1"))
    w.feed(
        ev.TaskRejected(
            **t(6, task_id="r2"), reason="not allowed", command="RejectTask", reviewer="bob"
        )
    )
    assert w.task("r1").state == "queued" and w.task("r1").reviewer == "ann"
    assert w.task("r2").state == "rejected" and w.task("r2").reason == "not allowed"
    assert w.task("d1").waiting_on == ["s1"]
    page = w.reader.tasks(status="pending_review")
    assert page.items == []
    assert [r.task_id for r in w.reader.tasks(status="rejected").items] == ["r2"]


def test_refused_commands_do_not_end_a_task() -> None:
    w = World()
    w.feed(accept(0, "t1"), queued(0, "t1"))
    w.feed(ev.TaskRejected(**t(1, task_id="t1"), reason="duplicate task id", command="SubmitTask"))
    w.feed(ev.TaskRejected(**t(2, task_id="t1"), reason="not under review", command="RejectTask"))
    assert w.task("t1").state == "queued"
    w.feed(ev.TaskRejected(**t(3, task_id="ghost"), reason="unknown task", command="CancelTask"))
    assert w.reader.task("ghost") is None
    w.feed(
        ev.TaskRejected(**t(4, task_id="bad"), reason="unknown operation 'x'", command="SubmitTask")
    )
    assert w.task("bad").state == "rejected"
    w.feed(ev.CommandRejected(**t(5), command="RegisterSession", reason="bad"))
    w.feed(
        ev.ResultIgnored(
            **t(6, task_id="t1"), fencing_token=1, current_fencing_token=2, reason="stale"
        )
    )
    c = w.source.tables.counters
    assert c.commands_rejected == 4 and c.results_ignored == 1
    assert w.reader.status().tasks_total == 2
    assert w.task("t1").history[-1].type == "task.result_ignored"


def test_cancel_takes_a_task_out_of_the_queue() -> None:
    w = World()
    w.feed(accept(0, "t1"), queued(0, "t1"))
    w.feed(ev.TaskCancelled(**t(1, task_id="t1"), reason="user"))
    status = w.reader.status()
    assert status.queue_length == 0 and status.tasks_by_priority["normal"] == 0
    assert w.task("t1").state == "cancelled"


def test_session_health_release_and_clean() -> None:
    w = World()
    w.feed(register(0, "s1"), register(0, "s2"), register(0, "s3"))
    w.feed(
        ev.SessionHealthChanged(
            **t(1), session_id="s2", score=0.5, status="degraded", previous_status="healthy"
        )
    )
    w.feed(
        ev.SessionHealthChanged(
            **t(1),
            session_id="s3",
            score=0.1,
            status="unhealthy",
            previous_status="healthy",
            circuit="open",
        )
    )
    status = w.reader.status()
    assert status.active_sessions == 3
    assert status.session_health == {"healthy": 1, "degraded": 1, "unhealthy": 1}
    assert w.reader.session("s3").circuit == "open"  # type: ignore[union-attr]

    w.feed(accept(2, "t1"), queued(2, "t1"), assigned(3, "t1", session="s1"))
    w.feed(ev.SessionReleased(**t(4), session_id="s1", reason="shutdown", requeued_task_ids=["t1"]))
    assert w.task("t1").state == "queued"
    assert w.reader.session("s1").in_flight == 0  # type: ignore[union-attr]
    assert w.reader.session("s1").state == "released"  # type: ignore[union-attr]
    w.feed(ev.SessionHeartbeatReceived(**t(5), session_id="s2"))
    w.feed(ev.SessionCleaned(**t(400_000), session_id="s3", last_seen_ms=1))
    status = w.reader.status()
    assert status.active_sessions == 1
    assert status.session_health == {"healthy": 0, "degraded": 1, "unhealthy": 0}
    assert w.reader.session("s2").last_seen_ms == 5  # type: ignore[union-attr]
    assert [s.session_id for s in w.reader.sessions(state="active").items] == ["s2"]


def test_task_list_filters_and_pages() -> None:
    w = World()
    for i in range(7):
        op = "tag_add" if i % 2 else "contact_update"
        w.feed(
            ev.TaskAccepted(
                client_id=f"c{i % 3}",
                occurred_at_ms=i,
                task_id=f"t{i}",
                operation=op,
                priority=3,
                max_retries=1,
                timeout_ms=1,
            ),
            ev.TaskQueued(
                client_id=f"c{i % 3}", occurred_at_ms=i, task_id=f"t{i}", priority=3, attempt=1
            ),
        )
    seen: list[str] = []
    cursor = None
    while True:
        page = w.reader.tasks(limit=3, cursor=cursor)
        seen += [r.task_id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"t{i}" for i in range(7)]
    assert [r.task_id for r in w.reader.tasks(client_id="c0").items] == ["t0", "t3", "t6"]
    assert [r.task_id for r in w.reader.tasks(client_id="c0", operation="tag_add").items] == ["t3"]
    assert [r.task_id for r in w.reader.tasks(status="queued", operation="tag_add").items] == [
        "t1",
        "t3",
        "t5",
    ]
    first = w.reader.tasks(client_id="c1", status="queued", limit=1)
    assert [r.task_id for r in first.items] == ["t1"] and first.next_cursor is not None
    second = w.reader.tasks(client_id="c1", status="queued", limit=1, cursor=first.next_cursor)
    assert [r.task_id for r in second.items] == ["t4"] and second.next_cursor is None


def test_undecodable_skips_move_offsets() -> None:
    from projections.fold import skip

    w = World()
    w.source.feed(accept(0, "t1"), partition=2, offset=5)
    skip(w.source.tables, 2, 6)
    w.source.flush()
    assert w.reader.projection().as_of_offsets == {"2": 7}


def test_forgotten_tasks_keep_their_rows_and_a_reused_id_starts_a_new_lifecycle() -> None:
    w = World()
    completed = ev.TaskCompleted(
        **t(30, task_id="t1"), operation="contact_update", attempt=1, output={"n": 1}
    )
    w.feed(register(0), accept(10, "t1"), queued(10, "t1"), assigned(20, "t1"), completed)
    w.feed(ev.TasksForgotten(**t(5_000), finished_by_ms=30, task_ids=["t1"]))
    row = w.task("t1")  # the read model is the history: the processor's retention is not
    assert row.state == "completed" and row.output == {"n": 1} and row.finished_at_ms == 30
    assert w.source.tables.counters.events_by_type["tasks.forgotten"] == 1

    w.feed(accept(6_000, "t1", priority=2), queued(6_000, "t1", priority=2))
    row = w.task("t1")
    assert row.state == "queued" and row.priority == 2
    assert row.output is None and row.finished_at_ms is None and row.session_id is None
    assert [h.type for h in row.history] == [
        "task.accepted",
        "task.queued",
        "task.assigned",
        "task.completed",
        "task.accepted",
        "task.queued",
    ]
    status = w.reader.status()
    assert status.tasks_by_state["completed"] == 0 and status.tasks_by_state["queued"] == 1
    assert status.queue_length == 1


def test_a_starved_client_shows_with_its_breaches_until_it_is_served() -> None:
    w = World()
    w.feed(accept(0, "t1", priority=1), queued(0, "t1", priority=1))
    w.feed(
        ev.ClientStarved(
            client_id=C,
            occurred_at_ms=5_000,
            reason="no_session",
            waiting_tasks=1,
            oldest_queued_at_ms=0,
        ),
        ev.TaskSlaBreached(
            client_id=C, task_id="t1", occurred_at_ms=61_000, priority=1, queued_at_ms=0, sla_ms=500
        ),
    )
    status = w.reader.status()
    [starved] = status.starved_clients
    assert (starved.client_id, starved.reason, starved.waiting_tasks, starved.sla_breaches) == (
        C,
        "no_session",
        1,
        1,
    )
    assert status.sla_breaches == 1 and status.wait_times["critical"].sla_ms == 500
    assert status.sla_breaches_by_client == {C: 1}
    assert status.queue_length == 1
    w.feed(ev.ClientServed(client_id=C, occurred_at_ms=70_000, starved_at_ms=5_000))
    assert w.reader.status().starved_clients == []


def test_queue_length_counts_batched_tasks() -> None:
    w = World()
    w.feed(accept(0, "b1"), queued(0, "b1"))
    w.feed(
        ev.TaskBatched(
            client_id=C, task_id="b1", occurred_at_ms=1, batch_id="B", operation="contact_update"
        )
    )
    w.feed(accept(2, "q1"), queued(2, "q1"))
    assert w.reader.status().queue_length == 2
