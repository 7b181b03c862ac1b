"""Per-operation batch size and window (the catalog) and adaptive batch sizing: a client's
batches of an operation halve after a batch none of whose items succeeded and double back after
one whose items all did, within [1, the operation's size]; replay and reload agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import commands as c
from schemas import events as ev
from schemas.catalog import OperationSpec, load_catalog
from schemas.errors import SchemaError
from streams.domain import batching
from tests.support.gwt import Harness, config, of, register, submit


def catalog_with(**tag_add: object) -> dict[str, OperationSpec]:
    specs = dict(load_catalog())
    specs["tag_add"] = specs["tag_add"].model_copy(update=tag_add)
    return specs


def _batch(h: Harness, events: list[ev.Event]) -> ev.BatchProcessed:
    (batch,) = of(events, ev.BatchProcessed)
    return batch


def _fill(h: Harness, prefix: str, n: int, at: int, **kw: Any) -> list[ev.Event]:
    events: list[ev.Event] = []
    for i in range(n):
        events += h.do(submit(f"{prefix}{i}", operation="tag_add", **kw), at=at)
    return events


def _report(h: Harness, batch: ev.BatchProcessed, success: bool, at: int) -> list[ev.Event]:
    return h.do(
        c.ReportResult(
            client_id=batch.client_id,
            batch_id=batch.batch_id,
            fencing_token=batch.fencing_token,
            success=success,
            error=None if success else "429 from GoHighLevel",
            # retryable: the session's health (and its circuit) stays out of it
            failure_class=None if success else "retryable",
        ),
        at=at,
    )


def _consolidated(events: list[ev.Event]) -> ev.BatchResultConsolidated:
    (event,) = of(events, ev.BatchResultConsolidated)
    return event


def test_the_catalogs_size_and_window_override_the_defaults_per_operation() -> None:
    cfg = config(catalog=catalog_with(max_batch_size=4, batch_window_ms=500))
    h = Harness(cfg).given(register("s1", max_concurrent=5), at=0)
    full = _batch(h, _fill(h, "t", 4, at=10))
    assert (len(full.task_ids), full.closed_by) == (4, "size")
    _fill(h, "u", 2, at=20)
    assert of(h.tick(519), ev.BatchProcessed) == []
    windowed = _batch(h, h.tick(520))
    assert (windowed.task_ids, windowed.closed_by) == (["u0", "u1"], "window")
    # Other operations keep the defaults (10 items, 2 s).
    h.do(submit("o0", operation="tag_remove"), at=600)
    assert of(h.tick(2_599), ev.BatchProcessed) == []
    assert _batch(h, h.tick(2_600)).task_ids == ["o0"]


def test_adapted_size_follows_failures_and_successes() -> None:
    """The rule itself, step by step: 8 -> 4 -> 2 -> 1 -> 1 on failures, 1 -> 2 -> 4 -> 8 -> 8 on
    successes; the event carries the size, null once it is the operation's own."""
    h = Harness(config(catalog=catalog_with(max_batch_size=8, batch_window_ms=60_000)))
    h.given(register("s1", max_concurrent=50), at=0)
    seen: list[tuple[int, int | None]] = []
    now = 10
    for success in (False, False, False, False, True, True, True, True):
        expected = batching.size(h.state, "A", "tag_add", h.config)
        batch = _batch(h, _fill(h, f"t{now}-", expected, at=now))
        assert len(batch.task_ids) == expected
        event = _consolidated(_report(h, batch, success, at=now + 1))
        seen.append((len(batch.task_ids), event.batch_size))
        now += 10
    assert seen == [
        (8, 4),
        (4, 2),
        (2, 1),
        (1, 1),
        (1, 2),
        (2, 4),
        (4, None),
        (8, None),
    ]
    assert h.state.clients["A"].batch_sizes == {}
    assert h.replayed() == h.state
    assert h.reloaded() == h.state


def test_a_timed_out_batch_halves_the_size_and_the_state_survives_replay_and_reload() -> None:
    h = Harness(config(catalog=catalog_with(max_batch_size=6))).given(register("s1"), at=0)
    batch = _batch(h, _fill(h, "t", 6, at=10, timeout_ms=1_000))
    events = h.tick(10 + 1_000 + 5 * 1_500)  # the deadline: timeout + 5 expected durations
    assert _consolidated(events).batch_size == 3
    assert h.state.clients["A"].batch_sizes == {"tag_add": 3}
    assert h.replayed().clients["A"].batch_sizes == {"tag_add": 3}
    assert h.reloaded().clients["A"].batch_sizes == {"tag_add": 3}
    # The next batch closes by size at 3 items; another client keeps the full size.
    assert batch.batch_id
    now = 30_000
    h.given(register("s2", client="B", max_concurrent=2), at=now)
    small = _batch(h, _fill(h, "n", 3, at=now))
    assert (len(small.task_ids), small.closed_by) == (3, "size")
    for i in range(6):
        h.do(submit(f"b{i}", operation="tag_add", client="B"), at=now + 1)
    assert [len(b.task_ids) for b in of(h.log, ev.BatchProcessed) if b.client_id == "B"] == [6]


def test_a_partly_failed_batch_keeps_the_size() -> None:
    h = Harness(config(catalog=catalog_with(max_batch_size=4))).given(register("s1"), at=0)
    batch = _batch(h, _fill(h, "t", 4, at=10))
    h.do(
        c.ReportResult(
            client_id="A",
            batch_id=batch.batch_id,
            fencing_token=batch.fencing_token,
            success=True,
            items=[
                c.ItemResult(task_id="t0", success=True),
                c.ItemResult(task_id="t1", success=False, error="bad"),
            ],
        ),
        at=20,
    )
    assert _consolidated(h.log).batch_size is None
    assert batching.size(h.state, "A", "tag_add", h.config) == 4


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ops.toml"
    path.write_text(text, "utf-8")
    return path


def test_the_catalog_loads_batch_size_and_window_and_refuses_bad_ones(tmp_path: Path) -> None:
    ok = _write(
        tmp_path,
        "[operations.tag_add]\nurgency = 5\nexpected_duration_ms = 1\nbatchable = true\n"
        "max_batch_size = 25\nbatch_window_ms = 500\n",
    )
    spec = load_catalog(ok)["tag_add"]
    assert (spec.max_batch_size, spec.batch_window_ms) == (25, 500)
    assert load_catalog()["tag_add"].max_batch_size is None
    bad = {
        "max_batch_size = 0": "operations.tag_add.max_batch_size: Input should be greater than",
        "batch_window_ms = -1": "operations.tag_add.batch_window_ms: Input should be greater",
        'max_batch_size = "ten"': "operations.tag_add.max_batch_size: Input should be a valid",
    }
    for line, message in bad.items():
        path = _write(
            tmp_path,
            f"[operations.tag_add]\nurgency = 5\nexpected_duration_ms = 1\nbatchable = true\n{line}\n",
        )
        with pytest.raises(SchemaError, match=message):
            load_catalog(path)
    unbatchable = _write(
        tmp_path,
        "[operations.x]\nurgency = 5\nexpected_duration_ms = 1\nmax_batch_size = 5\n",
    )
    with pytest.raises(SchemaError, match="operations.x: .*max_batch_size is set but the "):
        load_catalog(unbatchable)
