"""The distributor's storage format of a partition state: one store key per record.

Keys: ``task/<id>``, ``session/<id>``, ``batch/<id>``, ``batchjob/<id>``, ``schedule/<id>``,
``template/<client>/<name>``, ``client/<id>``, ``pool`` and ``meta``. Values are pickles of the
record dataclasses (an internal format of the local store, never shared: the event log is the
source of truth and rebuilds the store when it is missing or unreadable).
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterable, Iterator

from streams.domain.dispatch_records import POOL_KEY, ClientRecord, PoolRecord
from streams.domain.state import (
    META_KEY,
    BatchJobRecord,
    BatchRecord,
    Meta,
    PartitionState,
    ScheduleRecord,
    SessionRecord,
    TaskRecord,
    TemplateRecord,
    template_id,
)
from streams.errors import StoreError


class CorruptStateError(StoreError):
    """A stored record cannot be read back; rebuild the store from the event log."""


def _value(state: PartitionState, key: bytes) -> bytes | None:
    if key == META_KEY:
        return pickle.dumps(state.meta, protocol=pickle.HIGHEST_PROTOCOL)
    if key == POOL_KEY:
        return pickle.dumps(state.pool, protocol=pickle.HIGHEST_PROTOCOL)
    kind, _, raw_id = key.partition(b"/")
    record_id = raw_id.decode()
    record: (
        TaskRecord
        | SessionRecord
        | BatchRecord
        | BatchJobRecord
        | ScheduleRecord
        | TemplateRecord
        | ClientRecord
    ) | None
    if kind == b"task":
        record = state.tasks.get(record_id)
    elif kind == b"session":
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


def dump_all(state: PartitionState) -> Iterator[tuple[bytes, bytes]]:
    """Every key of the state (a full snapshot, e.g. for tests or a rebuilt store)."""
    yield META_KEY, pickle.dumps(state.meta, protocol=pickle.HIGHEST_PROTOCOL)
    for tid in state.tasks:
        yield b"task/" + tid.encode(), pickle.dumps(state.tasks[tid], pickle.HIGHEST_PROTOCOL)
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
    state = PartitionState()
    for key, value in items:
        try:
            record = pickle.loads(value)
        except Exception as exc:  # any unpickling failure means the same thing: corrupt
            raise CorruptStateError(f"state key {key!r} cannot be read: {exc}") from exc
        _fill_defaults(record)
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
    state.rebuild_indices()
    state.dirty = set()
    return state
