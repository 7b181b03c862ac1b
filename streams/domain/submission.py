"""The one door for a task submission: build a ``SubmitTask`` and say what is wrong with it.

Every submitter (the SDK, the CLI, the HTTP gateway, the demo, the dead-letter redrive) builds
its command with :func:`build_submit`, which resolves what a submit derives (a reminder's
``reminderTime`` becomes its start time) and raises :class:`SubmitRefused` naming the first
field at fault. The decider applies :func:`spec_problems` again to every ``SubmitTask`` it
reads, so a raw Kafka producer that skipped the door gets ``TaskRejected`` with the same
reason instead of a task that retries its way into the dead-letter queue.

Pure: ``schemas`` and the standard library only. Each problem starts with the field it is
about (``payload.apiEndpoint: required``, ``steps[1].failure_policy: must be ...``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.catalog import OperationSpec
from schemas.commands import SubmitTask, TaskAssignee, TaskStep
from schemas.credentials import is_credential_name, is_sealed
from schemas.errors import TaskstreamError
from schemas.fields import MAX_ID_LENGTH
from schemas.task_configs import reminder_time_ms, validate_task_config
from streams.domain.attachments import attachment_problems
from streams.domain.spec import canonical_json

__all__ = [
    "ASSIGNEE_KINDS",
    "FAILURE_POLICIES",
    "MAX_DESCRIPTION",
    "MAX_STEPS",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TITLE",
    "SubmitRefused",
    "build_submit",
    "config_problems",
    "payload_size",
    "payload_size_problem",
    "spec_problems",
    "start_time_ms",
    "step_problems",
]

MAX_TITLE = 512
MAX_DESCRIPTION = 10_000
MAX_TAGS = 50
MAX_TAG_LENGTH = 128
MAX_STEPS = 100
MAX_STEP_ID = 128
ASSIGNEE_KINDS = ("agent", "session")
FAILURE_POLICIES = ("fail_task", "skip_dependents", "continue")

# Ids travel in URLs, log lines and file names: control characters in them are refused.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A sealed value stands in for a credential the decider cannot read: check the rest.
_SEALED_URL = "https://sealed.invalid/"
_SEALED_TEXT = "***"


class SubmitRefused(TaskstreamError):
    """A submission that cannot be accepted; ``field`` names where (``payload.apiEndpoint``)."""

    def __init__(self, problems: list[str], *, too_large: bool = False) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        first = problems[0]
        self.field = first.split(":", 1)[0] if ":" in first else "command"
        self.too_large = too_large


def _shown(name: str) -> str:
    return name if len(name) <= 100 else name[:100] + "…"


def _readable(document: Any, key: str = "") -> Any:
    """``document`` with each sealed credential replaced by a value of the right kind, so the
    decider checks a sealed payload by the same rules as the plaintext the submitter saw."""
    if is_sealed(document):
        return _SEALED_TEXT if is_credential_name(key) else _SEALED_URL
    if isinstance(document, dict):
        return {k: _readable(v, str(k)) for k, v in document.items()}
    if isinstance(document, list):
        return [_readable(v, key) for v in document]
    return document


def config_problems(operation: str, config: Mapping[str, Any], where: str) -> list[str]:
    """``validate_task_config`` of a payload (or a step's config), each problem prefixed with
    where it sits (``payload.`` / ``steps[0].config.``)."""
    return [
        problem if problem.startswith(where.rstrip(".")) else where + problem
        for problem in validate_task_config(operation, _readable(dict(config)))
    ]


def start_time_ms(command: SubmitTask) -> int | None:
    """When the task may start: ``scheduled_for_ms``, else a reminder's ``reminderTime``."""
    if command.scheduled_for_ms is not None:
        return command.scheduled_for_ms
    if command.operation == "reminder":
        return reminder_time_ms(command.payload)
    return None


def payload_size(command: SubmitTask) -> int:
    """Bytes of the task's documents: payload, metadata and step configs (canonical JSON)."""
    size = 0
    for document in (command.payload, command.metadata, *(s.config for s in command.steps)):
        if document:
            size += len(canonical_json(document).encode())
    return size


def payload_size_problem(command: SubmitTask, max_payload_bytes: int) -> str | None:
    """The decider's reason for documents over ``max_payload_bytes``, if they are."""
    if payload_size(command) > max_payload_bytes:
        return f"payload larger than {max_payload_bytes} bytes (TASKSTREAM_MAX_PAYLOAD_BYTES)"
    return None


def _id_problem(field: str, value: str, limit: int) -> str | None:
    if not value:
        return f"{field}: must not be empty"
    if len(value) > limit:
        return f"{field}: longer than {limit} characters"
    if _CONTROL.search(value):
        return f"{field}: control characters (line breaks, NUL, ...) are not allowed"
    return None


def _assignee_problem(assignee: TaskAssignee | None) -> str | None:
    if assignee is None:
        return None
    if assignee.kind not in ASSIGNEE_KINDS:
        return f"assigned_to.kind: must be one of {', '.join(ASSIGNEE_KINDS)}, not {_shown(assignee.kind)!r}"
    return _id_problem("assigned_to.id", assignee.id, MAX_ID_LENGTH)


def _management_problems(c: SubmitTask) -> Iterable[str]:
    if c.title is not None and len(c.title) > MAX_TITLE:
        yield f"title: longer than {MAX_TITLE} characters"
    if c.description is not None and len(c.description) > MAX_DESCRIPTION:
        yield f"description: longer than {MAX_DESCRIPTION} characters"
    if len(c.tags) > MAX_TAGS:
        yield f"tags: more than {MAX_TAGS} tags"
    for index, tag in enumerate(c.tags):
        problem = _id_problem(f"tags[{index}]", tag, MAX_TAG_LENGTH)
        if problem is not None:
            yield problem
    if c.due_at_ms is not None and c.due_at_ms < 0:
        yield "due_at_ms: must be epoch milliseconds (>= 0)"
    if c.scheduled_for_ms is not None and c.scheduled_for_ms < 0:
        yield "scheduled_for_ms: must be epoch milliseconds (>= 0)"
    assignee = _assignee_problem(c.assigned_to)
    if assignee is not None:
        yield assignee
    yield from attachment_problems(c.attachments)


def step_problems(steps: list[TaskStep], catalog: Mapping[str, OperationSpec]) -> list[str]:
    """What is wrong with a task's steps: ids, operations, configs, the dependency graph."""
    problems: list[str] = []
    if len(steps) > MAX_STEPS:
        return [f"steps: more than {MAX_STEPS} steps"]
    ids: dict[str, int] = {}
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        problem = _id_problem(f"{where}.id", step.id, MAX_STEP_ID)
        if problem is not None:
            problems.append(problem)
        elif step.id in ids:
            problems.append(f"{where}.id: {step.id!r} is also steps[{ids[step.id]}].id")
        else:
            ids[step.id] = index
        if step.operation not in catalog:
            problems.append(f"{where}.operation: unknown operation {_shown(step.operation)!r}")
        else:
            problems.extend(config_problems(step.operation, step.config, f"{where}.config."))
        if step.failure_policy not in FAILURE_POLICIES:
            problems.append(
                f"{where}.failure_policy: must be one of {', '.join(FAILURE_POLICIES)}, "
                f"not {_shown(step.failure_policy)!r}"
            )
    for index, step in enumerate(steps):
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(f"steps[{index}].depends_on: a step cannot depend on itself")
            elif dep not in ids:
                problems.append(f"steps[{index}].depends_on: no step {_shown(dep)!r}")
    if not problems:
        cycle = _step_cycle(steps)
        if cycle is not None:
            problems.append(f"steps: dependency cycle through {cycle!r}")
    return problems


def _step_cycle(steps: list[TaskStep]) -> str | None:
    """A step on a dependency cycle, if there is one (Kahn's algorithm)."""
    needs = {s.id: set(s.depends_on) for s in steps}
    ready = [s for s, deps in needs.items() if not deps]
    done: set[str] = set()
    while ready:
        current = ready.pop()
        done.add(current)
        for other, deps in needs.items():
            if current in deps:
                deps.discard(current)
                if not deps and other not in done:
                    ready.append(other)
    left = [s.id for s in steps if s.id not in done]
    return left[0] if left else None


def spec_problems(c: SubmitTask, catalog: Mapping[str, OperationSpec]) -> list[str]:
    """Every problem a submit shows on its own (no other task needed), first the operation.

    The decider rejects with the first; the submitters raise it. Sizes are checked apart
    (:func:`payload_size_problem`): the decider answers them after the duplicate check.
    """
    if c.operation not in catalog:
        return [f"unknown operation {_shown(c.operation)!r}"]
    problems: list[str] = []
    if c.priority is not None and not 1 <= c.priority <= 5:
        problems.append(f"invalid priority {c.priority}: must be 1 (critical) to 5 (background)")
    if c.max_retries is not None and c.max_retries < 0:
        problems.append(f"invalid max_retries {c.max_retries}: must be >= 0")
    if c.timeout_ms is not None and c.timeout_ms < 1:
        problems.append(f"invalid timeout_ms {c.timeout_ms}: must be >= 1")
    if any(not cap for cap in c.capabilities):
        problems.append("invalid capabilities: empty capability name")
    if _CONTROL.search(c.task_id) or _CONTROL.search(c.client_id):
        problems.append("invalid task_id or client_id: control characters (line breaks, NUL, ...)")
    if any(len(name) > MAX_ID_LENGTH for name in (*c.capabilities, *c.depends_on)):
        problems.append(
            f"invalid capabilities or depends_on: a name longer than {MAX_ID_LENGTH} characters"
        )
    if c.task_id in c.depends_on:
        problems.append("a task cannot depend on itself")
    problems.extend(config_problems(c.operation, c.payload, "payload."))
    problems.extend(_management_problems(c))
    problems.extend(step_problems(c.steps, catalog))
    return list(dict.fromkeys(problems))


def build_submit(
    catalog: Mapping[str, OperationSpec], max_payload_bytes: int, **fields: Any
) -> SubmitTask:
    """The ``SubmitTask`` of ``fields`` with what a submit derives resolved: duplicates
    dropped from ``depends_on``, ``capabilities`` and ``tags``, a reminder's start time.

    Raises ``SubmitRefused`` for the first problem (``too_large`` for the size), and lets a
    pydantic ``ValidationError`` through for fields of the wrong type.
    """
    command = SubmitTask(**fields)
    updates: dict[str, Any] = {
        "depends_on": list(dict.fromkeys(command.depends_on)),
        "capabilities": list(dict.fromkeys(command.capabilities)),
        "tags": list(dict.fromkeys(command.tags)),
    }
    start = start_time_ms(command)
    if start is not None:
        updates["scheduled_for_ms"] = start
    command = command.model_copy(update=updates)
    size = payload_size(command)
    if size > max_payload_bytes:
        raise SubmitRefused(
            [
                f"payload: {size:,} bytes, over the limit of {max_payload_bytes:,} "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES); store large inputs elsewhere and pass a reference"
            ],
            too_large=True,
        )
    problems = spec_problems(command, catalog)
    if problems:
        if problems[0].startswith("unknown operation"):
            problems[0] = "operation: " + problems[0]
        raise SubmitRefused(problems)
    return command
