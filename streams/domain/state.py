"""The whole state of one partition: tasks, sessions and batches of many clients.

Records are small mutable dataclasses keyed by id; every index refers to ids, never to record
objects. All writes go through ``put``/``delete``/``edit_*``, journaled (``journal``): the keys
changed since the last dump are known, and ``decide`` rolls back what it folded, so the state a
caller passed in is unchanged afterwards.

Every choice the decider makes is independent of dict order (ties break on sequence
numbers), so a state rebuilt from the store decides exactly like the live one. The one
ordered index, the queue lanes, is append-only in sequence order with lazy removal (an entry
counts only while its task is still queued with that sequence number), so undoing a decision
never has to re-insert in the middle.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

from schemas.states import ACTIVE_STATES, TERMINAL_STATES
from streams.domain.archive import Archive, Entry, MemoryArchive, merged
from streams.domain.dispatch_records import POOL_KEY, ClientRecord, PoolRecord, client_key
from streams.domain.journal import Journal
from streams.domain.records import (
    DEAD,
    META_KEY,
    BatchJobRecord,
    BatchRecord,
    BatchStatus,
    Circuit,
    Failure,
    Meta,
    ScheduleRecord,
    SessionRecord,
    Status,
    TaskRecord,
    TemplateRecord,
    batch_job_key,
    batch_key,
    done_key,
    schedule_key,
    session_key,
    task_key,
    template_id,
    template_key,
)

# The records are part of the state's API: importable from here as from ``records``.
__all__ = [
    "DEAD",
    "META_KEY",
    "RETIRED_JOB",
    "RETIRED_TASK",
    "TIMER_SCHEDULE",
    "TIMER_DEFERRED",
    "TIMER_OVERDUE",
    "TIMER_TASK",
    "BatchJobRecord",
    "BatchRecord",
    "BatchStatus",
    "Circuit",
    "Failure",
    "Lane",
    "Meta",
    "PartitionState",
    "ScheduleRecord",
    "SessionRecord",
    "Status",
    "TaskRecord",
    "TemplateRecord",
    "batch_job_key",
    "batch_key",
    "done_key",
    "schedule_key",
    "session_key",
    "task_key",
    "template_id",
    "template_key",
]

Lane = deque[tuple[int, str]]  # (seq, task_id), ascending seq

# kinds of ``PartitionState.retired`` entries (tasks sort before batch jobs of the same time)
RETIRED_TASK: Final = 0
RETIRED_JOB: Final = 1

# kinds of ``PartitionState.timers`` entries (``streams.domain.timers``)
TIMER_TASK: Final = 0  # a scheduled task's start
TIMER_SCHEDULE: Final = 1  # a recurring schedule's next occurrence
TIMER_DEFERRED: Final = 2  # a deferred task's return (``streams.domain.management``)
TIMER_OVERDUE: Final = 3  # a task's due date


class PartitionState(Journal):
    """Tasks, sessions and batches of one partition plus the indices the decider needs.

    ``tasks`` holds the unfinished tasks and the finished ones not written away yet (or pinned
    by live work); the others are in ``archive`` (``streams.domain.archive``): read a task
    that may have finished with ``task``. Equality compares the persisted part (records,
    archived ones included, and meta); the indices are derived from it.
    """

    __slots__ = (
        "archive",
        "gone",
        "evictable",
        "unretired",
        "written",
        "tasks",
        "sessions",
        "batches",
        "batch_jobs",
        "clients",
        "pool",
        "schedules",
        "templates",
        "meta",
        "lanes",
        "pool_lanes",
        "pool_queued",
        "pool_inflight",
        "rate_blocked",
        "client_sessions",
        "pending_batches",
        "batch_ages",
        "current_batch",
        "dependents",
        "inflight",
        "open_tasks",
        "job_children",
        "step_children",
        "retired",
        "timers",
    )

    def __init__(self, archive: Archive | None = None) -> None:
        super().__init__({META_KEY})
        self.archive: Archive = archive if archive is not None else MemoryArchive()
        # archived tasks deleted since the last flush (the archive still holds them)
        self.gone: dict[str, None] = {}
        # finished tasks that may leave memory at the next flush (checked again then)
        self.evictable: dict[str, None] = {}
        # retention entries deleted since the last dump (``retired`` holds the ones put), and
        # the ones the last dump put (True) or deleted (False), until its write is done
        self.unretired: dict[Entry, None] = {}
        self.written: dict[Entry, bool] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.batches: dict[str, BatchRecord] = {}
        self.batch_jobs: dict[str, BatchJobRecord] = {}
        self.clients: dict[str, ClientRecord] = {}  # rate buckets, starvation, SLA reports
        self.pool = PoolRecord()
        self.schedules: dict[str, ScheduleRecord] = {}
        self.templates: dict[str, TemplateRecord] = {}  # by ``template_id``
        self.meta = Meta()
        # client -> queue priority -> (seq, task id) in arrival order; stale entries are skipped
        self.lanes: dict[str, dict[int, Lane]] = {}
        # the same for work that needs no session (``streams.domain.pool``)
        self.pool_lanes: dict[str, dict[int, Lane]] = {}
        # queued pool tasks, and pool units ("t:<task>") in flight
        self.pool_queued: dict[str, None] = {}
        self.pool_inflight: dict[str, None] = {}
        # clients whose bucket emptied or who are paused: ticks try them again
        self.rate_blocked: dict[str, None] = {}
        # client -> session ids in registration order
        self.client_sessions: dict[str, dict[str, None]] = {}
        # client -> undispatched batch ids in creation order
        self.pending_batches: dict[str, dict[str, None]] = {}
        self.batch_ages: dict[str, Any] = {}  # ``batching.batch_priority``'s, by batch id
        # (client, operation) -> the newest undispatched batch (the one new items may join)
        self.current_batch: dict[tuple[str, str], str] = {}
        # dependency task id -> waiting task ids
        self.dependents: dict[str, dict[str, None]] = {}
        # unit ("t:<task>" / "b:<batch>") -> deadline, for every assignment in flight
        self.inflight: dict[str, int] = {}
        # client -> tasks accepted and not finished (the bound of max_queued_per_client)
        self.open_tasks: dict[str, int] = {}
        # running child task id -> its batch job id
        self.job_children: dict[str, str] = {}
        # running step's child task id -> its multi-step task id (``streams.domain.steps``)
        self.step_children: dict[str, str] = {}
        # heap of (finished at, RETIRED_TASK / RETIRED_JOB, id) put since the last flush: what
        # retention may forget (``streams.domain.retention``), with the archived ones
        self.retired: list[tuple[int, int, str]] = []
        # heap of (due at, TIMER_TASK / TIMER_SCHEDULE, id): what a tick starts when due
        # (``streams.domain.timers``); stale entries are skipped, and dropped from the top
        self.timers: list[tuple[int, int, str]] = []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionState):
            return NotImplemented
        return (
            self.all_tasks() == other.all_tasks()
            and self.sessions == other.sessions
            and self.batches == other.batches
            and self.batch_jobs == other.batch_jobs
            and self.clients == other.clients
            and self.pool == other.pool
            and self.schedules == other.schedules
            and self.templates == other.templates
            and self.meta == other.meta
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PartitionState(tasks={len(self.tasks)}, sessions={len(self.sessions)}, "
            f"batches={len(self.batches)}, meta={self.meta})"
        )

    # -- records ---------------------------------------------------------------------------

    def task(self, task_id: str) -> TaskRecord | None:
        """The task, finished or not (from the archive if it left memory); do not mutate."""
        task = self.tasks.get(task_id)
        if task is not None or task_id in self.gone:
            return task
        return self.archive.task(task_id)

    def knows(self, task_id: str) -> bool:
        return self.task(task_id) is not None

    def all_tasks(self) -> dict[str, TaskRecord]:
        """Every task record, archived ones included (to compare states)."""
        archived = {t.task_id: t for t in self.archive.tasks() if t.task_id not in self.gone}
        return {**archived, **self.tasks}

    def add_task(self, task: TaskRecord) -> None:
        """A new task, or a finished one accepted again (its archived record is replaced)."""
        task_id = task.task_id
        old = self.task(task_id)
        self.delete(self.gone, task_id)
        self.added(self.tasks, task_id, task)
        self.touch(task_key(task_id))
        if old is not None and old.status in TERMINAL_STATES:
            self.touch(done_key(task_id))
            if old.finished_at_ms is not None:
                self.unretire((old.finished_at_ms, RETIRED_TASK, task_id))

    def edit_task(self, task_id: str) -> TaskRecord:
        """The record of ``task_id``, safe to mutate (a private copy while journaling); an
        archived one comes back into memory (and leaves it again at a flush)."""
        task = self.tasks.get(task_id)
        if task is None:
            task = self.archive.task(task_id) if task_id not in self.gone else None
            if task is None:
                raise KeyError(task_id)
            self.added(self.tasks, task_id, task)
            self.defer(self._evictable, task_id)
        else:
            task = self.own(self.tasks, task_id)
        self.touch(done_key(task_id) if task.status in TERMINAL_STATES else task_key(task_id))
        return task

    def edit_known_task(self, task_id: str) -> TaskRecord | None:
        """``edit_task``, or None for a task this state does not know."""
        if task_id in self.tasks or self.knows(task_id):
            return self.edit_task(task_id)
        return None

    def finished(self, task: TaskRecord) -> None:
        """``task`` (being edited) just became terminal: it moves to its finished key."""
        self.touch(task_key(task.task_id))
        self.touch(done_key(task.task_id))

    def add_session(self, session: SessionRecord) -> None:
        self.added(self.sessions, session.session_id, session)
        self.touch(session_key(session.session_id))

    def edit_session(self, session_id: str) -> SessionRecord:
        self.touch(session_key(session_id))
        return self.own(self.sessions, session_id)

    def remove_session(self, session_id: str) -> None:
        self.delete(self.sessions, session_id)
        self.touch(session_key(session_id))

    def add_batch(self, batch: BatchRecord) -> None:
        self.added(self.batches, batch.batch_id, batch)
        self.touch(batch_key(batch.batch_id))

    def edit_batch(self, batch_id: str) -> BatchRecord:
        self.touch(batch_key(batch_id))
        return self.own(self.batches, batch_id)

    def remove_batch(self, batch_id: str) -> None:
        self.delete(self.batches, batch_id)
        self.touch(batch_key(batch_id))

    def remove_task(self, task_id: str) -> None:
        task = self.task(task_id)
        self.delete(self.tasks, task_id)
        self.put(self.gone, task_id, None)
        self.touch(task_key(task_id))
        self.touch(done_key(task_id))
        if task is not None and task.finished_at_ms is not None:
            self.unretire((task.finished_at_ms, RETIRED_TASK, task_id))

    def remove_batch_job(self, batch_job_id: str) -> None:
        self.delete(self.batch_jobs, batch_job_id)
        self.touch(batch_job_key(batch_job_id))

    def retire(self, at_ms: int, kind: int, record_id: str) -> None:
        """A task finished / a batch job completed at ``at_ms`` and nothing live pins it:
        retention may forget it later, and a finished task may leave memory.

        Not journaled: inside a decision it is deferred (``Journal.defer``); an entry that
        went stale anyway is skipped (see ``streams.domain.retention``).
        """
        if self._log is not None:
            self.defer(self.retire, at_ms, kind, record_id)
            return
        entry = (at_ms, kind, record_id)
        self.unretired.pop(entry, None)
        self.written.pop(entry, None)
        heapq.heappush(self.retired, entry)
        if kind == RETIRED_TASK:
            self.evictable[record_id] = None

    def unretire(self, entry: Entry) -> None:
        """A retention entry goes (its record was forgotten, or accepted again)."""
        self.defer(self._unretired, entry)

    def _unretired(self, entry: Entry) -> None:
        self.unretired[entry] = None

    def _evictable(self, task_id: str) -> None:
        self.evictable[task_id] = None

    def retired_until(self, up_to_ms: int) -> Iterator[Entry]:
        """Retention entries finished at or before ``up_to_ms``, ascending, each once."""
        pending = [e for e in self.retired if e[0] <= up_to_ms]
        deleted = self.unretired
        if self.written:
            pending += (e for e, put in self.written.items() if put and e[0] <= up_to_ms)
            deleted = {**deleted, **{e: None for e, put in self.written.items() if not put}}
        return merged(self.archive.retired(up_to_ms), pending, deleted)

    def arm(self, due_at_ms: int, kind: int, record_id: str) -> None:
        """Something falls due at ``due_at_ms``: a tick starts it (``streams.domain.timers``).

        Not journaled, like ``retire``: inside a decision it is deferred; a stale entry is
        harmless.
        """
        self.defer(self._arm, (due_at_ms, kind, record_id))

    def _arm(self, entry: tuple[int, int, str]) -> None:
        heapq.heappush(self.timers, entry)

    def timer_valid(self, entry: tuple[int, int, str]) -> bool:
        """Whether a ``timers`` entry still stands for something waiting for that time."""
        due_at_ms, kind, record_id = entry
        if kind in (TIMER_TASK, TIMER_DEFERRED):
            task = self.tasks.get(record_id)
            waits_in = Status.SCHEDULED if kind == TIMER_TASK else Status.DEFERRED
            return task is not None and task.status == waits_in and task.due_at_ms == due_at_ms
        if kind == TIMER_OVERDUE:
            task = self.tasks.get(record_id)
            return (
                task is not None
                and task.deadline_due_ms == due_at_ms
                and not task.overdue
                and task.status not in TERMINAL_STATES
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
        self.added(self.schedules, schedule.schedule_id, schedule)
        self.touch(schedule_key(schedule.schedule_id))

    def edit_schedule(self, schedule_id: str) -> ScheduleRecord:
        self.touch(schedule_key(schedule_id))
        return self.own(self.schedules, schedule_id)

    def remove_schedule(self, schedule_id: str) -> None:
        self.delete(self.schedules, schedule_id)
        self.touch(schedule_key(schedule_id))

    def put_template(self, template: TemplateRecord) -> None:
        """Templates are replaced whole, never edited in place."""
        key = template_id(template.client_id, template.name)
        self.put(self.templates, key, template)
        self.touch(template_key(key))

    def remove_template(self, key: str) -> None:
        self.delete(self.templates, key)
        self.touch(template_key(key))

    def add_batch_job(self, job: BatchJobRecord) -> None:
        self.added(self.batch_jobs, job.batch_job_id, job)
        self.touch(batch_job_key(job.batch_job_id))

    def edit_batch_job(self, batch_job_id: str) -> BatchJobRecord:
        self.touch(batch_job_key(batch_job_id))
        return self.own(self.batch_jobs, batch_job_id)

    def edit_client(self, client_id: str) -> ClientRecord:
        """The client's dispatch record, created when missing; safe to mutate."""
        self.touch(client_key(client_id))
        if client_id not in self.clients:
            rec = ClientRecord(client_id)
            self.added(self.clients, client_id, rec)
            return rec
        return self.own(self.clients, client_id)

    def edit_pool(self) -> PoolRecord:
        self.touch(POOL_KEY)
        pool: PoolRecord = self.own_attribute("pool")
        return pool

    def edit_meta(self) -> Meta:
        self.touch(META_KEY)
        meta: Meta = self.own_attribute("meta")
        return meta

    # -- indices (journaled) ----------------------------------------------------------------

    def count_open(self, client_id: str, delta: int) -> None:
        count = self.open_tasks.get(client_id, 0) + delta
        if count > 0:
            self.put(self.open_tasks, client_id, count)
        else:
            self.delete(self.open_tasks, client_id)

    def lane_valid(self, priority: int, seq: int, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        return (
            task is not None
            and task.seq == seq
            and task.status == Status.QUEUED
            and task.queue_priority == priority
        )

    def lane_add(
        self, client_id: str, priority: int, seq: int, task_id: str, *, pool: bool = False
    ) -> None:
        """Append to the client's session lanes, or with ``pool`` to its pool lanes."""
        index = self.pool_lanes if pool else self.lanes
        lanes = index.get(client_id)
        if lanes is None:
            lanes = {}
            self.put(index, client_id, lanes)
        lane = lanes.get(priority)
        if lane is None:
            lane = deque()
            self.put(lanes, priority, lane)
        lane.append((seq, task_id))
        self.appended(lane)

    def lane_compact(self, client_id: str) -> None:
        """Drop stale entries from the fronts of a client's lanes (outside journals only)."""
        if self._log is not None:
            return
        for index in (self.lanes, self.pool_lanes):
            for priority, lane in index.get(client_id, {}).items():
                while lane and not self.lane_valid(priority, *lane[0]):
                    lane.popleft()

    def lane_entries(self, client_id: str, *, pool: bool = False) -> dict[int, list[str]]:
        """The live entries of a client's lanes (``pool``: its pool lanes), in order."""
        index = self.pool_lanes if pool else self.lanes
        return {
            priority: [t for seq, t in lane if self.lane_valid(priority, seq, t)]
            for priority, lane in sorted(index.get(client_id, {}).items())
        }

    # -- derived indices -------------------------------------------------------------------

    def rebuild_indices(self) -> None:
        """Recompute every index from the records, in the canonical (sequence) orders."""
        self.lanes = {}
        self.pool_lanes = {}
        self.pool_queued = {}
        self.pool_inflight = {}
        self.rate_blocked = {c.client_id: None for c in self.clients.values() if c.blocked}
        self.client_sessions = {}
        self.pending_batches = {}
        self.batch_ages = {}
        self.current_batch = {}
        self.dependents = {}
        self.inflight = {}
        self.open_tasks = {}
        self.job_children = {}
        self.step_children = {}
        self.timers = []
        for job in self.batch_jobs.values():
            for task_id in job.running:
                self.job_children[task_id] = job.batch_job_id
        for session in sorted(self.sessions.values(), key=lambda s: s.reg_seq):
            self.client_sessions.setdefault(session.client_id, {})[session.session_id] = None
        for batch in sorted(self.batches.values(), key=lambda b: b.seq):
            if batch.status == BatchStatus.OPEN:
                self.pending_batches.setdefault(batch.client_id, {})[batch.batch_id] = None
                self.current_batch[(batch.client_id, batch.operation)] = batch.batch_id
            elif not batch.reported:
                self.inflight["b:" + batch.batch_id] = batch.deadline_at_ms
        for task in sorted(self.tasks.values(), key=lambda t: (t.seq, t.accepted_seq)):
            for run in task.step_runs:
                if run.status == Status.RUNNING and run.child_task_id is not None:
                    self.step_children[run.child_task_id] = task.task_id
            if task.status not in TERMINAL_STATES:
                self.open_tasks[task.client_id] = self.open_tasks.get(task.client_id, 0) + 1
            if task.status == Status.QUEUED:
                index = self.lanes if task.session_required else self.pool_lanes
                lanes = index.setdefault(task.client_id, {})
                lanes.setdefault(task.queue_priority, deque()).append((task.seq, task.task_id))
                if not task.session_required:
                    self.pool_queued[task.task_id] = None
            elif task.status == Status.WAITING:
                for dep in task.depends_on:
                    self.dependents.setdefault(dep, {})[task.task_id] = None
            elif task.status in ACTIVE_STATES and task.batch_id is None:
                self.inflight["t:" + task.task_id] = task.deadline_at_ms
                if task.session_id is None:
                    self.pool_inflight["t:" + task.task_id] = None
            elif task.status == Status.SCHEDULED and task.due_at_ms is not None:
                self.timers.append((task.due_at_ms, TIMER_TASK, task.task_id))
            elif task.status == Status.DEFERRED and task.due_at_ms is not None:
                self.timers.append((task.due_at_ms, TIMER_DEFERRED, task.task_id))
            if task.deadline_due_ms is not None and not task.overdue:
                if task.status not in TERMINAL_STATES:
                    self.timers.append((task.deadline_due_ms, TIMER_OVERDUE, task.task_id))
        for schedule in self.schedules.values():
            if schedule.next_at_ms is not None:
                self.timers.append((schedule.next_at_ms, TIMER_SCHEDULE, schedule.schedule_id))
        heapq.heapify(self.timers)

    def indices(self) -> dict[str, Any]:
        """The indices in a comparable form (tests check them against ``rebuild_indices``)."""
        lanes = {c: {p: e for p, e in self.lane_entries(c).items() if e} for c in self.lanes}
        pool_lanes = {
            c: {p: e for p, e in self.lane_entries(c, pool=True).items() if e}
            for c in self.pool_lanes
        }
        return {
            "lanes": {c: entries for c, entries in lanes.items() if entries},
            "pool_lanes": {c: entries for c, entries in pool_lanes.items() if entries},
            "pool_queued": sorted(self.pool_queued),
            "pool_inflight": sorted(self.pool_inflight),
            "rate_blocked": sorted(self.rate_blocked),
            "client_sessions": {c: sorted(ids) for c, ids in self.client_sessions.items() if ids},
            "pending_batches": {c: sorted(ids) for c, ids in self.pending_batches.items() if ids},
            "current_batch": dict(self.current_batch),
            "dependents": {d: sorted(ids) for d, ids in self.dependents.items() if ids},
            "inflight": dict(self.inflight),
            "open_tasks": dict(self.open_tasks),
            "job_children": dict(self.job_children),
            "step_children": dict(self.step_children),
            "retired": [
                e for e in self.retired_until(2**63 - 1) if self.forgettable(e) is not None
            ],
            "timers": sorted({e for e in self.timers if self.timer_valid(e)}),
        }

    # -- retention -------------------------------------------------------------------------

    def pinned(self, task: TaskRecord) -> bool:
        """A finished task live work still refers to: a waiting dependant, or a batch that is
        still open or in flight. It is retired again when that ends (``evolve``)."""
        return task.task_id in self.dependents or (
            task.batch_id is not None and task.batch_id in self.batches
        )

    def forgettable(self, entry: tuple[int, int, str]) -> str | None:
        """The client of a ``retired`` entry that retention may forget now; None for a stale
        entry (the record is gone, or finished again at another time) or a pinned task."""
        at_ms, kind, record_id = entry
        if kind == RETIRED_TASK:
            task = self.task(record_id)
            if task is None or task.finished_at_ms != at_ms or task.status not in TERMINAL_STATES:
                return None
            return None if self.pinned(task) else task.client_id
        job = self.batch_jobs.get(record_id)
        if job is None or job.completed_at_ms != at_ms:
            return None
        return job.client_id
