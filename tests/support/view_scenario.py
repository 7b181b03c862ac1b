"""A view scenario: a stack of events that exercises every route of the HTTP view, shared by
the integration test, the gateway fuzzing and the browser test."""

from __future__ import annotations

from itertools import count
from typing import Any

from schemas import events as ev
from schemas.events import AttemptRecord, Event


class _Log:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.clock = count(1_700_000_000_000, 250)

    def add(self, cls: type[Event], client: str, **fields: Any) -> None:
        self.events.append(cls(client_id=client, occurred_at_ms=next(self.clock), **fields))

    def accept(self, client: str, task_id: str, op: str, priority: int, **extra: Any) -> None:
        self.add(
            ev.TaskAccepted,
            client,
            task_id=task_id,
            operation=op,
            priority=priority,
            max_retries=3,
            timeout_ms=30_000,
            payload={"n": task_id},
            **extra,
        )

    def queue(
        self, client: str, task_id: str, priority: int, attempt: int = 1, reason: str = "submitted"
    ) -> None:
        self.add(
            ev.TaskQueued,
            client,
            task_id=task_id,
            priority=priority,
            attempt=attempt,
            reason=reason,
        )

    def assign(
        self,
        client: str,
        task_id: str,
        op: str,
        session: str,
        priority: int,
        attempt: int = 1,
        batch: str | None = None,
    ) -> None:
        self.add(
            ev.TaskAssigned,
            client,
            task_id=task_id,
            operation=op,
            session_id=session,
            batch_id=batch,
            attempt=attempt,
            fencing_token=attempt * 10,
            deadline_at_ms=0,
            priority=priority,
        )

    def fail_attempt(
        self, client: str, task_id: str, session: str, attempt: int, error: str
    ) -> None:
        self.add(
            ev.TaskAttemptFailed,
            client,
            task_id=task_id,
            attempt=attempt,
            session_id=session,
            error=error,
        )
        self.add(
            ev.TaskRetryScheduled,
            client,
            task_id=task_id,
            attempt=attempt + 1,
            delay_ms=1000 * attempt,
            due_at_ms=0,
            tier_ms=1000,
            error=error,
        )

    def register(self, client: str, session: str, max_concurrent: int = 3) -> None:
        self.add(
            ev.SessionRegistered,
            client,
            session_id=session,
            agent_id=f"agent-{session}",
            max_concurrent=max_concurrent,
        )


def scenario() -> list[Event]:
    log = _Log()
    A, B, G, D = "c-alpha", "c-beta", "c-gamma", "c-delta"

    log.register(A, "sa1")
    log.register(A, "sa2", max_concurrent=1)
    log.accept(A, "a-done", "contact_create", 2)
    log.queue(A, "a-done", 2)
    log.assign(A, "a-done", "contact_create", "sa1", 2)
    log.add(ev.TaskStartedEvent, A, task_id="a-done", session_id="sa1", fencing_token=10)
    log.add(
        ev.TaskCompleted,
        A,
        task_id="a-done",
        operation="contact_create",
        attempt=1,
        session_id="sa1",
        output={"contact_id": "ct-1"},
        execution_time_ms=3500,
    )
    log.accept(A, "a-retry", "pipeline_update", 2)
    log.queue(A, "a-retry", 2)
    log.assign(A, "a-retry", "pipeline_update", "sa1", 2)
    log.fail_attempt(A, "a-retry", "sa1", 1, "Network timeout")
    log.accept(A, "a-dead", "note_create", 3)
    log.queue(A, "a-dead", 3)
    log.assign(A, "a-dead", "note_create", "sa1", 3)
    log.fail_attempt(A, "a-dead", "sa1", 1, "first")
    log.add(ev.TaskRetrying, A, task_id="a-dead", attempt=2)
    log.queue(A, "a-dead", 2, attempt=2, reason="retry")
    log.assign(A, "a-dead", "note_create", "sa1", 2, attempt=2)
    log.add(ev.TaskAttemptFailed, A, task_id="a-dead", attempt=2, session_id="sa1", error="second")
    attempts = [
        AttemptRecord(attempt=1, session_id="sa1", error="first", at_ms=1),
        AttemptRecord(attempt=2, session_id="sa1", error="second", at_ms=2),
    ]
    log.add(
        ev.TaskFailed,
        A,
        task_id="a-dead",
        operation="note_create",
        attempt=2,
        error="second",
        reason="retries_exhausted",
        attempts=attempts,
    )
    log.add(
        ev.TaskDeadLettered,
        A,
        task_id="a-dead",
        operation="note_create",
        reason="retries_exhausted",
        attempts=attempts,
    )
    log.accept(A, "a-running", "calendar_booking", 1)
    log.queue(A, "a-running", 1)
    log.assign(A, "a-running", "calendar_booking", "sa2", 1)
    log.add(ev.TaskStartedEvent, A, task_id="a-running", session_id="sa2", fencing_token=10)
    log.add(
        ev.TaskProgressed, A, task_id="a-running", fencing_token=10, progress=0.5, message="half"
    )
    log.accept(A, "a-assigned", "contact_update", 3)
    log.queue(A, "a-assigned", 3)
    log.assign(A, "a-assigned", "contact_update", "sa1", 3)
    log.add(
        ev.SessionHealthChanged,
        A,
        session_id="sa2",
        score=0.5,
        status="degraded",
        previous_status="healthy",
    )

    log.register(B, "sb1", max_concurrent=10)
    for task_id in ("b-1", "b-2", "b-3"):
        log.accept(B, task_id, "tag_add", 4, batchable=True)
        log.add(ev.TaskBatched, B, task_id=task_id, batch_id="B-1", operation="tag_add")
    log.add(
        ev.BatchProcessed,
        B,
        batch_id="B-1",
        operation="tag_add",
        task_ids=["b-1", "b-2", "b-3"],
        session_id="sb1",
        fencing_token=10,
        closed_by="size",
    )
    for task_id in ("b-1", "b-2", "b-3"):
        log.assign(B, task_id, "tag_add", "sb1", 4, batch="B-1")
    for task_id in ("b-1", "b-2"):
        log.add(
            ev.TaskCompleted,
            B,
            task_id=task_id,
            operation="tag_add",
            attempt=1,
            session_id="sb1",
            batch_id="B-1",
            output={"tagged": True},
        )
    log.fail_attempt(B, "b-3", "sb1", 1, "tag missing")
    log.add(
        ev.BatchResultConsolidated,
        B,
        batch_id="B-1",
        operation="tag_add",
        session_id="sb1",
        success_count=2,
        failure_count=1,
        consolidated_output={"tagged": ["b-1", "b-2"]},
    )
    log.accept(B, "b-open", "tag_remove", 4, batchable=True)
    log.add(ev.TaskBatched, B, task_id="b-open", batch_id="B-2", operation="tag_remove")
    log.accept(B, "b-queued", "workflow_trigger", 1)
    log.queue(B, "b-queued", 1)

    log.accept(G, "g-review", "contact_delete", 5, requires_review=True)
    log.add(ev.TaskPendingReview, G, task_id="g-review")
    log.accept(G, "g-sched", "report_generate", 5, scheduled_for_ms=1_800_000_000_000)
    log.add(ev.TaskScheduled, G, task_id="g-sched", due_at_ms=1_800_000_000_000)
    log.accept(G, "g-wait", "data_export", 5, depends_on=["g-sched"])
    log.add(ev.TaskWaiting, G, task_id="g-wait", waiting_on=["g-sched"])
    log.accept(G, "g-cancel", "campaign_add", 4)
    log.queue(G, "g-cancel", 4)
    log.add(ev.TaskCancelled, G, task_id="g-cancel", reason="user asked")
    log.accept(G, "g-rej", "bulk_operation", 5, requires_review=True)
    log.add(ev.TaskPendingReview, G, task_id="g-rej")
    log.add(
        ev.TaskRejected,
        G,
        task_id="g-rej",
        reason="too risky",
        command="RejectTask",
        reviewer="rita",
    )
    log.add(
        ev.TaskRejected, G, task_id="g-bad", reason="unknown operation 'nope'", command="SubmitTask"
    )
    log.accept(G, "g-approved", "contact_delete", 5, requires_review=True)
    log.add(ev.TaskPendingReview, G, task_id="g-approved")
    log.add(ev.TaskApproved, G, task_id="g-approved", reviewer="rita")
    log.queue(G, "g-approved", 5)
    log.add(
        ev.TaskRejected, G, task_id="g-cancel", reason="already cancelled", command="CancelTask"
    )

    log.register(D, "sd1")
    log.register(D, "sd2")
    log.register(D, "sd-old")
    log.accept(D, "d-req", "opportunity_update", 3)
    log.queue(D, "d-req", 3)
    log.assign(D, "d-req", "opportunity_update", "sd2", 3)
    log.add(
        ev.SessionReleased,
        D,
        session_id="sd2",
        reason="browser closed",
        requeued_task_ids=["d-req"],
    )
    log.queue(D, "d-req", 2, attempt=1, reason="session_released")
    log.add(ev.SessionCleaned, D, session_id="sd-old", last_seen_ms=1_700_000_000_000)
    log.add(ev.SessionHeartbeatReceived, D, session_id="sd1")
    log.accept(D, "d-timeout", "integration_sync", 5, session_required=False)
    log.queue(D, "d-timeout", 5)
    log.assign(D, "d-timeout", "integration_sync", "sd1", 5)
    log.add(ev.TaskTimedOut, D, task_id="d-timeout", attempt=1, session_id="sd1", fencing_token=10)
    log.fail_attempt(D, "d-timeout", "sd1", 1, "timed out")
    log.add(ev.TaskRetrying, D, task_id="d-timeout", attempt=2)
    log.queue(D, "d-timeout", 2, attempt=2, reason="retry")
    log.assign(D, "d-timeout", "integration_sync", "sd1", 2, attempt=2)
    log.add(
        ev.TaskCompleted,
        D,
        task_id="d-timeout",
        operation="integration_sync",
        attempt=2,
        session_id="sd1",
        output={"synced": 3},
    )
    log.add(
        ev.ResultIgnored,
        D,
        task_id="d-timeout",
        fencing_token=10,
        current_fencing_token=20,
        reason="stale attempt",
    )
    log.add(
        ev.CommandRejected, D, command="ReleaseSession", reason="unknown session", session_id="zz"
    )
    return log.events


EXPECTED_STATES = {
    "a-done": "completed",
    "a-retry": "retry_scheduled",
    "a-dead": "failed",
    "a-running": "in_progress",
    "a-assigned": "assigned",
    "b-1": "completed",
    "b-2": "completed",
    "b-3": "retry_scheduled",
    "b-open": "batched",
    "b-queued": "queued",
    "g-review": "pending_review",
    "g-sched": "scheduled",
    "g-wait": "waiting",
    "g-cancel": "cancelled",
    "g-rej": "rejected",
    "g-bad": "rejected",
    "g-approved": "queued",
    "d-req": "queued",
    "d-timeout": "completed",
}
