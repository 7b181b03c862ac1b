"""The pool capacity an executor registers with the processor (``streams.domain.pool``).

The processor writes a client's pool work to the ``task.pool`` partition numbered like the
client's home partition, and hands out only as much as the pool members of that partition
registered. So a pool executor registers on exactly the ``task.commands`` partitions whose
``task.pool`` partitions the consumer group gave it, its capacity split among them (at least
one each), again with every heartbeat; it releases a partition it loses and, on shutdown,
every one it holds.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable

from schemas.commands import Command, RegisterPool, ReleasePool


def pool_member_id() -> str:
    """One id per executor process: host, pid and a random part (a restart is a new member)."""
    return f"pool-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def shares(capacity: int, partitions: Iterable[int]) -> dict[int, int]:
    """``capacity`` split among ``partitions`` in order, at least one each."""
    owned = sorted(set(partitions))
    if not owned:
        return {}
    base, extra = divmod(capacity, len(owned))
    return {p: max(1, base + (1 if i < extra else 0)) for i, p in enumerate(owned)}


class PoolCapacity:
    """What to tell the processor as the pool partitions this executor consumes change."""

    def __init__(self, capacity: int, *, member_id: str | None = None, actor: str | None = None):
        self.capacity = max(1, capacity)
        self.member_id = member_id or pool_member_id()
        self.actor = actor
        self._owned: dict[int, int] = {}

    @property
    def owned(self) -> dict[int, int]:
        """Partition -> the capacity registered on it."""
        return dict(self._owned)

    def _register(self) -> list[Command]:
        return [
            RegisterPool(client_id=self.member_id, partition=p, capacity=share, actor=self.actor)
            for p, share in sorted(self._owned.items())
        ]

    def _release(self, partitions: Iterable[int], reason: str) -> list[Command]:
        gone = sorted(p for p in set(partitions) if p in self._owned)
        for p in gone:
            del self._owned[p]
        return [
            ReleasePool(client_id=self.member_id, partition=p, reason=reason, actor=self.actor)
            for p in gone
        ]

    def assigned(self, partitions: Iterable[int]) -> list[Command]:
        """The group gave us ``partitions`` (in addition to what we hold)."""
        self._owned = shares(self.capacity, [*self._owned, *partitions])
        return self._register()

    def revoked(self, partitions: Iterable[int]) -> list[Command]:
        released = self._release(partitions, "rebalance")
        self._owned = shares(self.capacity, self._owned)
        return [*released, *self._register()] if released else []

    def heartbeat(self) -> list[Command]:
        return self._register()

    def release_all(self, reason: str = "shutdown") -> list[Command]:
        return self._release(list(self._owned), reason)
