"""The timer index of a partition state, and its schedule and template records.

``PartitionState`` inherits these; they live here to keep ``state`` a readable size. Timers
(``timers``, a heap of ``(due at, kind, id)``) are what a tick starts when due
(``streams.domain.timers``): a scheduled task's start or a schedule's next occurrence. Like
``retired`` the heap is not journaled and may hold stale entries: an entry counts while the
record it names still waits for exactly that time (``timer_valid``).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Final

from streams.domain.records import (
    ScheduleRecord,
    Status,
    TaskRecord,
    TemplateRecord,
    schedule_key,
    template_id,
    template_key,
)

TIMER_TASK: Final = 0  # a scheduled task's start
TIMER_SCHEDULE: Final = 1  # a recurring schedule's next occurrence


class TimerIndex:
    """Timers and the schedule/template records of ``PartitionState`` (a mixin)."""

    __slots__ = ()

    if TYPE_CHECKING:
        timers: list[tuple[int, int, str]]
        tasks: dict[str, TaskRecord]
        schedules: dict[str, ScheduleRecord]
        templates: dict[str, TemplateRecord]
        _log: list[tuple[Any, Any, Any]] | None
        _copied: set[tuple[str, str]]

        def put(self, container: dict[Any, Any], key: Any, value: Any) -> None: ...
        def delete(self, container: dict[Any, Any], key: Any) -> None: ...
        def _touch(self, key: bytes) -> None: ...

    def arm(self, due_at_ms: int, kind: int, record_id: str) -> None:
        """Something falls due at ``due_at_ms``: a tick starts it (``streams.domain.timers``).

        Not journaled, like ``retire``: inside a decision nothing is pushed (the events are
        folded again outside it); a stale entry is harmless.
        """
        if self._log is None:
            heapq.heappush(self.timers, (due_at_ms, kind, record_id))

    def timer_valid(self, entry: tuple[int, int, str]) -> bool:
        """Whether a ``timers`` entry still stands for something waiting for that time."""
        due_at_ms, kind, record_id = entry
        if kind == TIMER_TASK:
            task = self.tasks.get(record_id)
            return (
                task is not None and task.status == Status.SCHEDULED and task.due_at_ms == due_at_ms
            )
        schedule = self.schedules.get(record_id)
        return schedule is not None and schedule.next_at_ms == due_at_ms

    def prune_timers(self) -> None:
        """Drop stale entries from the top of ``timers`` (outside decisions only)."""
        heap = self.timers
        while self._log is None and heap and not self.timer_valid(heap[0]):
            heapq.heappop(heap)

    def due_timers(self, now_ms: int) -> list[tuple[int, int, str]]:
        """The valid ``timers`` entries due at ``now_ms``, in (time, kind, id) order: a choice
        that depends on the records alone, never on the heap's layout."""
        heap, todo = self.timers, [0]
        found: set[tuple[int, int, str]] = set()
        while todo:
            i = todo.pop()
            if i < len(heap) and heap[i][0] <= now_ms:
                if self.timer_valid(heap[i]):
                    found.add(heap[i])
                todo += (2 * i + 1, 2 * i + 2)
        return sorted(found)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        self.put(self.schedules, schedule.schedule_id, schedule)
        self._copied.add(("c", schedule.schedule_id))
        self._touch(schedule_key(schedule.schedule_id))

    def edit_schedule(self, schedule_id: str) -> ScheduleRecord:
        rec = self.schedules[schedule_id]
        self._touch(schedule_key(schedule_id))
        if self._log is not None and ("c", schedule_id) not in self._copied:
            self._copied.add(("c", schedule_id))
            rec = rec.clone()
            self.put(self.schedules, schedule_id, rec)
        return rec

    def remove_schedule(self, schedule_id: str) -> None:
        self.delete(self.schedules, schedule_id)
        self._touch(schedule_key(schedule_id))

    def put_template(self, template: TemplateRecord) -> None:
        """Templates are replaced whole, never edited in place."""
        key = template_id(template.client_id, template.name)
        self.put(self.templates, key, template)
        self._touch(template_key(key))

    def remove_template(self, key: str) -> None:
        self.delete(self.templates, key)
        self._touch(template_key(key))
