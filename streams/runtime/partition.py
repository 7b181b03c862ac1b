"""What the runtime holds for one owned partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from streams.runtime.store import StateStore, StoredOffsets

S = TypeVar("S")

__all__ = ["PartitionRun"]


@dataclass(slots=True)
class PartitionRun(Generic[S]):
    """An owned partition: its state, its store, and the offsets the state reflects.

    ``next_command_offset``: the first command not yet reflected in ``state``.
    ``next_event_offset``: the end of this partition of the event log as far as we wrote it.
    ``last_tick_ms``: the time of the last tick fed to the decider (ticks strictly increase,
    so a tick group is identified by its time).
    ``last_command_ms``: the newest timestamp among the commands applied (stream time).
    """

    partition: int
    store: StateStore
    state: S
    next_command_offset: int
    next_event_offset: int
    last_tick_ms: int = 0
    last_command_ms: int = 0

    @property
    def offsets(self) -> StoredOffsets:
        return StoredOffsets(self.next_event_offset, self.next_command_offset)
