"""``python -m bench.processor_cpu``: the processor without a broker runs every task through."""

from __future__ import annotations

import asyncio

from bench.processor_cpu import run


def test_every_task_completes_and_the_figure_is_cpu_per_task() -> None:
    per_task = asyncio.run(run(300))  # returns only once all 300 were answered and completed
    assert 0 < per_task < 1.0
