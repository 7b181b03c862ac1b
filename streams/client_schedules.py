"""The client SDK's schedule and template commands (``TaskstreamClient`` inherits them)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from schemas.commands import Command, CreateSchedule, DefineTemplate, DeleteSchedule, DeleteTemplate
from schemas.recurrence import problem as recurrence_problem
from streams.errors import InvalidCommandError


def _build(model: type[Any], **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidCommandError(f"invalid {model.__name__}: {problems}") from None


class ScheduleCommands:
    """Recurring schedules and named task templates, sent with the client's ``send``."""

    async def send(self, command: Command) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    async def create_schedule(
        self,
        client_id: str,
        task: Mapping[str, Any],
        *,
        cron: str | None = None,
        interval_ms: int | None = None,
        timezone: str = "UTC",
        start_at_ms: int | None = None,
        end_at_ms: int | None = None,
        missed: str = "run",
        template: str | None = None,
        schedule_id: str | None = None,
    ) -> str:
        """Create a recurring schedule; returns its id (a new uuid4 unless given).

        ``task`` holds the SubmitTask fields of every occurrence's task (``operation``,
        ``payload``, ``priority`` ...); each occurrence is submitted as the task
        ``<schedule_id>@<occurrence epoch ms>``. Exactly one of ``cron`` (five fields, read in
        ``timezone``) and ``interval_ms``. ``missed``: ``run`` or ``skip`` the occurrences
        that fell due while no processor ran. ``template`` names a ``define_template``.
        """
        why = recurrence_problem(cron, interval_ms, timezone, start_at_ms, end_at_ms)
        if why is not None:
            raise InvalidCommandError(f"invalid CreateSchedule: {why}")
        command = _build(
            CreateSchedule,
            client_id=client_id,
            schedule_id=schedule_id if schedule_id is not None else str(uuid.uuid4()),
            cron=cron,
            interval_ms=interval_ms,
            timezone=timezone,
            start_at_ms=start_at_ms,
            end_at_ms=end_at_ms,
            missed=missed,
            task=dict(task),
            template=template,
        )
        await self.send(command)
        return str(command.schedule_id)

    async def delete_schedule(self, client_id: str, schedule_id: str) -> Any:
        return await self.send(_build(DeleteSchedule, client_id=client_id, schedule_id=schedule_id))

    async def define_template(self, client_id: str, name: str, task: Mapping[str, Any]) -> Any:
        """Define (or replace) the client's task template ``name``: SubmitTask fields that
        schedules naming it take as their task's defaults."""
        return await self.send(
            _build(DefineTemplate, client_id=client_id, name=name, task=dict(task))
        )

    async def delete_template(self, client_id: str, name: str) -> Any:
        return await self.send(_build(DeleteTemplate, client_id=client_id, name=name))
