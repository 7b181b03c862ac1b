"""Fold a ``TaskStarted`` into the ``ReportResult`` that follows it in one send.

The executor sends its outbox in rounds: what queued while the last round's acks were awaited
goes out together. A fast handler's start and result are often in the same round; sending the
result alone with ``started`` set is one record instead of two for the executor, the broker and
the processor, and the processor records the same ``task.started`` before the outcome.

Only what cannot change the processor's decisions is folded: the start and the result must be
of the same attempt (client, task, fencing token), with no other report of that task between
them (a ``ReportProgress`` keeps its start in front of it), and nothing but reports and
heartbeats between them. Everything else keeps its place and its order.

A start is often sent alone only because the send loop was idle when it was queued, a moment
before its result. ``StartHold`` keeps a start back for up to ``hold_s`` (the executor's 20 ms)
so that its result can still fold it in; a start held longer, or one that something about the
same task or a registration follows, goes out in its place. A start changes no decision of the
processor (``in_progress`` is what the view shows), so holding it delays nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from schemas.commands import (
    RegisterPool,
    ReportProgress,
    ReportResult,
    SessionHeartbeat,
    TaskStarted,
)

__all__ = ["StartHold", "fold_starts"]

_Attempt = tuple[str, str, int]  # (client_id, task_id, fencing_token)

# Commands that say nothing about any task's attempt: a start may be folded across them.
_NEUTRAL = (RegisterPool, SessionHeartbeat)


def fold_starts(commands: Sequence[BaseModel]) -> list[BaseModel]:
    """``commands`` in order, each ``TaskStarted`` whose result follows it folded into that
    result (``started``, on the result or on the batch's item)."""
    pending: dict[_Attempt, int] = {}  # an unfolded start -> its index in ``out``
    out: list[BaseModel | None] = list(commands)
    for index, command in enumerate(commands):
        if isinstance(command, TaskStarted):
            pending[_attempt(command)] = index
        elif isinstance(command, ReportProgress):
            pending.pop(_attempt(command), None)
        elif isinstance(command, ReportResult):
            out[index] = _fold(command, pending, out)
        elif not isinstance(command, _NEUTRAL):
            pending.clear()  # a registration, a release…: nothing folds across it
    return [c for c in out if c is not None]


def _fold(
    result: ReportResult, pending: dict[_Attempt, int], out: list[BaseModel | None]
) -> ReportResult:
    client, token = result.client_id, result.fencing_token
    if result.batch_id is None:
        if result.task_id is None or result.started:
            return result
        index = pending.pop((client, result.task_id, token), None)
        if index is None:
            return result
        out[index] = None
        return result.model_copy(update={"started": True})
    if not result.items:
        return result  # a batch-level report: its items' starts stay as they are
    items = list(result.items)
    changed = False
    for i, item in enumerate(items):
        if item.started:
            continue
        index = pending.pop((client, item.task_id, token), None)
        if index is not None:
            out[index] = None
            items[i] = item.model_copy(update={"started": True})
            changed = True
    return result.model_copy(update={"items": items}) if changed else result


class StartHold:
    """The send loop's rounds, with starts kept back for their results up to ``hold_s``."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._held: list[tuple[float, TaskStarted]] = []  # (queued at, start), in queue order

    def wait_s(self, now: float) -> float | None:
        """Seconds until the oldest held start is due (None: none is held)."""
        if not self._held:
            return None
        return max(0.0, self._held[0][0] + self.hold_s - now)

    def round(self, queued: Sequence[BaseModel], now: float) -> tuple[list[BaseModel], int]:
        """What to send now (the held starts and ``queued``, folded), and how many of the
        queued records that settles: sent or folded, not held over."""
        held_before = len(self._held)
        since = {id(start): at for at, start in self._held}
        for command in queued:
            if type(command) is TaskStarted:
                since[id(command)] = now
        out = fold_starts([start for _, start in self._held] + list(queued))
        send: list[BaseModel] = []
        held: list[tuple[float, TaskStarted]] = []
        # Walk back to front: a start may wait only if nothing after it needs it in front.
        blocked: set[_Attempt] = set()
        barrier = False
        for command in reversed(out):
            if isinstance(command, TaskStarted):
                at = since.get(id(command), now)
                # (A millisecond's slack: the loop's timers may fire that much early.)
                young = at + self.hold_s > now + 0.001
                if young and not barrier and _attempt(command) not in blocked:
                    held.append((at, command))
                    continue
            elif isinstance(command, (ReportProgress, ReportResult)):
                attempts = _attempts(command)
                if attempts is None:
                    barrier = True  # a batch-level result: it does not name its items
                else:
                    blocked.update(attempts)
            elif not isinstance(command, _NEUTRAL):
                barrier = True
            send.append(command)
        send.reverse()
        held.reverse()
        self._held = held
        return send, held_before + len(queued) - len(held)


def _attempt(command: TaskStarted | ReportProgress) -> _Attempt:
    return (command.client_id, command.task_id, command.fencing_token)


def _attempts(command: ReportProgress | ReportResult) -> list[_Attempt] | None:
    """The attempts a report is about (None: a batch's items it does not name)."""
    if isinstance(command, ReportProgress):
        return [_attempt(command)]
    token = command.fencing_token
    if command.task_id is not None:
        return [(command.client_id, command.task_id, token)]
    if not command.items:
        return None
    return [(command.client_id, item.task_id, token) for item in command.items]
