"""The operation catalog: urgency, expected duration, session need and batchability per operation.

The defaults are the 21 GHL operations of seed 000 (``schemas/operations.toml``). A TOML file of
the same shape replaces or adds operations by name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import SchemaError

PriorityName = Literal["critical", "high", "normal", "low", "background"]
PRIORITY_NAMES: dict[int, str] = {
    1: "critical",
    2: "high",
    3: "normal",
    4: "low",
    5: "background",
}
"""Priority 1 (most urgent) to 5 by name (``PriorityName``), as the HTTP API and the read
model show them."""


class OperationSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    urgency: int = Field(ge=1, le=5)
    expected_duration_ms: int = Field(ge=0)
    session_required: bool = True
    batchable: bool = False
    ghl_api: str | None = None
    """The GoHighLevel v2 request of the operation ("POST /contacts/{contactId}/tags"), "none"
    when v2 has no endpoint for it, unset for operations that are not GoHighLevel's."""


class Catalog(Mapping[str, OperationSpec]):
    """Read-only mapping from operation name to its specification."""

    def __init__(self, specs: Mapping[str, OperationSpec]) -> None:
        self._specs = dict(specs)

    def __getitem__(self, name: str) -> OperationSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _parse(document: dict[str, Any], source: str) -> dict[str, OperationSpec]:
    table = document.get("operations")
    if not isinstance(table, dict):
        raise SchemaError(f"{source}: expected a [operations.<name>] table")
    specs: dict[str, OperationSpec] = {}
    for name, fields in table.items():
        if not isinstance(fields, dict):
            raise SchemaError(f"{source}: operations.{name} must be a table")
        try:
            specs[name] = OperationSpec(name=name, **fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SchemaError(f"{source}: operations.{name}.{where}: {first['msg']}") from None
    return specs


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: not valid TOML: {exc}") from None


def load_catalog(override: Path | None = None) -> Catalog:
    """The default catalog, with the operations of ``override`` replacing or adding entries."""
    default_text = resources.files("schemas").joinpath("operations.toml").read_text("utf-8")
    specs = _parse(_read_toml(default_text, "operations.toml"), "operations.toml")
    if override is not None:
        try:
            text = override.read_text("utf-8")
        except OSError as exc:
            raise SchemaError(f"cannot read operations file {override}: {exc.strerror}") from None
        specs.update(_parse(_read_toml(text, str(override)), str(override)))
    return Catalog(specs)
