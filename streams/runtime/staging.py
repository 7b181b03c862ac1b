"""Side records that are produced exactly once across crashes, without transactions.

A cycle's side records (work for executors, outcomes, delayed retries, dead letters) are
*staged*: written into the partition's store in the same ``WriteBatch`` as the state and
offsets they follow from, each with a unique id (header ``OUTPUT_ID_HEADER``) and a lower
bound of the offset it will land at. Only then are they produced; once acknowledged, they are
unstaged. Recovery finds whatever is still staged, reads each destination partition from the
recorded lower bound to its end, and produces only the records whose id is not there.

So a side record is produced once per event, whatever the crash point:

* before the store write: no side record of the cycle was produced (they are produced after
  it); recovery replays the cycle's events from the log and stages their side records anew;
* after the store write: the records are staged; recovery produces the missing ones only.

The one gap: a record still in flight in a dead producer's socket that the broker appends
*after* recovery looked (recovery starts long after the process died, so this needs a
request delayed by the network for longer than a group rebalance).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from streams.kafka.headers import HOME_HEADER, OUTPUT_ID_HEADER
from streams.kafka.reader import LogReader
from streams.runtime.outbox import Sink
from streams.runtime.protocol import HOME, Output
from streams.runtime.store import StagedOutput

__all__ = ["Pending", "missing", "send", "stage"]

# Kafka header on every side record: its unique id (what recovery looks for).

# A side record before staging: an ``Output`` (partition None: placed by key).
Pending = Output

_NONCE = uuid.uuid4().hex[:12]
_COUNTER = itertools.count()


async def stage(
    sink: Sink, pending: Iterable[Pending], home: int | None = None
) -> list[StagedOutput]:
    """Give each pending side record its partition, id and lower-bound offset.

    ``home`` is the partition of the events the records follow from: a record placed ``HOME``
    goes to that partition number, and every record not placed explicitly names it in its
    ``HOME_HEADER`` (where replies go). A cycle stages thousands of records over few keys and
    partitions: placements and positions are asked of the sink once per key and per partition
    (neither changes before the cycle's records are sent)."""
    staged = []
    places: dict[tuple[str, bytes | None], int] = {}
    starts: dict[tuple[str, int], int] = {}
    nonce, counter, new = _NONCE, _COUNTER, tuple.__new__
    home_header = (HOME_HEADER, b"%d" % home) if home is not None else None
    for topic, key, value, partition, headers in pending:
        if home_header is not None and (partition is None or partition == HOME):
            headers = (*headers, home_header)
            if partition == HOME:
                partition = home
        if partition is None or partition == HOME:
            if key is None:
                partition = await sink.place(topic, key)  # spread: a new choice every time
            else:
                placed = places.get((topic, key))
                if placed is None:
                    placed = places[(topic, key)] = await sink.place(topic, key)
                partition = placed
        start = starts.get((topic, partition))
        if start is None:
            start = starts[(topic, partition)] = await sink.position(topic, partition)
        output_id = f"{nonce}-{next(counter)}"
        fields = (
            output_id,
            topic,
            partition,
            key,
            value,
            (*headers, (OUTPUT_ID_HEADER, output_id.encode())),
            start,
        )
        staged.append(new(StagedOutput, fields))  # StagedOutput(*fields) at half the cost
    return staged


def send(sink: Sink, staged: Iterable[StagedOutput]) -> None:
    add = sink.add
    for _, topic, partition, key, value, headers, _ in staged:
        add(topic, partition, key, value, headers)


def _output_id(headers: Any) -> str | None:
    for name, value in headers or ():
        if name == OUTPUT_ID_HEADER:
            return bytes(value).decode(errors="replace")
    return None


async def missing(reader: LogReader, staged: Sequence[StagedOutput]) -> list[StagedOutput]:
    """The staged records not found in their destination partitions."""
    if not staged:
        return []
    by_tp: dict[tuple[str, int], list[StagedOutput]] = {}
    for out in staged:
        by_tp.setdefault((out.topic, out.partition), []).append(out)
    present: set[str] = set()
    for (topic, partition), outs in by_tp.items():
        wanted = {o.output_id for o in outs}
        start = min(o.start for o in outs)
        end = await reader.end_offset(topic, partition)
        async for record in reader.read(topic, partition, start, end):
            output_id = _output_id(record.headers)
            if output_id in wanted:
                present.add(output_id)
    return [o for o in staged if o.output_id not in present]
