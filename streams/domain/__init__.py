"""The pure core of taskstream: a decider over the state of one partition.

``decide(command, state, now_ms, config)``, ``tick(state, now_ms, config)`` and
``evolve(state, event)``; no I/O, no clocks, no randomness. ``decide_folded`` and
``tick_folded`` are the same decisions with their events left folded into the state.
"""

from streams.domain.config import DomainConfig
from streams.domain.decide import decide, decide_folded
from streams.domain.errors import DomainError, UnknownCommandError
from streams.domain.evolve import evolve
from streams.domain.state import PartitionState, Status
from streams.domain.tick import tick, tick_folded

__all__ = [
    "DomainConfig",
    "DomainError",
    "PartitionState",
    "Status",
    "UnknownCommandError",
    "decide",
    "decide_folded",
    "evolve",
    "tick",
    "tick_folded",
]
