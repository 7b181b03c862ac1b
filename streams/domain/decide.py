"""``decide(command, state, now_ms, config) -> list[Event]``: what a command causes.

Pure: the state passed in is unchanged afterwards (see ``context``), ``now`` is an argument
(the command record's timestamp, never earlier than the state's clock), and ids come from
state counters, so deciding the same command on an equal state gives equal events.

Refusals are events, not exceptions: an invalid SubmitTask gives ``TaskRejected`` (command
``SubmitTask``, the task was never accepted); a refused command about a task gives
``TaskRejected`` naming that command (the task itself is unaffected) -- except ``RejectTask``,
whose refusals are ``CommandRejected`` so that ``TaskRejected(command="RejectTask")`` always
means a reviewer rejected the task. Refused session commands give ``CommandRejected``.
Redelivered commands are harmless: duplicates give ``[]`` or ``ResultIgnored``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import commands as cmd
from schemas.events import Event
from streams.domain import (
    batch_jobs,
    management,
    pool,
    results,
    schedules,
    session_commands,
    steps,
    submit,
    task_commands,
)
from streams.domain.config import DomainConfig
from streams.domain.context import Decision, Observer
from streams.domain.errors import UnknownCommandError
from streams.domain.state import PartitionState


def decide(
    command: cmd.Command, state: PartitionState, now_ms: int, config: DomainConfig
) -> list[Event]:
    return _decided(command, state, now_ms, config, None, keep=False)


def decide_folded(
    command: cmd.Command,
    state: PartitionState,
    now_ms: int,
    config: DomainConfig,
    observe: Observer | None = None,
) -> list[Event]:
    """``decide``, with its events left folded into ``state``: afterwards ``state`` equals
    ``evolve`` of each returned event on the state before (the processor's live path, which
    would otherwise fold every event twice). ``observe(state, event)`` sees the state right
    after each event. On an exception the state is rolled back, unchanged."""
    return _decided(command, state, now_ms, config, observe, keep=True)


def _decided(
    command: cmd.Command,
    state: PartitionState,
    now_ms: int,
    config: DomainConfig,
    observe: Observer | None,
    *,
    keep: bool,
) -> list[Event]:
    handler = _handler(command)
    ctx = Decision(state, max(now_ms, state.meta.clock), config, observe)
    state.begin()
    try:
        handler(ctx, command)
        batch_jobs.settle(ctx)
        steps.settle(ctx)
    except BaseException:
        state.rollback()
        raise
    if keep:
        ctx.keep()
    else:
        state.rollback()
    return ctx.events


def _handler(command: cmd.Command) -> Callable[[Decision, Any], None]:
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise UnknownCommandError(f"no decision rule for {type(command).__name__}")
    return handler


# One rule per command type, by family: ``submit`` (SubmitTask, SubmitBatchJob),
# ``task_commands``, ``results`` and ``session_commands``; refusals in ``refusals``.
_HANDLERS: dict[type[cmd.Command], Callable[[Decision, Any], None]] = {
    cmd.SubmitTask: submit.submit,
    cmd.CancelTask: task_commands.cancel,
    cmd.ApproveTask: task_commands.approve,
    cmd.RejectTask: task_commands.reject,
    cmd.ExpediteTask: task_commands.expedite,
    cmd.RegisterSession: session_commands.register,
    cmd.ReleaseSession: session_commands.release,
    cmd.SessionHeartbeat: session_commands.heartbeat,
    cmd.CleanupSessions: session_commands.cleanup,
    cmd.TaskStarted: task_commands.started,
    cmd.ReportProgress: task_commands.progress,
    cmd.ReportResult: results.result,
    cmd.RetryDue: task_commands.retry_due,
    cmd.SubmitBatchJob: submit.submit_batch_job,
    cmd.CancelBatchJob: batch_jobs.cancel,
    **management.HANDLERS,
    cmd.CreateSchedule: schedules.create,
    cmd.DeleteSchedule: schedules.delete,
    cmd.DefineTemplate: schedules.define_template,
    cmd.DeleteTemplate: schedules.delete_template,
    cmd.RegisterPool: pool.register,
    cmd.ReleasePool: pool.release,
}
