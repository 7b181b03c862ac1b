"""The whole-stack row's latency per operation (the batched one waits for its window)."""

from __future__ import annotations

from bench.stack import by_operation


def test_latencies_are_grouped_per_operation_with_their_percentiles() -> None:
    timed = [(float(ms), "conversation_send") for ms in range(1, 101)] + [(300.0, "tag_add")]
    assert by_operation(timed) == {
        "conversation_send": {"tasks": 100, "p50_ms": 50.0, "p99_ms": 99.0},
        "tag_add": {"tasks": 1, "p50_ms": 300.0, "p99_ms": 300.0},
    }
