"""Handlers for the chaos suite's executors (``--handlers tests.chaos.handlers``).

Which tasks fail is a pure function of the task id, so the test knows the expected outcome
of every task without asking the executor:

- ``always_fails``: every attempt fails, so the task goes through the retry tiers (delay
  agent) and ends failed and dead-lettered;
- ``fails_first_attempt``: attempt 1 fails, the retry succeeds;
- everything else succeeds after a few milliseconds.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from streams.executor import SimulatedFailure, TaskContext

OPERATIONS = ("conversation_send", "tag_add", "integration_sync")


def bucket(task_id: str) -> int:
    return zlib.crc32(task_id.encode()) % 20


def always_fails(task_id: str) -> bool:
    return bucket(task_id) == 0


def fails_first_attempt(task_id: str) -> bool:
    return bucket(task_id) == 1


async def handle(ctx: TaskContext) -> dict[str, Any]:
    if always_fails(ctx.task_id):
        raise SimulatedFailure(f"{ctx.task_id} fails on every attempt")
    if fails_first_attempt(ctx.task_id) and ctx.attempt <= 1:
        raise SimulatedFailure(f"{ctx.task_id} fails on its first attempt")
    await asyncio.sleep(0.005 + bucket(ctx.task_id) / 1000)
    return {"task": ctx.task_id, "attempt": ctx.attempt}


HANDLERS = {operation: handle for operation in OPERATIONS}
