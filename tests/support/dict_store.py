"""A partition store as a dict, for tests that run the distributor without RocksDB."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class DictStore:
    """``streams.runtime.store.StoreView`` over a dict of application keys."""

    def __init__(self, items: Iterable[tuple[bytes, bytes | None]] = ()) -> None:
        self.data: dict[bytes, bytes] = {}
        self.write(items)

    def write(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply dumped changes (``None`` deletes), as the store's ``WriteBatch`` does."""
        for key, value in items:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.items_from(b"")

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items_from(self, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, self.data[k]) for k in sorted(self.data) if k >= key])
