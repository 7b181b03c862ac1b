"""Retention on the suite's broker: a finished task is forgotten through the event log, its
record leaves the store, and a processor rebuilt from the log alone forgets the same."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from schemas import events as ev
from streams.distributor import Distributor
from streams.settings import Settings
from tests.integration.distributor_harness import (
    Commands,
    FakeExecutor,
    InProcessProcessor,
    layout,
    of_task,
    submit,
    wait_for_events,
)

pytestmark = pytest.mark.integration

# Below the setting's minimum on purpose (a test must not wait a minute): ``model_copy``
# skips validation.
RETENTION_MS = 1_500


def count(events: list[Any], kind: type[ev.Event], task_id: str) -> int:
    if kind is ev.TasksForgotten:
        return sum(1 for e in events if isinstance(e, ev.TasksForgotten) and task_id in e.task_ids)
    return sum(1 for e in of_task(events, task_id) if isinstance(e, kind))


async def test_a_finished_task_is_forgotten_and_its_id_is_new_again_after_restarts(
    make_settings: Callable[..., Settings],
) -> None:
    def short(**overrides: Any) -> Settings:
        return make_settings(**overrides).model_copy(update={"task_retention_ms": RETENTION_MS})

    settings = await layout(short, partitions=1)
    assert Distributor(settings).config.task_retention_ms == RETENTION_MS
    executor = await FakeExecutor(settings).start()
    try:
        async with Commands(settings) as commands:
            # 1. completed, then forgotten once the window passed
            processor = await InProcessProcessor(settings, name="first").start()
            await commands.send(submit("A", "t1", "integration_sync"))
            events = await wait_for_events(
                settings, lambda es: count(es, ev.TasksForgotten, "t1") == 1, 30, processor
            )
            (completed,) = [e for e in events if isinstance(e, ev.TaskCompleted)]
            (dropped,) = [e for e in events if isinstance(e, ev.TasksForgotten)]
            assert dropped.client_id == "A"
            assert dropped.occurred_at_ms - completed.occurred_at_ms >= RETENTION_MS
            await processor.stop()

            # 2. restarted on its store: t1 is unknown, the same submit is a new task
            processor = await InProcessProcessor(settings, name="second").start()
            await commands.send(submit("A", "t1", "integration_sync"))
            await wait_for_events(
                settings, lambda es: count(es, ev.TasksForgotten, "t1") == 2, 30, processor
            )
            await processor.stop()

            # 3. rebuilt from the event log alone: it forgot t1 as well
            shutil.rmtree(settings.data_dir)
            processor = await InProcessProcessor(settings, name="rebuilt").start()
            await commands.send(submit("A", "t1", "integration_sync"))
            events = await wait_for_events(
                settings, lambda es: count(es, ev.TaskCompleted, "t1") == 3, 30, processor
            )
            await processor.stop()
    finally:
        await executor.stop()
    assert count(events, ev.TaskAccepted, "t1") == 3
    assert not [e for e in of_task(events, "t1") if isinstance(e, ev.TaskRejected)]
