"""Where the CLI tools find the broker: the environment, else the address a running
``taskstream run`` or ``taskstream broker`` wrote to the data dir."""

from __future__ import annotations

from pathlib import Path

from streams.errors import BrokerError, ConfigurationError
from streams.kafka.process import wait_for_broker
from streams.settings import Settings

ADDRESS_FILE = "broker.address"


def remember_broker(settings: Settings, servers: str) -> Path:
    """Write the local broker's address where the CLI tools look for it."""
    path = Path(settings.data_dir) / ADDRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(servers)
    return path


def with_broker(settings: Settings) -> Settings:
    """Settings with bootstrap servers: from the environment, else from a running ``taskstream run``."""
    if settings.kafka_bootstrap_servers:
        return settings
    path = Path(settings.data_dir) / ADDRESS_FILE
    try:
        servers = path.read_text().strip()
    except OSError:
        raise ConfigurationError(
            "no broker: set KAFKA_BOOTSTRAP_SERVERS or start `taskstream run` in this directory"
        ) from None
    return settings.model_copy(update={"kafka_bootstrap_servers": servers})


async def reachable(settings: Settings) -> Settings:
    """Settings whose broker answers, or a ``BrokerError`` naming the address."""
    settings = with_broker(settings)
    servers = settings.kafka_bootstrap_servers or ""
    try:
        await wait_for_broker(servers, timeout_s=5.0)
    except BrokerError:
        raise BrokerError(f"no Kafka broker answers at {servers}") from None
    return settings
