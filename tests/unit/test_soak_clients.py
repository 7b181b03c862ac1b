"""The soak's load reaches every partition of the default layout."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from bench.soak import broker_kinds
from bench.soak_load import SOAK_CLIENTS


def test_soak_clients_cover_every_partition_of_four() -> None:
    partitioner = DefaultPartitioner()
    partitions = [0, 1, 2, 3]
    used = {partitioner(c.encode(), partitions, partitions) for c in SOAK_CLIENTS}
    assert used == set(partitions)


def test_the_soak_runs_on_both_brokers_unless_told() -> None:
    assert broker_kinds(None) == ["kafka", "embedded"]
    assert broker_kinds(["embedded"]) == ["embedded"]
    assert broker_kinds(["embedded", "both"]) == ["embedded", "kafka"]
