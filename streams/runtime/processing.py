"""One processing cycle: commands (and a tick) in, events and side records out, then persist.

The commit order of a cycle, and why:

1. decode each command record; an undecodable one (or one the decider rejects with a
   ``TaskstreamError``) becomes a dead letter and processing goes on;
2. ``decide`` at the record's timestamp bounded by the processor's clock
   (``streams.runtime.clock``), recorded in the causation header (so deciding again gives the
   same events); a command read away from its home partition is not decided but forwarded
   home (``Application.forward``: an event, whose side record is the command on its home);
3. for each event: ``evolve`` the state, append the event to the event log at the command's
   partition with its causation header, and compute the event's side records (``outputs``),
   which are held back (a ``FoldingApplication`` does the folding and the side records inside
   the decision: ``decide_folded``);
4. flush the events: wait until every event of the cycle is acknowledged;
5. write ONE ``WriteBatch`` per partition holding the state changes, the next event-log
   offset, the next command offset and the cycle's side records, *staged*
   (``streams.runtime.staging``): the store never claims more than the log holds;
6. produce the staged side records, wait for their acknowledgement, unstage them (the
   runtime overlaps this wait with the next cycle's fetch and decisions: that cycle waits
   for it before it produces side records of its own, ``overlap_outputs``);
7. commit the command offsets to the consumer group (advisory: the store and the event log
   are the truth, recovery never trusts the group offset over them).

A crash before 5 loses nothing and duplicates nothing: the store still points before the
cycle, no side record of the cycle was produced, and recovery replays whatever events reached
the log (completing a partial command) and stages their side records. A crash after 5 leaves
the side records staged: recovery produces those its destination partitions lack. So every
event's side records are produced once (see ``staging`` for the one gap). A crash between 6
and 7 re-delivers commands that recovery then skips because the store already reflects them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from schemas.errors import DecodeError, TaskstreamError
from streams.errors import ForwardingError
from streams.kafka.headers import CAUSE_HEADER, FORWARDED_HEADER, TYPE_HEADER
from streams.kafka.routing import header_partition, home_partition_of_key
from streams.runtime.causation import Cause, command_head, decided_at_tail, position, tick_head
from streams.runtime.clock import decision_time
from streams.runtime.outbox import Sink
from streams.runtime.partition import PartitionRun
from streams.runtime.protocol import Application, Output
from streams.runtime.staging import Pending, send, stage

__all__ = ["Processor", "RuntimeTopics", "emit_event"]

log = logging.getLogger(__name__)

S = TypeVar("S")

Committer = Callable[[dict[int, int]], Awaitable[None]]

# Library defaults: the skew a producer's clock may have when none is configured, and the
# number of home partitions remembered per key.
DEFAULT_MAX_SKEW_MS = 5_000
_HOME_CACHE_SIZE = 100_000
# Loop turns from handing side records to the producer to their request being written.
_HAND_OFF_TURNS = 4


class RuntimeTopics:
    def __init__(self, commands: str, events: str) -> None:
        self.commands = commands
        self.events = events


class _Stop(Exception):
    """Fault injection reached: stop appending records to this cycle."""


def emit_event(
    app: Application[S], sink: Sink, events_topic: str, partition: int, event: Any, cause: Cause
) -> None:
    sink.add(
        events_topic,
        partition,
        app.event_key(event),
        app.encode_event(event),
        ((CAUSE_HEADER, cause.encode()), (TYPE_HEADER, app.event_type(event).encode())),
    )


def outputs_of(app: Application[S], state: S, event: Any) -> list[Pending]:
    """An event's side records, to be staged (see ``streams.runtime.staging``)."""
    return list(app.outputs(state, event))


def tick_time(wall_ms: int, run: PartitionRun[Any], highwater: int | None) -> int:
    """The time a timer tick of ``run`` is decided at.

    Caught up with its command partition, a partition ticks at the wall clock (windows close
    and timeouts fire while nothing arrives). Behind it, time is the stream's: the newest
    command applied. Otherwise a processor that falls behind would time out assignments whose
    results already wait, unread, in the command log, and send that work round the retry path
    again, which puts it further behind.
    """
    if highwater is None or run.next_command_offset >= highwater:
        return wall_ms
    return min(wall_ms, run.last_command_ms)


class Processor(Generic[S]):
    """Runs cycles for the owned partitions; see the module docstring for the order."""

    def __init__(
        self,
        app: Application[S],
        topics: RuntimeTopics,
        sink: Sink,
        commit: Committer,
        *,
        partitions: int | None = None,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        clock: Callable[[], int] | None = None,
        crash_after_events: int | None = None,
        overlap_outputs: bool = False,
    ) -> None:
        """``partitions``: the command topic's partition count, for home partitions (None:
        every command is applied where it is read). ``max_skew_ms`` bounds how far a record's
        timestamp may run ahead of ``clock`` (the wall clock unless given).

        ``overlap_outputs``: a cycle does not wait for its side records' acknowledgement
        (step 6); the next cycle fetches and decides meanwhile, and its ``complete`` (or
        :meth:`settle`) waits for them and unstages them. They are staged in the store by
        then, so a crash in between loses nothing: recovery produces the missing ones."""
        self.app = app
        self.topics = topics
        self.sink = sink
        self._commit = commit
        self.partitions = partitions
        self.max_skew_ms = max_skew_ms
        self._clock = clock or wall_clock_ms
        self._homes: dict[bytes, int] = {}
        self._touched: dict[int, PartitionRun[S]] = {}
        self._commands_done: set[int] = set()
        self._outputs: dict[int, list[Pending]] = {}
        # Fault injection for recovery tests: exit after this many events are flushed.
        self._crash_after_events = crash_after_events
        self._overlap = overlap_outputs
        # The side records of the last cycle still in flight (with ``overlap_outputs``).
        self._sending: tuple[Awaitable[Any], dict[int, tuple[PartitionRun[S], list[Any]]]] | None
        self._sending = None
        self._stopped = False
        self.events_total = 0
        self.commands_total = 0
        self.forwarded_total = 0

    def apply_commands(self, run: PartitionRun[S], records: Iterable[Any]) -> None:
        """Steps 1-3 for a partition's records (``ConsumerRecord``-like)."""
        app = self.app
        if self._stopped:
            return
        decode, decide, home_of = app.decode_command, app.decide, self._home
        folded = getattr(app, "decide_folded", None)  # a FoldingApplication's live path
        held = self._outputs.setdefault(run.partition, [])  # produced after the checkpoint
        applied = False
        wall, skew = self._clock(), self.max_skew_ms
        floor = max(run.last_command_ms, run.last_tick_ms)
        for record in records:
            offset = record.offset
            if offset < run.next_command_offset:
                continue  # already reflected (re-delivered after a rebalance or a seek)
            now = floor = decision_time(record.timestamp, floor, wall, skew)
            try:
                try:
                    command = decode(record.value if record.value else b"")
                except DecodeError as exc:
                    self._dead_letter(run, record, f"undecodable command: {exc}", now)
                else:
                    home = home_of(command)
                    outputs: list[Output] | None = None
                    try:
                        if home is not None and home != run.partition:
                            events = self._forward(run, record, command, home, now)
                        elif folded is not None:
                            events, outputs = folded(command, run.state, now)
                        else:
                            events = decide(command, run.state, now)
                    except TaskstreamError as exc:
                        self._dead_letter(run, record, f"rejected command: {exc}", now)
                    else:
                        if events:
                            self._record(
                                run,
                                events,
                                command_head(record.partition, offset),
                                held,
                                decided_at_tail(now),
                                outputs,
                            )
            except _Stop:
                self._stopped = True
                break
            run.next_command_offset = offset + 1
            run.last_command_ms = now
            self.commands_total += 1
            applied = True
        if applied:
            self._touched[run.partition] = run
            self._commands_done.add(run.partition)

    def _home(self, command: Any) -> int | None:
        """The command's home partition, or None when it may be applied anywhere."""
        if self.partitions is None:
            return None
        key = self.app.home_key(command)
        if key is None:
            return None
        home = self._homes.get(key)
        if home is None:
            if len(self._homes) >= _HOME_CACHE_SIZE:
                self._homes.clear()
            home = self._homes[key] = home_partition_of_key(key, self.partitions)
        return home

    def _forward(
        self, run: PartitionRun[S], record: Any, command: Any, home: int, now: int
    ) -> Sequence[Any]:
        """The event forwarding ``record`` home; a record forwarded once already is refused
        (its home moved under it: the partition count changed), never sent round again."""
        came_from = header_partition(record.headers, FORWARDED_HEADER)
        if came_from is not None:
            raise ForwardingError(
                f"forwarded from partition {came_from} to {run.partition}, but its home is "
                f"partition {home} of {self.partitions} (did the partition count change?)"
            )
        self.forwarded_total += 1
        return [
            self.app.forward(
                command, record.value, record.key, run.partition, record.offset, home, now
            )
        ]

    def apply_tick(self, run: PartitionRun[S], now_ms: int) -> None:
        """Steps 2-3 for a timer tick; its events are recorded like a command's."""
        if self._stopped:
            return
        tick_ms = max(now_ms, run.last_tick_ms + 1)
        folded = getattr(self.app, "tick_folded", None)
        outputs: list[Output] | None = None
        if folded is not None:
            events, outputs = folded(run.state, tick_ms)
        else:
            events = self.app.tick(run.state, tick_ms)
        run.last_tick_ms = tick_ms
        if events:
            held = self._outputs.setdefault(run.partition, [])
            try:
                self._record(run, events, tick_head(tick_ms), held, b"", outputs)
            except _Stop:
                self._stopped = True
            self._touched[run.partition] = run

    def _record(
        self,
        run: PartitionRun[S],
        events: Sequence[Any],
        head: bytes,
        held: list[Pending],
        tail: bytes = b"",
        outputs: list[Output] | None = None,
    ) -> None:
        """Step 3 for one input's events. ``head`` starts their causation header and ``tail``
        ends it (``causation``'s parts, joined as ``Cause.encode`` joins them, without a Cause
        per event); side records go to ``held``, produced after the checkpoint. ``outputs``:
        the events are already folded into the state (``decide_folded``) and these are their
        side records."""
        app = self.app
        add, topic, partition = self.sink.add, self.topics.events, run.partition
        count = len(events)
        crash_after = self._crash_after_events
        index = 0
        folded = outputs is not None
        if outputs is not None:
            held.extend(outputs)
        for event in events:
            if not folded:
                state = run.state = app.evolve(run.state, event)
            add(
                topic,
                partition,
                app.event_key(event),
                app.encode_event(event),
                # A list: the producer's batch builder takes nothing else.
                [
                    (
                        CAUSE_HEADER,
                        head + position(index, count) + tail,
                    ),
                    (TYPE_HEADER, app.event_type(event).encode()),
                ],
            )
            if not folded:
                # After the event's encoding, as before: an app may reuse those bytes.
                held.extend(app.outputs(state, event))
            index += 1
            if crash_after is not None:
                self.events_total += 1
                if self.events_total >= crash_after:
                    raise _Stop
        if crash_after is None:
            self.events_total += count

    def _dead_letter(self, run: PartitionRun[S], record: Any, reason: str, now: int) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        out = self.app.dead_letter(
            record.value or b"",
            reason,
            record.topic,
            record.partition,
            record.offset,
            now,
            record.key,
        )
        self._outputs.setdefault(run.partition, []).append(out)

    async def complete(self) -> None:
        """Steps 4-7 for everything applied since the last call."""
        touched, self._touched = self._touched, {}
        done, self._commands_done = self._commands_done, set()
        held, self._outputs = self._outputs, {}
        next_offsets = await self.sink.flush()
        if self._stopped:
            log.critical("fault injection: exiting after %d events", self.events_total)
            logging.shutdown()
            os._exit(137)
        staged_by: dict[int, list[Any]] = {}
        for partition, run in touched.items():
            end = next_offsets.get((self.topics.events, partition))
            if end is not None:
                run.next_event_offset = end
            staged = await stage(self.sink, held.get(partition, ()), partition)
            run.store.write(self.app.dump_changes(run.state), run.offsets, staged)
            self.app.persisted(run.state)
            if staged:
                staged_by[partition] = staged
        await self.settle()
        if staged_by:
            for staged in staged_by.values():
                send(self.sink, staged)
            flushing = asyncio.ensure_future(self.sink.flush())
            runs = {p: (touched[p], staged) for p, staged in staged_by.items()}
            self._sending = (flushing, runs)
            if not self._overlap:
                await self.settle()
            else:
                await hand_off()
        if done:
            await self._commit({p: touched[p].next_command_offset for p in done})

    async def settle(self) -> None:
        """Wait for the side records in flight, then unstage them; raises what their
        produce raised (they stay staged, and recovery produces them)."""
        sending, self._sending = self._sending, None
        if sending is None:
            return
        flushing, runs = sending
        await flushing
        for run, staged in runs.values():
            run.store.unstage(o.output_id for o in staged)


async def hand_off() -> None:
    """Give the side records' flush and the producer's sender the loop turns they need to
    put the records on the wire, before the next cycle decides.

    The next fetch returns at once when records are buffered, without yielding, and a cycle's
    decisions run without yielding too; so without this the side records (the assignments an
    executor waits for) sat in the producer until the next cycle's events were flushed, a whole
    decide later. aiokafka writes a request on the fourth turn after the batch is handed to
    it: the flush task starts, the sender routine wakes, drains the accumulator and starts a
    request task, which writes. Turns with nothing else ready cost microseconds."""
    for _ in range(_HAND_OFF_TURNS):
        await asyncio.sleep(0)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
