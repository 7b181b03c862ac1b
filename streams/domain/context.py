"""One decision in progress: the events emitted so far, already folded into the state.

``decide``/``tick`` open a journal on the state, emit through ``Decision.emit`` (which evolves
the state, so every later rule sees the earlier decisions) and roll the journal back at the
end: the caller's state is unchanged, and ``evolve`` on the returned events gets exactly there.
"""

from __future__ import annotations

from schemas.events import Event
from streams.domain.config import DomainConfig
from streams.domain.evolve import evolve
from streams.domain.state import PartitionState


class Decision:
    __slots__ = ("state", "now", "config", "events")

    def __init__(self, state: PartitionState, now: int, config: DomainConfig) -> None:
        self.state = state
        self.now = now
        self.config = config
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
        evolve(self.state, event)

    def next_fencing_token(self) -> int:
        """Fencing tokens are a per-partition counter, so they only ever grow."""
        return self.state.meta.fencing + 1
