"""Building batch jobs for the tests: a ``SubmitBatchJob`` with items."""

from __future__ import annotations

from typing import Any

from schemas import commands as c

POOL_OP = "integration_sync"  # no session, not batchable: assigned to the pool at once


def job(
    batch_job_id: str = "J",
    n: int = 5,
    parallelism: int = 2,
    operation: str = POOL_OP,
    client: str = "A",
    **kw: Any,
) -> c.SubmitBatchJob:
    return c.SubmitBatchJob(
        client_id=client,
        batch_job_id=batch_job_id,
        operation=operation,
        items=[c.BatchJobItem(payload={"n": i}) for i in range(n)],
        parallelism=parallelism,
        **kw,
    )
