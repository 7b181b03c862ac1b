"""``DomainConfig`` holds the domain defaults once; the adapter builds it from the settings."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.catalog import RateLimit, load_catalog, parse_rate_limit
from streams.distributor import Distributor, domain_config
from streams.domain import DomainConfig
from streams.settings import Settings

# Knobs of the decider that are not process settings (tuned in code only).
NOT_SETTINGS = {"catalog", "watch_interval_ms"}
# Settings in another form: a rate limit as text, SLAs by priority name, per-client limits
# from the catalog (tested below).
TRANSLATED = {"client_rate_limit", "client_rate_limits", "sla_ms"}
SHARED = [f.name for f in fields(DomainConfig) if f.name not in NOT_SETTINGS | TRANSLATED]


def test_every_domain_setting_defaults_to_the_domain_default() -> None:
    assert len(SHARED) == 20
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
        "session_healthy_above": 0.8,
        "session_unhealthy_below": 0.2,
        "session_reuse_threshold": 0.6,
        "session_probe_recovery_score": 0.9,
        "max_workload": 0.75,
        "max_payload_bytes": 4096,
        "max_queued_per_client": 31,
        "task_retention_ms": 60_037,
        "starved_after_ms": 41,
        "tick_interval_ms": 43,
    }
    assert sorted(changed) == sorted(SHARED)
    catalog = load_catalog()
    config = domain_config(Settings(**changed), catalog)
    assert {name: getattr(config, name) for name in SHARED} == changed
    assert config.catalog is catalog
    assert Distributor(Settings(**changed), catalog).config == config


def test_rate_limits_and_slas_reach_the_config_in_domain_terms(tmp_path: Any) -> None:
    catalog_file = tmp_path / "ops.toml"
    catalog_file.write_text('[clients.acme]\nrate_limit = "5/s"\n')
    settings = Settings(
        client_rate_limit="50/1m", sla_ms={"critical": 1500}, operations_file=catalog_file
    )
    config = domain_config(settings)
    assert config.client_rate_limit == RateLimit(limit=50, period_ms=60_000)
    assert config.client_rate_limits == {"acme": RateLimit(limit=5, period_ms=1000)}
    assert config.sla_ms[1] == 1500
    assert config.sla_ms[2] == DomainConfig(catalog={}).sla_ms[2]
    assert len(config.catalog) == len(load_catalog())  # a clients-only file adds no operation
    default = Settings.model_fields["client_rate_limit"].default  # the suite sets none
    assert parse_rate_limit(default) == DomainConfig(catalog={}).client_rate_limit


def test_health_bounds_and_the_workload_limit_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKSTREAM_SESSION_REUSE_THRESHOLD", "0.65")
    monkeypatch.setenv("TASKSTREAM_SESSION_HEALTHY_ABOVE", "0.75")
    monkeypatch.setenv("TASKSTREAM_SESSION_UNHEALTHY_BELOW", "0.25")
    monkeypatch.setenv("TASKSTREAM_SESSION_PROBE_RECOVERY_SCORE", "0.85")
    monkeypatch.setenv("TASKSTREAM_MAX_WORKLOAD", "0.8")
    config = domain_config(Settings(), load_catalog())
    assert (
        config.session_reuse_threshold,
        config.session_healthy_above,
        config.session_unhealthy_below,
        config.session_probe_recovery_score,
        config.max_workload,
    ) == (0.65, 0.75, 0.25, 0.85, 0.8)
    with pytest.raises(ValidationError, match="must not be above"):
        Settings(session_unhealthy_below=0.8, session_healthy_above=0.6)
    with pytest.raises(ValidationError):
        Settings(session_reuse_threshold=1.5)


def test_bad_rate_limits_and_sla_names_are_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ValidationError, match="100/10s"):
        Settings(client_rate_limit="lots")
    with pytest.raises(ValidationError, match="unknown priority 'urgent'"):
        Settings(sla_ms={"urgent": 5})


def test_the_readme_catalog_example_sets_the_limits_it_says(tmp_path: Any) -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    part = readme.split("### Dispatch limits", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```toml\n(.*?)```", part, flags=re.S)
    path = tmp_path / "ops.toml"
    path.write_text("\n".join(line.strip() for line in example.splitlines()))
    config = domain_config(Settings(operations_file=path, client_rate_limit="100/10s"))
    assert config.client_rate_limits["client_acme_001"] == RateLimit(limit=50, period_ms=10_000)
    assert config.catalog["conversation_send"].rate_limit == RateLimit(limit=10, period_ms=60_000)
    assert config.client_rate_limit == RateLimit(limit=100, period_ms=10_000)
