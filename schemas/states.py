"""The task states of the contract: what the processor's task records and the read model's
task rows say a task is doing. One vocabulary for both sides (``streams.domain`` adds one
state that only exists inside a decision)."""

from __future__ import annotations

from typing import Final, Literal, get_args

TaskState = Literal[
    "accepted",
    "pending_review",
    "scheduled",
    "waiting",
    "waiting_input",
    "deferred",
    "queued",
    "batched",
    "assigned",
    "in_progress",
    "running",
    "retry_scheduled",
    "completed",
    "failed",
    "cancelled",
    "rejected",
]
TASK_STATES: tuple[str, ...] = get_args(TaskState)
"""``accepted`` is transient: the processor follows ``task.accepted`` with the routing event
(queued, batched, scheduled, waiting or pending_review) from the same command.
``retry_scheduled``: an attempt failed and the task waits in a delay tier for its retry.
``running``: a multi-step task whose steps run as child tasks (it is never handed out itself)."""


class TaskStatus:
    """The states of ``TaskState`` by name, for code that compares against them."""

    ACCEPTED: Final = "accepted"
    PENDING_REVIEW: Final = "pending_review"
    SCHEDULED: Final = "scheduled"
    WAITING: Final = "waiting"
    WAITING_INPUT: Final = "waiting_input"  # an executor asked a person; ProvideInput resumes
    DEFERRED: Final = "deferred"  # an executor put it off to a time; re-queued then
    QUEUED: Final = "queued"
    BATCHED: Final = "batched"
    ASSIGNED: Final = "assigned"
    IN_PROGRESS: Final = "in_progress"
    RUNNING: Final = "running"  # a multi-step task whose steps run (``streams.domain.steps``)
    RETRY_SCHEDULED: Final = "retry_scheduled"
    COMPLETED: Final = "completed"
    FAILED: Final = "failed"
    CANCELLED: Final = "cancelled"
    REJECTED: Final = "rejected"


TERMINAL_STATES: Final = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.REJECTED}
)
"""A task in one of these states has ended; nothing moves it again."""
ACTIVE_STATES: Final = frozenset({TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS})
"""A task in one of these states is handed out: an attempt is running."""
