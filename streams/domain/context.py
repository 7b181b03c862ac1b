"""One decision in progress: the events emitted so far, already folded into the state.

``decide``/``tick`` open a journal on the state, emit through ``Decision.emit`` (which evolves
the state, so every later rule sees the earlier decisions) and roll the journal back at the
end: the caller's state is unchanged, and ``evolve`` on the returned events gets exactly there.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.events import Event, TaskEvent
from streams.domain.config import DomainConfig
from streams.domain.evolve import evolve
from streams.domain.state import PartitionState

Observer = Callable[[PartitionState, Event], None]
"""Called after each emitted event is folded in, with the state right after it (the state
``evolve`` of the events so far gives): e.g. the processor's side records of that event."""


class Decision:
    __slots__ = ("state", "now", "config", "events", "observe")

    def __init__(
        self,
        state: PartitionState,
        now: int,
        config: DomainConfig,
        observe: Observer | None = None,
    ) -> None:
        self.state = state
        self.now = now
        self.config = config
        self.events: list[Event] = []
        self.observe = observe

    def emit(self, event: Event) -> None:
        self.events.append(event)
        evolve(self.state, event)
        if self.observe is not None:
            self.observe(self.state, event)

    def keep(self) -> None:
        """End the decision keeping its writes (``Journal.commit``), then tidy what ``evolve``
        tidies outside decisions: the fronts of the touched clients' lanes and the timer heap.
        The state is then equal to ``evolve`` of every emitted event on the state before."""
        state = self.state
        state.commit()
        for client_id in {e.client_id for e in self.events if isinstance(e, TaskEvent)}:
            state.lane_compact(client_id)
        state.prune_timers()

    def next_fencing_token(self) -> int:
        """Fencing tokens are a per-partition counter, so they only ever grow."""
        return self.state.meta.fencing + 1
