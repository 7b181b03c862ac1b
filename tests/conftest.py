"""Shared fixtures. The broker fixture picks, in order: an external cluster when
KAFKA_BOOTSTRAP_SERVERS is set; a testcontainers Kafka when TASKSTREAM_TEST_BROKER=docker and
Docker answers; else the embedded broker (always stopped, also when tests fail)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.embedded import EmbeddedBroker
from streams.settings import Settings


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    if os.environ.get("TASKSTREAM_TEST_BROKER") == "docker":
        if not _docker_available():
            pytest.skip("TASKSTREAM_TEST_BROKER=docker but no Docker engine answers")
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    log_dir = tmp_path_factory.mktemp("broker")
    with EmbeddedBroker(log_path=log_dir / "broker.log") as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings isolated per test: unique topic prefix and group id, a temporary data dir."""
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": prefix,
            "group_id": f"{prefix}-processor",
            "data_dir": tmp_path / "data",
            "partitions": 4,
        }
        values.update(overrides)
        return Settings(**values)

    return build
