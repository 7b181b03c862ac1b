"""Key layout of the projection store (one RocksDB, prefixed key spaces).

Index keys length-prefix every component so a prefix scan never mixes ``ab`` + ``c`` with
``a`` + ``bc``. Strings are UTF-8 with ``surrogatepass`` so any id that reached us is storable.
"""

from __future__ import annotations

import functools
from typing import Final

TASK: Final = b"t\x00"
SESSION: Final = b"s\x00"
BATCH: Final = b"b\x00"
DEAD: Final = b"d\x00"
INDEX: Final = b"i\x00"
META: Final = b"m\x00"

COUNTERS_KEY: Final = META + b"counters"
LAYOUT_KEY: Final = META + b"layout"
OFFSET_PREFIX: Final = META + b"offset\x00"

# Index kinds.
BY_STATE: Final = b"s"
BY_CLIENT: Final = b"c"
BY_OPERATION: Final = b"o"
BY_CLIENT_STATE: Final = b"cs"
DLQ_BY_REASON: Final = b"dr"
DLQ_BY_CLIENT: Final = b"dc"
DLQ_BY_OPERATION: Final = b"do"


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def task_key(task_id: str) -> bytes:
    return TASK + encode(task_id)


def session_key(session_id: str) -> bytes:
    return SESSION + encode(session_id)


def batch_key(batch_id: str) -> bytes:
    return BATCH + encode(batch_id)


def dead_key(task_id: str) -> bytes:
    return DEAD + encode(task_id)


def index_prefix(kind: bytes, *parts: str) -> bytes:
    return index_prefix_of(kind, parts)


@functools.lru_cache(maxsize=65_536)
def index_prefix_of(kind: bytes, parts: tuple[str, ...]) -> bytes:
    # States, clients and operations are few: the fold asks for the same prefixes all the time.
    out = bytearray(INDEX + kind + b"\x00")
    for part in parts:
        raw = encode(part)
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def index_key(kind: bytes, parts: tuple[str, ...], task_id: str) -> bytes:
    return index_prefix_of(kind, parts) + encode(task_id)


def offset_key(partition: int) -> bytes:
    return OFFSET_PREFIX + partition.to_bytes(4, "big")


def partition_of(key: bytes) -> int:
    return int.from_bytes(key[len(OFFSET_PREFIX) :], "big")


IndexedFields = tuple[str | None, str | None, str | None]
"""What a task is indexed by: (state, operation, client id)."""


def task_index_changes(
    task_id: str, before: IndexedFields, after: IndexedFields
) -> list[tuple[bytes, bool]]:
    """The index entries (by client, state, client and state, operation) a task leaves
    (False) and joins (True) going from ``before`` to ``after``."""
    b_state, b_operation, b_client = before
    a_state, a_operation, a_client = after
    prefix = index_prefix_of
    tid = encode(task_id)
    changes: list[tuple[bytes, bool]] = []
    if b_client != a_client:
        if b_client is not None:
            changes.append((prefix(BY_CLIENT, (b_client,)) + tid, False))
        if a_client is not None:
            changes.append((prefix(BY_CLIENT, (a_client,)) + tid, True))
    if b_state != a_state:
        if b_state is not None:
            changes.append((prefix(BY_STATE, (b_state,)) + tid, False))
        if a_state is not None:
            changes.append((prefix(BY_STATE, (a_state,)) + tid, True))
    if b_state != a_state or b_client != a_client:
        if b_state is not None and b_client is not None:
            changes.append((prefix(BY_CLIENT_STATE, (b_client, b_state)) + tid, False))
        if a_state is not None and a_client is not None:
            changes.append((prefix(BY_CLIENT_STATE, (a_client, a_state)) + tid, True))
    if b_operation != a_operation:
        if b_operation is not None:
            changes.append((prefix(BY_OPERATION, (b_operation,)) + tid, False))
        if a_operation is not None:
            changes.append((prefix(BY_OPERATION, (a_operation,)) + tid, True))
    return changes
