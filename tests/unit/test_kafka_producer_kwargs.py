"""The producer settings every part shares: no linger on the hot path."""

from __future__ import annotations

import pytest

from streams.kafka import producer_kwargs
from streams.settings import Settings


@pytest.mark.parametrize("broker", ["kafka", "embedded"])
def test_records_leave_without_a_linger_and_stay_acknowledged_by_all(broker: str) -> None:
    kwargs = producer_kwargs(
        Settings(kafka_bootstrap_servers="127.0.0.1:9092", kafka_broker=broker)
    )
    # Each task crosses four produce -> fetch hops; a linger is paid on every one of them.
    assert kwargs["linger_ms"] == 0
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is (broker == "kafka")
