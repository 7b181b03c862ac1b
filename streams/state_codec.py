"""The distributor's storage format of a partition state: one store key per record.

Keys: ``task/<id>`` (unfinished), ``done/<id>`` (finished), ``session/<id>``, ``batch/<id>``,
``batchjob/<id>``, ``schedule/<id>``, ``template/<client>/<name>``, ``client/<id>``, ``pool``,
``meta``, and ``retired/<finished at><kind><id>`` (empty values: the retention index, in time
order). Values are pickles of the record dataclasses (an internal format of the local store,
never shared: the event log is the source of truth and rebuilds the store when it is missing
or unreadable).

Finished tasks and the retention index are not loaded: ``StoreArchive`` reads them back when
the decider asks (``streams.domain.archive``), so a state in memory holds unfinished work.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from schemas.states import TERMINAL_STATES
from streams.domain.archive import Entry, MemoryArchive, dumped_retired
from streams.domain.dispatch_records import POOL_KEY, ClientRecord, PoolRecord
from streams.domain.state import (
    META_KEY,
    RETIRED_JOB,
    RETIRED_TASK,
    BatchJobRecord,
    BatchRecord,
    Meta,
    PartitionState,
    ScheduleRecord,
    SessionRecord,
    Status,
    TaskRecord,
    TemplateRecord,
    done_key,
    task_key,
    template_id,
)
from streams.errors import StoreError

_DONE = b"done/"
_RETIRED = b"retired/"
_RETIRED_AT = struct.Struct(">QB")  # finished at, kind: keys sort in time order
_ABSENT_LIMIT = 100_000  # ids remembered as absent between two writes, at most


class CorruptStateError(StoreError):
    """A stored record cannot be read back; rebuild the store from the event log."""


class StoredKeys(Protocol):
    """Read access to a partition's store (``streams.runtime.store.PartitionStore``)."""

    def get(self, key: bytes) -> bytes | None: ...

    def items_from(self, key: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def retired_key(entry: Entry) -> bytes:
    at_ms, kind, record_id = entry
    return _RETIRED + _RETIRED_AT.pack(at_ms, kind) + record_id.encode()


def _entry(key: bytes) -> Entry:
    at_ms, kind = _RETIRED_AT.unpack_from(key, len(_RETIRED))
    return at_ms, kind, key[len(_RETIRED) + _RETIRED_AT.size :].decode()


def _unpickled(key: bytes, value: bytes) -> Any:
    try:
        record = pickle.loads(value)
    except Exception as exc:  # any unpickling failure means the same thing: corrupt
        raise CorruptStateError(f"state key {key!r} cannot be read: {exc}") from exc
    _fill_defaults(record)
    if isinstance(record, SessionRecord) and isinstance(record.units, tuple):
        record.units = dict.fromkeys(record.units)  # stored before units became an ordered set
    return record


class StoreArchive:
    """Finished tasks and the retention index, read from the partition's store. Writes go
    through ``dump_changes`` with the state, in the cycle's one ``WriteBatch``."""

    __slots__ = ("_store", "_absent")

    def __init__(self, store: StoredKeys) -> None:
        self._store = store
        # Ids the store had no finished task for since the last write: a new task is looked
        # up several times by its submit (the duplicate check, the fold), each a RocksDB read.
        # The store only changes at a cycle's write, which ``absorb`` follows: it forgets them.
        self._absent: set[str] = set()

    def task(self, task_id: str) -> TaskRecord | None:
        if task_id in self._absent:
            return None
        key = done_key(task_id)
        value = self._store.get(key)
        if value is None:
            if len(self._absent) >= _ABSENT_LIMIT:
                self._absent.clear()
            self._absent.add(task_id)
            return None
        record = _unpickled(key, value)
        if not isinstance(record, TaskRecord):
            raise CorruptStateError(f"state key {key!r} holds a {type(record).__name__}")
        return record

    def retired(self, up_to_ms: int) -> Iterator[Entry]:
        for key, _ in self._store.items_from(_RETIRED):
            if not key.startswith(_RETIRED):
                return
            entry = _entry(key)
            if entry[0] > up_to_ms:
                return
            yield entry

    def absorb(
        self, tasks: Iterable[TaskRecord], gone: Iterable[str], retired: Mapping[Entry, bool]
    ) -> None:
        """Already in the store: the dump wrote them (so what was absent may be there now)."""
        self._absent.clear()

    def tasks(self) -> Iterator[TaskRecord]:
        for key, value in self._store.items_from(_DONE):
            if not key.startswith(_DONE):
                return
            record = _unpickled(key, value)
            if isinstance(record, TaskRecord):
                yield record


def _value(state: PartitionState, key: bytes) -> bytes | None:
    if key == META_KEY:
        return pickle.dumps(state.meta, protocol=pickle.HIGHEST_PROTOCOL)
    if key == POOL_KEY:
        return pickle.dumps(state.pool, protocol=pickle.HIGHEST_PROTOCOL)
    kind, _, raw_id = key.partition(b"/")
    record_id = raw_id.decode()
    if kind == b"task" or kind == b"done":
        task = state.tasks.get(record_id)
        if task is None or (task.status in TERMINAL_STATES) != (kind == b"done"):
            return None  # gone, or kept under its other key
        return pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
    record: (
        TaskRecord
        | SessionRecord
        | BatchRecord
        | BatchJobRecord
        | ScheduleRecord
        | TemplateRecord
        | ClientRecord
    ) | None
    if kind == b"session":
        record = state.sessions.get(record_id)
    elif kind == b"batch":
        record = state.batches.get(record_id)
    elif kind == b"batchjob":
        record = state.batch_jobs.get(record_id)
    elif kind == b"schedule":
        record = state.schedules.get(record_id)
    elif kind == b"template":
        record = state.templates.get(record_id)
    elif kind == b"client":
        record = state.clients.get(record_id)
    else:
        raise StoreError(f"unknown state key {key!r}")
    return None if record is None else pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def dump_changes(state: PartitionState) -> Iterator[tuple[bytes, bytes | None]]:
    """(key, value) for every record changed since the last dump; ``None`` deletes the key."""
    dirty = sorted(state.dirty)
    state.dirty = set()
    for key in dirty:
        yield key, _value(state, key)
    for entry, present in dumped_retired(state).items():
        yield retired_key(entry), b"" if present else None


def dump_all(state: PartitionState) -> Iterator[tuple[bytes, bytes]]:
    """Every key of the state (a full snapshot, e.g. for tests or a rebuilt store)."""
    yield META_KEY, pickle.dumps(state.meta, protocol=pickle.HIGHEST_PROTOCOL)
    for tid, task in state.all_tasks().items():
        where = done_key(tid) if task.status in TERMINAL_STATES else task_key(tid)
        yield where, pickle.dumps(task, pickle.HIGHEST_PROTOCOL)
    for entry in state.retired_until(2**63 - 1):
        yield retired_key(entry), b""
    for sid in state.sessions:
        yield b"session/" + sid.encode(), pickle.dumps(state.sessions[sid], pickle.HIGHEST_PROTOCOL)
    for bid in state.batches:
        yield b"batch/" + bid.encode(), pickle.dumps(state.batches[bid], pickle.HIGHEST_PROTOCOL)
    for jid, job in state.batch_jobs.items():
        yield b"batchjob/" + jid.encode(), pickle.dumps(job, pickle.HIGHEST_PROTOCOL)
    for cid, schedule in state.schedules.items():
        yield b"schedule/" + cid.encode(), pickle.dumps(schedule, pickle.HIGHEST_PROTOCOL)
    for key, template in state.templates.items():
        yield b"template/" + key.encode(), pickle.dumps(template, pickle.HIGHEST_PROTOCOL)
    for cid, client in state.clients.items():
        yield b"client/" + cid.encode(), pickle.dumps(client, pickle.HIGHEST_PROTOCOL)
    if state.pool != PoolRecord():
        yield POOL_KEY, pickle.dumps(state.pool, pickle.HIGHEST_PROTOCOL)


def _fill_defaults(record: object) -> None:
    """A record pickled before a field was added lacks that slot: give it the default."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        return
    for f in dataclasses.fields(record):
        if hasattr(record, f.name):
            continue
        if f.default is not dataclasses.MISSING:
            setattr(record, f.name, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            setattr(record, f.name, f.default_factory())
        else:
            raise CorruptStateError(f"a stored {type(record).__name__} lacks {f.name}")


def load_state(items: Iterable[tuple[bytes, bytes]]) -> PartitionState:
    """A state from every key ``dump_changes`` wrote (a snapshot in memory: tests, tools);
    its finished tasks and retention index go to a ``MemoryArchive``."""
    archive = MemoryArchive()
    state = PartitionState(archive)
    done: list[TaskRecord] = []
    retired: dict[Entry, bool] = {}
    live = []
    for key, value in items:
        if key.startswith(_RETIRED):
            retired[_entry(key)] = True
        elif key.startswith(_DONE):
            record = _unpickled(key, value)
            if not isinstance(record, TaskRecord):
                raise CorruptStateError(f"state key {key!r} holds a {type(record).__name__}")
            done.append(record)
        else:
            live.append((key, value))
    archive.absorb(done, (), retired)
    _fill(state, live)
    _settle(state, lambda entry: entry in retired)
    return state


def open_state(store: StoredKeys) -> PartitionState:
    """A partition's state from its store: unfinished work in memory, the rest read back
    from the store when asked (``StoreArchive``)."""
    state = PartitionState(StoreArchive(store))
    _fill(state, _live_items(store))
    _settle(state, lambda entry: store.get(retired_key(entry)) is not None)
    return state


def _live_items(store: StoredKeys) -> Iterator[tuple[bytes, bytes]]:
    """Every key but the finished tasks and the retention index (ranges in key order)."""
    skip = (_DONE, _RETIRED)
    start = b""
    for prefix in (*skip, None):
        for key, value in store.items_from(start):
            if prefix is not None and key >= prefix:
                break
            yield key, value
        if prefix is not None:
            start = prefix[:-1] + bytes([prefix[-1] + 1])  # past every key with ``prefix``


def _fill(state: PartitionState, items: Iterable[tuple[bytes, bytes]]) -> None:
    for key, value in items:
        record = _unpickled(key, value)
        kind = key.partition(b"/")[0]
        if kind == META_KEY and isinstance(record, Meta):
            state.meta = record
        elif kind == POOL_KEY and isinstance(record, PoolRecord):
            state.pool = record
        elif kind == b"client" and isinstance(record, ClientRecord):
            state.clients[record.client_id] = record
        elif kind == b"task" and isinstance(record, TaskRecord):
            state.tasks[record.task_id] = record
        elif kind == b"session" and isinstance(record, SessionRecord):
            state.sessions[record.session_id] = record
        elif kind == b"batch" and isinstance(record, BatchRecord):
            state.batches[record.batch_id] = record
        elif kind == b"batchjob" and isinstance(record, BatchJobRecord):
            state.batch_jobs[record.batch_job_id] = record
        elif kind == b"schedule" and isinstance(record, ScheduleRecord):
            state.schedules[record.schedule_id] = record
        elif kind == b"template" and isinstance(record, TemplateRecord):
            state.templates[template_id(record.client_id, record.name)] = record
        else:
            raise CorruptStateError(f"state key {key!r} holds a {type(record).__name__}")


def _settle(state: PartitionState, indexed: Any) -> None:
    """Bring back the finished tasks live work pins (as a running state holds them), rebuild
    the indices, and move what a store written before the archive holds into its keys:
    finished tasks under ``task/``, retention entries that were only in memory."""
    tasks = state.tasks
    old_format = [t for t in tasks.values() if t.status in TERMINAL_STATES]
    pinning = {t for batch in state.batches.values() for t in batch.task_ids}
    pinning.update(d for t in tasks.values() if t.status == Status.WAITING for d in t.depends_on)
    for task_id in sorted(pinning - tasks.keys()):
        archived = state.archive.task(task_id)
        if archived is not None and archived.status in TERMINAL_STATES:
            tasks[task_id] = archived
    state.rebuild_indices()
    state.dirty = set()
    for task in old_format:
        state.finished(task)
    for task in old_format:
        if task.finished_at_ms is not None and not state.pinned(task):
            state.retire(task.finished_at_ms, RETIRED_TASK, task.task_id)
    for job in state.batch_jobs.values():
        if job.completed_at_ms is not None:
            entry = (job.completed_at_ms, RETIRED_JOB, job.batch_job_id)
            if not indexed(entry):
                state.retire(*entry)
