"""``GET /batch-jobs/{id}``: a batch job's state, progress and per-item results."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from projections.batch_jobs import BatchJobRow, batch_job_key
from projections.reader import ProjectionInfo, ProjectionReader

from .access import Caller
from .redact import masked_batch_job


class BatchJobAnswer(BatchJobRow):
    projection: ProjectionInfo


def batch_job(reader: ProjectionReader, batch_job_id: str) -> BatchJobRow | None:
    return reader._row(batch_job_key(batch_job_id), BatchJobRow)


def batch_jobs_router(reader: ProjectionReader) -> APIRouter:
    router = APIRouter()

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
