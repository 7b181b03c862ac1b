"""Typed errors of the domain (the decider itself never raises for bad input: it emits events)."""

from __future__ import annotations

from schemas.errors import TaskstreamError


class DomainError(TaskstreamError):
    """The decider was called with something it cannot decide about."""


class UnknownCommandError(DomainError):
    """The object handed to ``decide`` is not one of the command types of ``schemas.commands``."""
