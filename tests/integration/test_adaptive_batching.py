"""The catalog's per-operation batch size on the suite's broker, and adaptive sizing: a batch
that failed as a whole halves the client's next batches of the operation, successes double
them back (the unit tests in tests/unit/test_domain_batch_sizing.py cover the rule)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import events as ev
from schemas.records import Assignment
from streams.settings import Settings
from tests.integration.distributor_harness import Reply, register, rig, submit

pytestmark = pytest.mark.integration


def script(assignment: Assignment) -> Reply:
    if assignment.kind == "batch" and assignment.items[0].task_id.startswith("f"):
        return Reply(success=False, error="GoHighLevel answered 503")
    return Reply(output={"ok": True})


async def test_a_failed_batch_halves_the_next_ones_and_successes_restore_the_catalog_size(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    operations = tmp_path / "operations.toml"
    operations.write_text(
        "[operations.tag_add]\nurgency = 4\nexpected_duration_ms = 100\nbatchable = true\n"
        "max_batch_size = 4\nbatch_window_ms = 60000\n",
        "utf-8",
    )
    async with rig(make_settings, script, operations_file=operations, retry_base_ms=100) as r:
        await r.send(register("A", "A-s1", max_concurrent=4))
        await r.send(*(submit("A", f"f{i}", "tag_add") for i in range(4)))
        await r.wait(
            lambda es: any(isinstance(e, ev.BatchResultConsolidated) for e in es), timeout_s=15
        )
        await r.send(*(submit("A", f"g{i}", "tag_add") for i in range(4)))
        events = await r.wait(
            lambda es: sum(isinstance(e, ev.TaskCompleted) for e in es) == 8, timeout_s=15
        )

    processed = [e for e in events if isinstance(e, ev.BatchProcessed)]
    assert [(p.task_ids, p.closed_by) for p in processed] == [
        (["f0", "f1", "f2", "f3"], "size"),  # the catalog's 4, not the default 10
        (["g0", "g1"], "size"),
        (["g2", "g3"], "size"),
    ]
    consolidated = [e for e in events if isinstance(e, ev.BatchResultConsolidated)]
    assert [(c.failure_count, c.batch_size) for c in consolidated] == [(4, 2), (0, None), (0, None)]
