"""The one submission door (``streams.domain.submission.build_submit``) bound to a process's
catalog and payload limit, for the parts that build ``SubmitTask`` outside the SDK and the
gateway: the demo and the dead-letter redrive."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from schemas.catalog import load_catalog
from schemas.commands import SubmitTask
from streams.domain.config import DomainConfig
from streams.domain.submission import build_submit
from streams.settings import Settings

__all__ = ["SubmitDoor", "submit_door"]

SubmitDoor = Callable[..., SubmitTask]
"""Builds and checks a ``SubmitTask`` from its fields; raises ``SubmitRefused`` (or a pydantic
ValidationError for a field of the wrong type)."""


def submit_door(settings: Settings | None = None) -> SubmitDoor:
    """The door with the catalog and payload limit of ``settings`` (none given: the packaged
    catalog and the default limit)."""
    if settings is None:
        return partial(build_submit, load_catalog(), DomainConfig().max_payload_bytes)
    return partial(build_submit, load_catalog(settings.operations_file), settings.max_payload_bytes)
