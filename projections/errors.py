"""Typed errors of the read side."""

from __future__ import annotations

from schemas.errors import TaskstreamError


class ProjectionError(TaskstreamError):
    """The projector cannot go on (it stops with this error, loudly)."""


class ProjectionStoreError(ProjectionError):
    """The projection store cannot be opened or written."""


class BadQueryError(ProjectionError):
    """A query to the read model is malformed (for example an invalid cursor)."""
