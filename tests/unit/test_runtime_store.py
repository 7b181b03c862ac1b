"""The partition store: state and offsets in one write, reserved keys, locking, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import StoreError
from streams.rocksdb import StoreLockedError
from streams.runtime.store import (
    RESERVED_PREFIX,
    PartitionStore,
    StagedOutput,
    StoredOffsets,
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


STAGED = [
    StagedOutput("n-1", "p.completed", 3, b"client-1", b"\xc3\x01value", (("ts-out", b"n-1"),), 41),
    StagedOutput("n-2", "p.dlq", 0, None, b"", (("ts-type", b"DeadLetter"), ("ts-out", b"n-2")), 0),
    StagedOutput("n-3", "t\u00e9", 2**40, b"", b"x" * 70_000, (), 2**62),
]


def test_staged_records_survive_a_reopen_and_leave_when_unstaged(tmp_path: Path) -> None:
    store, _ = PartitionStore.open(tmp_path / "0")
    store.write([(b"a", b"1")], StoredOffsets(events=1, commands=1), STAGED)
    store.close()
    store, _ = PartitionStore.open(tmp_path / "0")
    assert sorted(store.staged()) == sorted(STAGED)
    store.unstage(["n-1", "n-3"])
    assert store.staged() == [STAGED[1]]
    assert list(store.state_items()) == [(b"a", b"1")]
    store.close()


def test_staged_records_round_trip_through_their_encoding() -> None:
    for out in STAGED:
        assert StagedOutput.decode(out.output_id, out.encode()) == out


def test_staged_records_in_the_earlier_json_encoding_still_decode() -> None:
    # [topic, partition, key, value, headers, start], bytes in base64 (before 2026-11-23)
    raw = b'["p.completed",3,"Y2xpZW50LTE=","wwF2YWx1ZQ==",[["ts-out","bi0x"]],41]'
    assert StagedOutput.decode("n-1", raw) == STAGED[0]


@pytest.mark.parametrize("cut", [1, 5, 20, -1])
def test_a_damaged_staged_record_is_a_value_error(cut: int) -> None:
    raw = STAGED[0].encode()
    with pytest.raises(ValueError):
        StagedOutput.decode("n-1", raw[:cut])
    with pytest.raises(ValueError):
        StagedOutput.decode("n-1", raw + b"\x00")


def test_a_damaged_staged_record_makes_the_store_unusable(tmp_path: Path) -> None:
    store, _ = PartitionStore.open(tmp_path / "0")
    store.write([], StoredOffsets(events=1, commands=1), STAGED[:1])
    store.db[RESERVED_PREFIX + b"out/n-1"] = STAGED[0].encode()[:-3]
    with pytest.raises(StoreError):
        store.staged()
    store.close()
