"""Finished tasks out of memory: the archive a partition state reads them back from.

A task that finished, once no live work pins it (``PartitionState.pinned``), is written to the
partition's store with the cycle that finished it, and dropped from memory when that write is
done (``PartitionState.flushed``). The retention index (which task or batch job finished when,
``streams.domain.retention``) is kept there too. So a processor's memory is bounded by its
unfinished work, not by its throughput times the retention window.

Whatever may look at a finished task (a duplicate submit, a dependency, a command naming a
finished task, redrive, archive, steps, batch jobs) reads it through ``PartitionState.task``:
memory first, then the archive. The answer never depends on when a record left memory, so a
state decides alike before and after a flush, a restart or a rebuild from the event log.

``Archive`` is what the domain needs; the store-backed one is ``streams.state_codec``'s.
``MemoryArchive`` keeps the records in memory, for a state without a store (tests, a
decider benchmark).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from schemas.states import TERMINAL_STATES
from streams.domain.records import TaskRecord, done_key

if TYPE_CHECKING:
    from streams.domain.state import PartitionState

__all__ = ["Archive", "Entry", "MemoryArchive", "dumped_retired", "flushed", "merged"]

Entry = tuple[int, int, str]
"""A retention entry: (finished at, ``RETIRED_TASK`` / ``RETIRED_JOB``, id)."""


class Archive(Protocol):
    def task(self, task_id: str) -> TaskRecord | None:
        """The archived record of ``task_id`` (a copy the caller may keep), or None."""
        ...

    def retired(self, up_to_ms: int) -> Iterator[Entry]:
        """The archived retention entries finished at or before ``up_to_ms``, ascending."""
        ...

    def absorb(
        self, tasks: Iterable[TaskRecord], gone: Iterable[str], retired: Mapping[Entry, bool]
    ) -> None:
        """Records leaving memory, records deleted, and retention entries put (True) or
        deleted (False): all written by the last dump (a store-backed archive has nothing
        to do)."""
        ...

    def tasks(self) -> Iterator[TaskRecord]:
        """Every archived record (to compare states: tests, recovery checks)."""
        ...


class MemoryArchive:
    """An archive in memory: what ``flushed`` drops from the state is kept here."""

    __slots__ = ("_tasks", "_retired")

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._retired: set[Entry] = set()

    def task(self, task_id: str) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        return None if record is None else record.clone()

    def retired(self, up_to_ms: int) -> Iterator[Entry]:
        return iter(sorted(e for e in self._retired if e[0] <= up_to_ms))

    def absorb(
        self, tasks: Iterable[TaskRecord], gone: Iterable[str], retired: Mapping[Entry, bool]
    ) -> None:
        for task_id in gone:
            self._tasks.pop(task_id, None)
        for record in tasks:
            self._tasks[record.task_id] = record
        for entry, present in retired.items():
            if present:
                self._retired.add(entry)
            else:
                self._retired.discard(entry)

    def tasks(self) -> Iterator[TaskRecord]:
        return iter(list(self._tasks.values()))


def merged(
    archived: Iterator[Entry], pending: Iterable[Entry], deleted: Mapping[Entry, None]
) -> Iterator[Entry]:
    """Archived and not yet written entries in order, each once, without the deleted ones."""
    last: Entry | None = None
    for entry in heapq.merge(archived, sorted(pending)):
        if entry != last and entry not in deleted:
            yield entry
        last = entry


def dumped_retired(st: PartitionState) -> dict[Entry, bool]:
    """Retention entries put (True) or deleted (False) since the last dump, for a dump: they
    stay visible (``written``) until its write is done (``flushed``)."""
    changes = {entry: False for entry in st.unretired}
    changes.update((entry, True) for entry in st.retired if entry not in st.unretired)
    st.written.update(changes)
    st.retired = []
    st.unretired = {}
    return changes


def flushed(st: PartitionState) -> None:
    """Everything the last dump of ``st`` gave is written: finished tasks no live work pins
    leave memory (the archive reads them back). Outside decisions, right after a dump."""
    evicted: list[TaskRecord] = []
    unwritten: dict[str, None] = {}
    tasks, dirty = st.tasks, st.dirty
    for task_id in st.evictable:
        task = tasks.get(task_id)
        if task is None or task.status not in TERMINAL_STATES or st.pinned(task):
            continue  # pinned: retired (and so evictable) again when released
        if done_key(task_id) in dirty:
            unwritten[task_id] = None  # changed after the dump: after the next one
        else:
            evicted.append(tasks.pop(task_id))
    st.archive.absorb(evicted, st.gone, st.written)
    st.evictable = unwritten
    st.gone = {}
    st.written = {}
