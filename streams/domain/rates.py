"""Per-client rate limits: a token bucket per client (and per operation that has its own).

GoHighLevel allows 100 requests per 10 s per sub-account; a client's dispatches are charged
to its bucket (``DomainConfig.client_rate_limit``, or the client's own from the catalog) and,
for an operation with a ``rate_limit`` in the catalog, to that operation's bucket of the client
too. Work whose bucket is empty is not failed: it stays queued and goes when a token is back
(ticks try blocked clients again). A handler's Retry-After (a 429, reported as a retryable
failure with ``retry_after_ms``) pauses every bucket of the client until then.

The bucket is GCRA (the generic cell rate algorithm), the token bucket written as one number:
the *theoretical arrival time* ``tat``. With ``limit`` tokens per ``period_ms`` each token is
worth ``T = period/limit`` ms, and a dispatch conforms while ``tat - (period - T) <= now``, so a
full bucket lets ``limit`` go at once and then one every ``T``. A dispatch costs one token per
task (a batch: per item) and may take the bucket into debt, so a batch larger than the bucket
still goes, and what follows waits longer.

Time is the decision's time (the event clock): ``evolve`` folds a charge at the event's
``occurred_at_ms``. The bucket parameters a client is charged with are recorded in the state
by ``client.rate_limit`` events (when the client first dispatches, and when the configuration
changes), so folding a charge never reads the configuration.
"""

from __future__ import annotations

from schemas.catalog import RateLimit
from schemas.events import ClientRateLimit
from streams.domain.buckets import CLIENT_BUCKET, Bucket, conforms
from streams.domain.context import Decision
from streams.domain.state import PartitionState

# -- deciding --------------------------------------------------------------------------------


def _limits(ctx: Decision, client_id: str, operation: str) -> list[tuple[str, RateLimit]]:
    cfg = ctx.config
    limits = [(CLIENT_BUCKET, cfg.client_rate_limits.get(client_id, cfg.client_rate_limit))]
    spec = cfg.catalog.get(operation)
    if spec is not None and spec.rate_limit is not None:
        limits.append((operation, spec.rate_limit))
    return limits


def _sync(ctx: Decision, client_id: str, key: str, limit: RateLimit) -> Bucket | None:
    """The client's bucket ``key`` as configured now, recording a change first."""
    record = ctx.state.clients.get(client_id)
    bucket = record.buckets.get(key) if record is not None else None
    if bucket is None and limit.unlimited:
        return None
    if bucket is None or (bucket[0], bucket[1]) != (limit.limit, limit.period_ms):
        ctx.emit(
            ClientRateLimit(
                client_id=client_id,
                occurred_at_ms=ctx.now,
                bucket=key,
                limit=limit.limit,
                period_ms=limit.period_ms,
            )
        )
        bucket = ctx.state.clients[client_id].buckets.get(key)
    return bucket


def paused(st: PartitionState, client_id: str, now_ms: int) -> bool:
    record = st.clients.get(client_id)
    return record is not None and record.paused_until_ms > now_ms


def client_allows(ctx: Decision, client_id: str) -> bool:
    """Whether the client's own bucket (and no pause) lets anything go now."""
    if paused(ctx.state, client_id, ctx.now):
        return False
    cfg = ctx.config
    bucket = _sync(
        ctx, client_id, CLIENT_BUCKET, cfg.client_rate_limits.get(client_id, cfg.client_rate_limit)
    )
    return bucket is None or conforms(bucket, ctx.now)


def allows(ctx: Decision, client_id: str, operation: str) -> bool:
    """Whether a dispatch of ``operation`` for the client conforms to every bucket it is
    charged to. Records the buckets' parameters first where the state does not have them."""
    if paused(ctx.state, client_id, ctx.now):
        return False
    for key, limit in _limits(ctx, client_id, operation):
        bucket = _sync(ctx, client_id, key, limit)
        if bucket is not None and not conforms(bucket, ctx.now):
            return False
    return True


def due(st: PartitionState, now_ms: int) -> list[str]:
    """Blocked clients a dispatch round may serve again now, in a fixed order."""
    ready: list[str] = []
    for client_id in st.rate_blocked:
        record = st.clients[client_id]
        if record.paused_until_ms > now_ms:
            continue
        bucket = record.buckets.get(CLIENT_BUCKET)
        if bucket is None or conforms(bucket, now_ms):
            ready.append(client_id)
    return sorted(ready)
