"""A simulated GoHighLevel handler: sleeps the operation's expected duration, scaled down,
fails at a configured rate, and returns an output shaped like the real API's.

Used by the demo and the benchmarks, where the point is the distributor, not the CRM.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from schemas.catalog import Catalog, load_catalog
from streams.executor.context import TaskContext
from streams.executor.errors import ExecutorError, SimulatedFailure

# What each operation's output names; operations not listed return a generic record id.
_OUTPUT_KEY: dict[str, str] = {
    "conversation_send": "message_id",
    "conversation_read": "conversation_id",
    "workflow_trigger": "execution_id",
    "calendar_booking": "appointment_id",
    "contact_create": "contact_id",
    "contact_update": "contact_id",
    "contact_delete": "contact_id",
    "opportunity_create": "opportunity_id",
    "opportunity_update": "opportunity_id",
    "pipeline_update": "pipeline_id",
    "task_create": "task_id",
    "note_create": "note_id",
    "custom_field_update": "contact_id",
    "campaign_add": "contact_id",
    "campaign_remove": "contact_id",
    "tag_add": "contact_id",
    "tag_remove": "contact_id",
    "bulk_operation": "job_id",
    "report_generate": "report_id",
    "data_export": "export_id",
    "integration_sync": "sync_id",
}


class SimulatedGhlHandler:
    """``handler(ctx)`` for any catalog operation.

    ``scale`` multiplies the catalog's ``expected_duration_ms`` (default 0.001: a 5 s
    operation takes 5 ms). ``failure_rate`` in [0, 1] draws failures from a
    ``random.Random(seed)``, so a seeded run fails the same draws every time.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        scale: float = 0.001,
        failure_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if scale < 0:
            raise ExecutorError(f"scale must not be negative, got {scale}")
        if not 0.0 <= failure_rate <= 1.0:
            raise ExecutorError(f"failure_rate must be within [0, 1], got {failure_rate}")
        self.catalog = catalog if catalog is not None else load_catalog()
        self.scale = scale
        self.failure_rate = failure_rate
        self._rng = random.Random(seed)

    def duration_s(self, operation: str) -> float:
        spec = self.catalog.get(operation)
        if spec is None:
            raise SimulatedFailure(f"unknown operation {operation!r}")
        return spec.expected_duration_ms * self.scale / 1000

    async def __call__(self, ctx: TaskContext) -> dict[str, Any]:
        duration = self.duration_s(ctx.operation)
        # Draw before sleeping so the outcome depends on the order of calls, not on timing.
        fails = self._rng.random() < self.failure_rate
        record_id = f"{ctx.operation.split('_')[0][:3]}_{self._rng.getrandbits(48):012x}"
        await asyncio.sleep(duration / 2)
        ctx.report_progress(0.5, f"{ctx.operation} half way")
        await asyncio.sleep(duration / 2)
        if fails:
            raise SimulatedFailure(f"simulated {ctx.operation} failure (GHL answered 503)")
        key = _OUTPUT_KEY.get(ctx.operation, "id")
        output: dict[str, Any] = {key: record_id, "operation": ctx.operation}
        if ctx.operation in ("bulk_operation", "data_export") and isinstance(
            ctx.payload.get("items"), list
        ):
            output["processed"] = len(ctx.payload["items"])
        return output


def ghl_handlers(handler: SimulatedGhlHandler | None = None) -> Mapping[str, SimulatedGhlHandler]:
    """One handler instance serving every operation of its catalog, as ``Executor`` wants."""
    handler = handler if handler is not None else SimulatedGhlHandler()
    return {name: handler for name in handler.catalog}
