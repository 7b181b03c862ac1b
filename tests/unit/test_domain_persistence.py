"""Incremental persistence: what dump_changes wrote loads back into an equal state."""

from __future__ import annotations

import pickle

import pytest

from schemas import commands as c
from streams.domain import decide, tick
from streams.state_codec import CorruptStateError, dump_changes, load_state
from tests.support.gwt import Harness, config, register, submit

OP = "workflow_trigger"


def busy_partition(store: dict[bytes, bytes] | None = None) -> Harness:
    """A partition with a bit of everything; ``store`` receives every incremental dump."""
    h = Harness(config(default_timeout_ms=50_000, circuit_cooldown_ms=500))
    steps: list[c.Command] = [
        register("s1", max_concurrent=2),
        register("s2", client="B", max_concurrent=1, capabilities=["pdf"]),
        submit("done", operation=OP),
        submit("running", operation=OP),
        submit("queued", operation=OP),
        submit("review", operation=OP, requires_review=True),
        submit("later", operation=OP, scheduled_for_ms=90_000),
        submit("child", operation=OP, depends_on=["queued"]),
        submit("ghost-child", operation=OP, depends_on=["not-yet"]),
        submit("tag1", operation="tag_add"),
        submit("tag2", operation="tag_add"),
        submit("b-pdf", operation=OP, client="B", capabilities=["pdf"]),
        submit("b-queued", operation=OP, client="B"),
        submit("sync", operation="integration_sync"),
    ]
    for i, command in enumerate(steps):
        h.do(command, at=10 * i)
        if store is not None:
            apply(store, h)
    h.succeed("done", at=200)
    h.fail("b-pdf", at=210)
    if store is not None:
        apply(store, h)
    return h


def apply(store: dict[bytes, bytes], h: Harness) -> None:
    """What the harness's store holds now (it writes each step's changes, incrementally)."""
    store.clear()
    store.update(h.store.data)


def test_a_full_dump_loads_into_an_equal_state_with_equal_indices() -> None:
    h = busy_partition()
    loaded = h.reloaded()
    assert loaded == h.state
    assert loaded.indices() == h.state.indices()


def test_incremental_dumps_load_into_an_equal_state() -> None:
    store: dict[bytes, bytes] = {}
    h = busy_partition(store)
    loaded = load_state(store.items())
    assert loaded == h.state
    assert loaded.indices() == h.state.indices()
    assert list(dump_changes(h.state)) == []  # tracking was reset by the last dump


def test_a_loaded_state_decides_and_ticks_exactly_like_the_live_one() -> None:
    h = busy_partition()
    loaded = h.reloaded()
    for command in [
        c.ApproveTask(client_id="A", task_id="review"),
        c.RetryDue(client_id="A", task_id="later", attempt=1, due_at_ms=90_000, kind="scheduled"),
        c.ReleaseSession(client_id="A", session_id="s1"),
        submit("new", operation="tag_add"),
    ]:
        assert decide(command, loaded, 300, h.config) == decide(command, h.state, 300, h.config)
    for now in (2_000, 60_000, 400_000):
        assert tick(loaded, now, h.config) == tick(h.state, now, h.config)


def test_replaying_the_event_log_rebuilds_the_state() -> None:
    h = busy_partition()
    replayed = h.replayed()
    assert replayed == h.state
    assert replayed.indices() == h.state.indices()


def test_removed_records_are_deleted_from_the_store() -> None:
    store: dict[bytes, bytes] = {}
    h = busy_partition(store)
    assert b"session/s1" in store
    h.do(c.ReleaseSession(client_id="A", session_id="s1"), at=500)
    apply(store, h)
    assert b"session/s1" not in store
    assert load_state(store.items()) == h.state


def test_a_corrupt_record_is_reported_as_such() -> None:
    with pytest.raises(CorruptStateError):
        load_state([(b"task/x", b"\x80not a pickle")])
    with pytest.raises(CorruptStateError):
        load_state([(b"task/x", pickle.dumps({"not": "a task"}))])


def test_a_session_stored_with_its_units_as_a_tuple_loads_them_in_order() -> None:
    """Stores written before units became an ordered set (a dict) still load, in order, and
    the loaded session frees a unit like any other."""
    h = busy_partition()
    session = h.state.sessions["s1"].clone()
    held = list(session.units)
    assert held, "the busy partition's s1 holds work"
    session.units = tuple(reversed(held))  # type: ignore[assignment]  # the old format
    store = dict(h.store.data)
    store[b"session/s1"] = pickle.dumps(session, protocol=pickle.HIGHEST_PROTOCOL)
    loaded = load_state(store.items()).sessions["s1"]
    assert isinstance(loaded.units, dict)
    assert list(loaded.units) == list(reversed(held))
