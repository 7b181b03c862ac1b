"""The specification of a task as accepted: what a duplicate SubmitTask is compared against."""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.credentials import comparable
from schemas.events import TaskAccepted
from schemas.fields import dumps_sorted


def canonical_json(value: Any) -> str:
    return dumps_sorted(value, default=str)


def spec_digest(accepted: TaskAccepted) -> str:
    """A digest of everything the submitter chose (resolved defaults included), not of time.
    Credentials are left out: each submit seals them afresh (``schemas.credentials``)."""
    doc = [
        accepted.operation,
        comparable(accepted.payload),
        accepted.priority,
        accepted.explicit_priority,
        accepted.max_retries,
        accepted.timeout_ms,
        accepted.scheduled_for_ms,
        accepted.requires_review,
        accepted.depends_on,
        accepted.capabilities,
    ]
    managed = [
        accepted.title,
        accepted.description,
        accepted.tags,
        comparable(accepted.metadata),
        accepted.due_at_ms,
        accepted.assigned_to.model_dump() if accepted.assigned_to is not None else None,
        [{**s.model_dump(), "config": comparable(s.config)} for s in accepted.steps],
    ]
    if accepted.attachments:
        # Likewise: tasks without attachments keep the digest they were stored with.
        managed.append([a.model_dump() for a in accepted.attachments])
    if any(managed):
        # Only then: the digests of tasks accepted before these fields stay what they were.
        doc.append(managed)
    return hashlib.blake2b(canonical_json(doc).encode(), digest_size=16).hexdigest()
