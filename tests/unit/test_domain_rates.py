"""Per-client token buckets (``streams.domain.rates``, ``streams.domain.buckets``): over the
limit work waits and goes when a token is back; nothing fails; a Retry-After pauses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import UNLIMITED, OperationSpec, RateLimit, load_catalog
from streams.domain import buckets
from tests.support.gwt import Harness, config, names, of, register, submit

OP = "workflow_trigger"  # critical, needs a session, not batchable
FIVE_PER_SECOND = RateLimit(limit=5, period_ms=1000)


def assigned(events: list[ev.Event]) -> list[str]:
    return [e.task_id for e in of(events, ev.TaskAssigned)]


# -- the bucket ------------------------------------------------------------------------------


def test_a_full_bucket_lets_its_limit_go_at_once_then_one_per_interval() -> None:
    bucket: buckets.Bucket = (5, 1000, 0.0)
    now = 10_000
    went = 0
    while buckets.conforms(bucket, now):
        bucket = buckets.charged(bucket, now, 1)
        went += 1
    assert went == 5
    assert not buckets.conforms(bucket, now + 199)
    assert buckets.conforms(bucket, now + 200)  # one token back after period / limit
    assert buckets.tokens(bucket, now + 1000) == 5  # full again after a period


def test_a_charge_larger_than_the_bucket_goes_into_debt() -> None:
    bucket = buckets.charged((5, 1000, 0.0), 10_000, 10)  # a batch of ten
    assert buckets.tokens(bucket, 10_000) == -5
    assert not buckets.conforms(bucket, 10_000 + 1000)
    assert buckets.conforms(bucket, 10_000 + 1200)


@given(
    limit=st.integers(1, 50),
    period=st.integers(1, 10_000),
    gaps=st.lists(st.integers(0, 3000), min_size=1, max_size=60),
)
def test_dispatches_never_exceed_the_bucket_plus_its_refill(
    limit: int, period: int, gaps: list[int]
) -> None:
    """The token bucket's bound: in any span of t ms at most ``limit`` (a full bucket) plus
    the tokens refilled in t go, and a client sending all the time gets ``limit`` per period."""
    bucket: buckets.Bucket = (limit, period, 0.0)
    now, sent = 0, []
    for gap in gaps:
        now += gap
        if buckets.conforms(bucket, now):
            bucket = buckets.charged(bucket, now, 1)
            sent.append(now)
    for i, start in enumerate(sent):
        for j in range(i, len(sent)):
            span = sent[j] - start
            assert j - i + 1 <= limit + span * limit // period


@given(limit=st.integers(1, 50), period=st.integers(1, 1000), periods=st.integers(1, 10))
def test_a_client_sending_all_the_time_gets_its_limit_per_period(
    limit: int, period: int, periods: int
) -> None:
    bucket: buckets.Bucket = (limit, period, 0.0)
    went = 0
    for now in range(periods * period):  # asks every ms
        while buckets.conforms(bucket, now):
            bucket = buckets.charged(bucket, now, 1)
            went += 1
    # the full bucket at the start, then the refill of (periods) periods, less the last partial
    assert (periods - 1) * limit <= went <= (periods + 1) * limit


# -- deciding --------------------------------------------------------------------------------


def test_over_the_limit_tasks_wait_and_go_when_tokens_are_back() -> None:
    h = Harness(config(client_rate_limit=FIVE_PER_SECOND))
    h.given(register("s1", max_concurrent=100), at=0)
    went: list[str] = []
    for i in range(8):
        went += assigned(h.do(submit(f"t{i}", operation=OP), at=1000))
    assert went == [f"t{i}" for i in range(5)]
    assert [h.status(f"t{i}") for i in range(5, 8)] == ["queued"] * 3
    assert not of(h.log, ev.TaskFailed) and not of(h.log, ev.TaskRejected)
    assert of(h.log, ev.ClientRateLimit) == [
        ev.ClientRateLimit(client_id="A", occurred_at_ms=1000, bucket="", limit=5, period_ms=1000)
    ]
    assert assigned(h.tick(1199)) == []
    assert assigned(h.tick(1200)) == ["t5"]
    assert assigned(h.tick(1600)) == ["t6", "t7"]
    assert h.replayed() == h.state
    assert h.reloaded().indices() == h.state.indices()


def test_each_client_has_its_own_bucket_and_the_catalog_overrides_one() -> None:
    h = Harness(
        config(
            client_rate_limit=RateLimit(limit=2, period_ms=1000),
            client_rate_limits={"B": RateLimit(limit=4, period_ms=1000)},
        )
    )
    h.given(register("sa", max_concurrent=10), register("sb", client="B", max_concurrent=10))
    for i in range(5):
        h.do(submit(f"a{i}", operation=OP), at=100)
        h.do(submit(f"b{i}", operation=OP, client="B"), at=100)
    assert sum(h.status(f"a{i}") == "assigned" for i in range(5)) == 2
    assert sum(h.status(f"b{i}") == "assigned" for i in range(5)) == 4


def test_an_operation_with_its_own_limit_waits_while_the_clients_other_work_goes() -> None:
    catalog = dict(load_catalog())
    spec = catalog[OP]
    catalog[OP] = OperationSpec(
        **{**spec.model_dump(), "rate_limit": RateLimit(limit=1, period_ms=1000)}
    )
    h = Harness(config(catalog=catalog, client_rate_limit=UNLIMITED))
    h.given(register("s1", max_concurrent=10), at=0)
    h.do(submit("w1", operation=OP), at=100)
    h.do(submit("w2", operation=OP), at=100)
    h.do(submit("other", operation="conversation_send"), at=100)
    assert (h.status("w1"), h.status("w2"), h.status("other")) == (
        "assigned",
        "queued",
        "assigned",
    )
    assert [e.bucket for e in of(h.log, ev.ClientRateLimit)] == [OP]
    assert assigned(h.tick(1100)) == ["w2"]


@pytest.mark.skipif(
    "retry_after_ms" not in ev.TaskAttemptFailed.model_fields,
    reason="TaskAttemptFailed.retry_after_ms arrives with the failure classes (issue 14 item 2)",
)
def test_a_retry_after_pauses_the_clients_bucket_and_nothing_else_fails() -> None:
    h = Harness(config(client_rate_limit=FIVE_PER_SECOND))
    h.given(register("s1", max_concurrent=10), at=0)
    h.do(submit("t1", operation=OP), at=100)
    # A 429 with Retry-After: 2 s, as the executor reports it (a retryable failure).
    h.do(
        c.ReportResult.model_validate(
            {
                "client_id": "A",
                "task_id": "t1",
                "fencing_token": h.token("t1"),
                "success": False,
                "error": "429 Too Many Requests",
                "failure_class": "retryable",
                "retry_after_ms": 2000,
            }
        ),
        at=200,
    )
    assert h.state.clients["A"].paused_until_ms == 2200
    h.do(submit("t2", operation=OP), at=300)
    assert h.status("t2") == "queued"  # tokens are left, but the client is paused
    assert assigned(h.tick(2199)) == []
    assert assigned(h.tick(2200)) == ["t2"]


def test_unlimited_clients_record_no_bucket() -> None:
    h = Harness(config(client_rate_limit=UNLIMITED))
    h.given(register("s1", max_concurrent=10))
    events = h.do(submit("t1", operation=OP), at=5)
    assert names(events) == ["TaskAccepted", "TaskQueued", "TaskAssigned"]
    assert "A" not in h.state.clients


def test_a_changed_limit_is_recorded_once_and_applies_from_then_on() -> None:
    h = Harness(config(client_rate_limit=RateLimit(limit=1, period_ms=1000)))
    h.given(register("s1", max_concurrent=10), at=0)
    h.do(submit("t1", operation=OP), at=100)
    h.do(submit("t2", operation=OP), at=100)
    assert h.status("t2") == "queued"
    h.config = config(client_rate_limit=RateLimit(limit=10, period_ms=1000))
    # The next dispatch attempt records the new bucket; what was charged carries over.
    events = h.do(submit("t3", operation=OP), at=170)
    assert [(e.limit, e.period_ms) for e in of(events, ev.ClientRateLimit)] == [(10, 1000)]
    assert assigned(h.tick(200)) == ["t2"]
    assert assigned(h.tick(300)) == ["t3"]  # one per 100 ms now, not one per second
    assert len(of(h.log, ev.ClientRateLimit)) == 2
