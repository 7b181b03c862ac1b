"""docs/scaling.md's KEDA example names the groups, topics, bounds and metrics the code has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "scaling.md").read_text()


def defaults() -> Settings:
    """The settings' defaults, whatever this machine's environment says."""
    return Settings.model_construct()


def scaled_objects() -> dict[str, dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    [block] = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(block)}


def test_the_processor_scales_on_its_group_lag_bounded_by_the_partitions() -> None:
    settings = defaults()
    spec = scaled_objects()["taskstream-processor"]["spec"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings.group_id
    assert trigger["metadata"]["topic"] == settings.topic("commands")
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert spec["maxReplicaCount"] == settings.partitions
    assert spec["minReplicaCount"] >= 1  # the processor also runs its partitions' timers


def test_pool_executors_scale_on_the_pool_group_the_executor_joins() -> None:
    settings = defaults()
    spec = scaled_objects()["taskstream-pool-executor"]["spec"]
    [trigger] = spec["triggers"]
    source = (ROOT / "streams" / "executor" / "executor.py").read_text()
    assert 'f"{self.settings.topic_prefix}-pool"' in source  # the group the doc names
    assert trigger["metadata"]["consumerGroup"] == f"{settings.topic_prefix}-pool"
    assert trigger["metadata"]["topic"] == settings.topic("pool")
    assert spec["maxReplicaCount"] == settings.partitions


def test_every_metric_the_page_names_is_exported() -> None:
    exported = set(re.findall(r'"(taskstream_\w+)"', (ROOT / "api" / "metrics.py").read_text()))
    named = set(re.findall(r"`(taskstream_\w+)", DOC))
    assert named and named <= exported
