"""Token buckets as GCRA (see ``streams.domain.rates``): the arithmetic, and how dispatch
facts fold into a client's buckets (``evolve`` calls the ``fold_*`` functions).

Nothing here reads the configuration: the parameters of a bucket come from the
``client.rate_limit`` events folded before.
"""

from __future__ import annotations

from schemas.events import ClientRateLimit
from streams.domain.dispatch_records import Bucket, ClientRecord
from streams.domain.state import PartitionState

CLIENT_BUCKET = ""
"""The key of the client's own bucket; an operation's bucket is keyed by its name."""

__all__ = ["CLIENT_BUCKET", "Bucket", "charged", "conforms", "tokens", "wake_at"]


def interval(bucket: Bucket) -> float:
    limit, period_ms, _ = bucket
    return period_ms / limit


def wake_at(bucket: Bucket) -> float:
    """The earliest time a dispatch conforms."""
    limit, period_ms, tat = bucket
    return tat - (period_ms - period_ms / limit)


def conforms(bucket: Bucket, now_ms: int) -> bool:
    return bucket[0] == 0 or wake_at(bucket) <= now_ms


def charged(bucket: Bucket, now_ms: int, cost: int) -> Bucket:
    limit, period_ms, tat = bucket
    if limit == 0:
        return bucket
    return limit, period_ms, max(tat, float(now_ms)) + cost * period_ms / limit


def tokens(bucket: Bucket, now_ms: int) -> float:
    """Tokens available at ``now_ms`` (negative while in debt), for views and tests."""
    limit, period_ms, tat = bucket
    if limit == 0:
        return float("inf")
    return (now_ms - wake_at(bucket)) / (period_ms / limit) + 1


def _set_blocked(st: PartitionState, record: ClientRecord, blocked: bool) -> None:
    if record.blocked == blocked:
        return
    record.blocked = blocked
    if blocked:
        st.put(st.rate_blocked, record.client_id, None)
    else:
        st.delete(st.rate_blocked, record.client_id)


def fold_limit(st: PartitionState, e: ClientRateLimit) -> None:
    record = st.edit_client(e.client_id)
    old = record.buckets.get(e.bucket)
    record.buckets[e.bucket] = (e.limit, e.period_ms, old[2] if old is not None else 0.0)


def fold_charge(st: PartitionState, client_id: str, operation: str, cost: int, at_ms: int) -> None:
    """A dispatch of ``cost`` tasks of ``operation`` for the client at ``at_ms``."""
    record = st.clients.get(client_id)
    if record is None or not record.buckets:
        return
    record = st.edit_client(client_id)
    for key in (CLIENT_BUCKET, operation):
        bucket = record.buckets.get(key)
        if bucket is not None and bucket[0] != 0:
            record.buckets[key] = charged(bucket, at_ms, cost)
    # Blocked while any of its buckets is empty: work charged to it waits for a tick.
    empty = record.paused_until_ms > at_ms or any(
        not conforms(bucket, at_ms) for bucket in record.buckets.values()
    )
    _set_blocked(st, record, empty)


def fold_pause(st: PartitionState, client_id: str, until_ms: int) -> None:
    """A handler said Retry-After: nothing of the client goes before ``until_ms``."""
    record = st.edit_client(client_id)
    if until_ms > record.paused_until_ms:
        record.paused_until_ms = until_ms
    _set_blocked(st, record, True)


def idle(st: PartitionState, client_id: str) -> None:
    """The client has no unfinished task left: ticks need not try it any more."""
    record = st.clients.get(client_id)
    if record is not None and record.blocked:
        _set_blocked(st, st.edit_client(client_id), False)
