"""Where a client's records live: its home partition, and the headers that route replies.

A client's *home partition* on ``task.commands`` (and ``task.events``, co-partitioned) is
``murmur2(utf8(client_id)) & 0x7fffffff`` modulo the topic's partition count: the rule of the
Java client's default partitioner, kafkajs, franz-go and librdkafka's ``murmur2_random``, so
most producers keyed by the client id land there by themselves. Any other partitioner
(librdkafka's default ``consistent_random`` is CRC32) still works: the processor that receives
a command away from its home forwards it there once, recording a ``command.forwarded`` event
(``docs/partitioning.md``).

Records the processor writes for others carry ``HOME_HEADER``: the ``task.commands`` partition
their replies belong to (results of an assignment, the ``RetryDue`` of a tier record). Whoever
answers produces to that partition number explicitly, never by re-hashing a key.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from streams.kafka.headers import HOME_HEADER

__all__ = [
    "header_partition",
    "home_partition",
    "home_partition_of_key",
]


def home_partition_of_key(key: bytes, partitions: int) -> int:
    """The home partition of a record key (the UTF-8 client id) among ``partitions``."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def home_partition(client_id: str, partitions: int) -> int:
    """The home partition of ``client_id`` on a topic of ``partitions`` partitions."""
    return home_partition_of_key(client_id.encode(), partitions)


def header_partition(
    headers: Iterable[tuple[str, bytes]] | None, name: str = HOME_HEADER
) -> int | None:
    """The partition number a header names, or None when it is absent or not a number."""
    for header, value in headers or ():
        if header == name:
            text = bytes(value).split(b":", 1)[0]
            return int(text) if text.isdigit() else None
    return None
