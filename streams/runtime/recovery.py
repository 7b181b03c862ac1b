"""Recovery of one partition on assignment: local store first, then the event log.

The event log is the source of truth; the store is a checkpoint of it. Steps:

1. open the store (a store RocksDB cannot open is deleted) and load state and offsets; a store
   whose contents the application cannot load, or that claims more of the log than the log
   holds (the broker lost data), is emptied: it is rebuilt from offset 0 of the log;
2. read the event log's end first, then replay from the stored event offset to that end,
   folding each event (``evolve``) and computing its side records: a processor produces side
   records only after the store reflects their events, so none of these was produced yet;
   events a producer retry duplicated are recognised by their causation header and skipped;
3. the last causation group may be partial (a crash between two events of one command):
   its events are held back, the command is decided again at its recorded decision time (or
   the tick re-run at its recorded time) against the state before the group, the first k events are checked against the log,
   and only the missing ones are produced;
4. side records the store still holds *staged* (a crash after a cycle's store write) are
   looked up in their destination partitions; the missing ones, with the side records of
   the replayed events, are staged with the state and offsets in one ``WriteBatch``, then
   produced and unstaged (``streams.runtime.staging``); commands resume at
   max(stored command offset, highest command offset the log reflects + 1).

When rebuilding from nothing, or from a store that stood still while another processor owned
the partition (the group's committed offset is past the store's), side records of commands
below the committed offset are not re-produced: the processor flushes them before it commits.
(The staging record is lost with the store, so side records of the last uncommitted cycle may
then come twice.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from streams.errors import ProcessingError, StoreError
from streams.kafka.reader import LogReader
from streams.rocksdb import StoreLockedError
from streams.runtime.causation import Cause, cause_of
from streams.runtime.outbox import Sink
from streams.runtime.partition import PartitionRun
from streams.runtime.processing import RuntimeTopics, emit_event, outputs_of
from streams.runtime.protocol import Application
from streams.runtime.staging import Pending, missing, send, stage
from streams.runtime.store import PartitionStore, StagedOutput, StoredOffsets

__all__ = ["RecoveryReport", "open_store", "recover_partition"]

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(slots=True)
class RecoveryReport:
    partition: int
    rebuilt_reason: str | None = None
    replayed: int = 0
    duplicates: int = 0
    completed_partial: int = 0
    outputs: int = 0


async def open_store(path: Path, lock_timeout_s: float = 30.0) -> tuple[PartitionStore, str | None]:
    """Open (or re-create) a store, waiting while another process still holds it."""
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            return PartitionStore.open(path)
        except StoreLockedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@dataclass(slots=True)
class _Replay(Generic[S]):
    """Folding state while replaying, with the group currently open."""

    app: Application[S]
    sink: Sink
    state: S
    emit_outputs: bool
    committed: int
    report: RecoveryReport
    highest_command: int = -1
    last_tick_ms: int = 0
    last_command_ms: int = 0  # the newest recorded decision time of a command
    group: Cause | None = None
    held: list[tuple[Any, bytes]] = field(default_factory=list)  # (event, raw value)
    deferred: list[Pending] = field(default_factory=list)  # tick outputs below the floor
    outputs: list[Pending] = field(default_factory=list)  # side records to produce

    def is_duplicate(self, cause: Cause) -> bool:
        if self.group is not None and cause.group == self.group.group:
            return cause.index < len(self.held)
        if cause.kind == "c":
            return cause.offset <= self.highest_command
        return cause.offset <= self.last_tick_ms

    def add(self, cause: Cause, event: Any, raw: bytes) -> None:
        if self.group is not None and cause.group != self.group.group:
            log.warning(
                "event log partition %d: group %s ended after %d of %d events; keeping it as is",
                self.report.partition,
                self.group.group,
                len(self.held),
                self.group.count,
            )
            self.fold_held()
        if self.group is None:
            self.group = cause
        self.held.append((event, raw))
        if cause.is_last:
            self.fold_held()

    def fold_held(self) -> None:
        group = self.group
        assert group is not None
        self.fold(group, [event for event, _ in self.held])
        self.group, self.held = None, []

    def fold(self, group: Cause, events: Sequence[Any]) -> None:
        app = self.app
        if group.kind == "c":
            self.highest_command = max(self.highest_command, group.offset)
            if group.at_ms is not None and group.at_ms > self.last_command_ms:
                self.last_command_ms = group.at_ms
        else:
            self.last_tick_ms = max(self.last_tick_ms, group.offset)
        below_floor = not self.emit_outputs
        if below_floor and group.kind == "c":
            if group.offset < self.committed:
                self.deferred.clear()  # flushed before that commit, with everything before it
            else:
                self.emit_outputs = below_floor = False
                self.flush_deferred()
        for event in events:
            self.state = app.evolve(self.state, event)
            if below_floor:
                if group.kind == "t":
                    self.deferred.extend(outputs_of(app, self.state, event))
                continue
            self.outputs.extend(outputs_of(app, self.state, event))

    def flush_deferred(self) -> None:
        self.outputs.extend(self.deferred)
        self.deferred = []


def _load(
    app: Application[S], store: PartitionStore, end: int, report: RecoveryReport
) -> tuple[S, StoredOffsets, list[StagedOutput]]:
    """Read the store's state, offsets and staged records (run in a thread: a large store
    loads for seconds, and the event loop must keep the group's heartbeats going)."""
    try:
        offsets = store.offsets()
        if offsets is None:
            if not store.is_empty():
                raise StoreError("state without offsets")
            return app.load_state(store), StoredOffsets(0, 0), []
        if offsets.events > end:
            raise StoreError(
                f"the store reflects event-log offset {offsets.events} but the log ends at {end}"
            )
        return app.load_state(store), offsets, store.staged()
    except Exception as exc:  # any unusable content: rebuild, never a crash loop
        report.rebuilt_reason = f"unusable store contents ({exc.__class__.__name__}: {exc})"
    store.reset()
    return app.load_state(store), StoredOffsets(0, 0), []


async def recover_partition(
    app: Application[S],
    store: PartitionStore,
    partition: int,
    topics: RuntimeTopics,
    reader: LogReader,
    sink: Sink,
    committed: int | None,
    *,
    rebuilt_reason: str | None = None,
) -> tuple[PartitionRun[S], RecoveryReport]:
    """Bring ``partition`` up to the end of the event log; see the module docstring."""
    report = RecoveryReport(partition, rebuilt_reason=rebuilt_reason)
    end = await reader.end_offset(topics.events, partition)
    state, stored, staged_before = await asyncio.to_thread(_load, app, store, end, report)
    # Side records of commands below the group's committed offset were produced by whoever
    # committed it: by this store's processor, or by another one that owned the partition
    # while this store stood still (its commands offset is then below the committed one).
    behind = committed is not None and committed > stored.commands
    replay = _Replay(
        app=app,
        sink=sink,
        state=state,
        emit_outputs=stored.events > 0 and not behind,
        committed=committed or 0,
        report=report,
    )
    async for record in reader.read(topics.events, partition, stored.events, end):
        cause = cause_of(record.headers, partition)
        if cause is None:
            raise ProcessingError(
                f"event {topics.events}[{partition}]@{record.offset} has no valid causation "
                "header; was it written by something other than the processor?"
            )
        if replay.is_duplicate(cause):
            report.duplicates += 1
            continue
        replay.add(cause, app.decode_event(record.value), record.value)
        report.replayed += 1
    if replay.group is not None:
        await _complete_partial(replay, topics, reader, partition)
    replay.flush_deferred()
    next_offsets = await sink.flush()  # the events that completed a partial group
    next_event = next_offsets.get((topics.events, partition), end)
    to_send = await missing(reader, staged_before)
    to_send += await stage(sink, replay.outputs, partition)
    run = PartitionRun(
        partition=partition,
        store=store,
        state=replay.state,
        next_command_offset=max(stored.commands, replay.highest_command + 1),
        next_event_offset=next_event,
        last_tick_ms=replay.last_tick_ms,
        last_command_ms=replay.last_command_ms,
    )
    store.write(app.dump_changes(run.state), run.offsets, to_send)
    app.persisted(run.state)
    if to_send:
        send(sink, to_send)
        await sink.flush()
    store.unstage(o.output_id for o in staged_before)
    store.unstage(o.output_id for o in to_send)
    report.outputs = len(to_send)
    return run, report


async def _complete_partial(
    replay: _Replay[S], topics: RuntimeTopics, reader: LogReader, partition: int
) -> None:
    group = replay.group
    assert group is not None
    app, logged = replay.app, replay.held
    decided: Sequence[Any] | None = None
    problem = ""
    try:
        if group.kind == "c":
            record = await reader.fetch(topics.commands, group.partition, group.offset)
            if record is None:
                problem = "its command is no longer in the command log"
            else:
                command = app.decode_command(record.value)
                at = group.at_ms if group.at_ms is not None else record.timestamp
                decided = app.decide(command, replay.state, at)
        else:
            decided = app.tick(replay.state, group.offset)
    except Exception as exc:  # the decision worked once; report instead of crash-looping
        problem = f"deciding it again failed ({exc.__class__.__name__}: {exc})"
    if decided is not None and (
        len(decided) != group.count
        or any(app.encode_event(decided[i]) != raw for i, (_, raw) in enumerate(logged))
    ):
        problem, decided = (
            "deciding it again gave different events (non-deterministic decider?)",
            None,
        )
    if decided is None:
        log.error(
            "event log partition %d: cannot complete group %s (%d of %d events written): %s; "
            "keeping the written events only",
            partition,
            group.group,
            len(logged),
            group.count,
            problem,
        )
        replay.fold_held()
        return
    k = len(logged)
    for index in range(k, group.count):
        cause = Cause(group.kind, group.partition, group.offset, index, group.count, group.at_ms)
        emit_event(app, replay.sink, topics.events, partition, decided[index], cause)
    replay.report.completed_partial = group.count - k
    replay.group, replay.held = None, []
    replay.fold(group, decided)
    log.info(
        "event log partition %d: completed group %s with %d missing events",
        partition,
        group.group,
        group.count - k,
    )
