"""One RocksDB store (rocksdict) per owned partition: the application's state and the offsets
that state reflects, always written together in one ``WriteBatch`` -- with the side records
of that cycle *staged* in the same batch until they are acknowledged (see
``streams.runtime.processing`` for why).

Layout: ``<data_dir>/<name>/<partition>/``. Keys starting with ``RESERVED_PREFIX`` belong to
the runtime (the offsets); every other key belongs to the application (``dump_changes``).
A store that cannot be opened or read is deleted and rebuilt from the event log by recovery;
an exclusive file lock keeps two processes on one machine from sharing (or deleting) a store
(both from ``streams.rocksdb``).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from rocksdict import Options, Rdict, WriteBatch

from streams import rocksdb
from streams.errors import StoreError

__all__ = [
    "RESERVED_PREFIX",
    "PartitionStore",
    "StateStore",
    "StagedOutput",
    "StoredOffsets",
    "StoreView",
    "store_path",
]

log = logging.getLogger(__name__)

RESERVED_PREFIX = b"\x00ts/"
_EVENTS_OFFSET = RESERVED_PREFIX + b"events-offset"
_COMMANDS_OFFSET = RESERVED_PREFIX + b"commands-offset"
_STAGED = RESERVED_PREFIX + b"out/"
_OFFSET = struct.Struct(">q")


_STAGED_FORMAT = b"\x01"
# partition, start, topic length, key length (-1: no key), value length, header count
_STAGED_HEAD = struct.Struct(">qqHiIH")
_STAGED_HEADER = struct.Struct(">HI")  # header name length, header value length


class StagedOutput(NamedTuple):
    """A side record written to the store before it is produced.

    ``output_id`` travels as the record's ``OUTPUT_ID_HEADER``; ``start`` is an offset of
    ``topic[partition]`` at or before where the record can land, so recovery can look for it
    there and produce it only if it is missing. (A named tuple: one is built and encoded per
    side record on the hot path.)
    """

    output_id: str
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    start: int

    def encode(self) -> bytes:
        """A binary record: format byte, ``_STAGED_HEAD``, topic, key, value, then each header
        as ``_STAGED_HEADER`` + name + value (JSON with base64 cost 5x as much per record)."""
        _, topic_name, partition, key, value, headers, start = self
        topic = topic_name.encode()
        parts = [
            _STAGED_FORMAT,
            _STAGED_HEAD.pack(
                partition,
                start,
                len(topic),
                -1 if key is None else len(key),
                len(value),
                len(headers),
            ),
            topic,
        ]
        if key is not None:
            parts.append(key)
        parts.append(value)
        for name, header in headers:
            encoded = name.encode()
            parts += (_STAGED_HEADER.pack(len(encoded), len(header)), encoded, header)
        return b"".join(parts)

    @classmethod
    def decode(cls, output_id: str, raw: bytes) -> StagedOutput:
        """The record ``encode`` wrote (or the JSON of earlier versions); ``ValueError`` if
        damaged."""
        if raw[:1] != _STAGED_FORMAT:
            return cls._decode_json(output_id, raw)
        try:
            partition, start, topic_len, key_len, value_len, count = _STAGED_HEAD.unpack_from(
                raw, 1
            )
            pos = 1 + _STAGED_HEAD.size
            topic = raw[pos : pos + topic_len].decode()
            pos += topic_len
            key = None
            if key_len >= 0:
                key = raw[pos : pos + key_len]
                pos += key_len
            value = raw[pos : pos + value_len]
            pos += value_len
            headers = []
            for _ in range(count):
                name_len, header_len = _STAGED_HEADER.unpack_from(raw, pos)
                pos += _STAGED_HEADER.size
                name = raw[pos : pos + name_len].decode()
                pos += name_len
                headers.append((name, raw[pos : pos + header_len]))
                pos += header_len
        except struct.error as exc:
            raise ValueError(f"truncated staged record: {exc}") from None
        if pos != len(raw):
            raise ValueError(f"staged record of {len(raw)} bytes, expected {pos}")
        return cls(output_id, topic, partition, key, value, tuple(headers), start)

    @classmethod
    def _decode_json(cls, output_id: str, raw: bytes) -> StagedOutput:
        topic, partition, key, value, headers, start = json.loads(raw)
        b64 = base64.b64decode
        return cls(
            output_id,
            str(topic),
            int(partition),
            None if key is None else b64(key),
            b64(value),
            tuple((str(name), b64(v)) for name, v in headers),
            int(start),
        )


@dataclass(frozen=True, slots=True)
class StoredOffsets:
    """Next offset to read in the event log, next command offset to process."""

    events: int
    commands: int


class StateStore(Protocol):
    def write(
        self,
        changes: Iterable[tuple[bytes, bytes | None]],
        offsets: StoredOffsets,
        staged: Sequence[StagedOutput] = (),
    ) -> None: ...

    def unstage(self, output_ids: Iterable[str]) -> None: ...

    def close(self) -> None: ...


class StoreView(Protocol):
    """What an application reads of its partition's store: its own keys (the state it loads,
    and records it keeps there instead of in memory)."""

    def state_items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def get(self, key: bytes) -> bytes | None: ...

    def items_from(self, key: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def store_path(data_dir: Path, name: str, partition: int) -> Path:
    return data_dir / name / str(partition)


# The runtime keeps a partition's live state in memory and reads its store to load it and for
# the finished records an application keeps there: bound RocksDB's memory per partition (a
# processor may hold many).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
BLOCK_CACHE_BYTES = 8 * 1024 * 1024


def _options() -> Options:
    """At most two 8 MB memtables and an 8 MB block cache per partition store. With
    RocksDB's defaults (64 MB memtables) a store that is written slowly holds its whole
    memtable until it fills: the 10-minute soak grew the processor by ~60 MB per partition."""
    return rocksdb.options(rocksdb.Sizes(WRITE_BUFFER_BYTES, BLOCK_CACHE_BYTES))


_WHAT = "state store"


class PartitionStore:
    """A partition's store. Open with :meth:`open`; ``StoreError`` means unusable contents."""

    def __init__(self, path: Path, db: Rdict, lock: rocksdb.RocksLock) -> None:
        """Use :meth:`open`."""
        self.path = path
        self._db: Rdict | None = db
        self._lock = lock

    @classmethod
    def open(cls, path: Path) -> tuple[PartitionStore, str | None]:
        """Lock and open the store at ``path``, created if missing.

        A store RocksDB cannot open is deleted and created afresh; the second value then says
        why (recovery rebuilds it from the event log). Raises ``StoreLockedError`` if another
        process holds the store: that one is never deleted.
        """
        lock = rocksdb.lock(
            path,
            f"the state store at {path} is held by another process; "
            "give each processor on one machine its own TASKSTREAM_DATA_DIR",
        )
        try:
            db, reason = rocksdb.open_or_rebuild(path, _options(), _WHAT)
        except BaseException:
            lock.release()
            raise
        return cls(path, db, lock), reason

    @staticmethod
    def destroy(path: Path) -> None:
        """Delete the store at ``path`` (not open anywhere)."""
        rocksdb.destroy(path, _options())

    def reset(self) -> None:
        """Delete every key (contents unusable): the caller rebuilds from the event log."""
        self.db.close()
        self._db = None
        rocksdb.destroy(self.path, _options())
        self._db = rocksdb.create(self.path, _options(), _WHAT)

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise StoreError(f"the state store at {self.path} is closed")
        return self._db

    def offsets(self) -> StoredOffsets | None:
        """The stored offsets; None for a fresh store. ``StoreError`` if unreadable."""
        events, commands = self.db.get(_EVENTS_OFFSET), self.db.get(_COMMANDS_OFFSET)
        if events is None and commands is None:
            return None
        try:
            if not isinstance(events, bytes) or not isinstance(commands, bytes):
                raise TypeError("missing offset")
            return StoredOffsets(_OFFSET.unpack(events)[0], _OFFSET.unpack(commands)[0])
        except (struct.error, TypeError) as exc:
            raise StoreError(f"the offsets in the state store at {self.path} are corrupt") from exc

    def is_empty(self) -> bool:
        return next(iter(self.db.keys()), None) is None

    def state_items(self) -> Generator[tuple[bytes, bytes], None, None]:
        """Every application key and value (the runtime's reserved keys left out)."""
        return self.items_from(b"")

    def items_from(self, key: bytes) -> Generator[tuple[bytes, bytes], None, None]:
        """Application keys and values from ``key`` on, in key order."""
        for found, value in self.db.items(from_key=key):
            if isinstance(found, bytes) and not found.startswith(RESERVED_PREFIX):
                yield found, value

    def get(self, key: bytes) -> bytes | None:
        """The value of an application key, or None."""
        value = self.db.get(key)
        return value if isinstance(value, bytes) else None

    def staged(self) -> list[StagedOutput]:
        """Side records staged by a cycle whose acknowledgement was never recorded."""
        out = []
        for key, value in self.db.items(from_key=_STAGED):
            if not isinstance(key, bytes) or not key.startswith(_STAGED):
                break
            try:
                out.append(StagedOutput.decode(key[len(_STAGED) :].decode(), value))
            except (ValueError, TypeError) as exc:
                raise StoreError(f"a staged record in the store at {self.path} is corrupt") from exc
        return out

    def unstage(self, output_ids: Iterable[str]) -> None:
        """Forget staged records once they are acknowledged by the broker."""
        batch = WriteBatch(raw_mode=True)
        for output_id in output_ids:
            batch.delete(_STAGED + output_id.encode())
        self.db.write(batch)

    def write(
        self,
        changes: Iterable[tuple[bytes, bytes | None]],
        offsets: StoredOffsets,
        staged: Sequence[StagedOutput] = (),
    ) -> None:
        """State changes, the offsets they reflect and the cycle's staged side records,
        atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if key.startswith(RESERVED_PREFIX):
                raise StoreError(f"application key {key!r} uses the runtime's reserved prefix")
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        put = batch.put
        for out in staged:
            put(_STAGED + out.output_id.encode(), out.encode())
        batch.put(_EVENTS_OFFSET, _OFFSET.pack(offsets.events))
        batch.put(_COMMANDS_OFFSET, _OFFSET.pack(offsets.commands))
        self.db.write(batch)

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        self._lock.release()
