"""The soak's load reaches every partition of the default layout."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streams.soak import SOAK_CLIENTS


def test_soak_clients_cover_every_partition_of_four() -> None:
    partitioner = DefaultPartitioner()
    partitions = [0, 1, 2, 3]
    used = {partitioner(c.encode(), partitions, partitions) for c in SOAK_CLIENTS}
    assert used == set(partitions)
