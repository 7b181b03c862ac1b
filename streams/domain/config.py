"""The knobs of the decider, frozen, built once from the process settings and the catalog."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.catalog import Catalog, OperationSpec, load_catalog
from streams.settings import DispatchStrategy, Settings


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Everything ``decide``/``tick`` need besides the state, the command and the time.

    ``evolve`` needs none of it: the events carry every decided value, so a replay never
    depends on the configuration that was active when the events were written.
    """

    catalog: Mapping[str, OperationSpec] = field(default_factory=load_catalog)
    batch_window_ms: int = 2000
    max_batch_size: int = 10
    max_retries: int = 3
    retry_base_ms: int = 1000
    retry_max_ms: int = 32_000
    session_stale_ms: int = 300_000
    default_timeout_ms: int = 300_000
    aging_step_ms: int = 60_000
    dispatch_strategy: DispatchStrategy = "session-aware"
    healthy_above: float = 0.7
    unhealthy_below: float = 0.3
    circuit_cooldown_ms: int = 30_000
    probe_recovery_score: float = 0.8
    max_payload_bytes: int = 1_048_576
    max_queued_per_client: int = 100_000
    task_retention_ms: int = 86_400_000

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> DomainConfig:
        return cls(
            catalog=catalog if catalog is not None else load_catalog(settings.operations_file),
            batch_window_ms=settings.batch_window_ms,
            max_batch_size=settings.max_batch_size,
            max_retries=settings.max_retries,
            retry_base_ms=settings.retry_base_ms,
            retry_max_ms=settings.retry_max_ms,
            session_stale_ms=settings.session_stale_ms,
            default_timeout_ms=settings.default_timeout_ms,
            aging_step_ms=settings.aging_step_ms,
            dispatch_strategy=settings.dispatch_strategy,
            circuit_cooldown_ms=settings.circuit_cooldown_ms,
            max_payload_bytes=settings.max_payload_bytes,
            max_queued_per_client=settings.max_queued_per_client,
            task_retention_ms=settings.task_retention_ms,
        )
