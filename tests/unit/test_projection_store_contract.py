"""The contract every projection store keeps (``projections.storage.WritableStore``) -- the dict
store the tests and tools fold into (``projections.memory.MemoryStore``) and the RocksDB store the
projector writes (``api.projection_store.ProjectionStore``) -- run against each through one
``create_store`` hook: reads of what was written, one batch applied in order, scans in byte order
that stop at the prefix and resume strictly after a key, and the same answers from the reader
over the same fold. Random batches are checked against a plain dict."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.projection_store import ProjectionStore
from projections.fold import apply
from projections.memory import MemoryStore
from projections.reader import ProjectionReader
from projections.storage import WritableStore as Store
from projections.tables import Tables
from tests.support.view_scenario import EXPECTED_STATES, scenario


def _memory(_: Path) -> Store:
    return MemoryStore()


def _rocksdb(directory: Path) -> Store:
    return ProjectionStore(directory / "projection", "t.events")


STORES: dict[str, Callable[[Path], Store]] = {"memory": _memory, "rocksdb": _rocksdb}


def _close(store: Store) -> None:
    if isinstance(store, ProjectionStore):
        store.close()


@pytest.fixture(params=sorted(STORES))
def create_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """``create_store()`` gives a fresh, empty store of the parametrised kind."""
    made: list[Store] = []

    def create() -> Store:
        store = STORES[request.param](tmp_path / str(len(made)))
        made.append(store)
        return store

    yield create
    for store in made:
        _close(store)


def test_a_written_value_reads_back_and_a_missing_key_is_none(
    create_store: Callable[[], Store],
) -> None:
    store = create_store()
    assert store.get(b"t\x00a") is None
    store.write([(b"t\x00a", b'{"x":1}'), (b"i\x00a", b"")])
    assert store.get(b"t\x00a") == b'{"x":1}'
    assert store.get(b"i\x00a") == b""  # index entries are empty values, not absent ones
    assert store.get(b"t\x00") is None


def test_a_deletion_removes_the_key_and_deleting_a_missing_one_is_harmless(
    create_store: Callable[[], Store],
) -> None:
    store = create_store()
    store.write([(b"k1", b"1"), (b"k2", b"2")])
    store.write([(b"k1", None), (b"nope", None)])
    assert store.get(b"k1") is None and store.get(b"nope") is None
    assert list(store.scan(b"k")) == [(b"k2", b"2")]


def test_a_batch_applies_in_order(create_store: Callable[[], Store]) -> None:
    store = create_store()
    store.write([(b"a", b"1"), (b"a", b"2"), (b"b", b"1"), (b"b", None), (b"c", None)])
    store.write([(b"c", b"3")])
    assert [store.get(k) for k in (b"a", b"b", b"c")] == [b"2", None, b"3"]


def test_a_scan_is_in_byte_order_and_stops_at_the_prefix(create_store: Callable[[], Store]) -> None:
    store = create_store()
    keys = [b"p\x00\xff", b"p\x00", b"p\x00a", b"p\x01", b"o\xff", b"p\x00\x00", b"q"]
    store.write([(k, k[::-1]) for k in keys])
    assert [k for k, _ in store.scan(b"p\x00")] == [b"p\x00", b"p\x00\x00", b"p\x00a", b"p\x00\xff"]
    assert dict(store.scan(b"p")) == {k: k[::-1] for k in keys if k.startswith(b"p")}
    assert list(store.scan(b"r")) == []


def test_a_scan_after_a_key_starts_strictly_after_it(create_store: Callable[[], Store]) -> None:
    store = create_store()
    store.write([(b"x" + bytes([i]), b"v") for i in (1, 2, 3, 5)])
    assert [k for k, _ in store.scan(b"x", after=b"x\x02")] == [b"x\x03", b"x\x05"]
    # A cursor need not name a key that is still there (it may have been deleted since).
    assert [k for k, _ in store.scan(b"x", after=b"x\x04")] == [b"x\x05"]
    assert list(store.scan(b"x", after=b"x\x05")) == []


def test_values_come_back_as_bytes(create_store: Callable[[], Store]) -> None:
    store = create_store()
    store.write([(b"k", b"\x00\xffbinary")])
    value = store.get(b"k")
    assert type(value) is bytes and value == b"\x00\xffbinary"
    assert all(type(k) is bytes and type(v) is bytes for k, v in store.scan(b""))


class _Folded:
    """A reader's source over one store that the scenario was folded into."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tables = Tables(store.get)
        for offset, event in enumerate(scenario()):
            apply(self._tables, event, 0, offset)
            if offset % 7 == 0:  # several write batches, as the projector writes them
                store.write(self._tables.drain())
        store.write(self._tables.drain())

    @property
    def store(self) -> Store:
        return self._store

    @property
    def tables(self) -> Tables:
        return self._tables

    def lag(self) -> dict[int, int]:
        return {0: 0}

    def running(self) -> bool:
        return True


def _answers(reader: ProjectionReader) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    cursor = None
    while True:  # page through the listing two at a time: cursors over the store's scans
        page = reader.tasks(limit=2, cursor=cursor)
        tasks += [row.model_dump() for row in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    return {
        "tasks": tasks,
        "by_state": {
            state: [r.task_id for r in reader.tasks(status=state, limit=1000).items]
            for state in set(EXPECTED_STATES.values())
        },
        "sessions": [r.model_dump() for r in reader.sessions(limit=1000).items],
        "dead_letters": [r.model_dump() for r in reader.dead_letters(limit=1000).items],
        "status": reader.status().model_dump(),
    }


def test_the_reader_answers_the_same_over_every_store(tmp_path: Path) -> None:
    answers: dict[str, dict[str, Any]] = {}
    for kind, create in STORES.items():
        store = create(tmp_path / kind)
        try:
            answers[kind] = _answers(ProjectionReader(_Folded(store)))
        finally:
            _close(store)
    assert answers["memory"] == answers["rocksdb"]
    states = {t["task_id"]: t["state"] for t in answers["memory"]["tasks"]}
    assert states == EXPECTED_STATES


_KEYS = st.binary(min_size=1, max_size=4)
_BATCHES = st.lists(
    st.lists(st.tuples(_KEYS, st.none() | st.binary(max_size=6)), max_size=12),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("kind", sorted(STORES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=_BATCHES, prefix=st.binary(max_size=2), suffix=st.none() | st.binary(max_size=3))
def test_random_batches_read_back_as_a_dict_would(
    kind: str,
    batches: list[list[tuple[bytes, bytes | None]]],
    prefix: bytes,
    suffix: bytes | None,
) -> None:
    """``after`` is a key under the prefix, as the reader's cursors are."""
    after = None if suffix is None else prefix + suffix
    with tempfile.TemporaryDirectory() as directory:
        store = STORES[kind](Path(directory))
        # A fresh store may hold keys of its own (the RocksDB store's layout row).
        model: dict[bytes, bytes] = dict(store.scan(b""))
        try:
            for batch in batches:
                store.write(batch)
                for key, value in batch:
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
            for key in {k for batch in batches for k, _ in batch}:
                assert store.get(key) == model.get(key)
            expected = sorted(
                (k, v)
                for k, v in model.items()
                if k.startswith(prefix) and (after is None or k > after)
            )
            assert list(store.scan(prefix, after)) == expected
        finally:
            _close(store)
