"""Records the processor writes for others: work for executors and dead letters.

``task.completed`` and ``task.failed`` carry the ``TaskCompleted`` / ``TaskFailed`` events
themselves; delay tiers carry ``RetryDue`` commands.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import JsonObject


class AssignmentItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    payload: JsonObject = Field(default_factory=dict)


class Assignment(BaseModel):
    """Work for one session (``task.assignments``) or for the shared pool (``task.pool``).

    ``kind`` is ``task`` (one item), ``batch`` (several items, one result with per-item
    outcomes) or ``cancel`` (stop the named task; no items run).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    client_id: str
    session_id: str | None = None
    operation: str
    task_id: str | None = None
    batch_id: str | None = None
    attempt: int = 0
    fencing_token: int
    deadline_at_ms: int = 0
    timeout_ms: int = 0
    priority: int = 3
    items: list[AssignmentItem] = Field(default_factory=list)
    reason: str | None = None


class DeadLetter(BaseModel):
    """A permanently failed task or an input record that could not be used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    client_id: str | None = None
    task_id: str | None = None
    operation: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    raw: bytes | None = None
    attempts_json: str = "[]"
    submit: JsonObject = Field(default_factory=dict)
    occurred_at_ms: int = 0


RECORD_TYPES: tuple[type[BaseModel], ...] = (AssignmentItem, Assignment, DeadLetter)
