"""Typed errors of the HTTP process."""

from __future__ import annotations

from schemas.errors import TaskstreamError


class ApiError(TaskstreamError):
    """The HTTP process cannot start or go on."""
