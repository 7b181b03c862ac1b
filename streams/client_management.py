"""The client SDK's task management commands (``TaskstreamClient`` inherits them): edit,
archive, run now, answer a task waiting for input; for executors, ask for input or defer.

Submits go through the one door (``streams.domain.submission.build_submit``) with the catalog
of ``TASKSTREAM_OPERATIONS_FILE``: an invalid config, an unknown operation or bad steps fail
here with ``InvalidCommandError`` naming the field, a reminder starts at its reminderTime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from schemas.catalog import Catalog, load_catalog
from schemas.commands import (
    ArchiveTask,
    Command,
    DeferTask,
    ProvideInput,
    RequestInput,
    RunTask,
    SubmitTask,
    TaskAssignee,
    TaskAttachment,
    UpdateTask,
)
from streams.domain.attachments import attachment_problems
from streams.domain.submission import SubmitRefused, build_submit
from streams.errors import InvalidCommandError, PayloadTooLargeError
from streams.settings import Settings

_UNSET: Any = object()


def _invalid(model: str, exc: ValidationError) -> InvalidCommandError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
    return InvalidCommandError(f"invalid {model}: {problems}")


def _attachments(given: Iterable[TaskAttachment | Mapping[str, Any]]) -> list[TaskAttachment]:
    try:
        found = [a if isinstance(a, TaskAttachment) else TaskAttachment(**a) for a in given]
    except ValidationError as exc:
        raise _invalid("UpdateTask.attachments", exc) from None
    except TypeError as exc:
        raise InvalidCommandError(f"invalid UpdateTask: attachments: {exc}") from None
    problems = attachment_problems(found)
    if problems:
        raise InvalidCommandError(f"invalid UpdateTask: {'; '.join(problems)}")
    return found


class TaskManagementCommands:
    """Sent with the client's ``send``; ``settings`` is the client's."""

    settings: Settings
    _door: Catalog | None = None

    async def send(self, command: Command) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    def build_submit(self, **fields: Any) -> SubmitTask:
        """The checked ``SubmitTask`` of ``fields`` (see the module docstring)."""
        if self._door is None:
            self._door = load_catalog(self.settings.operations_file)
        try:
            return build_submit(self._door, self.settings.max_payload_bytes, **fields)
        except SubmitRefused as exc:
            error = PayloadTooLargeError if exc.too_large else InvalidCommandError
            raise error(f"invalid SubmitTask: {exc}") from None
        except ValidationError as exc:
            raise _invalid("SubmitTask", exc) from None

    async def update_task(
        self,
        client_id: str,
        task_id: str,
        *,
        priority: int | None = _UNSET,
        payload: Mapping[str, Any] = _UNSET,
        scheduled_for_ms: int | None = _UNSET,
        due_at_ms: int | None = _UNSET,
        tags: Iterable[str] = _UNSET,
        assigned_to: tuple[str, str] | None = _UNSET,
        title: str | None = _UNSET,
        description: str | None = _UNSET,
        attachments: Iterable[TaskAttachment | Mapping[str, Any]] | None = _UNSET,
    ) -> Any:
        """Edit a task that has not started: only the arguments given change (``None``
        clears); ``assigned_to`` is ``("agent" | "session", id)``; ``attachments`` is the
        whole new list (``TaskAttachment`` or mappings with ``url``, ``name``, ``size_bytes``,
        ``content_type``), checked here like a submit's."""
        given: dict[str, Any] = {
            "priority": priority,
            "payload": payload,
            "scheduled_for_ms": scheduled_for_ms,
            "due_at_ms": due_at_ms,
            "tags": tags,
            "assigned_to": assigned_to,
            "title": title,
            "description": description,
            "attachments": attachments,
        }
        fields = {k: v for k, v in given.items() if v is not _UNSET}
        if not fields:
            raise InvalidCommandError("invalid UpdateTask: name at least one field to change")
        values: dict[str, Any] = dict(fields)
        if "payload" in values:
            values["payload"] = dict(values["payload"] or {})
        if "tags" in values:
            values["tags"] = list(values["tags"] or [])
        if "attachments" in values:
            values["attachments"] = _attachments(values["attachments"] or [])
        if values.get("assigned_to") is not None:
            kind, who = values["assigned_to"]
            values["assigned_to"] = TaskAssignee(kind=kind, id=who)
        try:
            command = UpdateTask(
                client_id=client_id, task_id=task_id, changed=list(fields), **values
            )
        except ValidationError as exc:
            raise _invalid("UpdateTask", exc) from None
        return await self.send(command)

    async def archive(self, client_id: str, task_id: str, reason: str | None = None) -> Any:
        """Archive: unfinished work is cancelled; default listings hide it; history stays."""
        return await self.send(ArchiveTask(client_id=client_id, task_id=task_id, reason=reason))

    async def run_now(self, client_id: str, task_id: str) -> Any:
        """Run a scheduled, retry-waiting or deferred task now."""
        return await self.send(RunTask(client_id=client_id, task_id=task_id))

    async def provide_input(self, client_id: str, task_id: str, answer: Mapping[str, Any]) -> Any:
        """Answer a task waiting for input; it runs again with ``payload["input"]``."""
        try:
            command = ProvideInput(client_id=client_id, task_id=task_id, input=dict(answer))
        except ValidationError as exc:
            raise _invalid("ProvideInput", exc) from None
        return await self.send(command)

    async def request_input(
        self, client_id: str, task_id: str, fencing_token: int, prompt: str
    ) -> Any:
        """(Executors) End the attempt of ``fencing_token`` asking a person ``prompt``."""
        return await self.send(
            RequestInput(
                client_id=client_id, task_id=task_id, fencing_token=fencing_token, prompt=prompt
            )
        )

    async def defer(
        self,
        client_id: str,
        task_id: str,
        fencing_token: int,
        until_ms: int,
        reason: str | None = None,
    ) -> Any:
        """(Executors) End the attempt of ``fencing_token``; the task runs again at ``until_ms``."""
        return await self.send(
            DeferTask(
                client_id=client_id,
                task_id=task_id,
                fencing_token=fencing_token,
                until_ms=until_ms,
                reason=reason,
            )
        )
