"""The operation catalog: urgency, expected duration, session need and batchability per operation.

The defaults are the 21 GHL operations of seed 000 (``schemas/operations.toml``). A TOML file of
the same shape replaces or adds operations by name.

Rate limits (``streams.domain.rates``): an operation may carry ``rate_limit = "10/60s"`` (its
own bucket per client, besides the client's), and ``[clients.<client_id>]`` tables set a
client's own ``rate_limit`` in place of ``TASKSTREAM_CLIENT_RATE_LIMIT``. ``"none"`` lifts a
limit.

Batching (``streams.domain.batching``): a batchable operation may carry ``max_batch_size``
(at least 1) and ``batch_window_ms`` (at least 0) in place of ``TASKSTREAM_MAX_BATCH_SIZE`` and
``TASKSTREAM_BATCH_WINDOW_MS``; the size is also the upper bound of adaptive batch sizing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class RateLimit(BaseModel):
    """``limit`` dispatches per ``period_ms``; ``limit`` 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=0)
    period_ms: int = Field(ge=0)

    @property
    def unlimited(self) -> bool:
        return self.limit == 0

    def __str__(self) -> str:
        return "none" if self.unlimited else f"{self.limit}/{self.period_ms}ms"


UNLIMITED = RateLimit(limit=0, period_ms=0)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_rate_limit(text: str) -> RateLimit:
    """``"100/10s"`` (also ``ms``, ``m``, ``h``, ``d``; ``"5/s"`` is 5 per second), or
    ``"none"`` / ``"0"`` for no limit. Raises ``ValueError`` with the accepted forms."""
    if text.strip().lower() in ("none", "off", "unlimited", "0"):
        return UNLIMITED
    match = _RATE.match(text)
    if match is None:
        raise ValueError(
            f"invalid rate limit {text!r}: write <count>/<period>, for example 100/10s, 5/s, "
            "200000/1d, or none"
        )
    count, amount, unit = int(match[1]), float(match[2] or 1), match[3]
    period_ms = int(amount * _UNIT_MS[unit])
    if count == 0:
        return UNLIMITED
    if period_ms < 1:
        raise ValueError(f"invalid rate limit {text!r}: the period must be at least 1 ms")
    return RateLimit(limit=count, period_ms=period_ms)


def _rate_field(value: Any) -> Any:
    return parse_rate_limit(value) if isinstance(value, str) else value


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
    rate_limit: RateLimit | None = None
    """The operation's own bucket per client (besides the client's); None: only the client's."""

    max_batch_size: int | None = Field(default=None, ge=1)
    """Items that close a batch of this operation early (and the bound adaptive sizing grows
    back to); None: ``TASKSTREAM_MAX_BATCH_SIZE``."""
    batch_window_ms: int | None = Field(default=None, ge=0)
    """How long a batch of this operation collects; None: ``TASKSTREAM_BATCH_WINDOW_MS``."""

    _parse_rate = field_validator("rate_limit", mode="before")(_rate_field)

    @model_validator(mode="after")
    def _batching_needs_batchable(self) -> OperationSpec:
        if not self.batchable:
            for name in ("max_batch_size", "batch_window_ms"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is set but the operation is not batchable")
        return self


class ClientSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    rate_limit: RateLimit | None = None
    """The client's bucket in place of the default; None: the default."""

    _parse_rate = field_validator("rate_limit", mode="before")(_rate_field)


class Catalog(Mapping[str, OperationSpec]):
    """Read-only mapping from operation name to its specification."""

    def __init__(
        self, specs: Mapping[str, OperationSpec], clients: Mapping[str, ClientSpec] | None = None
    ) -> None:
        self._specs = dict(specs)
        self.clients: Mapping[str, ClientSpec] = dict(clients or {})
        """``[clients.<id>]`` tables: per-client settings (rate limits)."""

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
            where = "".join(f".{p}" for p in first["loc"])
            raise SchemaError(f"{source}: operations.{name}{where}: {first['msg']}") from None
    return specs


def _parse_clients(document: dict[str, Any], source: str) -> dict[str, ClientSpec]:
    table = document.get("clients", {})
    if not isinstance(table, dict):
        raise SchemaError(f"{source}: expected [clients.<client_id>] tables")
    clients: dict[str, ClientSpec] = {}
    for name, fields in table.items():
        if not isinstance(fields, dict):
            raise SchemaError(f"{source}: clients.{name} must be a table")
        try:
            clients[name] = ClientSpec(name=name, **fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SchemaError(f"{source}: clients.{name}.{where}: {first['msg']}") from None
    return clients


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: not valid TOML: {exc}") from None


def load_catalog(override: Path | None = None) -> Catalog:
    """The default catalog, with the operations of ``override`` replacing or adding entries."""
    default_text = resources.files("schemas").joinpath("operations.toml").read_text("utf-8")
    default = _read_toml(default_text, "operations.toml")
    specs = _parse(default, "operations.toml")
    clients = _parse_clients(default, "operations.toml")
    if override is not None:
        try:
            text = override.read_text("utf-8")
        except OSError as exc:
            raise SchemaError(f"cannot read operations file {override}: {exc.strerror}") from None
        document = _read_toml(text, str(override))
        if "operations" in document or "clients" not in document:
            specs.update(_parse(document, str(override)))
        clients.update(_parse_clients(document, str(override)))
    return Catalog(specs, clients)
