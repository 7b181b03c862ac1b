"""What a projection store is: the reads the reader answers from and the one batch write the
fold's changes go into. Kept by the dict store here (``projections.memory``) and by the
RocksDB store of the view process (``api.projection_store``); the contract both keep is
``tests/unit/test_projection_store_contract.py``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

__all__ = ["Store", "WritableStore"]


class Store(Protocol):
    """The reads: one key, and the keys under a prefix in byte order (strictly after
    ``after`` when given, so a page resumes where the last one ended)."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...


class WritableStore(Store, Protocol):
    """A store the fold writes: the changes of a poll batch in one write, applied in order
    (``None`` deletes the key)."""

    def write(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None: ...
