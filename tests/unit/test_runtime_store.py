"""The partition store: state and offsets in one write, reserved keys, locking, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import StoreError
from streams.runtime.store import (
    RESERVED_PREFIX,
    PartitionStore,
    StoredOffsets,
    StoreLockedError,
)


def test_state_and_offsets_are_written_together_and_read_back(tmp_path: Path) -> None:
    store, reason = PartitionStore.open(tmp_path / "0")
    assert reason is None and store.offsets() is None and store.is_empty()
    store.write([(b"a", b"1"), (b"b", b"2")], StoredOffsets(events=5, commands=3))
    store.write([(b"a", None)], StoredOffsets(events=6, commands=4))
    store.close()
    store, _ = PartitionStore.open(tmp_path / "0")
    assert store.offsets() == StoredOffsets(events=6, commands=4)
    assert list(store.state_items()) == [(b"b", b"2")]
    store.close()


def test_application_keys_may_not_use_the_reserved_prefix(tmp_path: Path) -> None:
    store, _ = PartitionStore.open(tmp_path / "0")
    with pytest.raises(StoreError):
        store.write([(RESERVED_PREFIX + b"x", b"1")], StoredOffsets(0, 0))
    assert store.offsets() is None
    store.close()


def test_a_store_is_held_by_one_owner_at_a_time(tmp_path: Path) -> None:
    store, _ = PartitionStore.open(tmp_path / "0")
    with pytest.raises(StoreLockedError):
        PartitionStore.open(tmp_path / "0")
    store.close()
    again, reason = PartitionStore.open(tmp_path / "0")
    assert reason is None
    again.close()


def test_a_store_rocksdb_cannot_open_is_recreated_empty(tmp_path: Path) -> None:
    store, _ = PartitionStore.open(tmp_path / "0")
    store.write([(b"a", b"1")], StoredOffsets(1, 1))
    store.close()
    (tmp_path / "0" / "CURRENT").write_bytes(b"\x00garbage")
    store, reason = PartitionStore.open(tmp_path / "0")
    assert reason is not None and store.is_empty()
    store.close()
