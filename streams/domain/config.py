"""The knobs of the decider, frozen: the one home of their defaults.

The process settings (``streams.settings.Settings``) take their domain defaults from here and
the adapter builds the config from them (``streams.distributor.domain_config``); the domain
itself never reads settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from schemas.catalog import OperationSpec, RateLimit, load_catalog

DispatchStrategy = Literal["session-aware", "capability-based", "least-loaded", "round-robin"]


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
    # Session health (``streams.domain.health``): the status bounds of the score, the score
    # below which a session is not reused while a better one of its client can take the work
    # (the seed's "session health is above threshold (0.5)"), the circuit's cooldown and the
    # score a successful half-open probe restores.
    session_healthy_above: float = 0.7
    session_unhealthy_below: float = 0.3
    session_reuse_threshold: float = 0.5
    circuit_cooldown_ms: int = 30_000
    session_probe_recovery_score: float = 0.8
    # A session whose agent reported a workload (0..1, on its heartbeat) at or above this gets
    # no new work (the seed's "workload < 0.9").
    max_workload: float = 0.9
    max_payload_bytes: int = 1_048_576
    max_queued_per_client: int = 100_000
    task_retention_ms: int = 86_400_000
    # Per-client token buckets (``streams.domain.rates``): the default, and per-client ones
    # from the catalog's [clients.<id>] tables; operations carry their own in the catalog.
    client_rate_limit: RateLimit = RateLimit(limit=100, period_ms=10_000)
    client_rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    # Queue-wait SLAs per priority (seed 004), checked while tasks wait
    # (``streams.domain.watch``); a client whose work waits this long with nothing that could
    # take it is starved.
    sla_ms: Mapping[int, int] = field(
        default_factory=lambda: {
            1: 60_000,
            2: 5 * 60_000,
            3: 30 * 60_000,
            4: 2 * 3_600_000,
            5: 24 * 3_600_000,
        }
    )
    starved_after_ms: int = 30_000
    # Ticks look at waiting work (SLAs, starvation) about once per watch interval: on the
    # ticks that fall in the first two tick intervals of each one.
    watch_interval_ms: int = 1000
    tick_interval_ms: int = 100


DEFAULTS: DomainConfig = DomainConfig(catalog={})
"""The defaults, for the settings to name (an empty catalog: loading one is not a default)."""
