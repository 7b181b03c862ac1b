"""Shared fixtures. The broker fixture picks, in order: an external cluster when
KAFKA_BOOTSTRAP_SERVERS is set; else by TASKSTREAM_TEST_BROKER: ``kafka`` (the default: a local
Apache Kafka 4 in KRaft mode, jars fetched with Maven when missing), ``embedded`` (the Tansu
broker of ``taskstream run``, for the smoke set), ``docker`` (a testcontainers Kafka when
Docker answers). Brokers the fixture starts are always stopped, also when tests fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.local import BROKER_KINDS, local_broker
from streams.settings import Settings

TEST_BROKER = os.environ.get("TASKSTREAM_TEST_BROKER", "kafka")

# The default per-client bucket (100 tasks per 10 s) would pace every test that pushes a few
# hundred tasks through one client; tests of the buckets set their own limit
# (tests/unit/test_domain_rates.py, tests/integration/test_distributor_dispatch_limits.py).
os.environ.setdefault("TASKSTREAM_CLIENT_RATE_LIMIT", "none")


def suite_broker() -> str:
    """The broker the suite runs on: ``kafka``, ``embedded``, ``docker`` or ``external``."""
    return "external" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else TEST_BROKER


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
    if TEST_BROKER not in BROKER_KINDS:
        raise pytest.UsageError(
            f"TASKSTREAM_TEST_BROKER={TEST_BROKER!r}: choose kafka, embedded or docker"
        )
    broker = local_broker(TEST_BROKER, tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


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
