"""``DomainConfig`` holds the domain defaults once; the adapter builds it from the settings."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from schemas.catalog import load_catalog
from streams.distributor import Distributor, domain_config
from streams.domain import DomainConfig
from streams.settings import Settings

# Knobs of the decider that are not process settings (tuned in code only).
NOT_SETTINGS = {"catalog", "healthy_above", "unhealthy_below", "probe_recovery_score"}
SHARED = [f.name for f in fields(DomainConfig) if f.name not in NOT_SETTINGS]


def test_every_domain_setting_defaults_to_the_domain_default() -> None:
    assert len(SHARED) == 13
    defaults = DomainConfig(catalog={})
    for name in SHARED:
        assert Settings.model_fields[name].default == getattr(defaults, name), name


def test_the_adapter_carries_every_domain_setting_into_the_config() -> None:
    changed: dict[str, Any] = {
        "batch_window_ms": 7,
        "max_batch_size": 3,
        "max_retries": 9,
        "retry_base_ms": 11,
        "retry_max_ms": 13,
        "session_stale_ms": 17,
        "default_timeout_ms": 19,
        "aging_step_ms": 23,
        "dispatch_strategy": "round-robin",
        "circuit_cooldown_ms": 29,
        "max_payload_bytes": 4096,
        "max_queued_per_client": 31,
        "task_retention_ms": 60_037,
    }
    assert sorted(changed) == sorted(SHARED)
    catalog = load_catalog()
    config = domain_config(Settings(**changed), catalog)
    assert {name: getattr(config, name) for name in SHARED} == changed
    assert config.catalog is catalog
    assert Distributor(Settings(**changed), catalog).config == config
