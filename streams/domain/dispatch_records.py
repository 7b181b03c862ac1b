"""Records of dispatch beyond tasks and sessions: a client's rate buckets and starvation,
and the pool capacity of a partition.

Kept apart from the task/session/batch records so that adding them left those (pickled in the
local store) unchanged; ``streams.domain.state`` holds the containers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from streams.domain.state import TaskRecord

POOL_KEY: Final = b"pool"

Bucket = tuple[int, int, float]
"""(limit, period_ms, tat): a GCRA token bucket (``streams.domain.rates``); tat is the
theoretical arrival time in ms. Immutable, so copying a record's dict copies its buckets."""


# Keys of ``ClientRecord.sla_seq``: a session lane is keyed by its priority, a pool lane by
# POOL_LANE_BASE + priority, the batched tasks of a priority by BATCHED_LANE_BASE + priority.
POOL_LANE_BASE: Final = 10
BATCHED_LANE_BASE: Final = 20


def lane_key(task: TaskRecord, batched: bool) -> int:
    """The SLA watermark a waiting task counts against (``streams.domain.watch``)."""
    if batched:
        return BATCHED_LANE_BASE + task.queue_priority
    return task.queue_priority if task.session_required else POOL_LANE_BASE + task.queue_priority


def client_key(client_id: str) -> bytes:
    return b"client/" + client_id.encode()


@dataclass(slots=True)
class ClientRecord:
    client_id: str
    # "" -> the client's bucket; an operation name -> that operation's bucket
    buckets: dict[str, Bucket] = field(default_factory=dict)
    paused_until_ms: int = 0  # a handler's Retry-After (429) holds every bucket until then
    blocked: bool = False  # its last charge emptied a bucket, or it is paused: ticks retry it
    starved_at_ms: int | None = None  # a client.starved episode began then
    # queue priority -> the highest task seq whose SLA breach was recorded (lanes are in seq
    # order, so every waiting task of that priority at or below it was reported)
    sla_seq: dict[int, int] = field(default_factory=dict)
    # operation -> the adapted batch size (``streams.domain.batching``); absent: the operation's
    batch_sizes: dict[str, int] = field(default_factory=dict)

    def clone(self) -> ClientRecord:
        return ClientRecord(
            self.client_id,
            dict(self.buckets),
            self.paused_until_ms,
            self.blocked,
            self.starved_at_ms,
            dict(self.sla_seq),
            dict(self.batch_sizes),
        )

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        # Pickles from before ``batch_sizes`` (the local store) do not hold it.
        self.batch_sizes = {}
        for name, value in state[1].items():
            object.__setattr__(self, name, value)


PoolMember = tuple[int, int, int]
"""(capacity, last_seen_ms, reg_seq) of one pool executor on this partition."""


@dataclass(slots=True)
class PoolRecord:
    """The partition's pool capacity. ``bounded`` once any member registered: before that the
    partition hands pool work out at once (executors that never register, such as older
    SDKs, keep working); after, only within the members' capacity."""

    members: dict[str, PoolMember] = field(default_factory=dict)
    bounded: bool = False
    seq: int = 0

    def clone(self) -> PoolRecord:
        return PoolRecord(dict(self.members), self.bounded, self.seq)

    @property
    def capacity(self) -> int:
        return sum(member[0] for member in self.members.values())
