"""What the HTTP view shows of rows that carry submitted documents: payloads, outputs and
errors pass through ``schemas.masking`` (whose rule of what is a credential is
``schemas.credentials``), so a credential an executor put into an output or an
error, or one inside a payload, never leaves the read side. Every route that answers with such
a row goes through one function here; ``tests/unit/test_masking_routes.py`` walks every route."""

from __future__ import annotations

from typing import Any

from projections.batch_jobs import BatchJobItemRow, BatchJobRow
from projections.rows import Attachment, Attempt, BatchRow, DeadLetterRow, Execution, TaskRow
from schemas.credentials import url_has_credentials
from schemas.masking import mask_document, mask_text, mask_url


def _text(value: str | None) -> str | None:
    return None if value is None else mask_text(value)


def _object(value: dict[str, Any] | None) -> Any:
    return None if value is None else mask_document(value)


def _attempts(attempts: list[Attempt]) -> list[Attempt]:
    return [a.model_copy(update={"error": mask_text(a.error)}) for a in attempts]


def _attachments(attachments: list[Attachment]) -> list[Attachment]:
    """Attachment links with credential-named query values (a signed URL's token) masked."""
    return [
        a.model_copy(update={"url": mask_url(a.url)}) if url_has_credentials(a.url) else a
        for a in attachments
    ]


def _execution(e: Execution) -> Execution:
    return e.model_copy(
        update={
            "output": _object(e.output),
            "error": _text(e.error),
            "traceback": _text(e.traceback),
        }
    )


def masked_executions(executions: list[Execution]) -> list[Execution]:
    return [_execution(e) for e in executions]


def masked_task(row: TaskRow) -> TaskRow:
    return row.model_copy(
        update={
            "payload": mask_document(row.payload),
            "output": _object(row.output),
            "executions": [_execution(e) for e in row.executions],
            "attempts": _attempts(row.attempts),
            "last_error": _text(row.last_error),
            "reason": _text(row.reason),
            "progress_message": _text(row.progress_message),
            "attachments": _attachments(row.attachments),
            "history": [
                h.model_copy(update={"detail": _text(h.detail)}) if h.detail else h
                for h in row.history
            ],
        }
    )


def masked_batch(row: BatchRow) -> BatchRow:
    return row.model_copy(update={"consolidated_output": mask_document(row.consolidated_output)})


def masked_dead_letter(row: DeadLetterRow) -> DeadLetterRow:
    return row.model_copy(
        update={
            "reason": mask_text(row.reason),
            "last_error": _text(row.last_error),
            "attempts": _attempts(row.attempts),
        }
    )


def _item(item: BatchJobItemRow) -> BatchJobItemRow:
    return item.model_copy(
        update={"output": mask_document(item.output), "error": _text(item.error)}
    )


def masked_batch_job(row: BatchJobRow) -> BatchJobRow:
    return row.model_copy(
        update={
            "reason": _text(row.reason),
            "results": {task_id: _item(item) for task_id, item in row.results.items()},
        }
    )
