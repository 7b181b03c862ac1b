"""What the command gateway's routes (``api.gateway``) act on -- the reader, the command
sender, the catalog, the payload limit, the dead-letter source -- and the checks they share:
who may act for a client, whether a payload fits and is valid, whether a repeat of a task id
is the same task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from projections.reader import ProjectionReader
from projections.rows import TaskRow
from schemas.catalog import PRIORITY_NAMES, Catalog, load_catalog
from schemas.commands import Command, RegisterSession, ReleaseSession, SubmitTask
from schemas.credentials import comparable
from schemas.errors import TaskstreamError
from schemas.task_configs import validate_task_config
from streams.domain.spec import canonical_json
from streams.errors import InvalidCommandError, PayloadTooLargeError
from streams.redrive import CommandSender, DeadLetterEntry, read_dead_letters, task_link
from streams.settings import Settings

from .access import Principal
from .gateway_models import SessionAccepted, TaskAccepted, problem

__all__ = [
    "CommandSender",
    "DeadLetterSource",
    "Gateway",
    "SentBy",
    "as_sent_by",
    "gateway_for",
    "priority_level",
    "spec_difference",
]

_PRIORITY_BY_NAME = {name: level for level, name in PRIORITY_NAMES.items()}

A = TypeVar("A", bound=BaseModel)
C = TypeVar("C", bound=Command)

DeadLetterSource = Callable[[], Awaitable[list[DeadLetterEntry]]]
"""Reads the dead letters a redrive chooses from (``task.dlq`` to its current end)."""


class Gateway:
    """What the command routes act on, and the checks they share."""

    def __init__(
        self,
        reader: ProjectionReader,
        commands: CommandSender,
        *,
        catalog: Catalog,
        max_payload_bytes: int,
        dead_letters: DeadLetterSource | None = None,
        session_stale_ms: int = int(Settings.model_fields["session_stale_ms"].default),
    ) -> None:
        self.reader = reader
        self.session_stale_ms = session_stale_ms
        self.commands = commands
        self.catalog = catalog
        self.max_payload_bytes = max_payload_bytes
        self.dead_letters = dead_letters

    async def send(self, command: Command, answer: A, caller: Principal) -> A | JSONResponse:
        """Produce ``command`` as sent by ``caller`` (its actor is the token's name) and give
        ``answer``; an error answer if it could not be sent."""
        try:
            await self.commands.send(as_sent_by(command, caller))
        except PayloadTooLargeError as exc:
            return problem(413, str(exc))
        except InvalidCommandError as exc:
            return problem(422, str(exc))
        except TaskstreamError as exc:
            return problem(503, f"the command was not sent: {exc}")
        return answer

    async def send_session(
        self, command: RegisterSession | ReleaseSession, caller: Principal
    ) -> Any:
        session_id = command.session_id
        answer = SessionAccepted(
            session_id=session_id, link=_session_link(session_id), command=type(command).__name__
        )
        return await self.send(command, answer, caller)

    async def task_command(
        self,
        task_id: str,
        verb: str,
        conflict: Callable[[TaskRow], str | None],
        build: Callable[[TaskRow], Command],
        caller: Principal,
    ) -> Any:
        """A command about a task the read side knows; its client id comes from the row."""
        row = self.reader.task(task_id)
        if row is None or not caller.sees(row.client_id):
            return self.unknown("task", task_id)
        why = conflict(row)
        if why is not None:
            return problem(409, f"cannot {verb} task {task_id!r}: {why}")
        command = build(row)
        answer = TaskAccepted(
            task_id=task_id, link=task_link(task_id), command=type(command).__name__
        )
        return await self.send(command, answer, caller)

    @staticmethod
    def not_theirs(caller: Principal, client_id: str) -> JSONResponse | None:
        """403 when ``caller`` may not act for ``client_id``."""
        if caller.sees(client_id):
            return None
        return problem(403, f"client_id: token {caller.name!r} may not act for {client_id!r}")

    def unknown(self, kind: str, key: str) -> JSONResponse:
        lag = self.reader.projection().lag_events
        behind = f" (the read side is {lag} events behind the log)" if lag else ""
        return problem(404, f"no {kind} with id {key!r}{behind}")

    def unknown_operation(self, operation: str) -> JSONResponse:
        known = ", ".join(sorted(self.catalog))
        return problem(422, f"operation: unknown operation {operation!r} (known: {known})")

    def payload_problem(
        self, operation: str, payload: dict[str, Any], where: str = ""
    ) -> JSONResponse | None:
        """413 for a payload over the limit, 422 naming the fields of an invalid one; the
        field names start with ``where`` (``items[3].`` in a batch job)."""
        size = len(canonical_json(payload).encode())
        limit = self.max_payload_bytes
        if size > limit:
            return problem(
                413,
                f"{where}payload: {size:,} bytes, over the limit of {limit:,} "
                "(TASKSTREAM_MAX_PAYLOAD_BYTES); store large inputs elsewhere and pass a reference",
            )
        found = validate_task_config(operation, payload)
        if found:
            return problem(422, "; ".join(where + _payload_field(p) for p in found))
        return None


def gateway_for(
    reader: ProjectionReader, commands: CommandSender, settings: Settings | None = None
) -> Gateway:
    """The gateway with the catalog, payload limit and dead-letter topic of ``settings``
    (defaults without settings; then ``/dlq/redrive`` answers 503)."""
    if settings is None:
        default = Settings.model_fields["max_payload_bytes"].default
        return Gateway(reader, commands, catalog=load_catalog(), max_payload_bytes=int(default))
    dead_letters: DeadLetterSource | None = None
    if settings.kafka_bootstrap_servers:

        async def dead_letters() -> list[DeadLetterEntry]:
            return await read_dead_letters(settings)

    return Gateway(
        reader,
        commands,
        catalog=load_catalog(settings.operations_file),
        max_payload_bytes=settings.max_payload_bytes,
        dead_letters=dead_letters,
        session_stale_ms=settings.session_stale_ms,
    )


def as_sent_by(command: C, caller: Principal) -> C:
    """``command`` with the caller's name as its actor (commands that have one)."""
    if "actor" not in type(command).model_fields:
        return command
    return command.model_copy(update={"actor": caller.name})


class SentBy:
    """A sender that names ``caller`` as the actor of every command (the redrive's)."""

    def __init__(self, commands: CommandSender, caller: Principal) -> None:
        self._commands = commands
        self._caller = caller

    async def send(self, command: Command) -> Any:
        return await self._commands.send(as_sent_by(command, self._caller))


def priority_level(priority: int | str | None) -> int | None:
    """1..5 from a level or a priority name (``critical`` .. ``background``)."""
    return _PRIORITY_BY_NAME[priority] if isinstance(priority, str) else priority


def _session_link(session_id: str) -> str:
    return "/sessions/" + task_link(session_id)[len("/tasks/") :]


def _payload_field(problem: str) -> str:
    """``apiEndpoint: required`` -> ``payload.apiEndpoint: required``."""
    return problem if problem.startswith("payload") else f"payload.{problem}"


def spec_difference(row: TaskRow, command: SubmitTask) -> str | None:
    """The first field in which ``command`` differs from the accepted task, or None."""
    checks: list[tuple[str, bool]] = [
        ("client_id", row.client_id == command.client_id),
        ("operation", row.operation == command.operation),
        # Credentials do not take part: each submit seals them afresh (schemas.credentials).
        ("payload", comparable(row.payload) == comparable(command.payload)),
        (
            "priority",
            row.priority == command.priority and row.explicit_priority
            if command.priority is not None
            else not row.explicit_priority,
        ),
        ("max_retries", command.max_retries is None or row.max_retries == command.max_retries),
        ("timeout_ms", command.timeout_ms is None or row.timeout_ms == command.timeout_ms),
        ("scheduled_for_ms", row.scheduled_for_ms == command.scheduled_for_ms),
        ("requires_review", row.requires_review == command.requires_review),
        ("depends_on", row.depends_on == command.depends_on),
        ("capabilities", row.capabilities == command.capabilities),
    ]
    for name, same in checks:
        if not same:
            return name
    return None
