"""Lengthen a consumer's fetch wait while the broker answers fetches empty that should not be.

The embedded broker (Tansu, memory storage) answers a fetch by listing every record batch of
the partition, and when that takes longer than the fetch's ``max_wait`` it gives up and
answers with no records (but with the high watermark). A partition gains a batch per produce
request, so under steady load it grows until the listing no longer fits in a short wait: on 2
busy cores about 25,000 batches for a 20 ms wait, a few minutes of the soak. From then on every
fetch of that partition comes back empty and the consumer receives nothing, ever, although
the broker keeps reporting records beyond its position. A longer wait lets the same fetch
answer (40,000 batches: empty at 20 ms, records within 50 ms at a 500 ms wait).

:class:`FetchWait` watches for that state (records known to wait, none delivered, for longer
than a few waits), doubles the consumer's wait up to a ceiling, and halves it again after a
quiet minute. Kafka itself answers with records whatever the wait, so there it stays at the
configured wait, and the guard is off (``enabled`` comes from the broker's profile,
:mod:`streams.kafka.profile`). The wait is a field of aiokafka's fetcher; this module is the one
place that reaches into it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sized
from typing import Any

__all__ = ["FETCH_WAIT_CEILING_MS", "FetchWait", "consumer_fetch_wait_ms", "starved"]

log = logging.getLogger(__name__)

# Library defaults: the longest wait (well under aiokafka's 40 s request timeout), how long the
# broker must have answered normally before the wait is shortened again.
FETCH_WAIT_CEILING_MS = 5_000
QUIET_S = 60.0


def consumer_fetch_wait_ms(consumer: Any) -> int | None:
    """The fetch wait (``fetch_max_wait_ms``) the consumer's fetcher uses now, None when it has
    none to read (aiokafka keeps it on a private fetcher; only this module reaches for it)."""
    current = getattr(getattr(consumer, "_fetcher", None), "_fetch_max_wait_ms", None)
    return current if isinstance(current, int) else None


class FetchWait:
    """The fetch wait of one consumer, widened while its partitions are starved.

    Call :meth:`observe` after every poll with whether a partition that has records beyond
    its position got none. Starvation that lasts ``0.5 s + 3 waits`` doubles the wait.
    """

    def __init__(
        self,
        consumer: Any,
        *,
        name: str,
        enabled: bool,
        floor_ms: int | None = None,
        ceiling_ms: int = FETCH_WAIT_CEILING_MS,
        quiet_s: float = QUIET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.enabled = enabled
        self._fetcher = getattr(consumer, "_fetcher", None)
        current = getattr(self._fetcher, "_fetch_max_wait_ms", None)
        if not enabled:
            self._fetcher, current = None, current if isinstance(current, int) else 0
        elif not isinstance(current, int):
            log.warning("%s: cannot adjust this consumer's fetch wait", name)
            self._fetcher, current = None, floor_ms or 0
        self.name = name
        self.floor_ms = floor_ms if floor_ms is not None else current
        self.ceiling_ms = max(self.floor_ms, ceiling_ms)
        self.wait_ms = current
        self.raised = 0
        self._quiet_s = quiet_s
        self._clock = clock
        self._starved_since: float | None = None
        self._last_change = -math.inf
        self._last_starved = -math.inf

    def observe(self, starved: bool) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if starved:
            self._last_starved = now
            if self._starved_since is None:
                self._starved_since = now
            elif (
                now - self._starved_since >= 0.5 + 3 * self.wait_ms / 1000
                and self.wait_ms < self.ceiling_ms
            ):
                waited = now - self._starved_since
                self._set(min(self.ceiling_ms, max(1, self.wait_ms) * 2), now)
                self._starved_since = now
                self.raised += 1
                log.warning(
                    "%s: the broker delivered no records for %.1f s although records wait; "
                    "fetch wait raised to %d ms (a broker that cannot answer within the wait)",
                    self.name,
                    waited,
                    self.wait_ms,
                )
            return
        self._starved_since = None
        if (
            self.wait_ms > self.floor_ms
            and now - self._last_starved >= self._quiet_s
            and now - self._last_change >= self._quiet_s
        ):
            self._set(max(self.floor_ms, self.wait_ms // 2), now)
            log.info("%s: fetch wait lowered to %d ms", self.name, self.wait_ms)

    def _set(self, wait_ms: int, now: float) -> None:
        self.wait_ms = wait_ms
        self._last_change = now
        if self._fetcher is not None:
            self._fetcher._fetch_max_wait_ms = wait_ms


def starved(consumer: Any, batch: Mapping[Any, Sized], max_records: int) -> bool:
    """Whether a poll left out a partition that is fetched (assigned, not paused) and that the
    broker reported records beyond the position of. A poll that returned ``max_records`` may
    have left partitions out for want of room: it does not count."""
    if sum(map(len, batch.values())) >= max_records:
        return False
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if assignment is None:
        return False
    for tp in assignment.tps:
        if tp in batch:
            continue
        state = assignment.state_value(tp)
        if state is None or state.paused or not state.has_valid_position:
            continue
        if state.highwater is not None and state.highwater > state.position:
            return True
    return False
