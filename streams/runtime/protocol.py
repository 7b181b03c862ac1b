"""What the runtime needs from an application. The runtime knows nothing of tasks.

An application is a decider (``decide``/``evolve``/``tick`` over a state ``S``) plus the
adapters the runtime cannot guess: how to turn bytes into commands and events and back, how
to key events, which side records an event implies, and how to persist state incrementally.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from streams.runtime.store import StoreView

S = TypeVar("S")

# ``Output.partition``: the partition number of the event that implied the side record.
# (The headers the runtime writes are named in ``streams.kafka.headers``.)
HOME = -1


class Output(NamedTuple):
    """A side record implied by an event (work for executors, outcomes, dead letters).

    ``partition``: None places the record by its key; ``HOME`` puts it on the partition number
    of its event (and so of the state it came from), for records that come back as commands.
    Every side record not given an explicit partition carries ``streams.kafka.routing``'s
    ``HOME_HEADER`` naming that partition, so replies can be sent there explicitly.

    A named tuple, not a frozen dataclass: one is built per side record on the hot path, and
    a frozen dataclass costs ~2 us to construct against ~0.4 us here (same immutability)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Application(Protocol[S]):
    """The contract between the runtime and the logic it runs."""

    def initial_state(self) -> S:
        """A fresh state for one partition."""
        ...

    def decode_command(self, value: bytes) -> Any:
        """Bytes from the command topic to a command; raise ``DecodeError`` if unusable."""
        ...

    def home_key(self, command: Any) -> bytes | None:
        """The bytes whose home partition (``streams.kafka.routing``) owns the command's state,
        or None when any partition may apply it. A command read on another partition than its
        home is not decided there: ``forward`` records it and sends it home."""
        ...

    def forward(
        self,
        command: Any,
        value: bytes,
        key: bytes | None,
        partition: int,
        offset: int,
        home: int,
        now_ms: int,
    ) -> Any:
        """The event recording that the command record at ``partition``/``offset`` goes to
        partition ``home``; its ``outputs`` re-produce the record there (so recovery does too)."""
        ...

    def decide(self, command: Any, state: S, now_ms: int) -> Sequence[Any]:
        """Pure: the events a command causes. ``now_ms`` is the decision time: the command
        record's timestamp bounded by the processor's clock (``streams.runtime.clock``).

        Raising a ``TaskstreamError`` rejects the command: the runtime dead-letters it (with
        ``dead_letter``) and goes on. Any other exception stops the processor.
        """
        ...

    def tick(self, state: S, now_ms: int) -> Sequence[Any]:
        """Pure: the events time alone causes (windows closing, timeouts, stale sessions)."""
        ...

    def evolve(self, state: S, event: Any) -> S:
        """Pure (may update ``state`` in place and return it): fold one event into state."""
        ...

    def encode_event(self, event: Any) -> bytes: ...

    def decode_event(self, value: bytes) -> Any: ...

    def event_key(self, event: Any) -> bytes:
        """The event record's key (the client id, so events co-partition with commands)."""
        ...

    def event_type(self, event: Any) -> str: ...

    def outputs(self, state: S, event: Any) -> Iterable[Output]:
        """Side records for an event, computed after the event is folded into ``state`` and
        encoded with ``encode_event`` (an app may reuse those bytes)."""
        ...

    def dead_letter(
        self,
        raw: bytes,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        now_ms: int,
        key: bytes | None,
    ) -> Output:
        """The dead letter for an input record that could not be used; ``key`` is the
        record's key, which the dead letter keeps (it names the client)."""
        ...

    def dump_changes(self, state: S) -> Iterable[tuple[bytes, bytes | None]]:
        """Keys changed since the last dump (``None`` deletes); resets the change tracking."""
        ...

    def load_state(self, store: StoreView) -> S:
        """The state of one partition from everything ``dump_changes`` ever wrote to its store
        (empty for a fresh one). The store stays open while the partition is owned: the state
        may keep ``store`` to read records back that it does not hold in memory."""
        ...

    def persisted(self, state: S) -> None:
        """Everything ``dump_changes`` gave is in the store now (the cycle's ``WriteBatch`` is
        written): the state may drop from memory what it can read back from there."""
        ...


class FoldingApplication(Application[S], Protocol[S]):
    """An application that can leave a decision's events folded into the state it decided
    on. The live processor then skips ``evolve`` and ``outputs`` per event; recovery still
    uses ``decide``, ``tick``, ``evolve`` and ``outputs``, which must agree with these."""

    def decide_folded(
        self, command: Any, state: S, now_ms: int
    ) -> tuple[Sequence[Any], list[Output]]:
        """``decide``, with its events folded into ``state`` (as ``evolve`` of each would),
        and their side records in order (``outputs`` of each event right after it). On an
        exception ``state`` is unchanged."""
        ...

    def tick_folded(self, state: S, now_ms: int) -> tuple[Sequence[Any], list[Output]]:
        """``tick``, folded like ``decide_folded``."""
        ...
