"""The causation header: which input caused an event, and where the event sits in its group.

Every event record carries ``CAUSE_HEADER``. The events one input causes form a *group*;
each event says its index and the group's size, so recovery can tell a complete group from
one cut short by a crash, and can drop duplicates left by producer retries. A command's group
also records the time it was decided at (``streams.runtime.clock``): recovery completes a
partial group by deciding the command again at that time. (Headers written before the time
was recorded have four fields after the kind; their time is the command record's timestamp.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from streams.kafka.headers import CAUSE_HEADER

__all__ = ["Cause", "cause_of", "command_head", "decided_at_tail", "position", "tick_head"]


# The header's one encoder, in parts: head + position + tail (``Cause.encode`` joins them; the
# processor joins them per event without building a Cause).


def command_head(partition: int, offset: int) -> bytes:
    """``c:<partition>:<offset>:``: the events of the command at that offset."""
    return b"c:%d:%d:" % (partition, offset)


def tick_head(tick_ms: int) -> bytes:
    """``t:<tick_ms>:``: the events of the timer tick at that time."""
    return b"t:%d:" % tick_ms


def position(index: int, count: int) -> bytes:
    """``<index>:<count>``: where an event sits in its group."""
    return b"0:1" if count == 1 else b"%d:%d" % (index, count)


def decided_at_tail(at_ms: int) -> bytes:
    """``:<at_ms>``: the time a command's group was decided at (command groups only)."""
    return b":%d" % at_ms


@dataclass(frozen=True, slots=True)
class Cause:
    """``kind`` "c": a command at ``offset`` of command partition ``partition``, decided at
    ``at_ms`` (None in headers written before it was recorded); ``kind`` "t": a timer tick at
    ``tick_ms`` (``offset`` holds the tick time)."""

    kind: Literal["c", "t"]
    partition: int
    offset: int
    index: int
    count: int
    at_ms: int | None = None

    @property
    def group(self) -> tuple[str, int, int]:
        return (self.kind, self.partition, self.offset)

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    def encode(self) -> bytes:
        if self.kind == "t":
            return tick_head(self.offset) + position(self.index, self.count)
        tail = b"" if self.at_ms is None else decided_at_tail(self.at_ms)
        return command_head(self.partition, self.offset) + position(self.index, self.count) + tail

    @classmethod
    def parse(cls, raw: bytes, partition: int) -> Cause | None:
        """The cause in a header value, or None when the value is not one we wrote."""
        parts = raw.split(b":")
        try:
            if parts[0] == b"c" and len(parts) in (5, 6):
                p, offset, index, count = (int(x) for x in parts[1:5])
                at_ms = int(parts[5]) if len(parts) == 6 else None
                cause = cls("c", p, offset, index, count, at_ms)
            elif parts[0] == b"t" and len(parts) == 4:
                tick_ms, index, count = (int(x) for x in parts[1:])
                cause = cls("t", partition, tick_ms, index, count)
            else:
                return None
        except ValueError:
            return None
        return cause if 0 <= cause.index < cause.count else None


def cause_of(headers: Sequence[tuple[str, bytes]], partition: int) -> Cause | None:
    for name, value in headers:
        if name == CAUSE_HEADER:
            return Cause.parse(value, partition)
    return None
