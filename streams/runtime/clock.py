"""The time a command is decided at: its record time, bounded by the processor's clock.

A record's timestamp is set by whoever produced it (CreateTime), so it is only as good as that
producer's clock. Taken as it is, one producer 120 s ahead would move time for every client of
its partition (their retries come due late, sessions look stale, batch windows close early),
and a record from the past (MirrorMaker or Connect keeping source timestamps) would get
deadlines that expired before it arrived. So the decision time of a command is

    max(floor, min(record time, processor clock + max skew))

where ``floor`` is the partition's own time so far (the newest decision time and the last
tick): a producer can move a partition's time ahead by at most the skew, and a record from
the past is decided at the partition's present. While the processor is behind its partition,
ticks run at stream time (``tick_time``), so a backlog is still decided at its own times.

The result is recorded in the causation header of every event the command causes
(``streams.runtime.causation``), so recovery decides a partial command again at the same time,
whatever the clock says by then.
"""

from __future__ import annotations

__all__ = ["decision_time"]


def decision_time(record_ms: int, floor_ms: int, wall_ms: int, max_skew_ms: int) -> int:
    """The time a command with record timestamp ``record_ms`` is decided at (see above)."""
    ceiling = wall_ms + max_skew_ms
    at = record_ms if record_ms < ceiling else ceiling
    return at if at > floor_ms else floor_ms
