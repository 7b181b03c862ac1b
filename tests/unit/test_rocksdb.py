"""The one RocksDB helper (``streams.rocksdb``) both stores open through: an fcntl lock held by
the owner (never read from an error's text), a directory that cannot be opened rebuilt empty
with the reason, the lock kept across a rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.projection_store import ProjectionStore
from projections.errors import ProjectionStoreError
from streams import rocksdb
from streams.rocksdb import StoreLockedError
from streams.runtime.store import PartitionStore

SIZES = rocksdb.Sizes(write_buffer_bytes=1 << 20, block_cache_bytes=1 << 20, bloom_bits_per_key=10)


def test_a_lock_is_held_until_released(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "db"
    held = rocksdb.lock(path, "the db is busy")
    with pytest.raises(StoreLockedError, match="the db is busy"):
        rocksdb.lock(path, "the db is busy")
    held.release()
    rocksdb.lock(path, "the db is busy").release()


def test_a_directory_rocksdb_cannot_open_is_rebuilt_empty_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "db"
    held = rocksdb.lock(path, "busy")
    db, why = rocksdb.open_or_rebuild(path, rocksdb.options(SIZES), "test store")
    assert why is None
    db[b"k"] = b"v"
    db.close()
    (path / "CURRENT").write_bytes(b"\x00garbage")
    db, why = rocksdb.open_or_rebuild(path, rocksdb.options(SIZES), "test store")
    assert why is not None and "cannot open the test store" in why and str(path) in why
    assert db.get(b"k") is None
    db.close()
    # The lock lives beside the directory: a rebuild does not drop it.
    with pytest.raises(StoreLockedError):
        rocksdb.lock(path, "busy")
    held.release()


def test_a_projection_store_in_use_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "projection"
    first = ProjectionStore(path, "t.events")
    first.write([(b"row", b"1")])
    with pytest.raises(ProjectionStoreError, match="in use by another process"):
        ProjectionStore(path, "t.events")
    assert first.get(b"row") == b"1"
    first.drop()  # dropping keeps the lock: still refused
    with pytest.raises(ProjectionStoreError, match="in use by another process"):
        ProjectionStore(path, "t.events")
    first.close()
    again = ProjectionStore(path, "t.events")
    assert again.get(b"row") is None
    again.close()


def test_an_open_error_that_mentions_a_lock_is_not_taken_for_a_store_in_use(
    tmp_path: Path,
) -> None:
    """RocksDB cannot open a directory whose LOCK is a directory ("... open a file for lock:
    ... Is a directory"): nobody holds it, so it is rebuilt, not refused as in use."""
    for path, open_store in (
        (tmp_path / "projection", lambda p: ProjectionStore(p, "t.events")),
        (tmp_path / "state", lambda p: PartitionStore.open(p)[0]),
    ):
        (path / "LOCK").mkdir(parents=True)
        store = open_store(path)
        assert (path / "LOCK").is_file()
        store.close()


def test_both_stores_share_one_lock_rule(tmp_path: Path) -> None:
    """The processor's state store and the projection store lock the same way: a second owner
    of either is refused while the first holds it."""
    state, _ = PartitionStore.open(tmp_path / "0")
    with pytest.raises(StoreLockedError):
        rocksdb.lock(tmp_path / "0", "busy")
    state.close()
    projection = ProjectionStore(tmp_path / "p", "t.events")
    with pytest.raises(StoreLockedError):
        rocksdb.lock(tmp_path / "p", "busy")
    projection.close()
