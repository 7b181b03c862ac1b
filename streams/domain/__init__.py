"""The pure core of taskstream: a decider over the state of one partition.

``decide(command, state, now_ms, config)``, ``tick(state, now_ms, config)`` and
``evolve(state, event)``; no I/O, no clocks, no randomness.
"""

from streams.domain.config import DomainConfig
from streams.domain.decide import decide
from streams.domain.errors import DomainError, UnknownCommandError
from streams.domain.evolve import evolve
from streams.domain.state import PartitionState, Status
from streams.domain.tick import tick

__all__ = [
    "DomainConfig",
    "DomainError",
    "PartitionState",
    "Status",
    "UnknownCommandError",
    "decide",
    "evolve",
    "tick",
]
