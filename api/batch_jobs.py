"""``GET /batch-jobs/{id}``: a batch job's state, progress and per-item results; the listings
``GET /batch-jobs`` and ``GET /batches`` (filtered, paged by id like ``/tasks``). A token limited
to some clients lists only theirs, and another client's job answers 404."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from projections.batch_jobs import BatchJobRow, BatchJobState, batch_job_key
from projections.reader import ProjectionInfo, ProjectionReader
from projections.rows import BatchRow

from .access import Caller
from .redact import masked_batch, masked_batch_job
from .workflows import Cursor, Limit


class BatchJobAnswer(BatchJobRow):
    projection: ProjectionInfo


class BatchJobList(BaseModel):
    items: list[BatchJobRow]
    next_cursor: str | None
    projection: ProjectionInfo


class BatchList(BaseModel):
    items: list[BatchRow]
    next_cursor: str | None
    projection: ProjectionInfo


def batch_job(reader: ProjectionReader, batch_job_id: str) -> BatchJobRow | None:
    return reader._row(batch_job_key(batch_job_id), BatchJobRow)


def batch_jobs_router(reader: ProjectionReader) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/batch-jobs",
        response_model=BatchJobList,
        summary="Batch jobs, filtered and paged by id",
    )
    async def list_batch_jobs(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        client_id: str | None = None,
        status: BatchJobState | None = None,
        operation: str | None = None,
    ) -> BatchJobList:
        page = reader.batch_jobs(
            client_id=client_id,
            state=status,
            operation=operation,
            limit=limit,
            cursor=cursor,
            clients=caller.clients,
        )
        return BatchJobList(
            items=[masked_batch_job(row) for row in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    @router.get(
        "/batches",
        response_model=BatchList,
        summary="Batches (tasks dispatched together), filtered and paged by id",
    )
    async def list_batches(
        caller: Caller,
        limit: Limit = 100,
        cursor: Cursor = None,
        client_id: str | None = None,
        status: Literal["open", "dispatched", "consolidated"] | None = None,
        operation: str | None = None,
        session_id: str | None = None,
    ) -> BatchList:
        page = reader.batches(
            client_id=client_id,
            state=status,
            operation=operation,
            session_id=session_id,
            limit=limit,
            cursor=cursor,
            clients=caller.clients,
        )
        return BatchList(
            items=[masked_batch(row) for row in page.items],
            next_cursor=page.next_cursor,
            projection=reader.projection(),
        )

    @router.get(
        "/batch-jobs/{batch_job_id:path}",
        response_model=BatchJobAnswer,
        responses={404: {"description": "no batch job with that id"}},
        summary="One batch job: state, progress (total, processed, succeeded, failed), results",
    )
    async def get_batch_job(batch_job_id: str, caller: Caller) -> Any:
        row = batch_job(reader, batch_job_id)
        if row is None or not caller.sees(row.client_id):
            return JSONResponse(
                {"detail": f"no batch job with id {batch_job_id!r}"}, status_code=404
            )
        return BatchJobAnswer(**masked_batch_job(row).model_dump(), projection=reader.projection())

    return router
