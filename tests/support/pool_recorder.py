"""What a worker pool reports, collected in a list, and a bounded wait for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from schemas.commands import ReportResult


async def until(predicate: Callable[[], bool], what: str, bound_s: float = 5.0) -> None:
    """Wait for a condition (the bound only guards against hanging; nothing asserts speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.002)


class Recorder:
    def __init__(self) -> None:
        self.commands: list[BaseModel] = []

    def __call__(self, command: BaseModel) -> None:
        self.commands.append(command)

    def of(self, kind: type[BaseModel]) -> list[Any]:
        return [c for c in self.commands if isinstance(c, kind)]

    def result(self, task_id: str) -> ReportResult:
        found: list[ReportResult] = [r for r in self.of(ReportResult) if r.task_id == task_id]
        assert len(found) == 1, f"expected one result for {task_id}, got {found}"
        return found[0]
